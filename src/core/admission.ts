import type { BudgetLedger, Reservation } from './budget.js'
import type { Clock } from './clock.js'
import { rateLimited } from './errors.js'
import { formatReset, H } from './headers.js'
import type { FairQueue } from './queue.js'
import { SlidingWindow } from './sliding-window.js'
import { clampTo, countPrompt, gatewayLimitHint, reservationOf, type PreparedChat } from './chat-request.js'
import type { ApiKey, Limits, Usage } from './types.js'

/** Below this many completion tokens a clamped request is refused instead. */
export const CLAMP_FLOOR = 16

const REQUEST_HEADERS = [H.limitRequests, H.remainingRequests, H.resetRequests] as const
const TOKEN_HEADERS = [H.limitTokens, H.remainingTokens, H.resetTokens] as const

/** One per-minute window's OpenAI-style headers (limit, remaining, reset) and its RateLimit entry. */
function perMinute(out: Record<string, string>, state: string[], name: string, limit: number, window: SlidingWindow, names: readonly [string, string, string], now: number): void {
  const remaining = Math.max(0, limit - window.used(now))
  const resetMs = window.resetIn(now)
  out[names[0]] = String(limit)
  out[names[1]] = String(remaining)
  out[names[2]] = formatReset(resetMs)
  state.push(`"${name}";r=${remaining};t=${Math.ceil(resetMs / 1000)}`)
}

/** A request let through: its slot, its reservations, and the rate-limit headers to send. */
export interface Admission {
  readonly queuedMs: number
  /** The budget day its reservation was taken in, which its tokens are charged to. */
  readonly day: string
  readonly headers: Record<string, string>
  /** Settles budget and token window to the real usage and frees the slot. Idempotent. */
  settle(usage: Usage): void
}

interface KeyWindows {
  requests: SlidingWindow
  tokens: SlidingWindow
  /** This key's requests in flight whose prompt is still reserved at its byte bound. */
  uncounted: Set<Held>
}

/** What an admitted request holds against its key's token limits. */
interface Held {
  prepared: PreparedChat
  reservation: Reservation
  tokenEntry: number
}

/**
 * Per-key admission in a fixed order: requests per minute, then the daily budget and tokens
 * per minute (reserve now, settle later), then a slot in the fair queue. Each check is one
 * synchronous step, so concurrent requests cannot slip past a limit between check and take.
 *
 * A prompt is first reserved at an upper bound (its UTF-8 size), which costs no tokenizer.
 * The moment a token limit would not fit, this request's prompt and those of the key's
 * requests in flight are counted by the tokenizer, their reservations shrink to that, and
 * only then is the limit decided. So every refusal, clamp and wait is what it would be had
 * every prompt been counted from the start; only the remaining-tokens headers of a key far
 * from its limits read lower while requests are in flight.
 */
export class AdmissionControl {
  private readonly windows = new Map<string, KeyWindows>()
  private readonly policies = new WeakMap<Limits, string>()
  private resetIso: { ms: number; iso: string } | null = null

  constructor(
    private readonly clock: Clock,
    private readonly ledger: BudgetLedger,
    private readonly queue: FairQueue,
  ) {}

