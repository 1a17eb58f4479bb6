import type { Clock } from '../core/clock.js'
import { HttpUpstream } from './http-upstream.js'
import { createMockTransport } from './mock-provider.js'
import { createPooledTransport } from './transport.js'

export interface UpstreamSettings {
  warn?: (line: string) => void
  clock?: Clock
  apiKey?: string
  baseURL?: string
  mock: boolean
  firstByteTimeoutMs: number
  totalTimeoutMs: number
}

export const DEFAULT_BASE_URL = 'https://api.openai.com/v1'
/** The one upstream made from OPENAI_API_KEY / OPENAI_BASE_URL when there is no upstreams file. */
export const DEFAULT_UPSTREAM_NAME = 'default'
/** A connection not made within this fails (and the router may try the next upstream). */
const MAX_CONNECT_TIMEOUT_MS = 10_000

/** A pooled transport whose connect timeout stays within the first-byte timeout. */
export function pooledTransportFor(firstByteTimeoutMs: number) {
  return createPooledTransport({ connectTimeoutMs: Math.min(firstByteTimeoutMs, MAX_CONNECT_TIMEOUT_MS) })
}

/** The real upstream when a key is set and --mock is off; otherwise the built-in mock provider. */
export function createDefaultUpstream(settings: UpstreamSettings): HttpUpstream {
  const common = { name: DEFAULT_UPSTREAM_NAME, provider: { kind: 'openai' } as const, keyEnv: 'OPENAI_API_KEY', firstByteTimeoutMs: settings.firstByteTimeoutMs, totalTimeoutMs: settings.totalTimeoutMs, warn: settings.warn, clock: settings.clock }
  if (settings.mock || !settings.apiKey) {
    return new HttpUpstream({ ...common, apiKey: 'mock', baseURL: 'http://mock.invalid/v1', transport: createMockTransport(), isMock: true })
  }
  return new HttpUpstream({ ...common, apiKey: settings.apiKey, baseURL: settings.baseURL ?? DEFAULT_BASE_URL, transport: pooledTransportFor(settings.firstByteTimeoutMs) })
}
