import { Calendar } from './core/calendar.js'
import { systemClock, type Clock } from './core/clock.js'
import { Gateway } from './core/gateway.js'
import { Pricing } from './core/pricing.js'
import { RequestLog, type RowSink } from './core/request-log.js'
import { KeyManager } from './core/keys.js'
import { UsageReports } from './core/usage.js'
import { UsageViews } from './core/usage-views.js'
import { AccessLog, type AccessLogFormat } from './http/access-log.js'
import { createApp } from './http/app.js'
import { Metrics } from './http/metrics.js'
import { CsvLog } from './storage/csv-log.js'
import { ServerLock } from './storage/sqlite/server-lock.js'
import type { Store } from './core/store.js'
import { openStore } from './storage/open-store.js'
import { SpoolingLog } from './storage/spool.js'
import type { LoadedUpstreams } from './core/routing/config.js'
import { Router } from './core/routing/router.js'
import { createUpstreams } from './upstream/create.js'
import type { HttpUpstream } from './upstream/http-upstream.js'

export interface GatewaySettings {
  db: string
  mock: boolean
  apiKey?: string
  baseURL?: string
  model: string
  firstByteTimeoutMs: number
  totalTimeoutMs: number
  timezone: string
  maxInflight: number | null
  queueSize: number
  queueTimeoutMs: number
  trustProxy: boolean
  /** Base path of the CSV request log, or null for none. */
  csvLog: string | null
  logBodies: boolean
  metricsPublic: boolean
  prices?: string
  bodyLimit: number
  /** One line per request on stdout. */
  accessLog: AccessLogFormat
  /** Redis URL holding every limit (shared by every gateway on it), or null: in this process's memory. */
  redis: string | null
  /** With Redis: how long a dead gateway's reservations and slots are held. */
  redisLeaseMs: number
  /** With Redis: how long it may answer nothing before requests get 503 limiter_unavailable. */
  redisTimeoutMs: number
  /** PostgreSQL only: where log rows wait while the database is unreachable (one directory per gateway). */
  spoolDir: string
  /** Serve the browser dashboard under /dashboard. */
  dashboard: boolean
  /** `--upstreams FILE`, read and validated; without it OPENAI_API_KEY / OPENAI_BASE_URL make one upstream. */
  upstreams?: LoadedUpstreams
}

export const DEFAULT_SETTINGS: Omit<GatewaySettings, 'db'> = {
  mock: false,
  model: 'gpt-4o-mini',
  firstByteTimeoutMs: 60_000,
  totalTimeoutMs: 600_000,
  timezone: 'UTC',
  maxInflight: 64,
  queueSize: 1_000,
  queueTimeoutMs: 30_000,
  trustProxy: false,
  csvLog: null,
  logBodies: false,
  metricsPublic: false,
  bodyLimit: 1024 * 1024,
  accessLog: 'off',
  redis: null,
  redisLeaseMs: 60_000,
  redisTimeoutMs: 100,
  spoolDir: './data/spool',
  dashboard: true,
}

export interface BuiltGateway {
  app: ReturnType<typeof createApp>
  gateway: Gateway
  store: Store
  /** The first upstream (the only one without an upstreams file): banner and --check-upstream. */
  upstream: HttpUpstream
  upstreams: HttpUpstream[]
  router: Router
  requestLog: RequestLog
  /** Connects the limiter (Redis); rejects when it cannot. */
  ready(): Promise<void>
  /** Stops watching the store, waits for every request's row to be committed, closes files, store and transport, and gives up the database. */
  close(): Promise<void>
}

/** Log batches committing at once on PostgreSQL (its pool holds 10 connections). */
const PG_BATCHES_IN_FLIGHT = 4

/** At close, how long requests still running may take to hand over their rows. */
const ROWS_GRACE_MS = 10_000

/**
 * The composition root: the one place that wires the store (SQLite or PostgreSQL), the CSV log and the upstreams
 * together. `onError` hears unexpected errors, `warn` the (rate-limited) upstream failures.
 */