  async admit(key: ApiKey, limits: Limits, prepared: PreparedChat, opts: { signal?: AbortSignal; timeoutMs?: number }): Promise<Admission> {
    const now = this.clock.now()
    const w = this.windowsOf(key.id)
    if (limits.rpm !== null) {
      if (w.requests.admit(now, 1, limits.rpm) < 0) {
        const wait = w.requests.waitFor(now, 1, limits.rpm)
        throw rateLimited(`Rate limit reached: ${limits.rpm} requests per minute${gatewayLimitHint(key, `${limits.rpm} requests per minute`, 'rpm', 'retry after the Retry-After header\'s seconds')}`, 'rate_limit_exceeded', wait, this.headers(key.id, limits, now))
      }
    }
    if (!prepared.promptCounted && !this.fits(key.id, w, limits, prepared, now)) this.countPrompts(w, prepared, now)
    const reservation = this.reserve(key, limits, prepared, now)
    let tokenEntry = -1
    if (limits.tpm !== null) {
      tokenEntry = w.tokens.admit(now, reservationOf(prepared), limits.tpm)
      if (tokenEntry < 0) {
        this.ledger.settle(reservation, 0, now)
        const r = w.tokens.waitFor(now, reservationOf(prepared), limits.tpm)
        if (r === Infinity) {
          throw rateLimited(`Request too large: it needs up to ${reservationOf(prepared)} tokens, over the limit of ${limits.tpm} tokens per minute; lower max_tokens or the prompt`, 'request_too_large', 60_000, { 'x-should-retry': 'false' })
        }
        throw rateLimited(`Rate limit reached: ${limits.tpm} tokens per minute${gatewayLimitHint(key, `${limits.tpm} tokens per minute`, 'tpm', 'retry after the Retry-After header\'s seconds or lower max_tokens')}`, 'tokens_rate_limit_exceeded', r, this.headers(key.id, limits, now))
      }
    }
    const held: Held = { prepared, reservation, tokenEntry }
    if (!prepared.promptCounted) w.uncounted.add(held)
    const release = (used: number) => {
      const at = this.clock.now()
      w.uncounted.delete(held)
      this.ledger.settle(reservation, used, at)
      if (tokenEntry >= 0) w.tokens.settle(tokenEntry, used, at)
    }
    let slot
    try {
      slot = await this.queue.acquire(key.id, limits.concurrency, opts)
    } catch (err) {
      release(0)
      throw err
    }
    // The budget left besides this request's own reservation: what the key had when it was let in.
    const headers = this.headers(key.id, limits, this.clock.now(), reservation.amount)
    if (prepared.maxTokensApplied) headers[H.maxTokensApplied] = String(prepared.maxTokens)
    let settled = false
    return {
      queuedMs: slot.queuedMs,
      day: reservation.day,
      headers,
      settle: (usage: Usage) => {
        if (settled) return
        settled = true
        release(usage.totalTokens)
        slot.release()
      },
    }
  }

  /** Whether the request's reservation fits both token limits as things stand (what `reserve` and the window's `admit` will check). */
  private fits(keyId: string, w: KeyWindows, limits: Limits, prepared: PreparedChat, now: number): boolean {
    const amount = reservationOf(prepared)
    const available = this.ledger.available(keyId, limits.dailyTokens, now)
    return (available === null || amount <= available) && (limits.tpm === null || w.tokens.used(now) + amount <= limits.tpm)
  }

  /** Counts this prompt and the key's in-flight ones still held at their bound; shrinks those reservations. */
  private countPrompts(w: KeyWindows, prepared: PreparedChat, now: number): void {
    countPrompt(prepared)
    for (const held of w.uncounted) {
      countPrompt(held.prepared)
      const amount = reservationOf(held.prepared)
      this.ledger.resize(held.reservation, amount, now)
      if (held.tokenEntry >= 0) w.tokens.settle(held.tokenEntry, amount, now)
    }
    w.uncounted.clear()
  }

  private reserve(key: ApiKey, limits: Limits, prepared: PreparedChat, now: number): Reservation {
    let reservation = this.ledger.reserve(key.id, reservationOf(prepared), limits.dailyTokens, now)
    // A max_tokens the gateway filled in is no client's wish: fit it to the budget whatever the mode.
    if (!reservation && (limits.onBudgetShort === 'clamp' || prepared.maxTokensApplied)) {
      const available = this.ledger.available(key.id, limits.dailyTokens, now) ?? 0
      if (clampTo(prepared, available, CLAMP_FLOOR)) reservation = this.ledger.reserve(key.id, reservationOf(prepared), limits.dailyTokens, now)
    }
    if (reservation) return reservation
    throw this.budgetRefusal(key, limits, prepared, now)
  }

