import type { Statement } from 'better-sqlite3'
import { setTimeout as delay } from 'node:timers/promises'
import { and, asc, desc, eq, getTableColumns, gt, gte, inArray, lt, lte, or, sql, type SQL } from 'drizzle-orm'
import type { SQLiteColumn, SQLiteTable } from 'drizzle-orm/sqlite-core'
import { nameTaken } from '../../core/keys.js'
import { addRow, isChatRoute, noSums } from '../../core/usage.js'
import type { ApiKey, DailyUsage, DefaultOverrides, KeySecret, RequestRow } from '../../core/types.js'
import type { ErrorPoint, KeyPatch, LatencyCount as LatencyCountRow, LatencyFigures, LogCursor, LoggedRequest, LogSpan, NewKey, RequestFilter, SeriesPoint, Store, UsageGroup, UsageRange, UsageSpan } from '../../core/store.js'
import { overlay } from '../overlay.js'
import { isBusy, openDatabase, type OpenedDatabase } from './open.js'
import { apiKeys, dailyUsage, keySecrets, latencyHourly, requestLog, settings, usageHourly, usageRollup } from './schema.js'
import { latencyBucket } from '../../core/latency-histogram.js'
import { toApiKey } from '../key-row.js'

/** Rows per page of an export: each page is its own statement, so no read lasts the whole run. */
const EXPORT_PAGE = 500

const DEFAULTS = 'limits'

/** `logs prune` deletes at most this many rows per transaction, so it never holds the write lock for long. */
export const PRUNE_BATCH = 5_000
/**
 * Between two prune transactions the write lock stays free this long, longer than the
 * server's longest wait between two tries of a busy log write (request-log.ts).
 */
const PRUNE_PAUSE_MS = 20

type KeyRow = typeof apiKeys.$inferSelect

/** Runs a key write; the unique index on live names turns a race past KeyManager's check into a 409. */
function guardName<T>(name: string | undefined, write: () => T): T {
  try {
    return write()
  } catch (err) {
    if ((err as { code?: unknown }).code === 'SQLITE_CONSTRAINT_UNIQUE' && String(err).includes('api_keys_live_name')) throw nameTaken(name ?? '')
    throw err
  }
}

/** Raw request_log row as SQLite returns it (snake_case, integers for booleans). */
interface RawRequestRow {
  timestamp: string
  request_id: string
  key_id: string | null
  key_name: string | null
  ip: string
  method: string
  route: string
  model: string | null
  status: number
  error_code: string | null
  prompt_tokens: number
  completion_tokens: number
  total_tokens: number
  estimated: number
  latency_ms: number
  upstream_ms: number | null
  queued_ms: number | null
  streamed: number
  user_agent: string | null
  cost_micros: number | null
  day: string
  request_body: string | null
  response_body: string | null
  upstream: string | null
  served_model: string | null
  attempts: number
}

function toRequestRow(r: RawRequestRow): RequestRow {
  return {
    timestamp: r.timestamp,
    requestId: r.request_id,
    keyId: r.key_id,
    keyName: r.key_name,
    ip: r.ip,
    method: r.method,
    route: r.route,
    model: r.model,
    status: r.status,
    errorCode: r.error_code,
    promptTokens: r.prompt_tokens,
    completionTokens: r.completion_tokens,
    totalTokens: r.total_tokens,
    estimated: r.estimated === 1,
    latencyMs: r.latency_ms,
    upstreamMs: r.upstream_ms,
    queuedMs: r.queued_ms,
    streamed: r.streamed === 1,
    userAgent: r.user_agent,
    costMicros: r.cost_micros,
    day: r.day,
    requestBody: r.request_body,
    responseBody: r.response_body,
    upstream: r.upstream,
    servedModel: r.served_model,
    attempts: r.attempts,
  }
}

function whereOf(filter: RequestFilter): SQL | undefined {
  return and(
    filter.since !== undefined ? gte(requestLog.timestamp, filter.since) : undefined,
    filter.until !== undefined ? lt(requestLog.timestamp, filter.until) : undefined,
    filter.keyId !== undefined ? eq(requestLog.keyId, filter.keyId) : undefined,
    filter.status !== undefined ? eq(requestLog.status, filter.status) : undefined,
    filter.model !== undefined ? eq(requestLog.model, filter.model) : undefined,
    filter.route !== undefined ? eq(requestLog.route, filter.route) : undefined,
  )
}

