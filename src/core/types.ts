/** Plain domain types shared by core, storage and the edges. No framework types here. */

/** A limit is a positive number, or null when it is off. */
export type LimitValue = number | null

export interface Limits {
  /** Requests per minute per key. */
  rpm: LimitValue
  /** Tokens per minute per key (reserve-then-settle). */
  tpm: LimitValue
  /** Requests in flight at once per key. */
  concurrency: LimitValue
  /** Tokens per calendar day per key. */
  dailyTokens: LimitValue
  /** Cap on max_tokens per request; also what the gateway sets when the client omits it. */
  maxTokens: LimitValue
  /** Characters of the message (/chat) or of all message text (/v1). */
  maxInputChars: LimitValue
  /** When the budget cannot cover a request's reservation: refuse, or lower max_tokens. */
  onBudgetShort: 'refuse' | 'clamp'
}

/** Per-IP limits; server-wide settings only. */
export interface IpLimits {
  /** Requests that fail authentication, per IP per minute. */
  authFailuresPerMinute: LimitValue
  /** All requests per IP per minute. */
  ipRpm: LimitValue
}

export type LimitName = keyof Limits
export type IpLimitName = keyof IpLimits

/** What a key or the defaults row overrides; absent = inherit, null = off. */
export type LimitOverrides = { [K in LimitName]?: Limits[K] }
export type DefaultOverrides = LimitOverrides & { [K in IpLimitName]?: IpLimits[K] }

export interface ApiKey {
  id: string
  name: string
  admin: boolean
  createdAt: number
  expiresAt: number | null
  revokedAt: number | null
  limits: LimitOverrides
  /** Models this key may use; null = all the upstream offers. */
  models: string[] | null
}

export interface KeySecret {
  id: string
  keyId: string
  /** Public display prefix, e.g. `gw-AbC1`; also the lookup index. */
  prefix: string
  /** Hex SHA-256 of the whole key. */
  hash: string
  createdAt: number
  /** Set when the secret was rotated away; it stops working at this time. */
  expiresAt: number | null
}

export interface Usage {
  promptTokens: number
  completionTokens: number
  totalTokens: number
  /** True when the upstream did not report usage and the gateway counted with a tokenizer. */
  estimated: boolean
}

/** One row of the request log: every request to a gateway route gets exactly one. */
export interface RequestRow {
  /** ISO 8601 UTC. */
  timestamp: string
  requestId: string
  /**
   * Unique per logged request (the request id may be the client's, and repeat): a shared
   * store's idempotency key for retried and replayed batches, given by the spool before a
   * row's first attempt. SQLite needs none, and rows read back from it do not carry it.
   */
  entryId?: string
  keyId: string | null
  keyName: string | null
  ip: string
  method: string
  route: string
  model: string | null
  status: number
  errorCode: string | null
  promptTokens: number
  completionTokens: number
  totalTokens: number
  estimated: boolean
  latencyMs: number
  upstreamMs: number | null
  queuedMs: number | null
  streamed: boolean
  userAgent: string | null
  /** Estimated cost in micro-dollars; null when the model has no price. */
  costMicros: number | null
  /** The upstream that served (or was tried last); null when none was called. */
  upstream: string | null
  /** The model name sent to it (an alias's entry may name another than `model`). */
  servedModel: string | null
  /** Upstream calls made: more than 1 when it fell back. */
  attempts: number
  /** Budget day (calendar day in the gateway's time zone) the tokens count against. */
  day: string
  requestBody: string | null
  responseBody: string | null
}

export interface DailyUsage {
  keyId: string
  day: string
  /** Every request made with the key. */
  requests: number
  /** Of those, requests to the chat routes. */
  chatRequests: number
  promptTokens: number
  completionTokens: number
  totalTokens: number
  costMicros: number | null
}
