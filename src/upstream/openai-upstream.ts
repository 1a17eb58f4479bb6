import OpenAI from 'openai'
import { GatewayError, rateLimited, upstreamError } from '../core/errors.js'
import { abortError } from '../core/queue.js'
import type { Upstream } from '../core/upstream.js'
import { createMockFetch } from './mock-provider.js'
import type { Readable } from 'node:stream'
import { systemClock, type Clock } from '../core/clock.js'
import { connectionCause, UpstreamHealth, type FailureCause } from './health.js'
import { createPooledFetch, readCapped, type NodeResponse } from './transport.js'

export interface OpenAIUpstreamOptions {
  apiKey: string
  baseURL?: string
  /** No response headers within this → 504. */
  firstByteTimeoutMs: number
  /** The whole request, body included, within this → 504. */
  totalTimeoutMs: number
  fetch?: typeof fetch
  /** Where failure warnings go (rate-limited by UpstreamHealth), and its clock. */
  warn?: (line: string) => void
  clock?: Clock
}

/** A non-streamed answer larger than this is refused (an endless body must not eat memory). */
const MAX_RESPONSE_BYTES = 32 * 1024 * 1024
/** An upstream Retry-After beyond this is not believed. */
const MAX_RETRY_AFTER_MS = 3_600_000

const JSON_HEADERS = { 'content-type': 'application/json' }

/** The one place that talks to the `openai` SDK. */
export class OpenAIUpstream implements Upstream {
  readonly description: string
  readonly isMock: boolean
  /** Last success and failure, for /health?deep=1 and the console warnings. */
  readonly health: UpstreamHealth
  private readonly client: OpenAI
  private readonly secrets: string[]
  private readonly closeTransport: () => Promise<void>

  constructor(private readonly options: OpenAIUpstreamOptions & { isMock?: boolean }) {
    const transport = options.fetch ? { fetch: options.fetch, close: async () => {} } : createPooledFetch({ readTimeoutMs: options.firstByteTimeoutMs })
    this.closeTransport = transport.close
    this.client = new OpenAI({
      apiKey: options.apiKey,
      baseURL: options.baseURL,
      maxRetries: 0, // the gateway decides about retries, never the SDK behind its back
      // Response headers within the first-byte timeout, and never past the whole-request one
      // (the Deadline takes over once they are in).
      timeout: Math.max(1, Math.min(options.firstByteTimeoutMs, options.totalTimeoutMs)),
      logLevel: 'off', // even with OPENAI_LOG=debug: its debug lines carry upstream bodies and headers
      fetch: transport.fetch,
    })
    this.isMock = options.isMock ?? false
    const url = new URL(this.client.baseURL)
    this.secrets = [options.apiKey, url.password, url.username].filter((s) => s.length >= 4)
    url.username = ''
    url.password = ''
    this.description = this.isMock ? 'built-in mock provider' : url.href.replace(/\/$/, '')
    this.health = new UpstreamHealth(this.description, options.clock ?? systemClock, options.warn ?? (() => {}))
  }

  async complete(body: Uint8Array, signal: AbortSignal): Promise<Uint8Array> {
    const deadline = new Deadline(this.options.totalTimeoutMs)
    try {
      const res = await this.post(body, signal, false)
      if (!res.body) return new Uint8Array(0)
      return await readCapped(deadline.guard(res.body), MAX_RESPONSE_BYTES, () => upstreamError(502, `The upstream's answer exceeded ${MAX_RESPONSE_BYTES} bytes`, 'upstream_too_large'))
    } catch (err) {
      throw this.toGatewayError(err, signal, deadline)
    } finally {
      deadline.end()
    }
  }

  async stream(body: Uint8Array, signal: AbortSignal): Promise<AsyncIterable<Uint8Array>> {
    const deadline = new Deadline(this.options.totalTimeoutMs)
    let source: Readable | null
    try {
      source = (await this.post(body, signal, true)).body
    } catch (err) {
      throw this.toGatewayError(err, signal, deadline)
    }
    if (!source) throw upstreamError(502, 'The upstream sent an empty stream', 'upstream_malformed')
    const stream = deadline.guard(source)
    const mapError = (err: unknown) => this.toGatewayError(err, signal, deadline)
    return (async function* relay() {
      try {
        for await (const chunk of stream) yield chunk as Uint8Array
      } catch (err) {
        throw mapError(err)
      } finally {
        deadline.end()
        stream.destroy() // a client that left early must close the upstream connection too
      }
    })()
  }

  async models(signal?: AbortSignal): Promise<string[]> {
    try {
      const ids: string[] = []
      for await (const model of this.client.models.list({ signal })) ids.push(model.id)
      this.health.success()
      return ids
    } catch (err) {
      throw this.toGatewayError(err, signal ?? new AbortController().signal, null)
    }
  }

  close(): Promise<void> {
    return this.closeTransport()
  }

  /**
   * The client's signal goes to the SDK as is (it aborts the SDK's own controller, the one
   * signal the transport sees); the SDK's timer covers the wait for headers, the Deadline
   * the body. The response is the transport's NodeResponse, passed through untouched.
   */
  private async post(body: Uint8Array, signal: AbortSignal, stream: boolean): Promise<NodeResponse> {
    const res = await this.client.post('/chat/completions', { body, headers: JSON_HEADERS, signal, stream } as never).asResponse()
    this.health.success()
    return res as unknown as NodeResponse
  }

