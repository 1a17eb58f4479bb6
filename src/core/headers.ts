/** The header names the gateway reads and the ones it computes per request (a few fixed ones, such as `x-should-retry`, stay where they are set). */
export const H = {
  requestId: 'x-request-id',
  apiKey: 'x-api-key',
  authorization: 'authorization',
  queueTimeout: 'x-queue-timeout',
  forwardedFor: 'x-forwarded-for',
  userAgent: 'user-agent',
  retryAfter: 'retry-after',
  retryAfterMs: 'retry-after-ms',
  limitRequests: 'x-ratelimit-limit-requests',
  remainingRequests: 'x-ratelimit-remaining-requests',
  resetRequests: 'x-ratelimit-reset-requests',
  limitTokens: 'x-ratelimit-limit-tokens',
  remainingTokens: 'x-ratelimit-remaining-tokens',
  resetTokens: 'x-ratelimit-reset-tokens',
  budgetLimit: 'x-budget-limit-tokens',
  budgetRemaining: 'x-budget-remaining-tokens',
  budgetReset: 'x-budget-reset',
  rateLimitPolicy: 'ratelimit-policy',
  rateLimit: 'ratelimit',
  tokensEstimated: 'x-gateway-tokens-estimated',
  maxTokensApplied: 'x-gateway-max-tokens-applied',
} as const

/** OpenAI's reset format: `1s`, `6m0s`, `20ms`. */
export function formatReset(ms: number): string {
  const total = Math.max(0, Math.ceil(ms))
  if (total < 1000) return `${total}ms`
  const s = Math.ceil(total / 1000)
  const h = Math.floor(s / 3600)
  const m = Math.floor((s % 3600) / 60)
  const sec = s % 60
  if (h > 0) return `${h}h${m}m${sec}s`
  if (m > 0) return `${m}m${sec}s`
  return `${sec}s`
}