/** A span's log rows: whole days through request_log_day_key, a window through the timestamp index. */
function logSpanWhere(span: UsageSpan): SQL | undefined {
  if ('fromDay' in span) {
    // `+`: the day range through request_log_day_key, not all of the key's history.
    const key = span.keyId !== undefined ? sql`+${requestLog.keyId} = ${span.keyId}` : undefined
    return and(gte(requestLog.day, span.fromDay), lte(requestLog.day, span.toDay), key)
  }
  return and(gte(requestLog.timestamp, span.since), lt(requestLog.timestamp, span.until), span.keyId !== undefined ? eq(requestLog.keyId, span.keyId) : undefined)
}

/** The kept daily totals of a range of budget days. */
function rollupWhere(range: UsageRange): SQL | undefined {
  return and(gte(usageRollup.day, range.fromDay), lte(usageRollup.day, range.toDay), range.keyId !== undefined ? eq(usageRollup.keyId, range.keyId) : undefined)
}

/** A log row's UTC time floored to `minutes` (a window's bucket; day spans are bucketed by the caller). */
function logBucket(minutes: number): SQL {
  if (minutes >= 60) return sql`substr(${requestLog.timestamp}, 1, 13) || ':00'`
  return sql`substr(${requestLog.timestamp}, 1, 14) || printf('%02d', cast(substr(${requestLog.timestamp}, 15, 2) as integer) / ${minutes} * ${minutes})`
}

/** A usage group in the log, named as the rollup names it ('' for no key or no model). */
const LOG_GROUP = {
  key: sql`coalesce(${requestLog.keyId}, '')`,
  day: sql`${requestLog.day}`,
  model: sql`coalesce(${requestLog.model}, '')`,
} as const

const ROLLUP_GROUP = { key: usageRollup.keyId, day: usageRollup.day, model: usageRollup.model } as const

/**
 * Every column but the rowid as a named placeholder of the same name: an INSERT's values,
 * filled from a row object by `rawStatement`.
 */
function placeholdersOf<T extends SQLiteTable>(table: T): T['$inferInsert'] {
  const columns = Object.keys(getTableColumns(table)).filter((property) => property !== 'id')
  return Object.fromEntries(columns.map((property) => [property, sql.placeholder(property)])) as T['$inferInsert']
}

/**
 * An upsert into a table of sums (the rollups): a row whose key is there already adds its
 * counts; a null cost (no priced model) leaves the cost as it was.
 */
function sumUpsert<T extends SQLiteTable>(db: OpenedDatabase['db'], table: T, key: SQLiteColumn[]) {
  const set: Record<string, SQL> = {}
  for (const [property, column] of Object.entries(getTableColumns(table))) {
    if (key.includes(column)) continue
    const excluded = sql`excluded.${sql.identifier(column.name)}`
    set[property] = property === 'costMicros' ? sql`case when ${excluded} is null then ${column} else coalesce(${column}, 0) + ${excluded} end` : sql`${column} + ${excluded}`
  }
  return db.insert(table).values(placeholdersOf(table)).onConflictDoUpdate({ target: key, set })
}

type RollupSum = typeof usageRollup.$inferInsert
type HourlySum = typeof usageHourly.$inferInsert
type LatencyCount = typeof latencyHourly.$inferInsert

/**
 * A hot-path statement: the SQL is drizzle's (the schema stays the one source of truth), run
 * as a raw better-sqlite3 statement with positional parameters, which skips drizzle's
 * per-value placeholder mapping on every logged request.
 */
function rawStatement(sqlite: OpenedDatabase['sqlite'], query: { toSQL(): { sql: string; params: unknown[] } }) {
  const { sql: text, params } = query.toSQL()
  // Every parameter is a named placeholder (drizzle wraps it in a Param): its value is read
  // from the object passed in, a boolean as SQLite's 0/1.
  const names = params.map((p) => {
    const name = (p as { value?: { name?: string }; name?: string }).value?.name ?? (p as { name?: string }).name
    if (name === undefined) throw new Error(`rawStatement: every parameter must be a placeholder (${text})`)
    return name
  })
  const statement = sqlite.prepare(text)
  return (values: object) =>
    statement.run(
      names.map((name) => {
        const v = (values as Record<string, unknown>)[name]
        return typeof v === 'boolean' ? Number(v) : v
      }),
    )
}

