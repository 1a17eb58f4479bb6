import type { Statement } from 'better-sqlite3'
import { and, asc, count, desc, eq, gte, inArray, lt, or, sql, type SQL } from 'drizzle-orm'
import { nameTaken } from '../../core/keys.js'
import type { ApiKey, DailyUsage, DefaultOverrides, KeySecret, RequestRow } from '../../core/types.js'
import type { KeyPatch, NewKey, RequestFilter, Store, UsageGroup } from '../store.js'
import { isBusy, openDatabase, type OpenedDatabase } from './open.js'
import { apiKeys, dailyUsage, keySecrets, requestLog, settings } from './schema.js'

const DEFAULTS = 'limits'

/** `logs prune` deletes at most this many rows per transaction, so it never holds the write lock for long. */
export const PRUNE_BATCH = 5_000
/**
 * Between two prune transactions the write lock stays free this long, longer than the
 * server's longest wait between two tries of a busy log write (request-log.ts).
 */
const PRUNE_PAUSE_MS = 20

/** Sleeps without returning to the event loop (the store's methods are synchronous). */
function pause(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
}

/** `{...a, ...b}` where a property of `b` set to undefined removes it. */
function overlay<T extends object>(a: T, b: T): T {
  const out = { ...a, ...b } as Record<string, unknown>
  for (const [k, v] of Object.entries(out)) if (v === undefined) delete out[k]
  return out as T
}

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

function toApiKey(row: KeyRow): ApiKey {
  return {
    id: row.id,
    name: row.name,
    admin: row.role === 'admin',
    createdAt: row.createdAt,
    expiresAt: row.expiresAt,
    revokedAt: row.revokedAt,
    limits: row.limits ?? {},
    models: row.models ?? null,
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
  }
}

function whereOf(filter: RequestFilter): SQL | undefined {
  return and(
    filter.since !== undefined ? gte(requestLog.timestamp, filter.since) : undefined,
    filter.until !== undefined ? lt(requestLog.timestamp, filter.until) : undefined,
    filter.keyId !== undefined ? eq(requestLog.keyId, filter.keyId) : undefined,
    filter.status !== undefined ? eq(requestLog.status, filter.status) : undefined,
    filter.day !== undefined ? eq(requestLog.day, filter.day) : undefined,
  )
}

const GROUP_COLUMN = {
  key: sql`coalesce(${requestLog.keyId}, '')`,
  day: sql`${requestLog.day}`,
  model: sql`coalesce(${requestLog.model}, '')`,
} as const

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

/** A batch's rows summed per key and day; a cost stays null when no row of the group had one. */
function sumByKeyAndDay(rows: RequestRow[]): Iterable<DailyUsage> {
  const sums = new Map<string, DailyUsage>()
  for (const row of rows) {
    if (row.keyId === null) continue
    const id = `${row.keyId}\0${row.day}`
    let sum = sums.get(id)
    if (!sum) {
      sum = { keyId: row.keyId, day: row.day, requests: 0, promptTokens: 0, completionTokens: 0, totalTokens: 0, costMicros: null }
      sums.set(id, sum)
    }
    sum.requests++
    sum.promptTokens += row.promptTokens
    sum.completionTokens += row.completionTokens
    sum.totalTokens += row.totalTokens
    if (row.costMicros !== null) sum.costMicros = (sum.costMicros ?? 0) + row.costMicros
  }
  return sums.values()
}

export class SqliteStore implements Store {
  private readonly opened: OpenedDatabase
  private readonly insertRow: (values: object) => unknown
  private readonly upsertUsage: (values: object) => unknown
  /** better-sqlite3's own transaction function, built once: the group commit runs it per batch. */
  private readonly appendBatch: ReturnType<OpenedDatabase['sqlite']['transaction']>
  /** Prepared once: it runs on every request. */
  private readonly dataVersion: Statement<[], number>

