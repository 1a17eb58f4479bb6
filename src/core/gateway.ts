import type { Store } from '../storage/store.js'
import { AdmissionControl, type Admission } from './admission.js'
import { BudgetLedger } from './budget.js'
import type { Calendar } from './calendar.js'
import { serialise, type PreparedChat } from './chat-request.js'
import type { Clock } from './clock.js'
import { GatewayError, rateLimited, unauthorized, upstreamError } from './errors.js'
import { KeyRing } from './keys.js'
import { resolveIpLimits, resolveKeyLimits } from './limits.js'
import type { Pricing } from './pricing.js'
import { clientClosed, FairQueue, type QueueOptions } from './queue.js'
import type { RequestLog } from './request-log.js'
import { RequestRecord } from './request-record.js'
import { SlidingWindow } from './sliding-window.js'
import { eventData, SseSplitter } from './sse.js'
import { countPromptTokens, countTextTokens } from './tokens.js'
import type { Upstream } from './upstream.js'
import type { ApiKey, DefaultOverrides, IpLimits, Limits, RequestRow, Usage } from './types.js'

export interface GatewayOptions extends QueueOptions {
  /** Model for the seed's /chat route. */
  model: string
  logBodies: boolean
}

export interface GatewayDeps {
  store: Store
  clock: Clock
  upstream: Upstream
  calendar: Calendar
  pricing: Pricing
  requestLog: RequestLog
  options: GatewayOptions
  /** Told of every row logged (metrics). */
  observe?: (row: RequestRow) => void
}

export interface Completion {
  bytes: Uint8Array
  json: Record<string, unknown>
  headers: Record<string, string>
}

export interface StreamedCompletion {
  headers: Record<string, string>
  body: AsyncIterable<Uint8Array>
}

const MODELS_TTL_MS = 5 * 60_000
const IP_TABLE_SWEEP = 10_000
const encoder = new TextEncoder()
const decoder = new TextDecoder()

/**
 * The gateway's core: authentication, limits, the chat flow and metering. It knows no HTTP
 * framework; the HTTP layer hands it a RequestRecord and an abort signal per request.
 */
export class Gateway {
  readonly queue: FairQueue
  readonly ledger: BudgetLedger
  private readonly admission: AdmissionControl
  private readonly keys = new KeyRing()
  private defaults: DefaultOverrides = {}
  private ipLimits: IpLimits = resolveIpLimits({})
  private limitsCache = new Map<string, Limits>()
  private version = -1
  private readonly authFailures = new Map<string, SlidingWindow>()
  private readonly ipRequests = new Map<string, SlidingWindow>()
  private modelCache: { at: number; ids: Promise<string[]> } | null = null

  constructor(private readonly deps: GatewayDeps) {
    this.queue = new FairQueue(deps.options, deps.clock)
    this.ledger = new BudgetLedger(deps.store, deps.calendar)
    this.admission = new AdmissionControl(deps.clock, this.ledger, this.queue)
    this.refresh()
  }

  /** Reloads keys and limits if another connection (the CLI) changed the store. */
  refresh(force = false): boolean {
    const version = this.deps.store.changeVersion()
    if (!force && version === this.version) return false
    this.version = version
    this.keys.load(this.deps.store, this.deps.clock.now())
    this.defaults = this.deps.store.getDefaults()
    this.ipLimits = resolveIpLimits(this.defaults)
    this.limitsCache = new Map()
    return true
  }

  /** Polls the store so CLI changes apply within `intervalMs`; returns the stop function. */
  watch(intervalMs = 250): () => void {
    const timer = setInterval(() => {
      try {
        this.refresh()
      } catch {
        // A busy store is retried on the next tick; the old view stays valid meanwhile.
      }
    }, intervalMs)
    timer.unref()
    return () => clearInterval(timer)
  }

  limitsOf(key: ApiKey): Limits {
    let limits = this.limitsCache.get(key.id)
    if (!limits) {
      limits = resolveKeyLimits(this.defaults, key.limits).limits
      this.limitsCache.set(key.id, limits)
    }
    return limits
  }

  /** The optional per-IP limit on all requests, checked before anything else. */
  checkIp(ip: string): void {
    const limit = this.ipLimits.ipRpm
    if (limit === null) return
    const window = this.ipWindow(this.ipRequests, ip)
    const now = this.deps.clock.now()
    if (window.admit(now, 1, limit) < 0) {
      throw rateLimited(`Too many requests from this address (limit ${limit} per minute)`, 'ip_rate_limit_exceeded', window.waitFor(now, 1, limit))
    }
  }

