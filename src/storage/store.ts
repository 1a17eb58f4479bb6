import type { ApiKey, DailyUsage, DefaultOverrides, KeySecret, LimitOverrides, RequestRow } from '../core/types.js'

export interface NewKey {
  id: string
  name: string
  admin: boolean
  createdAt: number
  expiresAt: number | null
  limits: LimitOverrides
  models: string[] | null
}

export interface KeyPatch {
  name?: string
  admin?: boolean
  /** Merged into the key's overrides (in the same transaction as the read); a limit set to undefined is removed. */
  limits?: LimitOverrides
  models?: string[] | null
  expiresAt?: number | null
}

export interface RequestFilter {
  /** ISO timestamps, inclusive since, exclusive until. */
  since?: string
  until?: string
  keyId?: string
  status?: number
  /** Budget day (YYYY-MM-DD in the gateway's time zone). */
  day?: string
}

export interface UsageGroup {
  group: string
  requests: number
  errors: number
  rateLimited: number
  promptTokens: number
  completionTokens: number
  totalTokens: number
  costMicros: number | null
  p50Ms: number | null
  p95Ms: number | null
}

/**
 * The storage seam. Every atomic operation is one method, so another backend (Postgres,
 * Redis) implements the same method its own way. Methods are synchronous because the
 * embedded SQLite driver is; the hot path touches the store only through batched writes.
 */
export interface Store {
  createKey(key: NewKey, secret: KeySecret): void
  updateKey(id: string, patch: KeyPatch): void
  revokeKey(id: string, at: number): void
  /** Removes the key and its secrets; its request-log rows and daily usage stay. */
  deleteKey(id: string): void
  /** Adds a new secret and makes every older one of the key expire at `retireAt`. */
  rotateSecret(keyId: string, secret: KeySecret, retireAt: number): void
  listKeys(): ApiKey[]
  /** By id, or by name whatever its case: the live key first, else the latest revoked one. */
  findKey(idOrName: string): ApiKey | undefined
  /** Secrets (live or not) with this display prefix or this hash. */
  findSecrets(by: { prefix: string } | { hash: string }): KeySecret[]
  /** Secrets that may still authenticate at `now` (not expired), with their key. */
  listLiveSecrets(now: number): KeySecret[]
  getDefaults(): DefaultOverrides
  /** Lays `changes` over the defaults in one immediate transaction (undefined removes one); returns the result. */
  mergeDefaults(changes: DefaultOverrides): DefaultOverrides
  /** Changes whenever another connection commits; a cheap way to notice CLI writes. */
  changeVersion(): number

  /**
   * Appends log rows and adds them to the daily usage in one transaction. Returns false,
   * having written nothing, when another connection holds the write lock.
   */
  appendRequests(rows: RequestRow[]): boolean
  dailyUsage(day: string): DailyUsage[]
  usageBy(group: 'key' | 'day' | 'model', filter: RequestFilter): UsageGroup[]
  iterateRequests(filter: RequestFilter): IterableIterator<RequestRow>
  countRequests(filter: RequestFilter): number
  /** Deletes log rows older than `before` in small transactions; returns how many. */
  pruneRequests(before: string): number
  close(): void
}
