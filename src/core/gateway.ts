import type { Store } from './store.js'
import type { Calendar } from './calendar.js'
import { serialise, type PreparedChat } from './chat-request.js'
import type { Clock } from './clock.js'
import { GatewayError, shuttingDown, unauthorized, upstreamError } from './errors.js'
import { isUsable, KeyRing } from './keys.js'
import { resolveIpLimits, resolveKeyLimits } from './limits.js'
import type { Admission, Limiter } from './limits/limiter.js'
import { MemoryLimiter } from './limits/memory-limiter.js'
import type { Pricing } from './pricing.js'
import { abortError, FairQueue, type QueueOptions } from './queue.js'
import type { RequestLog } from './request-log.js'
import { RequestRecord } from './request-record.js'
import { eventData, SseSplitter } from './sse.js'
import { countPromptTokens, countTextTokens } from './tokens.js'
import { withFirstChunk } from './routing/retries.js'
import type { Route, Router } from './routing/router.js'
import { markRetryable, type Upstream } from './upstream.js'
import type { ApiKey, DefaultOverrides, IpLimits, Limits, RequestRow, Usage } from './types.js'
import type { Cancel, CancelSignal } from './cancel.js'

export interface GatewayOptions extends QueueOptions {
  /** Model for the seed's /chat route. */
  model: string
  logBodies: boolean
}

export interface GatewayDeps {
  store: Store
  clock: Clock
  /** The upstreams, by model and alias, with retries and cooldown. */
  router: Router
  calendar: Calendar
  pricing: Pricing
  requestLog: RequestLog
  options: GatewayOptions
  /** Told of every row logged (metrics). */
  observe?: (row: RequestRow) => void
  /** Told when reloading keys and limits fails: once, until a reload succeeds again. */
  onError?: (err: unknown) => void
  /** The limiter over this process's queue; the in-memory one when absent. */
  limiter?: (queue: FairQueue) => Limiter
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

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/**
 * The gateway's core: authentication, limits, the chat flow and metering. It knows no HTTP
 * framework; the HTTP layer hands it a RequestRecord and a Cancel per request.
 */
export class Gateway {
  readonly queue: FairQueue
  readonly limiter: Limiter
  private readonly keys = new KeyRing()
  private defaults: DefaultOverrides = {}
  private ipLimits: IpLimits = resolveIpLimits({})
  private limitsCache = new Map<string, Limits>()
  /** The store's change marker at the last successful load. */
  private version = -1
  /** The reload in progress: requests that see a new marker meanwhile wait for it. */
  private loading: Promise<void> | null = null
  private reloadFailing = false
  /** Upstream calls in flight, for the shutdown deadline to cancel. */
  private readonly calls = new Set<Cancel>()
  private stopping = false
  /** The reason the shutdown deadline cancelled calls with. */
  private cut: GatewayError | null = null
  /** Requests begun whose row is not yet handed to the request log. */
  private unlogged = 0
  private whenIdle: { promise: Promise<void>; resolve(): void } | null = null

  constructor(private readonly deps: GatewayDeps) {
    this.queue = new FairQueue(deps.options, deps.clock)
    this.limiter = deps.limiter?.(this.queue) ?? new MemoryLimiter(deps.store, deps.calendar, deps.clock, this.queue)
  }

  /** Loads keys, limits and what the limiter needs of today; the gateway serves once it resolves. */
  async start(): Promise<void> {
    await this.refresh(true)
    await this.limiter.prepare(this.deps.clock.now())
  }

  /**
   * Reloads keys and limits if another connection (the CLI) committed since the last
   * successful load, and until the marker stops moving. The version is taken as seen only
   * once a load has succeeded, so a failed load is tried again at the next check; rejects
   * with what the load threw.
   */
  async refresh(force = false): Promise<boolean> {
    let changed = false
    while (force || this.deps.store.changeVersion() !== this.version) {
      force = false
      this.loading ??= this.load().finally(() => (this.loading = null))
      await this.loading
      changed = true
    }
    return changed
  }

  private async load(): Promise<void> {
    const store = this.deps.store
    const version = store.changeVersion() // before the reads: a write during them shows as a newer marker
    const [defaults, keys, secrets] = await Promise.all([store.getDefaults(), store.listKeys(), store.listLiveSecrets(this.deps.clock.now())])
    this.keys.load(keys, secrets)
    this.defaults = defaults
    this.ipLimits = resolveIpLimits(defaults)
    this.limitsCache = new Map()
    this.version = version
    this.reloadFailing = false
  }