  /**
   * The key for a presented secret. A failure counts against the client's IP; past the
   * limit further failures get 429, while valid keys from the same IP still pass.
   */
  authenticate(presented: string | null, ip: string): ApiKey {
    const now = this.deps.clock.now()
    const key = presented === null ? null : this.keys.authenticate(presented, now)
    if (key) return key
    const limit = this.ipLimits.authFailuresPerMinute
    if (limit !== null) {
      const window = this.ipWindow(this.authFailures, ip)
      if (window.admit(now, 1, limit) < 0) {
        throw rateLimited('Too many failed authentication attempts from this address', 'auth_rate_limit_exceeded', window.waitFor(now, 1, limit))
      }
    }
    throw presented === null ? unauthorized('Missing API key: send "Authorization: Bearer <key>" or "X-API-Key: <key>"') : this.keys.refusal(presented, now)
  }

  newRecord(requestId: string, ip: string, method: string, route: string, userAgent: string | null): RequestRecord {
    return new RequestRecord(requestId, ip, method, route, userAgent, this.deps.clock.now())
  }

  /** Writes the record's one log row (group commit); resolves when it is durable. */
  log(record: RequestRecord, status: number): Promise<void> {
    if (record.written) return Promise.resolve()
    record.written = true
    const row = record.toRow(status, this.ledger.dayOf(this.deps.clock.now()))
    this.deps.observe?.(row)
    return this.deps.requestLog.write(row)
  }

  /** A non-streamed completion: admitted, forwarded, metered. */
  async complete(record: RequestRecord, key: ApiKey, prepared: PreparedChat, signal: AbortSignal, queueTimeoutMs?: number): Promise<Completion> {
    const admission = await this.begin(record, key, prepared, signal, queueTimeoutMs)
    const started = performance.now()
    let bytes: Uint8Array
    try {
      bytes = await this.deps.upstream.complete(serialise(prepared), signal)
    } catch (err) {
      this.end(record, admission, null, started)
      throw err
    }
    let json: Record<string, unknown>
    try {
      const parsed: unknown = JSON.parse(decoder.decode(bytes))
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not an object')
      json = parsed as Record<string, unknown>
    } catch {
      this.end(record, admission, null, started)
      throw upstreamError(502, 'The upstream sent a malformed answer', 'upstream_malformed')
    }
    this.end(record, admission, usageOf(json.usage) ?? this.estimate(prepared, choicesText(json, 'message')), started)
    if (this.deps.options.logBodies) record.responseBody = decoder.decode(bytes)
    return { bytes, json, headers: admission.headers }
  }

  /** A streamed completion: SSE relayed event by event, metered, logged before its last event. */
  async stream(record: RequestRecord, key: ApiKey, prepared: PreparedChat, signal: AbortSignal, queueTimeoutMs?: number): Promise<StreamedCompletion> {
    const admission = await this.begin(record, key, prepared, signal, queueTimeoutMs)
    const started = performance.now()
    let source: AsyncIterable<Uint8Array>
    try {
      source = await this.deps.upstream.stream(serialise(prepared), signal)
    } catch (err) {
      this.end(record, admission, null, started)
      throw err
    }
    record.streamed = true
    record.deferred = true
    return { headers: admission.headers, body: this.relay(record, prepared, admission, source, started, signal) }
  }

  /** Model ids this key may use: its allow-list, else the upstream's (cached). */
  async models(key: ApiKey): Promise<string[]> {
    if (key.models !== null) return key.models
    const now = this.deps.clock.now()
    if (!this.modelCache || now - this.modelCache.at > MODELS_TTL_MS) {
      const ids = this.deps.upstream.models()
      this.modelCache = { at: now, ids }
      ids.catch(() => {
        if (this.modelCache?.ids === ids) this.modelCache = null
      })
    }
    return this.modelCache.ids
  }

  private async begin(record: RequestRecord, key: ApiKey, prepared: PreparedChat, signal: AbortSignal, queueTimeoutMs?: number): Promise<Admission> {
    record.model = prepared.model
    if (this.deps.options.logBodies) record.requestBody = JSON.stringify(prepared.body)
    const admission = await this.admission.admit(key, this.limitsOf(key), prepared, { signal, timeoutMs: queueTimeoutMs })
    record.queuedMs = admission.queuedMs
    return admission
  }

  /** Settles the admission to what was used (nothing, when the upstream reported nothing). */
  private end(record: RequestRecord, admission: Admission, usage: Usage | null, started: number): void {
    record.upstreamMs = performance.now() - started
    if (usage) {
      record.usage = usage
      record.costMicros = this.deps.pricing.costMicros(record.model, usage.promptTokens, usage.completionTokens)
    }
    admission.settle(usage ?? record.usage)
  }

  private estimate(prepared: PreparedChat, completion: string): Usage {
    const promptTokens = countPromptTokens(prepared.body.messages as unknown[])
    const completionTokens = countTextTokens(completion)
    return { promptTokens, completionTokens, totalTokens: promptTokens + completionTokens, estimated: true }
  }

