import { systemClock, type Clock } from '../core/clock.js'
import { GatewayError, rateLimited, upstreamError } from '../core/errors.js'
import { abortError } from '../core/queue.js'
import { markRetryable, type Upstream } from '../core/upstream.js'
import { scrubSecrets } from './scrub.js'
import { connectionCause, UpstreamHealth, type FailureCause } from './health.js'
import { MAX_READ_BYTES, readWhole, type ChunkSource, type RawHeaders, type Transport, type TransportRequest, type TransportResponse } from './transport.js'
import type { CancelSignal } from '../core/cancel.js'

/** How the URL and the credential header are built: OpenAI's shape, or Azure OpenAI's deployments. */
export type Provider =
  | { kind: 'openai' }
  | { kind: 'azure'; apiVersion: string; deployments: Record<string, string> }

export interface HttpUpstreamOptions {
  name: string
  provider: Provider
  /** Absolute base URL: …/v1 for OpenAI-compatible servers, the resource URL for Azure. */
  baseURL: string
  apiKey: string
  /** Where the key comes from, named in the auth-failure message. */
  keyEnv: string
  /** Where the base URL is set, named in warnings (default OPENAI_BASE_URL). */
  urlSetting?: string
  transport: Transport
  /** No response headers within this → 504. */
  firstByteTimeoutMs: number
  /** The whole request, body included, within this → 504. */
  totalTimeoutMs: number
  isMock?: boolean
  /** Where failure warnings go (rate-limited by UpstreamHealth), and its clock. */
  warn?: (line: string) => void
  clock?: Clock
}

/** A non-streamed answer larger than this is refused (an endless body must not eat memory). */
const MAX_RESPONSE_BYTES = 32 * 1024 * 1024
/** An upstream Retry-After beyond this is not believed. */
const MAX_RETRY_AFTER_MS = 3_600_000
const HEADERS_TIMEOUT = 'UND_ERR_HEADERS_TIMEOUT'

/**
 * An upstream client: bytes forwarded over the transport (undici's pool), no SDK on the
 * request path (the `openai` SDK cost about the bare proxy's whole CPU per call).
 */
export class HttpUpstream implements Upstream {
  readonly name: string
  readonly description: string
  readonly isMock: boolean
  /** Last success and failure, for /health?deep=1 and the console warnings. */
  readonly health: UpstreamHealth
  private readonly secrets: string[]
  private readonly base: string
  private readonly headers: Record<string, string>
  private readonly transport: Transport

  constructor(private readonly options: HttpUpstreamOptions) {
    this.name = options.name
    this.transport = options.transport
    this.isMock = options.isMock ?? false
    const url = new URL(options.baseURL)
    this.secrets = [options.apiKey, decodeURIComponent(url.password), decodeURIComponent(url.username)]
    this.base = options.baseURL.replace(/\/+$/, '')
    url.username = ''
    url.password = ''
    this.description = this.isMock ? 'built-in mock provider' : url.href.replace(/\/$/, '')
    this.health = new UpstreamHealth(this.description, options.clock ?? systemClock, options.warn ?? (() => {}), { url: options.urlSetting ?? 'OPENAI_BASE_URL', key: options.keyEnv })
    // No key (a local server): no credential header at all.
    const auth: Record<string, string> = !options.apiKey ? {} : options.provider.kind === 'azure' ? { 'api-key': options.apiKey } : { authorization: `Bearer ${options.apiKey}` }
    this.headers = { 'content-type': 'application/json', accept: 'application/json', ...auth }
  }

  async complete(model: string, body: Uint8Array, signal: CancelSignal, timeoutMs = Infinity): Promise<Uint8Array> {
    const deadline = new Deadline(Math.min(this.options.totalTimeoutMs, timeoutMs))
    try {
      // The body within the whole-request deadline; an error page, like `send`'s, within the first-byte timeout.
      const bound = (status: number) => (ok(status) ? { maxBytes: MAX_RESPONSE_BYTES, withinMs: Math.max(0, deadline.remaining()) } : { maxBytes: MAX_READ_BYTES, withinMs: this.options.firstByteTimeoutMs })
      const res = await this.transport.sendWhole(this.request('POST', this.chatUrl(model), body, signal, deadline.remaining()), bound)
      deadline.answered = true
      if (!ok(res.status)) throw new UpstreamStatus(res.status, res.headers, res.body.toString('utf8'))
      this.health.success()
      if (res.cut === 'time') deadline.expired = true
      if (res.cut === 'size') throw upstreamError(502, `The upstream's answer exceeded ${MAX_RESPONSE_BYTES} bytes`, 'upstream_too_large')
      if (res.cut !== null) throw new Error(`the upstream's answer was cut (${res.cut})`)
      return res.body
    } catch (err) {
      throw this.toGatewayError(err, signal, deadline)
    }
  }

