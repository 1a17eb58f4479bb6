import { rateLimited, type GatewayError } from '../errors.js'
import { formatReset } from '../headers.js'
import { gatewayLimitHint, reservationOf, type PreparedChat } from '../chat-request.js'
import type { ApiKey, Limits } from '../types.js'

/** The 429s of the per-key limits, worded the same whichever limiter refused. */

export function requestsRefusal(key: ApiKey, limits: Limits, waitMs: number, headers: Record<string, string>): GatewayError {
  return rateLimited(`Rate limit reached: ${limits.rpm} requests per minute${gatewayLimitHint(key, `${limits.rpm} requests per minute`, 'rpm', 'retry after the Retry-After header\'s seconds')}`, 'rate_limit_exceeded', waitMs, headers)
}

/** `waitMs` Infinity: the request alone exceeds the limit. */
export function tokensRefusal(key: ApiKey, limits: Limits, prepared: PreparedChat, waitMs: number, headers: Record<string, string>): GatewayError {
  if (waitMs === Infinity) {
    return rateLimited(`Request too large: it needs up to ${reservationOf(prepared)} tokens, over the limit of ${limits.tpm} tokens per minute; lower max_tokens or the prompt`, 'request_too_large', 60_000, { 'x-should-retry': 'false' })
  }
  return rateLimited(`Rate limit reached: ${limits.tpm} tokens per minute${gatewayLimitHint(key, `${limits.tpm} tokens per minute`, 'tpm', 'retry after the Retry-After header\'s seconds or lower max_tokens')}`, 'tokens_rate_limit_exceeded', waitMs, headers)
}

/**
 * The budget 429. Its first sentence is the seed's (clients match on it); the rest says what
 * is left, what this request may use, how to fit, and when the budget resets.
 */
export function budgetRefusal(key: ApiKey, limits: Limits, prepared: PreparedChat, s: { spent: number; reserved: number; resetAt: number }, resetIso: string, now: number, headers: Record<string, string>): GatewayError {
  const limit = limits.dailyTokens ?? 0
  const left = Math.max(0, limit - s.spent - s.reserved)
  const held = s.reserved > 0 ? ` (${s.reserved} more are held by this key's requests in flight)` : ''
  const needs = reservationOf(prepared)
  const choices = prepared.n > 1 ? ` × n=${prepared.n}` : ''
  const fit = left > prepared.promptTokens ? `lower max_tokens to about ${Math.floor((left - prepared.promptTokens) / prepared.n)}` : 'the prompt alone does not fit: shorten it or wait'
  return rateLimited(
    `Daily token limit exceeded. Used: ${s.spent}/${limit}. ${left} tokens are left today${held}; this request may use up to ${needs} (prompt estimate ${prepared.promptTokens} + max_tokens ${prepared.maxTokens}${choices}), so ${fit}. The budget resets at ${resetIso} (in ${formatReset(s.resetAt - now)})${gatewayLimitHint(key, `${limit} tokens per day`, 'daily-tokens', 'lower max_tokens')}.`,
    'daily_limit_exceeded',
    s.resetAt - now,
    { ...headers, 'x-should-retry': 'false' },
  )
}
