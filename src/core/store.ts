import type { ApiKey, DailyUsage, DefaultOverrides, KeySecret, LimitOverrides, RequestRow } from './types.js'

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
  model?: string
  route?: string
}

/** Where a page of the log ends: the next page starts below it. */
export interface LogCursor {
  timestamp: string
  id: number
}

/** Requests in one latency bucket (src/core/latency-histogram.ts). */
export interface LatencyCount {
  bucket: number
  requests: number
}

/** Whole budget days (the kept totals) or a window of time (the log rows, by their timestamp index). */
export type UsageSpan = UsageRange | { since: string; until: string; keyId?: string }

/** What every usage total sums over log rows: the kept rollups, a series point, a usage group. */
export interface UsageSums {
  /** Every request, any route and status. */
  requests: number
  errors: number
  rateLimited: number
  promptTokens: number
  completionTokens: number
  totalTokens: number
  /** Null while no row had a priced model. */
  costMicros: number | null
}

/** One bucket of a usage series: a budget day, or a time bucket (`YYYY-MM-DDTHH:MM`, UTC) of a window. */
export interface SeriesPoint extends UsageSums {
  bucket: string
  /** Key id or model ('' for none); '' when not grouped. */
  group: string
}

export interface ErrorPoint {
  bucket: string
  status: number
  errorCode: string | null
  requests: number
}

export interface LatencyFigures {
  /** Log rows the percentiles come from. */
  rows: number
  p50Ms: number | null
  p95Ms: number | null
}

export interface LoggedRequest {
  /** The row's id: a stable cursor for paging and a link to its detail. */
  id: number
  row: RequestRow
}

/** Budget days (YYYY-MM-DD in the gateway's time zone), both inclusive. */
export interface UsageRange {
  fromDay: string
  toDay: string
  keyId?: string
}

/** The log rows before a time: how many, and the first and last timestamps. */
export interface LogSpan {
  rows: number
  first: string | null
  last: string | null
}

export interface UsageGroup extends UsageSums {
  group: string
  /** Requests to the chat routes. */
  chatRequests: number
  /** Null when some of the group's rows were pruned (a sum table cannot keep percentiles). */
  p50Ms: number | null
  p95Ms: number | null
}

/**
 * Keys, their secrets and the default limits: the configuration the CLI writes and every
 * gateway loads. Each atomic operation is one method, so each backend does it its own way.
 */
export interface KeyStore {
  createKey(key: NewKey, secret: KeySecret): Promise<void>
  updateKey(id: string, patch: KeyPatch): Promise<void>
  revokeKey(id: string, at: number): Promise<void>
  /** Removes the key and its secrets; its request-log rows and daily usage stay. */
  deleteKey(id: string): Promise<void>
  /** Adds a new secret and makes every older one of the key expire at `retireAt`. */
  rotateSecret(keyId: string, secret: KeySecret, retireAt: number): Promise<void>
  listKeys(): Promise<ApiKey[]>
  /** By id, or by name whatever its case: the live key first, else the latest revoked one. */
  findKey(idOrName: string): Promise<ApiKey | undefined>
  /** Secrets (live or not) with this display prefix or this hash. */
  findSecrets(by: { prefix: string } | { hash: string }): Promise<KeySecret[]>
  /** Secrets that may still authenticate at `now` (not expired), with their key. */
  listLiveSecrets(now: number): Promise<KeySecret[]>
  getDefaults(): Promise<DefaultOverrides>
  /** Lays `changes` over the defaults in one transaction (undefined removes one); returns the result. */
  mergeDefaults(changes: DefaultOverrides): Promise<DefaultOverrides>
}

/** How a gateway notices configuration written by another process (the CLI, another gateway). */
export interface ChangeMarker {
  /**
   * Differs from its last value once another connection committed a change. Synchronous and
   * cheap (a local read): every request calls it; the reload it triggers is asynchronous.
   */
  changeVersion(): number
}

/** The request log and the usage totals kept beside it. */
export interface UsageStore {
  /**
   * Appends log rows and adds them to the kept usage totals in one transaction. Resolves
   * false, having written nothing, when another connection holds the write lock.
   */
  appendRequests(rows: RequestRow[]): Promise<boolean>
  /** Per key on a day, from the kept totals (which `pruneRequests` leaves alone). */
  dailyUsage(day: string): Promise<DailyUsage[]>
  /** Kept totals over whole days; latency from the log rows still there. */
  usageBy(group: 'key' | 'day' | 'model', range: UsageRange): Promise<UsageGroup[]>
  /**
   * Sums per bucket (and key or model): whole days from the kept totals, a window in hours
   * from the hourly sums, in shorter buckets from the log rows.
   */
  usageSeries(span: UsageSpan, by: 'all' | 'key' | 'model', bucketMinutes: number): Promise<SeriesPoint[]>
  /** Requests per latency bucket over UTC hours `YYYY-MM-DDTHH`, both inclusive. */
  latencyCounts(fromHour: string, toHour: string): Promise<LatencyCount[]>
  /** Exact p50 and p95 latency over the span's log rows (a sort: for short spans). */
  latency(span: UsageSpan): Promise<LatencyFigures>
  /** Answers with status >= 400 in a window, per budget day or time bucket (minutes), status and error code, from the log rows. */
  errorsBy(window: { since: string; until: string }, bucket: 'day' | number): Promise<ErrorPoint[]>
  /** Newest first (by timestamp, then id), `limit` rows after the cursor (keyset paging). */
  listRequests(filter: RequestFilter, before: LogCursor | null, limit: number): Promise<LoggedRequest[]>
  getRequest(id: number): Promise<RequestRow | undefined>
  /** In id order, paged: no read transaction lasts the whole iteration. */
  iterateRequests(filter: RequestFilter): AsyncIterable<RequestRow>
  countRequests(filter: RequestFilter): Promise<number>
  /** What `pruneRequests(before)` would delete. */
  logSpan(before: string): Promise<LogSpan>
  /** Deletes log rows older than `before` in small transactions (the kept totals stay); returns how many. */
  pruneRequests(before: string): Promise<number>
}

/** The log rows a shared store's gateway holds on local disk while the database is unreachable. */
export interface SpoolState {
  /** Rows written to the spool and not yet in the database. */
  rows: number
  bytes: number
  /** Why the database refused the last write, while rows are spooled. */
  lastError: string | null
}

/**
 * The storage seam core depends on; the backends (src/storage/*) implement it. Asynchronous
 * because a networked database is; the hot path touches it only through `changeVersion` and
 * the batched `appendRequests`.
 */
export interface Store extends KeyStore, ChangeMarker, UsageStore {
  close(): Promise<void>
}
