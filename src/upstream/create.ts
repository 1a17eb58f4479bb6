import type { Clock } from '../core/clock.js'
import { DEFAULT_COOLDOWN, type LoadedUpstreams } from '../core/routing/config.js'
import type { RoutedUpstreamOptions } from '../core/routing/router.js'
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
  /** An upstreams file, read; without it OPENAI_API_KEY / OPENAI_BASE_URL (or the mock) make one upstream. */
  upstreams?: LoadedUpstreams
}

export const DEFAULT_BASE_URL = 'https://api.openai.com/v1'
/** The one upstream made from OPENAI_API_KEY / OPENAI_BASE_URL when there is no upstreams file. */
export const DEFAULT_UPSTREAM_NAME = 'default'
/** A connection not made within this fails (and the router may try the next upstream). */
const MAX_CONNECT_TIMEOUT_MS = 10_000

/** A pooled transport whose connect timeout stays within the first-byte timeout. */
function pooledTransportFor(firstByteTimeoutMs: number) {
  return createPooledTransport({ connectTimeoutMs: Math.min(firstByteTimeoutMs, MAX_CONNECT_TIMEOUT_MS) })
}

export interface Upstreams {
  routed: (RoutedUpstreamOptions & { upstream: HttpUpstream })[]
  aliases: LoadedUpstreams['config']['aliases']
  cooldown: LoadedUpstreams['config']['cooldown']
  /** Without an upstreams file: the mock, or the one upstream of OPENAI_API_KEY. */
  isMock: boolean
}

/**
 * The upstreams: those of the upstreams file (with --mock, the mock stands in for each, so a
 * routing config can be tried without keys), else the one of OPENAI_API_KEY / OPENAI_BASE_URL,
 * else the built-in mock provider.
 */
export function createUpstreams(settings: UpstreamSettings): Upstreams {
  const timeouts = { firstByteTimeoutMs: settings.firstByteTimeoutMs, totalTimeoutMs: settings.totalTimeoutMs, warn: settings.warn, clock: settings.clock }
  const mock = (name: string) => new HttpUpstream({ ...timeouts, name, provider: { kind: 'openai' }, keyEnv: 'OPENAI_API_KEY', apiKey: 'mock', baseURL: 'http://mock.invalid/v1', transport: createMockTransport(), isMock: true })
  const file = settings.upstreams
  if (!file) {
    const single = { models: null, weight: 1, maxInflight: null }
    if (settings.mock || !settings.apiKey) return { routed: [{ ...single, upstream: mock(DEFAULT_UPSTREAM_NAME) }], aliases: {}, cooldown: DEFAULT_COOLDOWN, isMock: true }
    const upstream = new HttpUpstream({ ...timeouts, name: DEFAULT_UPSTREAM_NAME, provider: { kind: 'openai' }, keyEnv: 'OPENAI_API_KEY', apiKey: settings.apiKey, baseURL: settings.baseURL ?? DEFAULT_BASE_URL, transport: pooledTransportFor(settings.firstByteTimeoutMs) })
    return { routed: [{ ...single, upstream }], aliases: {}, cooldown: DEFAULT_COOLDOWN, isMock: false }
  }
  const routed = file.config.upstreams.map((spec) => {
    const totalTimeoutMs = spec.timeoutMs ?? settings.totalTimeoutMs
    const upstream = settings.mock
      ? mock(spec.name)
      : new HttpUpstream({
          ...timeouts,
          totalTimeoutMs,
          name: spec.name,
          provider: spec.provider === 'azure' ? { kind: 'azure', apiVersion: spec.apiVersion ?? '', deployments: spec.deployments } : { kind: 'openai' },
          keyEnv: spec.apiKeyEnv ?? `an api_key_env for upstream "${spec.name}"`,
          urlSetting: `the base_url of upstream "${spec.name}"`,
          apiKey: file.keys[spec.name] ?? '',
          baseURL: spec.baseURL,
          transport: pooledTransportFor(Math.min(settings.firstByteTimeoutMs, totalTimeoutMs)),
        })
    return { upstream, models: spec.models, weight: spec.weight, maxInflight: spec.maxInflight }
  })
  return { routed, aliases: file.config.aliases, cooldown: file.config.cooldown, isMock: settings.mock }
}