  /** Polls the store so CLI changes apply while no requests come; returns the stop function. */
  watch(intervalMs = 250): () => void {
    const timer = setInterval(() => void this.refreshOrKeep(), intervalMs)
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

  /**
   * A request's first step: picks up whatever the CLI committed (one look at the store's
   * change marker, a few microseconds), so keys and limits as the CLI last left them apply to this
   * very request; then the optional per-IP limit on all requests.
   */
  async checkIp(ip: string): Promise<void> {
    if (this.deps.store.changeVersion() !== this.version) await this.refreshOrKeep()
    await this.limiter.admitAddress(ip, this.ipLimits.ipRpm)
  }

  /**
   * The key for a presented secret (after `checkIp`, which picked up the CLI's changes). A
   * miss looks at the store once more before it counts: a key made a moment ago works at
   * once. A failure counts against the client's address; past the limit further failures
   * get 429, while valid keys from the same address still pass.
   */
  async authenticate(presented: string | null, ip: string): Promise<ApiKey> {
    const now = this.deps.clock.now()
    if (presented === null) {
      await this.limiter.countAuthFailure(ip, this.ipLimits.authFailuresPerMinute)
      throw unauthorized('Missing API key: send "Authorization: Bearer <key>" or "X-API-Key: <key>"')
    }
    // Each look hashes the secret once; the refusal reuses what the last look found.
    let key = this.keys.find(presented, now)
    if (!(key && isUsable(key, now)) && (await this.refreshOrKeep())) key = this.keys.find(presented, now)
    if (key && isUsable(key, now)) return key
    await this.limiter.countAuthFailure(ip, this.ipLimits.authFailuresPerMinute)
    throw this.keys.refusal(key, now)
  }

  newRecord(requestId: string, ip: string, method: string, route: string, userAgent: string | null): RequestRecord {
    const now = this.deps.clock.now()
    this.unlogged++
    return new RequestRecord(requestId, ip, method, route, userAgent, now, this.limiter.dayOf(now))
  }

  /** Writes the record's one log row (group commit); resolves when it is durable. */
  log(record: RequestRecord, status: number): Promise<void> {
    if (record.written) return Promise.resolve()
    record.written = true
    if (--this.unlogged === 0 && this.whenIdle) {
      this.whenIdle.resolve()
      this.whenIdle = null
    }
    const row = record.toRow(status)
    this.deps.observe?.(row)
    return this.deps.requestLog.write(row)
  }

  /** Shutdown begins: new upstream calls and the requests waiting in the queue get 503 `shutting_down`. */
  stopAdmitting(): void {
    this.stopping = true
    this.queue.close(shuttingDown())
  }

  /**
   * The shutdown deadline: cancels every upstream call in flight. Each still gets an answer
   * (503 `shutting_down`, or that error as a stream's last event), its row and its charge:
   * what was streamed and the prompt, estimated. Returns how many were cut.
   */
  cutInFlight(): number {
    this.cut = shuttingDown()
    const cut = [...this.calls]
    for (const cancel of cut) cancel.abort(this.cut)
    return cut.length
  }

  /** Resolves once every request begun has handed its row to the request log. */
  idle(): Promise<void> {
    if (this.unlogged === 0) return Promise.resolve()
    if (!this.whenIdle) {
      let resolve = () => {}
      const promise = new Promise<void>((r) => (resolve = r))
      this.whenIdle = { promise, resolve }
    }
    return this.whenIdle.promise
  }

  /** A non-streamed completion: admitted, forwarded, metered. */
  async complete(record: RequestRecord, key: ApiKey, prepared: PreparedChat, cancel: Cancel, queueTimeoutMs?: number): Promise<Completion> {
    const { route, admission } = await this.begin(record, key, prepared, cancel, queueTimeoutMs)
    const started = performance.now()
    this.calls.add(cancel)
    let bytes: Uint8Array
    try {
      bytes = await this.deps.router.run(route, record, cancel, (upstream, model, timeoutMs) => upstream.complete(model, bodyFor(prepared, model), cancel, timeoutMs))
    } catch (err) {
      this.end(record, admission, this.cutUsage(err, prepared), started)
      throw err
    } finally {
      this.calls.delete(cancel)
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
  async stream(record: RequestRecord, key: ApiKey, prepared: PreparedChat, cancel: Cancel, queueTimeoutMs?: number): Promise<StreamedCompletion> {
    const { route, admission } = await this.begin(record, key, prepared, cancel, queueTimeoutMs)
    const started = performance.now()
    this.calls.add(cancel)
    // With another upstream to fall back to, the first chunk is awaited before anything reaches
    // the client, so a stream that breaks before its first byte may still go elsewhere.
    const attempt = async (upstream: Upstream, model: string, timeoutMs: number, more: boolean) => {
      const source = await upstream.stream(model, bodyFor(prepared, model), cancel, timeoutMs)
      return more ? withFirstChunk(source, (err) => (err instanceof GatewayError && !cancel.aborted ? markRetryable(err) : err)) : source
    }
    // The upstream's in-flight slot is held until the relay ends (its finally gives it back).
    let release = () => {}
    let source: AsyncIterable<Uint8Array>
    try {
      source = await this.deps.router.run(route, record, cancel, attempt, (value, r) => {
        release = r
        return value
      })
    } catch (err) {
      this.calls.delete(cancel)
      this.end(record, admission, this.cutUsage(err, prepared), started)
      throw err
    }
    record.streamed = true
    record.deferred = true
    const done = () => {
      release()
      this.calls.delete(cancel)
    }
    return { headers: admission.headers, body: this.relay(record, prepared, admission, source, started, cancel, done) }
  }

  /** Model ids (and aliases) this key may use: its allow-list as far as served, else every upstream's. */
  async models(key: ApiKey): Promise<string[]> {
    if (key.models !== null) return key.models.filter((m) => this.deps.router.serves(m))
    return this.deps.router.models()
  }

  /** The upstreams a request may go to. */
  private route(key: ApiKey, prepared: PreparedChat): Route {
    const router = this.deps.router
    return router.route(prepared.model, () => key.models?.filter((m) => router.serves(m)) ?? router.listedModels())
  }

  /** The route, found before admission (an unknown model reserves nothing), and the admission. */
  private async begin(record: RequestRecord, key: ApiKey, prepared: PreparedChat, signal: CancelSignal, queueTimeoutMs?: number): Promise<{ route: Route; admission: Admission }> {
    if (this.stopping) throw shuttingDown()
    record.model = prepared.model
    if (this.deps.options.logBodies) record.requestBody = JSON.stringify(prepared.body)
    const route = this.route(key, prepared)
    const admission = await this.limiter.admit(key, this.limitsOf(key), prepared, { signal, timeoutMs: queueTimeoutMs })
    record.queuedMs = admission.queuedMs
    record.day = admission.day
    return { route, admission }
  }

  /** Settles the admission to what was used (nothing, when the upstream reported nothing). */
  private end(record: RequestRecord, admission: Admission, usage: Usage | null, started: number): void {
    record.upstreamMs = performance.now() - started
    if (usage) {
      record.usage = usage
      record.costMicros = this.deps.pricing.costMicros(record.servedModel ?? record.model, usage.promptTokens, usage.completionTokens, record.upstream)
    }
    admission.settle(usage ?? record.usage)
  }

  /**
   * A call the shutdown cut before any answer is charged its prompt, estimated: the upstream
   * worked on it. (A stream cut later is charged in the relay: the prompt and what was streamed.)
   */
  private cutUsage(err: unknown, prepared: PreparedChat): Usage | null {
    return this.cut !== null && err === this.cut ? this.estimate(prepared, '') : null
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
    cancel: Cancel,
    /** Gives back the upstream's slot and stops holding the request for the shutdown cut. */
    done: () => void,
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
        const relayed = upstreamError(502, `The upstream reported an error mid-stream${typeof said === 'string' ? `: ${this.deps.router.scrub(said)}` : ''}`, 'upstream_stream_error')
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
      if (!failure && !sawDone && cancel.aborted) failure = abortError(cancel)
      done()
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

  /**
   * `refresh()` where a failure must not fail the request: the last good view stays in force,
   * the load is retried at the next check, and the failure is reported once, not per check.
   */
  private async refreshOrKeep(): Promise<boolean> {
    try {
      return await this.refresh()
    } catch (err) {
      if (!this.reloadFailing) {
        const message = err instanceof Error ? err.message : String(err)
        this.deps.onError?.(new Error(`reloading keys and limits failed, retrying; the last loaded ones stay in force: ${message}`, { cause: err }))
      }
      this.reloadFailing = true
      return false
    }
  }
}

/** The body for `model`: an alias's entry names another model than the client did. */
function bodyFor(prepared: PreparedChat, model: string): Uint8Array {
  if (prepared.body.model !== model) {
    prepared.body.model = model
    prepared.raw = null
  }
  return serialise(prepared)
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