  async stream(model: string, body: Uint8Array, signal: CancelSignal, timeoutMs = Infinity): Promise<AsyncIterable<Uint8Array>> {
    const deadline = new Deadline(Math.min(this.options.totalTimeoutMs, timeoutMs))
    let source: ChunkSource
    try {
      source = (await this.post(model, body, signal, deadline)).body
    } catch (err) {
      deadline.end()
      throw this.toGatewayError(err, signal, deadline)
    }
    const stream = deadline.guard(source)
    const mapError = (err: unknown) => this.toGatewayError(err, signal, deadline)
    return (async function* relay() {
      try {
        for await (const chunk of stream) yield chunk
      } catch (err) {
        throw mapError(err)
      } finally {
        deadline.end()
        stream.destroy() // a client that left early must close the upstream connection too
      }
    })()
  }

  async models(signal?: CancelSignal): Promise<string[]> {
    const provider = this.options.provider
    if (provider.kind === 'azure') return Object.keys(provider.deployments) // Azure lists no deployments to a data-plane key
    const client = signal ?? new AbortController().signal
    try {
      const res = await this.send('GET', `${this.base}/models`, undefined, client)
      const json = JSON.parse((await readWhole(res.body, this.options.firstByteTimeoutMs)).toString('utf8')) as { data?: { id?: unknown }[] }
      if (!Array.isArray(json.data)) throw upstreamError(502, 'The upstream sent a malformed model list', 'upstream_malformed')
      this.health.success()
      return json.data.map((m) => m?.id).filter((id): id is string => typeof id === 'string')
    } catch (err) {
      throw this.toGatewayError(err, client, null)
    }
  }

  close(): Promise<void> {
    return this.transport.close()
  }

  /** Where a chat completion of `model` is posted. */
  chatUrl(model: string): string {
    const provider = this.options.provider
    if (provider.kind === 'openai') return `${this.base}/chat/completions`
    const deployment = encodeURIComponent(provider.deployments[model] ?? model)
    return `${this.base}/openai/deployments/${deployment}/chat/completions?api-version=${encodeURIComponent(provider.apiVersion)}`
  }

  private async post(model: string, body: Uint8Array, signal: CancelSignal, deadline: Deadline): Promise<TransportResponse> {
    const res = await this.send('POST', this.chatUrl(model), body, signal, deadline.remaining())
    this.health.success()
    return res
  }

  /**
   * One streamed call (the Deadline takes over once the headers are in). An answer other than
   * 2xx is read whole (bounded) and thrown as an UpstreamStatus.
   */
  private async send(method: 'GET' | 'POST', url: string, body: Uint8Array | undefined, signal: CancelSignal, remainingMs = Infinity): Promise<TransportResponse> {
    const res = await this.transport.send(this.request(method, url, body, signal, remainingMs))
    if (ok(res.status)) return res
    let text = ''
    try {
      text = (await readWhole(res.body, this.options.firstByteTimeoutMs)).toString('utf8')
    } catch {
      res.body.destroy() // a stalled or endless error page: the status says enough
    }
    throw new UpstreamStatus(res.status, res.headers, text)
  }

  /** A call's headers are due within the first-byte timeout, and never past the whole-request one. */
  private request(method: 'GET' | 'POST', url: string, body: Uint8Array | undefined, signal: CancelSignal, remainingMs: number): TransportRequest {
    return { url, method, headers: this.headers, body, signal, headersTimeoutMs: Math.max(1, Math.min(this.options.firstByteTimeoutMs, remainingMs)) }
  }

  /**
   * Maps any failure to a clean GatewayError whose message holds no credential, and notes the
   * upstream's share in its health (not a client that left, nor a request it rejected).
   */
  private toGatewayError(err: unknown, client: CancelSignal, deadline: Deadline | null): GatewayError {
    if (err instanceof GatewayError) return err
    if (client.aborted) return abortError(client)
    const note = (cause: FailureCause, status: number | null = null) => this.health.failure(cause, status)
    if (deadline?.expired || hasCode(err, HEADERS_TIMEOUT)) {
      note('timeout')
      const timeout = upstreamError(504, 'The upstream did not answer in time', 'upstream_timeout')
      return deadline?.expired ? timeout : markRetryable(timeout) // before the headers: nothing was answered
    }
    if (err instanceof UpstreamStatus) return this.statusError(err, note)
    if (deadline === null || !deadline.answered) {
      note(connectionCause(err))
      return markRetryable(upstreamError(502, 'Could not reach the upstream', 'upstream_unreachable'))
    }
    note('broken')
    return upstreamError(502, 'The upstream connection failed mid-answer', 'upstream_broken')
  }