export async function buildGateway(settings: GatewaySettings, clock: Clock = systemClock, onError: (err: unknown) => void = () => {}, warn: (line: string) => void = () => {}): Promise<BuiltGateway> {
  // Only with --redis, and first (nothing to undo if it fails): the Redis client is megabytes of code and heap
  // a gateway keeping its limits in memory never runs.
  const RedisLimiter = settings.redis === null ? null : (await import('./storage/redis/redis-limiter.js')).RedisLimiter
  const calendar = new Calendar(settings.timezone)
  const pricing = Pricing.load(settings.prices)
  // The upstreams are checked (a bad URL or file throws) before anything is opened.
  const made = createUpstreams({ ...settings, warn, clock })
  const upstreams = made.routed.map((r) => r.upstream)
  const upstream = upstreams[0]
  const store = openStore(settings.db, { busyTimeoutMs: 0 })
  let lock: ServerLock | null = null
  let spool: SpoolingLog | null = null
  /** Gives back what was opened when a later step of the start fails. */
  const abandon = async () => {
    spool?.close()
    await store.close()
    lock?.release()
  }
  try {
    // PostgreSQL is shared by design (many gateways); a SQLite file has one server, or several
    // when their limits are shared in Redis.
    lock = store.kind === 'postgres' || settings.db === ':memory:' ? null : ServerLock.acquire(settings.db, { shared: settings.redis !== null })
    spool = store.kind === 'postgres' ? new SpoolingLog(store, settings.spoolDir, onError) : null
  } catch (err) {
    await abandon()
    throw err
  }
  const sinks: RowSink[] = settings.csvLog ? [new CsvLog(settings.csvLog)] : []
  // PostgreSQL takes several batches at once (a commit's round trip is the wait); SQLite has one writer.
  const requestLog = new RequestLog(spool ?? store, sinks, onError, store.kind === 'postgres' ? PG_BATCHES_IN_FLIGHT : 1)
  const router = new Router(made.routed, made.aliases, { cooldown: made.cooldown, deadlineMs: settings.totalTimeoutMs }, clock)
  const accessLog = settings.accessLog === 'off' ? null : new AccessLog(settings.accessLog)
  const metrics = new Metrics(() => gateway.queue, upstreams.map((u) => u.name))
  const gateway: Gateway = new Gateway({
    store,
    clock,
    router,
    calendar,
    pricing,
    requestLog,
    options: { model: settings.model, logBodies: settings.logBodies, maxInflight: settings.maxInflight, queueSize: settings.queueSize, queueTimeoutMs: settings.queueTimeoutMs },
    observe: (row) => {
      metrics.observe(row)
      accessLog?.write(row)
    },
    onError,
    limiter: RedisLimiter === null ? undefined : (queue) => new RedisLimiter({ url: settings.redis!, leaseMs: settings.redisLeaseMs, timeoutMs: settings.redisTimeoutMs, queueTimeoutMs: settings.queueTimeoutMs, store, calendar, clock, queue, warn }),
  })
  try {
    await gateway.start()
  } catch (err) {
    await abandon()
    throw err
  }
  const stopWatching = gateway.watch()
  const app = createApp({
    gateway,
    usage: new UsageReports(store),
    metrics,
    clock,
    spoolState: () => spool?.state() ?? null,
    upstreamState: () => ({
      mode: made.isMock ? 'mock' : 'upstream',
      ...upstream.health.state(),
      upstreams: router.views().map((view, i) => ({ ...view, ...upstreams[i].health.state() })),
    }),
    model: settings.model,
    options: { bodyLimit: settings.bodyLimit, trustProxy: settings.trustProxy, metricsPublic: settings.metricsPublic },
    onUnexpected: onError,
    // The dashboard's views have no PostgreSQL queries yet (its hourly sums are SQLite's): off there.
    dashboard: settings.dashboard && store.kind === 'sqlite'
      ? { gateway, store, keys: new KeyManager(store, clock), views: new UsageViews(store, calendar), clock, calendar, logBodies: settings.logBodies, trustProxy: settings.trustProxy, onUnexpected: onError }
      : null,
  })
  return {
    app,
    gateway,
    store,
    upstream,
    upstreams,
    router,
    requestLog,
    ready: () => gateway.limiter.ready(),
    async close() {
      stopWatching()
      // Every request begun hands its row over (bounded: a straggler must not hold the exit),
      // then every row is committed, and only then does the store close.
      await Promise.race([gateway.idle(), new Promise((r) => setTimeout(r, ROWS_GRACE_MS).unref())])
      await requestLog.drain()
      // What waits in the spool goes in now if the database is back; else it stays on disk for the next start.
      await spool?.replay()
      spool?.close()
      accessLog?.flush()
      for (const sink of sinks) sink.close()
      await gateway.limiter.close()
      await store.close()
      lock?.release()
      await Promise.all(upstreams.map((u) => u.close()))
    },
  }
}
