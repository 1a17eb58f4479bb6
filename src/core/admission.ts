import type { BudgetLedger, Reservation } from './budget.js'
import type { Clock } from './clock.js'
import { H } from './headers.js'
import type { FairQueue } from './queue.js'
import { SlidingWindow } from './sliding-window.js'
import { clampTo, countPrompt, reservationOf, type PreparedChat } from './chat-request.js'
import { LimitHeaders } from './limits/headers.js'
import type { Admission, AdmitOptions } from './limits/limiter.js'
import { budgetRefusal, requestsRefusal, tokensRefusal } from './limits/refusals.js'
import type { ApiKey, Limits, Usage } from './types.js'

/** Below this many completion tokens a clamped request is refused instead. */
export const CLAMP_FLOOR = 16

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
  /** Its entry in the tokens-per-minute window (-1: none) and the amount it holds there. */
  tokenEntry: number
  tokenAmount: number
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
  private readonly headerBuilder = new LimitHeaders()

  constructor(
    private readonly clock: Clock,
    private readonly ledger: BudgetLedger,
    private readonly queue: FairQueue,
  ) {}

  async admit(key: ApiKey, limits: Limits, prepared: PreparedChat, opts: AdmitOptions): Promise<Admission> {
    const now = this.clock.now()
    const w = this.windowsOf(key.id)
    if (limits.rpm !== null) {
      if (w.requests.admit(now, 1, limits.rpm) < 0) {
        throw requestsRefusal(key, limits, w.requests.waitFor(now, 1, limits.rpm), this.headers(key.id, limits, now))
      }
    }
    if (!prepared.promptCounted && !this.fits(key.id, w, limits, prepared, now)) this.countPrompts(w, prepared, now)
    const reservation = this.reserve(key, limits, prepared, now)
    let tokenEntry = -1
    if (limits.tpm !== null) {
      tokenEntry = w.tokens.admit(now, reservationOf(prepared), limits.tpm)
      if (tokenEntry < 0) {
        this.ledger.settle(reservation, 0, now)
        throw tokensRefusal(key, limits, prepared, w.tokens.waitFor(now, reservationOf(prepared), limits.tpm), this.headers(key.id, limits, now))
      }
    }
    const held: Held = { prepared, reservation, tokenEntry, tokenAmount: reservationOf(prepared) }
    if (!prepared.promptCounted) w.uncounted.add(held)
    const release = (used: number) => {
      const at = this.clock.now()
      w.uncounted.delete(held)
      this.ledger.settle(reservation, used, at)
      settleTokens(w, held, used, at)
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
      settleTokens(w, held, amount, now)
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

  private budgetRefusal(key: ApiKey, limits: Limits, prepared: PreparedChat, now: number): Error {
    const s = this.ledger.state(key.id, now)
    return budgetRefusal(key, limits, prepared, s, this.headerBuilder.isoOf(s.resetAt), now, this.headers(key.id, limits, now))
  }

  /** The rate-limit headers of a key's state now, not counting `own` (the answering request's reservation) as held. */
  headers(keyId: string, limits: Limits, now: number, own = 0): Record<string, string> {
    const w = this.windowsOf(keyId)
    return this.headerBuilder.build(
      limits,
      {
        requests: limits.rpm === null ? undefined : { used: w.requests.used(now), resetMs: w.requests.resetIn(now) },
        tokens: limits.tpm === null ? undefined : { used: w.tokens.used(now), resetMs: w.tokens.resetIn(now) },
        budget: limits.dailyTokens === null ? undefined : this.ledger.state(keyId, now),
      },
      now,
      own,
    )
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

/** Moves what a request holds in its key's tokens-per-minute window to `amount`. */
function settleTokens(w: KeyWindows, held: Held, amount: number, now: number): void {
  if (held.tokenEntry < 0) return
  w.tokens.adjust(held.tokenEntry, amount - held.tokenAmount, now)
  held.tokenAmount = amount
}