/** A batch's rows summed per day, key and model; a cost stays null when no row of the group had one. */
function sumForRollup(rows: RequestRow[]): Iterable<RollupSum> {
  const sums = new Map<string, Required<RollupSum>>()
  for (const row of rows) {
    const keyId = row.keyId ?? ''
    const model = row.model ?? ''
    const id = `${row.day}\0${keyId}\0${model}`
    let sum = sums.get(id)
    if (!sum) {
      sum = { day: row.day, keyId, model, chatRequests: 0, ...noSums() }
      sums.set(id, sum)
    }
    addRow(sum, row)
    if (isChatRoute(row.route)) sum.chatRequests++
  }
  return sums.values()
}

/** A batch's rows summed per UTC hour, key and model, and counted per hour and latency bucket. */
function sumForHours(rows: RequestRow[]): { sums: Iterable<HourlySum>; latencies: Iterable<LatencyCount> } {
  const sums = new Map<string, Required<HourlySum>>()
  const latencies = new Map<string, Required<LatencyCount>>()
  for (const row of rows) {
    const hour = row.timestamp.slice(0, 13)
    const keyId = row.keyId ?? ''
    const model = row.model ?? ''
    const id = `${hour}\0${keyId}\0${model}`
    let sum = sums.get(id)
    if (!sum) {
      sum = { hour, keyId, model, ...noSums() }
      sums.set(id, sum)
    }
    addRow(sum, row)
    const bucket = latencyBucket(row.latencyMs)
    const lid = `${hour}\0${bucket}`
    const count = latencies.get(lid)
    if (count) count.requests++
    else latencies.set(lid, { hour, bucket, requests: 1 })
  }
  return { sums: sums.values(), latencies: latencies.values() }
}

export class SqliteStore implements Store {
  readonly kind = 'sqlite' as const
  private readonly opened: OpenedDatabase
  private readonly insertRow: (values: object) => unknown
  private readonly upsertUsage: (values: object) => unknown
  private readonly upsertHourly: (values: object) => unknown
  private readonly upsertLatency: (values: object) => unknown
  /** better-sqlite3's own transaction function, built once: the group commit runs it per batch. */
  private readonly appendBatch: ReturnType<OpenedDatabase['sqlite']['transaction']>
  /** Prepared once: it runs on every request. */
  private readonly dataVersion: Statement<[], number>

  constructor(opened: OpenedDatabase) {
    this.opened = opened
    const { db } = opened
    this.insertRow = rawStatement(opened.sqlite, db.insert(requestLog).values(placeholdersOf(requestLog)))
    this.upsertUsage = rawStatement(opened.sqlite, sumUpsert(db, usageRollup, [usageRollup.day, usageRollup.keyId, usageRollup.model]))
    this.upsertHourly = rawStatement(opened.sqlite, sumUpsert(db, usageHourly, [usageHourly.hour, usageHourly.keyId, usageHourly.model]))
    this.upsertLatency = rawStatement(
      opened.sqlite,
      db
        .insert(latencyHourly)
        .values({ hour: sql.placeholder('hour'), bucket: sql.placeholder('bucket'), requests: sql.placeholder('requests') })
        .onConflictDoUpdate({ target: [latencyHourly.hour, latencyHourly.bucket], set: { requests: sql`${latencyHourly.requests} + excluded.requests` } }),
    )
    this.dataVersion = opened.sqlite.prepare<[], number>('PRAGMA data_version').pluck()
    this.appendBatch = opened.sqlite.transaction((rows: RequestRow[]) => {
      for (const row of rows) this.insertRow(row)
      // The kept totals move with the rows, in the same transaction: one upsert per day, key
      // and model of the batch, not one per row.
      for (const sum of sumForRollup(rows)) this.upsertUsage(sum)
      const hours = sumForHours(rows)
      for (const sum of hours.sums) this.upsertHourly(sum)
      for (const count of hours.latencies) this.upsertLatency(count)
    })
  }

