import { formatReset, H } from '../headers.js'
import type { Limits } from '../types.js'

/** One per-minute window as the headers show it. */
export interface WindowView {
  used: number
  /** When the oldest entry leaves the window (0: empty). */
  resetMs: number
}

/** A key's limit state at one instant, whichever limiter holds it. */
export interface LimitView {
  requests?: WindowView
  tokens?: WindowView
  /** Spent today, held by requests in flight, and when the budget resets (epoch ms). */
  budget?: { spent: number; reserved: number; resetAt: number }
}

const REQUEST_HEADERS = [H.limitRequests, H.remainingRequests, H.resetRequests] as const
const TOKEN_HEADERS = [H.limitTokens, H.remainingTokens, H.resetTokens] as const

/** One per-minute window's OpenAI-style headers (limit, remaining, reset) and its RateLimit entry. */
function perMinute(out: Record<string, string>, state: string[], name: string, limit: number, w: WindowView, names: readonly [string, string, string]): void {
  const remaining = Math.max(0, limit - w.used)
  out[names[0]] = String(limit)
  out[names[1]] = String(remaining)
  out[names[2]] = formatReset(w.resetMs)
  state.push(`"${name}";r=${remaining};t=${Math.ceil(w.resetMs / 1000)}`)
}

/**
 * OpenAI's x-ratelimit-* headers, the daily budget's, and the IETF draft's RateLimit pair, from
 * a LimitView. The budget's remaining is the limit less what was spent and what the key's
 * requests in flight hold, not counting `own` (the answering request's reservation): so for
 * requests one after another it only goes down within a day. Caches the two strings that
 * change at most daily (the policy per limits object, the reset time).
 */
export class LimitHeaders {
  private readonly policies = new WeakMap<Limits, string>()
  private resetIso: { ms: number; iso: string } | null = null

  build(limits: Limits, view: LimitView, now: number, own = 0): Record<string, string> {
    const out: Record<string, string> = {}
    const state: string[] = []
    if (limits.rpm !== null && view.requests) perMinute(out, state, 'requests', limits.rpm, view.requests, REQUEST_HEADERS)
    if (limits.tpm !== null && view.tokens) perMinute(out, state, 'tokens', limits.tpm, view.tokens, TOKEN_HEADERS)
    if (limits.dailyTokens !== null && view.budget) {
      const s = view.budget
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

  /** The budget's reset time, formatted once a day rather than per response. */
  isoOf(ms: number): string {
    if (this.resetIso?.ms !== ms) this.resetIso = { ms, iso: new Date(ms).toISOString() }
    return this.resetIso.iso
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
}
