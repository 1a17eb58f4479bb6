import type { HttpBindings } from '@hono/node-server'
import type { Gateway } from '../core/gateway.js'
import type { RequestRecord } from '../core/request-record.js'
import type { ApiKey } from '../core/types.js'
import type { Metrics } from './metrics.js'
import type { UsageReports } from '../core/usage.js'
import type { UpstreamView } from '../core/routing/router.js'
import type { UpstreamState } from '../upstream/health.js'
import type { SpoolState } from '../core/store.js'

export interface AppOptions {
  /** Largest accepted request body in bytes. */
  bodyLimit: number
  /** Read the client IP from X-Forwarded-For (behind a reverse proxy). */
  trustProxy: boolean
  /** Serve /metrics without an admin key. */
  metricsPublic: boolean
}

export interface AppServices {
  gateway: Gateway
  usage: UsageReports
  metrics: Metrics
  options: AppOptions
  /** The (first) upstream's last success and failure, and every upstream's routing state, for /health?deep=1. */
  upstreamState: () => UpstreamState & { mode: 'mock' | 'upstream'; upstreams: (UpstreamView & UpstreamState)[] }
  /** Log rows waiting in the local spool while the database is unreachable (PostgreSQL), else null. */
  spoolState: () => SpoolState | null
  /** Logs unexpected errors (never a secret: messages only). */
  onUnexpected: (err: unknown) => void
}

/**
 * Hono's typed context: `c.get('record')`, `c.get('key')` (not `c.var`, which copies every
 * variable into a new object on each read); node bindings when served over a socket.
 */
export interface AppEnv {
  Bindings: Partial<HttpBindings>
  Variables: {
    record: RequestRecord
    key: ApiKey
  }
}
