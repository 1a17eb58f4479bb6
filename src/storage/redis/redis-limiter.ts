import { createHash, randomBytes } from 'node:crypto'
import { createClient, ErrorReply, type RedisClientType } from 'redis'
import { CLAMP_FLOOR } from '../../core/admission.js'
import type { BudgetState } from '../../core/budget.js'
import type { Calendar } from '../../core/calendar.js'
import { clampTo, countPrompt, reservationOf, type PreparedChat } from '../../core/chat-request.js'
import type { Clock } from '../../core/clock.js'
import { GatewayError, limiterUnavailable, unavailable } from '../../core/errors.js'
import { H } from '../../core/headers.js'
import { addressGroup, addressRefusal, authFailureRefusal } from '../../core/ip-limiter.js'
import { LimitHeaders, type LimitView } from '../../core/limits/headers.js'
import type { Admission, AdmitOptions, Limiter } from '../../core/limits/limiter.js'
import { budgetRefusal, requestsRefusal, tokensRefusal } from '../../core/limits/refusals.js'
import { abortError, type FairQueue } from '../../core/queue.js'
import type { ApiKey, Limits, Usage } from '../../core/types.js'
import type { Store } from '../../core/store.js'
import { ADDRESS_SCRIPT, ADMIT, ADMIT_SCRIPT, EXTEND_SCRIPT, RESIZE_SCRIPT, SETTLE_SCRIPT, SLOT_SCRIPT } from './scripts.js'
import { setTimeout as delay } from 'node:timers/promises'

/** Redis answered nothing for the timeout. */
class CommandTimeout extends Error {}
/** Between reconnection attempts: service resumes well within a second of Redis returning. */
const RECONNECT_MS = 100
/** How long a starting gateway tries to reach Redis before it gives up. */
const CONNECT_WAIT_MS = 5_000
/** Between retries of settles Redis could not take. */
const SETTLE_RETRY_MS = 250
/** Polling for a per-key concurrency slot held elsewhere: from this, doubling, up to the cap. */
const SLOT_POLL_MS = [5, 100] as const

export interface RedisLimiterOptions {
  url: string
  /** How long a reservation or slot outlives its gateway (extended while its request runs). */
  leaseMs: number
  /** How long Redis may answer nothing before requests are refused (fail closed, fast). */
  timeoutMs: number
  queueTimeoutMs: number
  store: Store
  calendar: Calendar
  clock: Clock
  queue: FairQueue
  /** Operator lines: Redis lost and back, reservations charged after their lease ran out. */
  warn: (line: string) => void
}

interface Script {
  text: string
  sha: string
}

const script = (text: string): Script => ({ text, sha: createHash('sha1').update(text).digest('hex') })
const SCRIPTS = { admit: script(ADMIT_SCRIPT), slot: script(SLOT_SCRIPT), settle: script(SETTLE_SCRIPT), extend: script(EXTEND_SCRIPT), address: script(ADDRESS_SCRIPT), resize: script(RESIZE_SCRIPT) }

/** What ADMIT answered, named. */
interface Verdict {
  status: number
  detail: number
  view: LimitView
  spent: number
  reserved: number
  slot: boolean
}

/** An admitted request of this process whose prompt is still reserved at its byte bound. */
interface Uncounted {
  id: string
  prepared: PreparedChat
}

interface Owed {
  prefix: string
  id: string
  used: number
}

/** An error Redis itself replied (a script error): Redis is there, the call was wrong. */
const isReply = (err: unknown): err is ErrorReply => err instanceof ErrorReply
const prefixOf = (keyId: string) => `gw:{${keyId}}:`

/**
 * Every limit in Redis, shared by every gateway on it: one Lua script admits a request against
 * all of its key's limits at once, one settles it (idempotent by reservation id), Redis's TIME
 * is the only clock. Fails closed: when Redis answers nothing within `timeoutMs` the
 * request gets 503 `limiter_unavailable`; settles that could not be sent are kept and retried.
 * The fair queue stays local and keeps only this process's in-flight cap; a key's concurrency
 * cap is a set of leased slots in Redis, waited for by polling.
 */