  static open(path: string, options: { busyTimeoutMs?: number } = {}): SqliteStore {
    return new SqliteStore(openDatabase(path, options))
  }

  private get db() {
    return this.opened.db
  }

  async createKey(key: NewKey, secret: KeySecret): Promise<void> {
    guardName(key.name, () =>
      this.db.transaction(
        (tx) => {
          tx.insert(apiKeys)
            .values({ ...key, role: key.admin ? 'admin' : 'user' })
            .run()
          tx.insert(keySecrets).values(secret).run()
        },
        { behavior: 'immediate' },
      ),
    )
  }

  async updateKey(id: string, patch: KeyPatch): Promise<void> {
    // Read and write in one immediate transaction: two CLI runs cannot lose each other's limits.
    guardName(patch.name, () =>
      this.db.transaction(
        (tx) => {
          const set: Partial<KeyRow> = {}
          if (patch.limits !== undefined) {
            const current = tx.select({ limits: apiKeys.limits }).from(apiKeys).where(eq(apiKeys.id, id)).get()
            set.limits = overlay(current?.limits ?? {}, patch.limits)
          }
          if (patch.name !== undefined) set.name = patch.name
          if (patch.admin !== undefined) set.role = patch.admin ? 'admin' : 'user'
          if (patch.models !== undefined) set.models = patch.models
          if (patch.expiresAt !== undefined) set.expiresAt = patch.expiresAt
          if (Object.keys(set).length > 0) tx.update(apiKeys).set(set).where(eq(apiKeys.id, id)).run()
        },
        { behavior: 'immediate' },
      ),
    )
  }

  async revokeKey(id: string, at: number): Promise<void> {
    this.db.update(apiKeys).set({ revokedAt: at }).where(eq(apiKeys.id, id)).run()
  }

  async deleteKey(id: string): Promise<void> {
    this.db.delete(apiKeys).where(eq(apiKeys.id, id)).run() // its secrets go by the foreign key's cascade
  }

  async rotateSecret(keyId: string, secret: KeySecret, retireAt: number): Promise<void> {
    this.db.transaction(
      (tx) => {
        tx.update(keySecrets)
          .set({ expiresAt: retireAt })
          .where(and(eq(keySecrets.keyId, keyId), or(sql`${keySecrets.expiresAt} is null`, sql`${keySecrets.expiresAt} > ${retireAt}`)))
          .run()
        tx.insert(keySecrets).values(secret).run()
      },
      { behavior: 'immediate' },
    )
  }

  async listKeys(): Promise<ApiKey[]> {
    return this.db.select().from(apiKeys).orderBy(apiKeys.createdAt).all().map(toApiKey)
  }

  async findKey(idOrName: string): Promise<ApiKey | undefined> {
    const row = this.db
      .select()
      .from(apiKeys)
      .where(or(eq(apiKeys.id, idOrName), eq(sql`lower(${apiKeys.name})`, sql`lower(${idOrName})`)))
      .orderBy(desc(eq(apiKeys.id, idOrName)), asc(sql`${apiKeys.revokedAt} is not null`), desc(apiKeys.revokedAt))
      .get()
    return row ? toApiKey(row) : undefined
  }

  async findSecrets(by: { prefix: string } | { hash: string }): Promise<KeySecret[]> {
    return this.db
      .select()
      .from(keySecrets)
      .where('prefix' in by ? eq(keySecrets.prefix, by.prefix) : eq(keySecrets.hash, by.hash))
      .all()
  }

  async listLiveSecrets(now: number): Promise<KeySecret[]> {
    return this.db
      .select()
      .from(keySecrets)
      .where(or(sql`${keySecrets.expiresAt} is null`, sql`${keySecrets.expiresAt} > ${now}`))
      .all()
  }

  async getDefaults(): Promise<DefaultOverrides> {
    return this.db.select().from(settings).where(eq(settings.name, DEFAULTS)).get()?.value ?? {}
  }

  async mergeDefaults(changes: DefaultOverrides): Promise<DefaultOverrides> {
    return this.db.transaction(
      (tx) => {
        const current = tx.select().from(settings).where(eq(settings.name, DEFAULTS)).get()?.value ?? {}
        const merged = overlay(current, changes)
        tx.insert(settings)
          .values({ name: DEFAULTS, value: merged })
          .onConflictDoUpdate({ target: settings.name, set: { value: merged } })
          .run()
        return merged
      },
      { behavior: 'immediate' },
    )
  }