  /**
   * The budget 429. Its first sentence is the seed's (clients match on it); the rest says what
   * is left, what this request may use, how to fit, and when the budget resets.
   */
  private budgetRefusal(key: ApiKey, limits: Limits, prepared: PreparedChat, now: number): Error {
    const s = this.ledger.state(key.id, now)
    const limit = limits.dailyTokens ?? 0
    const left = Math.max(0, limit - s.spent - s.reserved)
    const held = s.reserved > 0 ? ` (${s.reserved} more are held by this key's requests in flight)` : ''
    const needs = reservationOf(prepared)
    const choices = prepared.n > 1 ? ` × n=${prepared.n}` : ''
    const fit = left > prepared.promptTokens ? `lower max_tokens to about ${Math.floor((left - prepared.promptTokens) / prepared.n)}` : 'the prompt alone does not fit: shorten it or wait'
    const resetAt = this.isoOf(s.resetAt)
    return rateLimited(
      `Daily token limit exceeded. Used: ${s.spent}/${limit}. ${left} tokens are left today${held}; this request may use up to ${needs} (prompt estimate ${prepared.promptTokens} + max_tokens ${prepared.maxTokens}${choices}), so ${fit}. The budget resets at ${resetAt} (in ${formatReset(s.resetAt - now)})${gatewayLimitHint(key, `${limit} tokens per day`, 'daily-tokens', 'lower max_tokens')}.`,
      'daily_limit_exceeded',
      s.resetAt - now,
      { ...this.headers(key.id, limits, now), 'x-should-retry': 'false' },
    )
  }

  /**
   * OpenAI's x-ratelimit-* headers, the daily budget's, and the IETF draft's RateLimit pair.
   * The budget's remaining is the limit less what was spent and what the key's requests in
   * flight hold, not counting `own` (the answering request's reservation): so for requests
   * one after another it only goes down within a day.
   */
  headers(keyId: string, limits: Limits, now: number, own = 0): Record<string, string> {
    const out: Record<string, string> = {}
    const state: string[] = []
    const w = this.windowsOf(keyId)
    if (limits.rpm !== null) perMinute(out, state, 'requests', limits.rpm, w.requests, REQUEST_HEADERS, now)
    if (limits.tpm !== null) perMinute(out, state, 'tokens', limits.tpm, w.tokens, TOKEN_HEADERS, now)
    if (limits.dailyTokens !== null) {
      const s = this.ledger.state(keyId, now)
      const remaining = Math.max(0, limits.dailyTokens - s.spent - (s.reserved - own))
      state.push(`"daily-tokens";r=${remaining};t=${Math.ceil((s.resetAt - now) / 1000)}`)
      out[H.budgetLimit] = String(limits.dailyTokens)
      out[H.budgetRemaining] = String(remaining)
      out[H.budgetReset] = this.isoOf(s.resetAt)
    }
    if (state.length > 0) {
      out[H.rateLimitPolicy] = this.policyOf(limits)
      out[H.rateLimit] = state.join(', ')
    }
    return out
  }

  /** The RateLimit-Policy value: fixed for a key's limits, so built once per limits object. */
  private policyOf(limits: Limits): string {
    let policy = this.policies.get(limits)
    if (policy === undefined) {
      const parts: string[] = []
      if (limits.rpm !== null) parts.push(`"requests";q=${limits.rpm};w=60`)
      if (limits.tpm !== null) parts.push(`"tokens";q=${limits.tpm};w=60`)
      if (limits.dailyTokens !== null) parts.push(`"daily-tokens";q=${limits.dailyTokens};w=86400`)
      policy = parts.join(', ')
      this.policies.set(limits, policy)
    }
    return policy
  }

  /** The budget's reset time, formatted once a day rather than per response. */
  private isoOf(ms: number): string {
    if (this.resetIso?.ms !== ms) this.resetIso = { ms, iso: new Date(ms).toISOString() }
    return this.resetIso.iso
  }

  private windowsOf(keyId: string): KeyWindows {
    let w = this.windows.get(keyId)
    if (!w) {
      w = { requests: new SlidingWindow(), tokens: new SlidingWindow(), uncounted: new Set() }
      this.windows.set(keyId, w)
    }
    return w
  }
}