  private async *relay(
    record: RequestRecord,
    prepared: PreparedChat,
    admission: Admission,
    source: AsyncIterable<Uint8Array>,
    started: number,
    signal: AbortSignal,
  ): AsyncGenerator<Uint8Array> {
    const splitter = new SseSplitter()
    let usage: Usage | null = null
    let text = ''
    let sawDone = false
    let failure: GatewayError | null = null
    let finished = false
    const onEvent = (event: string): string => {
      const data = eventData(event)
      if (data === null) return event // comments and other fields pass through
      if (data.trim() === '[DONE]') {
        sawDone = true
        return '' // held back until the row is committed
      }
      let chunk: Record<string, unknown>
      try {
        chunk = JSON.parse(data) as Record<string, unknown>
      } catch {
        throw upstreamError(502, 'The upstream sent a malformed stream event', 'upstream_malformed')
      }
      if (chunk.error) {
        // Never relayed verbatim: the upstream wrote it and may have put a credential in it.
        record.errorCode = 'upstream_stream_error'
        const said = (chunk.error as { message?: unknown }).message
        const relayed = upstreamError(502, `The upstream reported an error mid-stream${typeof said === 'string' ? `: ${this.deps.upstream.scrub(said)}` : ''}`, 'upstream_stream_error')
        return errorEvent(relayed)
      }
      const reported = usageOf(chunk.usage)
      if (reported) usage = reported
      text += choicesText(chunk, 'delta')
      const usageOnly = Array.isArray(chunk.choices) && chunk.choices.length === 0 && reported !== null
      return usageOnly && !prepared.clientWantsUsage ? '' : event
    }
    const finish = async (): Promise<void> => {
      if (finished) return
      finished = true
      const metered = usage ?? this.estimate(prepared, text)
      this.end(record, admission, metered, started)
      if (failure) record.errorCode = failure.code
      else if (!sawDone) record.errorCode = record.errorCode ?? 'upstream_incomplete'
      await this.log(record, failure?.status === 499 ? 499 : 200)
    }
    try {
      for await (const chunk of source) {
        let out = ''
        for (const event of splitter.push(chunk)) out += onEvent(event)
        if (out.length > 0) yield encoder.encode(out)
      }
      const rest = splitter.end()
      if (rest.trim().length > 0) onEvent(rest)
    } catch (err) {
      failure = err instanceof GatewayError ? err : upstreamError(502, 'The upstream stream broke', 'upstream_broken')
    } finally {
      // Runs when the client leaves too (the generator is returned early): meter what was streamed.
      if (!failure && !sawDone && signal.aborted) failure = clientClosed()
      await finish()
    }
    if (failure) {
      if (failure.status !== 499) yield encoder.encode(errorEvent(failure))
      return
    }
    if (!sawDone) {
      const cut = upstreamError(502, 'The upstream stream ended before it was complete', 'upstream_incomplete')
      yield encoder.encode(errorEvent(cut))
      return
    }
    yield encoder.encode('data: [DONE]\n\n')
  }

  private ipWindow(table: Map<string, SlidingWindow>, ip: string): SlidingWindow {
    let w = table.get(ip)
    if (!w) {
      if (table.size >= IP_TABLE_SWEEP) {
        const now = this.deps.clock.now()
        for (const [k, v] of table) if (v.used(now) === 0) table.delete(k)
      }
      w = new SlidingWindow()
      table.set(ip, w)
    }
    return w
  }
}

/** An error as an SSE event in OpenAI's error shape. */
function errorEvent(err: GatewayError): string {
  return `data: ${JSON.stringify(err.toJSON())}\n\n`
}

function usageOf(value: unknown): Usage | null {
  if (value === null || typeof value !== 'object') return null
  const u = value as Record<string, unknown>
  const prompt = u.prompt_tokens
  const completion = u.completion_tokens
  if (typeof prompt !== 'number' || typeof completion !== 'number' || prompt < 0 || completion < 0) return null
  const total = typeof u.total_tokens === 'number' && u.total_tokens >= prompt + completion ? u.total_tokens : prompt + completion
  return { promptTokens: Math.floor(prompt), completionTokens: Math.floor(completion), totalTokens: Math.floor(total), estimated: false }
}

/** Generated text of a completion (`message`) or of a stream chunk (`delta`), tool-call arguments included. */
function choicesText(json: Record<string, unknown>, part: 'message' | 'delta'): string {
  if (!Array.isArray(json.choices)) return ''
  let text = ''
  for (const choice of json.choices as Record<string, { content?: unknown; tool_calls?: { function?: { arguments?: unknown } }[] } | undefined>[]) {
    const m = choice?.[part]
    if (typeof m?.content === 'string') text += m.content
    if (Array.isArray(m?.tool_calls)) for (const call of m.tool_calls) if (typeof call?.function?.arguments === 'string') text += call.function.arguments
  }
  return text
}