  changeVersion(): number {
    return this.dataVersion.get()!
  }

  async appendRequests(rows: RequestRow[]): Promise<boolean> {
    try {
      this.appendBatch.immediate(rows)
      return true
    } catch (err) {
      // The transaction rolled back whole: nothing of the batch is written, so a retry counts it once.
      if (isBusy(err)) return false
      throw err
    }
  }

  async dailyUsage(day: string): Promise<DailyUsage[]> {
    return this.db.select().from(dailyUsage).where(eq(dailyUsage.day, day)).all()
  }

  async usageBy(group: 'key' | 'day' | 'model', range: UsageRange): Promise<UsageGroup[]> {
    const g = ROLLUP_GROUP[group]
    const total = (column: SQLiteColumn) => sql<number>`sum(${column})`
    const sums = this.db
      .select({
        group: g,
        requests: total(usageRollup.requests),
        chatRequests: total(usageRollup.chatRequests),
        errors: total(usageRollup.errors),
        rateLimited: total(usageRollup.rateLimited),
        promptTokens: total(usageRollup.promptTokens),
        completionTokens: total(usageRollup.completionTokens),
        totalTokens: total(usageRollup.totalTokens),
        costMicros: sql<number | null>`sum(${usageRollup.costMicros})`,
      })
      .from(usageRollup)
      .where(rollupWhere(range))
      .groupBy(g)
      .orderBy(g)
      .all()
    const latency = this.latencyBy(group, range)
    return sums.map((s) => {
      // Percentiles need every request's latency: unknown once some of the group was pruned.
      const l = latency.get(s.group)
      const whole = l !== undefined && l.n === s.requests
      return { ...s, p50Ms: whole ? l.p50 : null, p95Ms: whole ? l.p95 : null }
    })
  }

  /** p50 and p95 latency per group from the rows still in the log, and how many rows that is. */
  private latencyBy(group: 'key' | 'day' | 'model', range: UsageRange): Map<string, { n: number; p50: number | null; p95: number | null }> {
    const g = LOG_GROUP[group]
    const where = logSpanWhere(range)
    const rows = this.db.all<{ grp: string; n: number; p50: number | null; p95: number | null }>(sql`
      with r as (
        select ${g} as grp, latency_ms,
          row_number() over (partition by ${g} order by latency_ms) as rn,
          count(*) over (partition by ${g}) as n
        from ${requestLog} where ${where}
      )
      select grp, max(n) as n,
        min(case when rn >= 0.5 * n then latency_ms end) as p50,
        min(case when rn >= 0.95 * n then latency_ms end) as p95
      from r group by grp`)
    return new Map(rows.map((r) => [r.grp, r]))
  }

  async usageSeries(span: UsageSpan, by: 'all' | 'key' | 'model', bucketMinutes: number): Promise<SeriesPoint[]> {
    if ('fromDay' in span) {
      // Whole days: the kept totals, the same sums `gateway usage` and GET /usage report.
      const group = by === 'all' ? sql`''` : ROLLUP_GROUP[by]
      return this.db.all<SeriesPoint>(sql`
        select ${usageRollup.day} as bucket, ${group} as "group", sum(requests) as requests, sum(errors) as errors,
          sum(rate_limited) as rateLimited, sum(prompt_tokens) as promptTokens, sum(completion_tokens) as completionTokens,
          sum(total_tokens) as totalTokens, sum(cost_micros) as costMicros
        from ${usageRollup}
        where ${rollupWhere(span)}
        group by 1, 2 order by 1, 2`)
    }
    if (bucketMinutes >= 60) {
      // Whole UTC hours: the hourly sums, every hour the window touches.
      const group = by === 'all' ? sql`''` : { key: usageHourly.keyId, model: usageHourly.model }[by]
      return this.db.all<SeriesPoint>(sql`
        select ${usageHourly.hour} || ':00' as bucket, ${group} as "group", sum(requests) as requests, sum(errors) as errors,
          sum(rate_limited) as rateLimited, sum(prompt_tokens) as promptTokens, sum(completion_tokens) as completionTokens,
          sum(total_tokens) as totalTokens, sum(cost_micros) as costMicros
        from ${usageHourly}
        where ${and(gte(usageHourly.hour, span.since.slice(0, 13)), lte(usageHourly.hour, span.until.slice(0, 13)), span.keyId !== undefined ? eq(usageHourly.keyId, span.keyId) : undefined)}
        group by 1, 2 order by 1, 2`)
    }
    const group = by === 'all' ? sql`''` : LOG_GROUP[by]
    const bucket = logBucket(bucketMinutes)
    return this.db.all<SeriesPoint>(sql`
      select ${bucket} as bucket, ${group} as "group", count(*) as requests, sum(status >= 400) as errors,
        sum(status = 429) as rateLimited, sum(prompt_tokens) as promptTokens, sum(completion_tokens) as completionTokens,
        sum(total_tokens) as totalTokens, sum(cost_micros) as costMicros
      from ${requestLog} where ${logSpanWhere(span)}
      group by 1, 2 order by 1, 2`)
  }