  /**
   * Maps any failure to a clean GatewayError whose message holds no credential, and notes the
   * upstream's share in its health (not a client that left, nor a request it rejected).
   */
  private toGatewayError(err: unknown, client: AbortSignal, deadline: Deadline | null): GatewayError {
    if (err instanceof GatewayError) return err
    if (client.aborted) return abortError(client)
    const note = (cause: FailureCause, status: number | null = null) => this.health.failure(cause, status)
    if (deadline?.expired || err instanceof OpenAI.APIConnectionTimeoutError || err instanceof OpenAI.APIUserAbortError) {
      note('timeout')
      return upstreamError(504, 'The upstream did not answer in time', 'upstream_timeout')
    }
    if (err instanceof OpenAI.APIError && err.status !== undefined) {
      const message = this.scrub(err.error && typeof err.error === 'object' && 'message' in err.error ? String(err.error.message) : err.message)
      const status = err.status
      if (status === 429) {
        note('rate_limited', status)
        return rateLimited(`The upstream is rate limiting the gateway: ${message}`, 'upstream_rate_limited', retryAfterMs(err.headers))
      }
      if (status === 401 || status === 403) {
        note('auth', status)
        return upstreamError(502, 'The upstream refused the gateway\'s credentials; the operator must check OPENAI_API_KEY', 'upstream_auth_failed')
      }
      if (status >= 300 && status < 400) {
        note('redirect', status)
        return upstreamError(502, `The upstream answered with a redirect (${status}), which the gateway does not follow`, 'upstream_redirect')
      }
      if (status === 400 || status === 404 || status === 409 || status === 422) {
        if (status === 404) note('not_found', status) // a wrong base path, or a model it does not have
        return new GatewayError(status, 'invalid_request_error', 'upstream_invalid_request', `The upstream rejected the request: ${message}`, {
          param: err.param ? this.scrub(String(err.param)).slice(0, 64) : null,
          upstreamCode: err.code ? this.scrub(String(err.code)).slice(0, 64) : undefined,
        })
      }
      note(status >= 500 ? 'server_error' : 'error_status', status)
      return upstreamError(502, `The upstream failed (status ${status})`, 'upstream_error')
    }
    if (err instanceof OpenAI.APIConnectionError) {
      note(connectionCause(err))
      return upstreamError(502, 'Could not reach the upstream', 'upstream_unreachable')
    }
    note('broken')
    return upstreamError(502, 'The upstream connection failed mid-answer', 'upstream_broken')
  }

  /** Removes credentials, key-like strings and control characters from an upstream message. */
  scrub(text: string): string {
    let out = text
    for (const s of this.secrets) out = out.split(s).join('[redacted]')
    return out
      .replace(/\b(sk|gw)-[A-Za-z0-9_*.-]{4,}/g, '[redacted]')
      .replace(/[\u0000-\u001f\u007f]/g, ' ')
      .slice(0, 500)
  }
}

/**
 * One call's whole-request deadline. Until the headers arrive the SDK's own timeout enforces
 * it; after that one timer destroys the body at the deadline, so an upstream that stalls
 * cannot hold the call. No extra AbortController per call: creating signals was a measurable
 * share of the CPU.
 */
class Deadline {
  expired = false
  private readonly endsAt: number
  private timer: NodeJS.Timeout | null = null

  constructor(ms: number) {
    this.endsAt = performance.now() + ms
  }

  /** Arms the timer over the body, for what remains of the deadline. */
  guard(body: Readable): Readable {
    this.timer = setTimeout(() => {
      this.expired = true
      body.destroy(new Error('upstream deadline passed'))
    }, Math.max(0, this.endsAt - performance.now()))
    return body
  }

  end(): void {
    if (this.timer !== null) clearTimeout(this.timer)
  }
}

/** Retry-After in seconds or as an HTTP date, or retry-after-ms; clamped to something sane. */
export function retryAfterMs(headers: Headers | undefined, now = Date.now()): number {
  const ms = Number(headers?.get('retry-after-ms'))
  if (headers?.get('retry-after-ms') && Number.isFinite(ms) && ms >= 0) return Math.min(ms, MAX_RETRY_AFTER_MS)
  const value = headers?.get('retry-after')?.trim()
  if (!value) return 1000
  if (/^\d+(\.\d+)?$/.test(value)) return Math.min(Number(value) * 1000, MAX_RETRY_AFTER_MS)
  const date = Date.parse(value)
  if (Number.isFinite(date)) return Math.min(Math.max(0, date - now), MAX_RETRY_AFTER_MS)
  return 1000
}

export interface UpstreamSettings {
  warn?: (line: string) => void
  clock?: Clock
  apiKey?: string
  baseURL?: string
  mock: boolean
  firstByteTimeoutMs: number
  totalTimeoutMs: number
}

/** The real upstream when a key is set and --mock is off; otherwise the built-in mock provider. */
export function createUpstream(settings: UpstreamSettings): OpenAIUpstream {
  const timeouts = { firstByteTimeoutMs: settings.firstByteTimeoutMs, totalTimeoutMs: settings.totalTimeoutMs, warn: settings.warn, clock: settings.clock }
  if (settings.mock || !settings.apiKey) {
    return new OpenAIUpstream({ apiKey: 'mock', baseURL: 'http://mock.invalid/v1', fetch: createMockFetch(), isMock: true, ...timeouts })
  }
  return new OpenAIUpstream({ apiKey: settings.apiKey, baseURL: settings.baseURL, ...timeouts })
}
