import type { Clock } from '../core/clock.js'

/** Why a call to the upstream failed, as an operator would look for it. */
export type FailureCause = 'refused' | 'dns' | 'timeout' | 'reset' | 'tls' | 'unreachable' | 'auth' | 'rate_limited' | 'not_found' | 'redirect' | 'server_error' | 'error_status' | 'broken'

const CAUSE_TEXT: Record<FailureCause, string> = {
  refused: 'connection refused (is the upstream running at this address?)',
  dns: 'DNS lookup failed (check the host name in OPENAI_BASE_URL)',
  timeout: 'no answer in time (--upstream-ttfb-timeout / --upstream-timeout)',
  reset: 'connection reset',
  tls: 'TLS handshake failed',
  unreachable: 'could not connect',
  auth: 'credentials refused (check OPENAI_API_KEY)',
  rate_limited: 'the upstream is rate limiting the gateway',
  not_found: 'not found (check the path of OPENAI_BASE_URL, usually ending in /v1, and the model)',
  redirect: 'answered with a redirect, which the gateway does not follow',
  server_error: 'server error',
  error_status: 'error answer',
  broken: 'the connection broke mid-answer',
}

export interface UpstreamFailure {
  at: string
  cause: FailureCause
  /** What an operator reads: the cause in words, with the status when there was one. */
  message: string
  status: number | null
}

export interface UpstreamState {
  url: string
  lastSuccessAt: string | null
  lastFailure: UpstreamFailure | null
  failuresSinceSuccess: number
}

/** At most one warning line per cause in this window; the rest are counted. */
export const WARNING_INTERVAL_MS = 10_000

/** Error codes (Node's and undici's) found along an error's cause chain, mapped to a cause. */
export function connectionCause(err: unknown): FailureCause {
  for (let e = err, depth = 0; e && typeof e === 'object' && depth < 6; e = (e as { cause?: unknown }).cause, depth++) {
    const code = String((e as { code?: unknown }).code ?? '')
    if (code === 'ECONNREFUSED') return 'refused'
    if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 'dns'
    if (code === 'ECONNRESET' || code === 'EPIPE' || code === 'UND_ERR_SOCKET') return 'reset'
    if (code === 'ETIMEDOUT' || code === 'UND_ERR_CONNECT_TIMEOUT') return 'timeout'
    if (code.startsWith('ERR_TLS') || code.includes('CERT')) return 'tls'
  }
  return 'unreachable'
}

/**
 * The upstream's last known state, for /health?deep=1, and one warning line per failure on
 * the console, rate-limited per cause so a flood of failures cannot fill the disk. Lines
 * name the base URL (credentials removed) and never an upstream-written text.
 */
export class UpstreamHealth {
  private lastSuccess: number | null = null
  private lastFailure: UpstreamFailure | null = null
  private failures = 0
  private readonly warned = new Map<FailureCause, { at: number; suppressed: number }>()

  /** `settings`: where the operator sets this upstream's URL and key (an upstreams file names its own). */
  constructor(
    private readonly url: string,
    private readonly clock: Clock,
    private readonly warn: (line: string) => void,
    private readonly settings: { url: string; key: string } = { url: 'OPENAI_BASE_URL', key: 'OPENAI_API_KEY' },
  ) {}

  /** On the hot path: one clock read. */
  success(): void {
    this.lastSuccess = this.clock.now()
    this.failures = 0
  }

  failure(cause: FailureCause, status: number | null = null): void {
    const now = this.clock.now()
    const text = CAUSE_TEXT[cause].replace('OPENAI_BASE_URL', this.settings.url).replace('OPENAI_API_KEY', this.settings.key)
    const message = status === null ? text : `${text} (HTTP ${status})`
    this.lastFailure = { at: new Date(now).toISOString(), cause, message, status }
    this.failures++
    const seen = this.warned.get(cause)
    if (seen && now - seen.at < WARNING_INTERVAL_MS) {
      seen.suppressed++
      return
    }
    const more = seen && seen.suppressed > 0 ? ` (${seen.suppressed} more like it not shown since the last line)` : ''
    this.warned.set(cause, { at: now, suppressed: 0 })
    this.warn(`gateway: warning: upstream ${this.url}: ${message}${more}`)
  }

  state(): UpstreamState {
    return {
      url: this.url,
      lastSuccessAt: this.lastSuccess === null ? null : new Date(this.lastSuccess).toISOString(),
      lastFailure: this.lastFailure,
      failuresSinceSuccess: this.failures,
    }
  }
}