  async latencyCounts(fromHour: string, toHour: string): Promise<LatencyCountRow[]> {
    return this.db
      .select({ bucket: latencyHourly.bucket, requests: sql<number>`sum(${latencyHourly.requests})` })
      .from(latencyHourly)
      .where(and(gte(latencyHourly.hour, fromHour), lte(latencyHourly.hour, toHour)))
      .groupBy(latencyHourly.bucket)
      .all()
  }

  async latency(span: UsageSpan): Promise<LatencyFigures> {
    const r = this.db.get<{ n: number; p50: number | null; p95: number | null }>(sql`
      with r as (
        select latency_ms, row_number() over (order by latency_ms) as rn, count(*) over () as n
        from ${requestLog} where ${logSpanWhere(span)}
      )
      select coalesce(max(n), 0) as n,
        min(case when rn >= 0.5 * n then latency_ms end) as p50,
        min(case when rn >= 0.95 * n then latency_ms end) as p95
      from r`)
    return { rows: r.n, p50Ms: r.p50, p95Ms: r.p95 }
  }

  async errorsBy(window: { since: string; until: string }, bucket: 'day' | number): Promise<ErrorPoint[]> {
    // Through request_log_errors, which holds the failed rows alone and covers this read.
    const group = bucket === 'day' ? sql`${requestLog.day}` : logBucket(bucket)
    return this.db.all<ErrorPoint>(sql`
      select ${group} as bucket, status, error_code as errorCode, count(*) as requests
      from ${requestLog} where ${and(gte(requestLog.timestamp, window.since), lt(requestLog.timestamp, window.until), sql`${requestLog.status} >= 400`)}
      group by 1, 2, 3 order by 1, 2, 3`)
  }

  async listRequests(filter: RequestFilter, before: LogCursor | null, limit: number): Promise<LoggedRequest[]> {
    // An error status: the few failed rows of request_log_errors, which SQLite would not pick
    // by itself (it walks the timestamp index and reads every row of the range instead).
    const errorsOnly = filter.status !== undefined && filter.status >= 400
    const { sql: text, params } = this.db
      .select()
      .from(requestLog)
      .where(
        and(
          whereOf(filter),
          // Literal, not a bound parameter: SQLite uses a partial index only when it can see the term implies its WHERE.
          errorsOnly ? sql`${requestLog.status} >= 400` : undefined,
          before !== null ? or(lt(requestLog.timestamp, before.timestamp), and(eq(requestLog.timestamp, before.timestamp), lt(requestLog.id, before.id))) : undefined,
        ),
      )
      // Newest first down the timestamp index (whose entries end with the rowid), stopping at the page's end.
      .orderBy(desc(requestLog.timestamp), desc(requestLog.id))
      .limit(limit)
      .toSQL()
    const from = errorsOnly ? 'select * from "request_log" indexed by "request_log_errors"' : 'select * from "request_log"'
    const rows = this.opened.sqlite.prepare(text.replace(/^select .*? from "request_log"/, from)).all(...params) as (RawRequestRow & { id: number })[]
    return rows.map((r) => ({ id: r.id, row: toRequestRow(r) }))
  }