  constructor(opened: OpenedDatabase) {
    this.opened = opened
    const { db } = opened
    this.insertRow = rawStatement(
      opened.sqlite,
      db
      .insert(requestLog)
      .values({
        timestamp: sql.placeholder('timestamp'),
        requestId: sql.placeholder('requestId'),
        keyId: sql.placeholder('keyId'),
        keyName: sql.placeholder('keyName'),
        ip: sql.placeholder('ip'),
        method: sql.placeholder('method'),
        route: sql.placeholder('route'),
        model: sql.placeholder('model'),
        status: sql.placeholder('status'),
        errorCode: sql.placeholder('errorCode'),
        promptTokens: sql.placeholder('promptTokens'),
        completionTokens: sql.placeholder('completionTokens'),
        totalTokens: sql.placeholder('totalTokens'),
        estimated: sql.placeholder('estimated'),
        latencyMs: sql.placeholder('latencyMs'),
        upstreamMs: sql.placeholder('upstreamMs'),
        queuedMs: sql.placeholder('queuedMs'),
        streamed: sql.placeholder('streamed'),
        userAgent: sql.placeholder('userAgent'),
        costMicros: sql.placeholder('costMicros'),
        day: sql.placeholder('day'),
        requestBody: sql.placeholder('requestBody'),
        responseBody: sql.placeholder('responseBody'),
      }),
    )
    this.upsertUsage = rawStatement(
      opened.sqlite,
      db
      .insert(dailyUsage)
      .values({
        keyId: sql.placeholder('keyId'),
        day: sql.placeholder('day'),
        requests: sql.placeholder('requests'),
        promptTokens: sql.placeholder('promptTokens'),
        completionTokens: sql.placeholder('completionTokens'),
        totalTokens: sql.placeholder('totalTokens'),
        costMicros: sql.placeholder('costMicros'),
      })
      .onConflictDoUpdate({
        target: [dailyUsage.keyId, dailyUsage.day],
        set: {
          requests: sql`${dailyUsage.requests} + excluded.requests`,
          promptTokens: sql`${dailyUsage.promptTokens} + excluded.prompt_tokens`,
          completionTokens: sql`${dailyUsage.completionTokens} + excluded.completion_tokens`,
          totalTokens: sql`${dailyUsage.totalTokens} + excluded.total_tokens`,
          costMicros: sql`case when excluded.cost_micros is null then ${dailyUsage.costMicros} else coalesce(${dailyUsage.costMicros}, 0) + excluded.cost_micros end`,
        },
      }),
    )
    this.dataVersion = opened.sqlite.prepare<[], number>('PRAGMA data_version').pluck()
    this.appendBatch = opened.sqlite.transaction((rows: RequestRow[]) => {
      for (const row of rows) this.insertRow(row)
      // Daily usage is the log summed per key and day (every request made with the key): one
      // upsert per key and day of the batch, not one per row.
      for (const sum of sumByKeyAndDay(rows)) this.upsertUsage(sum)
    })
  }

  static open(path: string, options: { busyTimeoutMs?: number } = {}): SqliteStore {
    return new SqliteStore(openDatabase(path, options))
  }

  private get db() {
    return this.opened.db
  }