export class RedisLimiter implements Limiter {
  private readonly client: RedisClientType
  private readonly headerBuilder = new LimitHeaders()
  private readonly owed: Owed[] = []
  private retryTimer: NodeJS.Timeout | null = null
  private seeds: { day: string; at: number; totals: Promise<Map<string, number>> } | null = null
  private down = false
  /** A command is out while Redis is down: the one probe. */
  private probing = false
  private lastError: string | null = null
  /** When Redis last answered anything (performance.now()). */
  private lastAnswer = 0
  private flushing = false
  private seq = 0
  /** Per key, this process's requests in flight still reserved at their prompt's byte bound. */
  private readonly uncounted = new Map<string, Set<Uncounted>>()
  private readonly idBase = randomBytes(6).toString('hex')

  constructor(private readonly o: RedisLimiterOptions) {
    this.client = createClient({
      url: o.url,
      disableOfflineQueue: true,
      socket: { connectTimeout: 1_000, reconnectStrategy: () => RECONNECT_MS },
    }) as RedisClientType
    this.client.on('error', (err: unknown) => this.lost(err))
    this.client.on('ready', () => void this.flushOwed())
  }

  /** Connects, or rejects after CONNECT_WAIT_MS of failed attempts (a wrong URL should stop the start, not 503 forever). */
  async ready(): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no connection within ${CONNECT_WAIT_MS / 1000}s${this.lastError ? ` (${this.lastError})` : ''}`)), CONNECT_WAIT_MS)
    })
    try {
      await Promise.race([this.client.connect(), late])
    } catch (err) {
      this.client.destroy()
      throw err
    } finally {
      clearTimeout(timer)
    }
  }

  async close(): Promise<void> {
    const end = Date.now() + 2_000
    while (this.owed.length > 0 && Date.now() < end) {
      await this.flushOwed()
      if (this.owed.length > 0) await delay(SETTLE_RETRY_MS)
    }
    if (this.retryTimer) clearTimeout(this.retryTimer)
    if (this.owed.length > 0) this.o.warn(`gateway: ${this.owed.length} settle(s) could not be sent to Redis before exit; their reservations will be charged in full when their lease ends`)
    if (this.client.isOpen) this.client.destroy()
  }

  state(): { kind: 'redis'; ok: boolean } {
    return { kind: 'redis', ok: this.client.isReady && !this.down }
  }

  dayOf(now: number): string {
    return this.o.calendar.dayOf(now)
  }

  resetAt(now: number): number {
    return this.o.calendar.nextDayStart(now)
  }

  /** Nothing to read ahead: an empty Redis re-seeds the day's budgets itself. */
  async prepare(): Promise<void> {}

  async budget(keyId: string): Promise<BudgetState> {
    const now = this.o.clock.now()
    const day = this.dayOf(now)
    const [spent, reserved] = await this.call(() => this.client.hmGet(`${prefixOf(keyId)}b:${day}`, ['spent', 'reserved']))
    return { day, spent: Number(spent ?? 0), reserved: Number(reserved ?? 0), resetAt: this.resetAt(now) }
  }

  async admitAddress(ip: string, limit: number | null): Promise<void> {
    if (limit === null) return
    const wait = await this.address(`gw:{ip:${addressGroup(ip)}}:req`, limit)
    if (wait >= 0) throw addressRefusal(limit, wait)
  }

  async countAuthFailure(ip: string, limit: number | null): Promise<void> {
    if (limit === null) return
    const wait = await this.address(`gw:{authfail:${addressGroup(ip)}}:req`, limit)
    if (wait >= 0) throw authFailureRefusal(wait)
  }

  /**
   * The prompt is reserved at its byte bound first (no tokenizer). If a token limit refuses
   * that, the prompt is counted and the request tried once more; if the budget still refuses
   * and the key clamps (or the gateway chose max_tokens), max_tokens is fitted and tried again.
   * Each try is all or nothing, so a refused try leaves no trace.
   */
  async admit(key: ApiKey, limits: Limits, prepared: PreparedChat, opts: AdmitOptions): Promise<Admission> {
    const now = this.o.clock.now()
    const day = this.dayOf(now)
    const prefix = prefixOf(key.id)
    let id = this.newId()
    let v = await this.take(prefix, id, key.id, limits, prepared, day)
    if ((v.status === ADMIT.tokens || v.status === ADMIT.budget) && !prepared.promptCounted) {
      countPrompt(prepared)
      await this.countInFlight(key.id)
      v = await this.take(prefix, (id = this.newId()), key.id, limits, prepared, day)
    }
    if (v.status === ADMIT.budget && (limits.onBudgetShort === 'clamp' || prepared.maxTokensApplied)) {
      if (clampTo(prepared, Math.max(0, (limits.dailyTokens ?? 0) - v.spent - v.reserved), CLAMP_FLOOR)) {
        v = await this.take(prefix, (id = this.newId()), key.id, limits, prepared, day)
      }
    }
    if (v.status !== ADMIT.ok) throw this.refusal(key, limits, prepared, v, now)
    const amount = reservationOf(prepared)
    const held = this.hold(prefix, id)
    const mine: Uncounted | null = prepared.promptCounted ? null : { id, prepared }
    if (mine) this.uncountedOf(key.id).add(mine)
    let slot
    const started = this.o.clock.now()
    try {
      if (!v.slot) await this.waitForSlot(key.id, id, limits.concurrency!, opts)
      slot = await this.o.queue.acquire(key.id, null, opts)
    } catch (err) {
      this.counted(key.id, mine)
      held.settle(0)
      throw err
    }
    const headers = this.headerBuilder.build(limits, v.view, now, amount)
    if (prepared.maxTokensApplied) headers[H.maxTokensApplied] = String(prepared.maxTokens)
    let settled = false
    return {
      queuedMs: Math.max(slot.queuedMs, this.o.clock.now() - started),
      day,
      headers,
      settle: (usage: Usage) => {
        if (settled) return
        settled = true
        this.counted(key.id, mine)
        held.settle(usage.totalTokens)
        slot.release()
      },
    }
  }

  private uncountedOf(keyId: string): Set<Uncounted> {
    let set = this.uncounted.get(keyId)
    if (!set) this.uncounted.set(keyId, (set = new Set()))
    return set
  }

  /** A request no longer held at its byte bound (settled, or counted). */
  private counted(keyId: string, mine: Uncounted | null): void {
    const set = mine && this.uncounted.get(keyId)
    if (!set) return
    set.delete(mine)
    if (set.size === 0) this.uncounted.delete(keyId)
  }

  /**
   * A token limit is near: counts the prompts of this process's requests of the key still
   * held at their byte bound and shrinks their reservations to that, as the in-memory
   * limiter does (other gateways' stay at their bound until they count their own).
   */
  private async countInFlight(keyId: string): Promise<void> {
    const set = this.uncounted.get(keyId)
    if (!set || set.size === 0) return
    const prefix = prefixOf(keyId)
    const held = [...set]
    this.uncounted.delete(keyId)
    const args = [prefix]
    for (const h of held) {
      countPrompt(h.prepared)
      args.push(h.id, String(reservationOf(h.prepared)))
    }
    await this.eval(SCRIPTS.resize, held.map((h) => `${prefix}r:${h.id}`), args)
  }

  private async take(prefix: string, id: string, keyId: string, limits: Limits, prepared: PreparedChat, day: string, seed = ''): Promise<Verdict> {
    const amount = reservationOf(prepared)
    const keys = ['req', 'tok', 'tok:a', 'cc', 'lease', `b:${day}`, `r:${id}`].map((k) => prefix + k)
    const args = [prefix, id, this.o.leaseMs, limits.rpm ?? -1, limits.tpm ?? -1, limits.dailyTokens ?? -1, limits.concurrency ?? -1, amount, day, seed].map(String)
    let r: number[]
    const sentAt = performance.now()
    try {
      r = (await this.eval(SCRIPTS.admit, keys, args)) as number[]
    } catch (err) {
      // Unanswered, not necessarily unrun: if Redis runs it later, this settle (queued behind it on the connection) frees it.
      if (err instanceof GatewayError && err.cause instanceof CommandTimeout) this.owe({ prefix, id, used: 0 })
      throw err
    }
    if (r[0] === ADMIT.seed) {
      if (seed !== '') throw limiterUnavailable() // seeded and gone again at once: Redis is evicting
      return this.take(prefix, id, keyId, limits, prepared, day, String((await this.dailyTotals(day, sentAt)).get(keyId) ?? 0))
    }
    this.reaped(keyId, r.slice(10))
    return {
      status: r[0],
      detail: r[1],
      view: {
        requests: { used: r[2], resetMs: r[3] },
        tokens: { used: r[4], resetMs: r[5] },
        budget: { spent: r[6], reserved: r[7], resetAt: this.resetAt(this.o.clock.now()) },
      },
      spent: r[6],
      reserved: r[7],
      slot: r[8] === 1,
    }
  }

  private refusal(key: ApiKey, limits: Limits, prepared: PreparedChat, v: Verdict, now: number): GatewayError {
    const headers = this.headerBuilder.build(limits, v.view, now)
    if (v.status === ADMIT.requests) return requestsRefusal(key, limits, v.detail, headers)
    if (v.status === ADMIT.tokens) return tokensRefusal(key, limits, prepared, v.detail < 0 ? Infinity : v.detail, headers)
    const s = v.view.budget!
    return budgetRefusal(key, limits, prepared, s, this.headerBuilder.isoOf(s.resetAt), now, headers)
  }

  /** Polls for a per-key slot another gateway (or this one) holds, until the queue timeout. */
  private async waitForSlot(keyId: string, id: string, cap: number, opts: AdmitOptions): Promise<void> {
    const prefix = prefixOf(keyId)
    const timeoutMs = Math.min(opts.timeoutMs ?? this.o.queueTimeoutMs, this.o.queueTimeoutMs)
    const end = Date.now() + timeoutMs
    let pause: number = SLOT_POLL_MS[0]
    for (;;) {
      if (opts.signal?.aborted) throw abortError(opts.signal)
      const r = (await this.eval(SCRIPTS.slot, [`${prefix}cc`, `${prefix}r:${id}`], [prefix, id, String(this.o.leaseMs), String(cap)])) as number[]
      this.reaped(keyId, r.slice(1))
      if (r[0] === 1) return
      if (r[0] === -1) throw limiterUnavailable()
      if (Date.now() + pause > end) throw unavailable(`Waited ${Math.round(timeoutMs / 1000)}s in the gateway queue without a free slot`, 'queue_timeout', 1000)
      await delay(pause * (0.5 + Math.random()))
      pause = Math.min(pause * 2, SLOT_POLL_MS[1])
    }
  }

  /** A reservation's lease, extended while it is held; its settle, sent now or kept and retried. */
  private hold(prefix: string, id: string): { settle(used: number): void } {
    const timer = setInterval(() => {
      this.eval(SCRIPTS.extend, [`${prefix}r:${id}`], [prefix, id, String(this.o.leaseMs)]).catch(() => {})
    }, Math.max(50, Math.floor(this.o.leaseMs / 3)))
    timer.unref()
    return {
      settle: (used: number) => {
        clearInterval(timer)
        this.owe({ prefix, id, used })
      },
    }
  }

  private owe(o: Owed): void {
    this.owed.push(o)
    void this.flushOwed()
  }

  /** Sends the settles owed, oldest first; whatever fails stays and is retried. */
  private async flushOwed(): Promise<void> {
    if (this.flushing) return
    this.flushing = true
    try {
      while (this.owed.length > 0) {
        const o = this.owed[0]
        try {
          await this.eval(SCRIPTS.settle, [`${o.prefix}r:${o.id}`], [o.prefix, o.id, String(o.used)])
        } catch {
          this.retryTimer ??= setTimeout(() => {
            this.retryTimer = null
            void this.flushOwed()
          }, SETTLE_RETRY_MS)
          return
        }
        this.owed.shift()
      }
    } finally {
      this.flushing = false
    }
  }

  private async address(window: string, limit: number): Promise<number> {
    return (await this.eval(SCRIPTS.address, [window], [String(limit), this.newId()])) as number
  }

  /**
   * The store's per-key totals of `day`, to seed a budget Redis does not have (a new day, or
   * an empty Redis). One read serves every request that found the budget missing before it
   * began (a burst shares it); a read begun earlier may predate what the store has since
   * committed, so it is not reused.
   */
  private dailyTotals(day: string, notBefore: number): Promise<Map<string, number>> {
    const now = performance.now()
    if (this.seeds?.day !== day || this.seeds.at < notBefore) {
      const totals = this.o.store.dailyUsage(day).then((rows) => new Map(rows.map((u) => [u.keyId, u.totalTokens])))
      this.seeds = { day, at: now, totals }
      totals.catch(() => (this.seeds = null))
    }
    return this.seeds.totals
  }

  private reaped(keyId: string, pairs: number[] | string[]): void {
    for (let i = 0; i + 1 < pairs.length; i += 2) {
      this.o.warn(`gateway: reservation ${pairs[i]} of key ${keyId} outlived its lease (its gateway stopped without settling it); charged in full: ${pairs[i + 1]} tokens`)
    }
  }

  /** EVALSHA, loading the script on NOSCRIPT; any failure to get an answer is `limiter_unavailable`. */
  private async eval(s: Script, keys: string[], args: string[]): Promise<unknown> {
    return this.call(async () => {
      try {
        return await this.client.sendCommand(['EVALSHA', s.sha, String(keys.length), ...keys, ...args])
      } catch (err) {
        if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err
        return this.client.sendCommand(['EVAL', s.text, String(keys.length), ...keys, ...args])
      }
    })
  }

  /**
   * Runs a command that must be answered in time: it fails once Redis has answered nothing at
   * all for `timeoutMs` (paused, swapping, a partition). The client's own timeout ends
   * once a command is written, and a plain timer would also fire on this process's own
   * backlog (a burst of requests keeps the event loop busy while Redis answers on time), so
   * the timer checks, once the sockets have been read again, whether any answer came
   * lately, and waits on if one did. The command may still run after a timeout, which is
   * why a timed-out admission is settled to nothing (see `take`). While Redis is out of
   * reach one command at a time goes out as a probe and the rest are refused at once, so a
   * hung Redis neither piles up commands nor delays each refusal by the timeout.
   */
  private async call<T>(fn: () => Promise<T>): Promise<T> {
    if (this.down && this.probing) throw limiterUnavailable()
    const probe = this.down
    if (probe) this.probing = true
    let timer: NodeJS.Timeout | undefined
    let done = false
    const late = new Promise<never>((_, reject) => {
      // `polled`: the sockets were read since the timer fired. A timer that fires just before
      // this process stalls (the tokenizer's first load, a burst) would otherwise judge Redis
      // on replies that arrived during the stall but are not read yet.
      const check = (polled: boolean) => {
        if (done) return
        const quiet = performance.now() - this.lastAnswer
        if (quiet < this.o.timeoutMs) timer = setTimeout(() => setImmediate(check, false), this.o.timeoutMs - quiet)
        else if (!polled) setImmediate(check, true) // the next loop turn reads the sockets first
        else reject(new CommandTimeout(`no answer within ${this.o.timeoutMs} ms`))
      }
      timer = setTimeout(() => setImmediate(check, false), this.o.timeoutMs)
    })
    try {
      const result = await Promise.race([fn(), late])
      this.lastAnswer = performance.now()
      if (this.down) {
        this.down = false
        this.o.warn('gateway: Redis answers again; limits are served from it')
      }
      return result
    } catch (err) {
      if (err instanceof GatewayError) throw err
      if (isReply(err)) {
        this.lastAnswer = performance.now() // Redis is there and refused the call: not an outage
        this.o.warn(`gateway: Redis refused a limiter command: ${err.message}`)
      } else {
        this.lost(err)
      }
      throw limiterUnavailable(err)
    } finally {
      done = true
      clearTimeout(timer)
      if (probe) this.probing = false
    }
  }

  private lost(err: unknown): void {
    this.lastError = err instanceof Error ? err.message : String(err)
    if (this.down) return
    this.down = true
    this.o.warn(`gateway: Redis unavailable (${this.lastError}); refusing requests with 503 limiter_unavailable until it returns`)
  }

  private newId(): string {
    return `${this.idBase}${(this.seq++).toString(36)}`
  }
}