  async getRequest(id: number): Promise<RequestRow | undefined> {
    const raw = this.opened.sqlite.prepare('select * from request_log where id = ?').get(id) as RawRequestRow | undefined
    return raw ? toRequestRow(raw) : undefined
  }

  /**
   * The log in id order, a page at a time: each page is one short statement (its own read
   * transaction), so a long export never pins a snapshot and the WAL can be checkpointed
   * while it runs. Pages walk the rowid, bounded by the ids the time filter allows.
   */
  async *iterateRequests(filter: RequestFilter): AsyncIterableIterator<RequestRow> {
    const span = this.idSpan(filter)
    if (span === null) return
    // One statement for every page: the filter's values, then the page's id bounds.
    const { sql: text, params } = this.db
      .select()
      .from(requestLog)
      .where(and(whereOf(filter), gt(requestLog.id, 0), lte(requestLog.id, 0)))
      .orderBy(requestLog.id)
      .toSQL()
    const page = this.opened.sqlite.prepare(text.replace(/^select .*? from "request_log"/, 'select * from "request_log" not indexed'))
    const values = params.slice(0, -2)
    for (let after = span.after; after < span.last; after += EXPORT_PAGE) {
      const rows = page.all(...values, after, Math.min(after + EXPORT_PAGE, span.last)) as RawRequestRow[]
      for (const raw of rows) yield toRequestRow(raw)
    }
  }

  async countRequests(filter: RequestFilter): Promise<number> {
    const span = this.idSpan(filter)
    if (span === null) return 0
    const inSpan = and(whereOf(filter), gt(requestLog.id, span.after), lte(requestLog.id, span.last))
    return this.db.get<{ n: number }>(sql`select count(*) as n from ${requestLog} not indexed where ${inSpan}`).n
  }

  /**
   * Ids the rows of a time range can have (`after` < id <= `last`), found through the
   * timestamp index; null when no row matches. `not indexed` in the reads that follow keeps
   * SQLite on the rowid range instead of sorting an index's matches by id.
   */
  private idSpan(filter: RequestFilter): { after: number; last: number } | null {
    // `+id`: without it SQLite would walk the rowid from one end until a timestamp matches.
    const first =
      filter.since !== undefined
        ? this.db.get<{ id: number | null }>(sql`select min(+${requestLog.id}) as id from ${requestLog} where ${requestLog.timestamp} >= ${filter.since}`).id
        : this.db.get<{ id: number | null }>(sql`select min(${requestLog.id}) as id from ${requestLog}`).id // past pruned ids
    const last =
      filter.until !== undefined
        ? this.db.get<{ id: number | null }>(sql`select max(+${requestLog.id}) as id from ${requestLog} where ${requestLog.timestamp} < ${filter.until}`).id
        : this.db.get<{ id: number | null }>(sql`select max(${requestLog.id}) as id from ${requestLog}`).id
    if (first === null || last === null || last < first) return null
    return { after: first - 1, last }
  }

  async logSpan(before: string): Promise<LogSpan> {
    const r = this.db.get<{ rows: number; first: string | null; last: string | null }>(
      sql`select count(*) as rows, min(${requestLog.timestamp}) as first, max(${requestLog.timestamp}) as last from ${requestLog} where ${requestLog.timestamp} < ${before}`,
    )
    return { rows: r.rows, first: r.first, last: r.last }
  }

  async pruneRequests(before: string): Promise<number> {
    let deleted = 0
    for (;;) {
      const oldest = this.db.select({ id: requestLog.id }).from(requestLog).where(lt(requestLog.timestamp, before)).limit(PRUNE_BATCH)
      const n = this.db.delete(requestLog).where(inArray(requestLog.id, oldest)).run().changes
      deleted += n
      if (n < PRUNE_BATCH) return deleted
      await delay(PRUNE_PAUSE_MS) // the server's waiting log write gets the lock now
    }
  }

  /** How many schema migrations this file has had. */
  async appliedMigrations(): Promise<number> {
    return (this.opened.sqlite.prepare('select count(*) as n from __drizzle_migrations').get() as { n: number }).n
  }

  async close(): Promise<void> {
    if (this.opened.sqlite.open) this.opened.sqlite.close()
  }
}