  createKey(key: NewKey, secret: KeySecret): void {
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

  updateKey(id: string, patch: KeyPatch): void {
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

  revokeKey(id: string, at: number): void {
    this.db.update(apiKeys).set({ revokedAt: at }).where(eq(apiKeys.id, id)).run()
  }

  deleteKey(id: string): void {
    this.db.delete(apiKeys).where(eq(apiKeys.id, id)).run() // its secrets go by the foreign key's cascade
  }

  rotateSecret(keyId: string, secret: KeySecret, retireAt: number): void {
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

  listKeys(): ApiKey[] {
    return this.db.select().from(apiKeys).orderBy(apiKeys.createdAt).all().map(toApiKey)
  }

  findKey(idOrName: string): ApiKey | undefined {
    const row = this.db
      .select()
      .from(apiKeys)
      .where(or(eq(apiKeys.id, idOrName), eq(sql`lower(${apiKeys.name})`, sql`lower(${idOrName})`)))
      .orderBy(desc(eq(apiKeys.id, idOrName)), asc(sql`${apiKeys.revokedAt} is not null`), desc(apiKeys.revokedAt))
      .get()
    return row ? toApiKey(row) : undefined
  }

  findSecrets(by: { prefix: string } | { hash: string }): KeySecret[] {
    return this.db
      .select()
      .from(keySecrets)
      .where('prefix' in by ? eq(keySecrets.prefix, by.prefix) : eq(keySecrets.hash, by.hash))
      .all()
  }

  listLiveSecrets(now: number): KeySecret[] {
    return this.db
      .select()
      .from(keySecrets)
      .where(or(sql`${keySecrets.expiresAt} is null`, sql`${keySecrets.expiresAt} > ${now}`))
      .all()
  }

  getDefaults(): DefaultOverrides {
    return this.db.select().from(settings).where(eq(settings.name, DEFAULTS)).get()?.value ?? {}
  }

  mergeDefaults(changes: DefaultOverrides): DefaultOverrides {
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

  appendRequests(rows: RequestRow[]): boolean {
    try {
      this.appendBatch.immediate(rows)
      return true
    } catch (err) {
      // The transaction rolled back whole: nothing of the batch is written, so a retry counts it once.
      if (isBusy(err)) return false
      throw err
    }
  }

  dailyUsage(day: string): DailyUsage[] {
    return this.db.select().from(dailyUsage).where(eq(dailyUsage.day, day)).all()
  }

  usageBy(group: 'key' | 'day' | 'model', filter: RequestFilter): UsageGroup[] {
    const g = GROUP_COLUMN[group]
    const where = whereOf(filter) ?? sql`1 = 1`
    const rows = this.db.all<{
      grp: string
      requests: number
      errors: number
      rate_limited: number
      prompt_tokens: number
      completion_tokens: number
      total_tokens: number
      cost_micros: number | null
      p50: number | null
      p95: number | null
    }>(sql`
      with r as (
        select ${g} as grp, status, prompt_tokens, completion_tokens, total_tokens, cost_micros, latency_ms,
          row_number() over (partition by ${g} order by latency_ms) as rn,
          count(*) over (partition by ${g}) as n
        from ${requestLog} where ${where}
      )
      select grp, count(*) as requests,
        sum(status >= 400) as errors, sum(status = 429) as rate_limited,
        sum(prompt_tokens) as prompt_tokens, sum(completion_tokens) as completion_tokens,
        sum(total_tokens) as total_tokens, sum(cost_micros) as cost_micros,
        min(case when rn >= 0.5 * n then latency_ms end) as p50,
        min(case when rn >= 0.95 * n then latency_ms end) as p95
      from r group by grp order by grp`)
    return rows.map((r) => ({
      group: r.grp,
      requests: r.requests,
      errors: r.errors,
      rateLimited: r.rate_limited,
      promptTokens: r.prompt_tokens,
      completionTokens: r.completion_tokens,
      totalTokens: r.total_tokens,
      costMicros: r.cost_micros,
      p50Ms: r.p50,
      p95Ms: r.p95,
    }))
  }

  *iterateRequests(filter: RequestFilter): IterableIterator<RequestRow> {
    const query = this.db.select().from(requestLog).where(whereOf(filter)).orderBy(requestLog.id).toSQL()
    const statement = this.opened.sqlite.prepare(query.sql.replace(/^select .*? from/, 'select * from'))
    for (const raw of statement.iterate(...(query.params as unknown[]))) yield toRequestRow(raw as RawRequestRow)
  }

  countRequests(filter: RequestFilter): number {
    return this.db.select({ n: count() }).from(requestLog).where(whereOf(filter)).get()?.n ?? 0
  }

  pruneRequests(before: string): number {
    let deleted = 0
    for (;;) {
      const oldest = this.db.select({ id: requestLog.id }).from(requestLog).where(lt(requestLog.timestamp, before)).limit(PRUNE_BATCH)
      const n = this.db.delete(requestLog).where(inArray(requestLog.id, oldest)).run().changes
      deleted += n
      if (n < PRUNE_BATCH) return deleted
      pause(PRUNE_PAUSE_MS) // the server's waiting log write gets the lock now
    }
  }

  /** How many schema migrations this file has had. */
  appliedMigrations(): number {
    return (this.opened.sqlite.prepare('select count(*) as n from __drizzle_migrations').get() as { n: number }).n
  }

  close(): void {
    if (this.opened.sqlite.open) this.opened.sqlite.close()
  }
}