  private statusError(err: UpstreamStatus, note: (cause: FailureCause, status: number | null) => void): GatewayError {
    const status = err.status
    const said = err.said()
    const message = this.scrub(said.message ?? `status ${status}`)
    if (status === 429) {
      note('rate_limited', status)
      return markRetryable(rateLimited(`The upstream is rate limiting the gateway: ${message}`, 'upstream_rate_limited', retryAfterMs(err.headers)))
    }
    if (status === 401 || status === 403) {
      note('auth', status)
      return upstreamError(502, `The upstream refused the gateway's credentials; the operator must check ${this.options.keyEnv}`, 'upstream_auth_failed')
    }
    if (status >= 300 && status < 400) {
      note('redirect', status)
      return upstreamError(502, `The upstream answered with a redirect (${status}), which the gateway does not follow`, 'upstream_redirect')
    }
    if (status === 400 || status === 404 || status === 409 || status === 422) {
      if (status === 404) note('not_found', status) // a wrong base path, or a model it does not have
      return new GatewayError(status, 'invalid_request_error', 'upstream_invalid_request', `The upstream rejected the request: ${message}`, {
        param: said.param ? this.scrub(said.param).slice(0, 64) : null,
        upstreamCode: said.code ? this.scrub(said.code).slice(0, 64) : undefined,
      })
    }
    note(status >= 500 ? 'server_error' : 'error_status', status)
    const failed = upstreamError(502, `The upstream failed (status ${status})`, 'upstream_error')
    return status >= 500 ? markRetryable(failed) : failed
  }

  /** Removes credentials, key-like strings and control characters from an upstream message. */
  scrub(text: string): string {
    return scrubSecrets(text, this.secrets, 500)
  }
}

/** An answer other than 2xx, its body read whole. */
class UpstreamStatus extends Error {
  constructor(
    readonly status: number,
    readonly headers: RawHeaders,
    private readonly text: string,
  ) {
    super(`upstream status ${status}`)
  }

  /** OpenAI's error shape, `{"error":{"message","code","param"}}`, as far as the body has it. */
  said(): { message?: string; code?: string; param?: string } {
    try {
      const error = (JSON.parse(this.text) as { error?: unknown }).error
      if (typeof error === 'string') return { message: error }
      if (error === null || typeof error !== 'object') return {}
      const e = error as Record<string, unknown>
      const str = (v: unknown) => (typeof v === 'string' || typeof v === 'number' ? String(v) : undefined)
      return { message: str(e.message), code: str(e.code), param: str(e.param) }
    } catch {
      return {}
    }
  }
}

function ok(status: number): boolean {
  return status >= 200 && status < 300
}

function hasCode(err: unknown, code: string): boolean {
  for (let e = err, depth = 0; e && typeof e === 'object' && depth < 6; e = (e as { cause?: unknown }).cause, depth++) {
    if ((e as { code?: unknown }).code === code) return true
  }
  return false
}

/**
 * One call's whole-request deadline. Until the headers arrive the transport's headers timeout
 * enforces it; after that one timer destroys the body at the deadline, so an upstream that
 * stalls cannot hold the call. No extra AbortController per call: creating signals was a
 * measurable share of the CPU.
 */
class Deadline {
  expired = false
  /** The headers are in: a failure from here on is mid-answer. */
  answered = false
  private readonly endsAt: number
  private timer: NodeJS.Timeout | null = null

  constructor(ms: number) {
    this.endsAt = performance.now() + ms
  }

  remaining(): number {
    return this.endsAt - performance.now()
  }

  /** Arms the timer over the body, for what remains of the deadline. */
  guard(body: ChunkSource): ChunkSource {
    this.answered = true
    this.timer = setTimeout(() => {
      this.expired = true
      body.destroy(new Error('upstream deadline passed'))
    }, Math.max(0, this.remaining()))
    return body
  }

  end(): void {
    if (this.timer !== null) clearTimeout(this.timer)
  }
}

/** Retry-After in seconds or as an HTTP date, or retry-after-ms; clamped to something sane. */
export function retryAfterMs(headers: RawHeaders, now = Date.now()): number {
  const get = (name: string) => {
    const v = headers[name]
    return Array.isArray(v) ? v[0] : v
  }
  const raw = get('retry-after-ms')
  const ms = Number(raw)
  if (raw && Number.isFinite(ms) && ms >= 0) return Math.min(ms, MAX_RETRY_AFTER_MS)
  const value = get('retry-after')?.trim()
  if (!value) return 1000
  if (/^\d+(\.\d+)?$/.test(value)) return Math.min(Number(value) * 1000, MAX_RETRY_AFTER_MS)
  const date = Date.parse(value)
  if (Number.isFinite(date)) return Math.min(Math.max(0, date - now), MAX_RETRY_AFTER_MS)
  return 1000
}
