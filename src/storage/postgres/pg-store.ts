import { and, asc, desc, eq, getTableColumns, gt, gte, lt, lte, or, sql, type SQL } from 'drizzle-orm'
import type { PgColumn } from 'drizzle-orm/pg-core'
import { randomUUID } from 'node:crypto'
import type pg from 'pg'
import { nameTaken } from '../../core/keys.js'
import type { ErrorPoint, KeyPatch, LatencyCount, LatencyFigures, LogCursor, LoggedRequest, LogSpan, NewKey, RequestFilter, SeriesPoint, Store, UsageGroup, UsageRange, UsageSpan } from '../../core/store.js'
import type { ApiKey, DailyUsage, DefaultOverrides, KeySecret, RequestRow } from '../../core/types.js'
import { CHAT_ROUTES } from '../../core/usage.js'
import { overlay } from '../overlay.js'
import { ChangeListener } from './change-listener.js'
import { openDb, openPool, type PgDb, type PgOptions } from './open.js'
import { apiKeys, dailyUsage, keySecrets, requestLog, settings, usageRollup } from './schema.js'
import { toApiKey } from '../key-row.js'

const DEFAULTS = 'limits'
const EXPORT_PAGE = 500
const PRUNE_BATCH = 5_000
/** PostgreSQL's bind-parameter limit per statement (a 16-bit count). */
const MAX_PARAMS = 65_535

type KeyRow = typeof apiKeys.$inferSelect

/** The unique index on live names turns a race past KeyManager's check into a 409. */
async function guardName<T>(name: string | undefined, write: () => Promise<T>): Promise<T> {
  try {
    return await write()
  } catch (err) {
    const e = (err as { cause?: unknown }).cause ?? err
    if ((e as { code?: unknown }).code === '23505' && (e as { constraint?: unknown }).constraint === 'api_keys_live_name') throw nameTaken(name ?? '')
    throw err
  }
}

function whereOf(filter: RequestFilter): SQL | undefined {
  return and(
    filter.since !== undefined ? gte(requestLog.timestamp, filter.since) : undefined,
    filter.until !== undefined ? lt(requestLog.timestamp, filter.until) : undefined,
    filter.keyId !== undefined ? eq(requestLog.keyId, filter.keyId) : undefined,
    filter.status !== undefined ? eq(requestLog.status, filter.status) : undefined,
  )
}

/** The log's columns but the id, in one order: the row's property and its SQL name. */
const LOG_COLUMNS = Object.entries(getTableColumns(requestLog))
  .filter(([property]) => property !== 'id')
  .map(([property, column]) => ({ property: property as keyof RequestRow, name: column.name, type: column.getSQLType() }))

const ROWS_PER_STATEMENT = Math.floor(MAX_PARAMS / LOG_COLUMNS.length) - 1
/** Batch sizes up to this get a prepared statement of their own. */
const NAMED_UP_TO = 64

/**
 * One statement per chunk of a batch: the rows go in (a request id already there is skipped,
 * so a retried or replayed batch inserts nothing twice), and only the rows really inserted
 * are summed into the rollup, in (day, key, model) order so that two gateways committing at
 * once take the rollup's row locks in the same order and cannot deadlock.
 */
function appendStatement(count: number): string {
  const names = LOG_COLUMNS.map((c) => `"${c.name}"`).join(', ')
  const tuples: string[] = []
  for (let r = 0; r < count; r++) {
    tuples.push(`(${LOG_COLUMNS.map((c, i) => `$${r * LOG_COLUMNS.length + i + 2}::${c.type}`).join(', ')})`)
  }
  return `with ins as (
    insert into request_log (${names}) values ${tuples.join(', ')}
    on conflict (entry_id) do nothing
    returning day, key_id, model, route, status, prompt_tokens, completion_tokens, total_tokens, cost_micros
  )
  insert into usage_rollup (day, key_id, model, requests, chat_requests, errors, rate_limited, prompt_tokens, completion_tokens, total_tokens, cost_micros)
  select day, coalesce(key_id, ''), coalesce(model, ''), count(*), count(*) filter (where route = any($1::text[])),
    count(*) filter (where status >= 400), count(*) filter (where status = 429),
    sum(prompt_tokens), sum(completion_tokens), sum(total_tokens), sum(cost_micros)
  from ins group by 1, 2, 3 order by 1, 2, 3
  on conflict (day, key_id, model) do update set
    requests = usage_rollup.requests + excluded.requests,
    chat_requests = usage_rollup.chat_requests + excluded.chat_requests,
    errors = usage_rollup.errors + excluded.errors,
    rate_limited = usage_rollup.rate_limited + excluded.rate_limited,
    prompt_tokens = usage_rollup.prompt_tokens + excluded.prompt_tokens,
    completion_tokens = usage_rollup.completion_tokens + excluded.completion_tokens,
    total_tokens = usage_rollup.total_tokens + excluded.total_tokens,
    cost_micros = case when excluded.cost_micros is null then usage_rollup.cost_micros else coalesce(usage_rollup.cost_micros, 0) + excluded.cost_micros end`
}

/** bigint sums and counts as JS numbers (drizzle hands them over as strings). */
const num = (v: unknown): number => Number(v)
const numOrNull = (v: unknown): number | null => (v === null ? null : Number(v))

function dashboardOnly(): Error {
  return new Error('The dashboard does not run on PostgreSQL yet')
}

const groupOrder = (r: RequestRow) => `${r.day}\0${r.keyId ?? ''}\0${r.model ?? ''}`

/** The chat routes as a query parameter (built once, not per batch). */
const CHAT_ROUTE_LIST = [...CHAT_ROUTES]

export class PgStore implements Store {
  readonly kind = 'postgres' as const
  private readonly pool: pg.Pool
  private readonly ready: Promise<PgDb>
  private readonly changes: ChangeListener
  private readonly statements = new Map<number, string>()

  constructor(url: string, options: PgOptions = {}) {
    this.pool = openPool(url, options)
    this.ready = openDb(this.pool)
    this.ready.catch(() => {}) // reported by the first call that awaits it
    this.changes = new ChangeListener(url)
  }

  /** Resolves once the schema is up to date (rejects with why it could not be). */
  async whenReady(): Promise<void> {
    await this.ready
  }

  async createKey(key: NewKey, secret: KeySecret): Promise<void> {
    const db = await this.ready
    await guardName(key.name, () =>
      db.transaction(async (tx) => {
        await tx.insert(apiKeys).values({ ...key, role: key.admin ? 'admin' : 'user' })
        await tx.insert(keySecrets).values(secret)
      }),
    )
  }

  async updateKey(id: string, patch: KeyPatch): Promise<void> {
    const db = await this.ready
    await guardName(patch.name, () =>
      db.transaction(async (tx) => {
        const set: Partial<KeyRow> = {}
        if (patch.limits !== undefined) {
          // Read under a row lock: two CLI runs cannot lose each other's limits.
          const [current] = await tx.select({ limits: apiKeys.limits }).from(apiKeys).where(eq(apiKeys.id, id)).for('update')
          set.limits = overlay(current?.limits ?? {}, patch.limits)
        }
        if (patch.name !== undefined) set.name = patch.name
        if (patch.admin !== undefined) set.role = patch.admin ? 'admin' : 'user'
        if (patch.models !== undefined) set.models = patch.models
        if (patch.expiresAt !== undefined) set.expiresAt = patch.expiresAt
        if (Object.keys(set).length > 0) await tx.update(apiKeys).set(set).where(eq(apiKeys.id, id))
      }),
    )
  }

  async revokeKey(id: string, at: number): Promise<void> {
    await (await this.ready).update(apiKeys).set({ revokedAt: at }).where(eq(apiKeys.id, id))
  }

  async deleteKey(id: string): Promise<void> {
    await (await this.ready).delete(apiKeys).where(eq(apiKeys.id, id)) // its secrets go by the foreign key's cascade
  }

  async rotateSecret(keyId: string, secret: KeySecret, retireAt: number): Promise<void> {
    const db = await this.ready
    await db.transaction(async (tx) => {
      await tx
        .update(keySecrets)
        .set({ expiresAt: retireAt })
        .where(and(eq(keySecrets.keyId, keyId), or(sql`${keySecrets.expiresAt} is null`, sql`${keySecrets.expiresAt} > ${retireAt}`)))
      await tx.insert(keySecrets).values(secret)
    })
  }

  async listKeys(): Promise<ApiKey[]> {
    return (await (await this.ready).select().from(apiKeys).orderBy(apiKeys.createdAt, apiKeys.id)).map(toApiKey)
  }

  async findKey(idOrName: string): Promise<ApiKey | undefined> {
    const [row] = await (await this.ready)
      .select()
      .from(apiKeys)
      .where(or(eq(apiKeys.id, idOrName), eq(sql`lower(${apiKeys.name})`, sql`lower(${idOrName})`)))
      .orderBy(desc(sql`${apiKeys.id} = ${idOrName}`), asc(sql`${apiKeys.revokedAt} is not null`), sql`${apiKeys.revokedAt} desc nulls last`)
      .limit(1)
    return row ? toApiKey(row) : undefined
  }

  async findSecrets(by: { prefix: string } | { hash: string }): Promise<KeySecret[]> {
    return (await this.ready)
      .select()
      .from(keySecrets)
      .where('prefix' in by ? eq(keySecrets.prefix, by.prefix) : eq(keySecrets.hash, by.hash))
  }

  async listLiveSecrets(now: number): Promise<KeySecret[]> {
    return (await this.ready)
      .select()
      .from(keySecrets)
      .where(or(sql`${keySecrets.expiresAt} is null`, sql`${keySecrets.expiresAt} > ${now}`))
  }

  async getDefaults(): Promise<DefaultOverrides> {
    const [row] = await (await this.ready).select().from(settings).where(eq(settings.name, DEFAULTS))
    return row?.value ?? {}
  }

  async mergeDefaults(changes: DefaultOverrides): Promise<DefaultOverrides> {
    const db = await this.ready
    return db.transaction(async (tx) => {
      // The row exists first, so the read below locks it: concurrent merges go one after the other.
      await tx.insert(settings).values({ name: DEFAULTS, value: {} }).onConflictDoNothing()
      const [current] = await tx.select().from(settings).where(eq(settings.name, DEFAULTS)).for('update')
      const merged = overlay(current?.value ?? {}, changes)
      await tx.update(settings).set({ value: merged }).where(eq(settings.name, DEFAULTS))
      return merged
    })
  }

  changeVersion(): number {
    return this.changes.current()
  }

  /**
   * One transaction for the batch. A batch too large for one statement's parameters is sorted
   * by (day, key, model) first, so its chunks too take the rollup's locks in one order.
   */
  async appendRequests(rows: RequestRow[]): Promise<boolean> {
    if (rows.length === 0) return true
    await this.ready
    const ordered = rows.length > ROWS_PER_STATEMENT ? [...rows].sort((a, b) => (groupOrder(a) < groupOrder(b) ? -1 : groupOrder(a) > groupOrder(b) ? 1 : 0)) : rows
    const statement = (chunk: RequestRow[]) => {
      const values: unknown[] = [CHAT_ROUTE_LIST]
      for (const row of chunk) for (const c of LOG_COLUMNS) values.push(c.property === 'entryId' ? (row.entryId ?? randomUUID()) : row[c.property])
      // Named, so each connection parses and plans a batch size once (the usual sizes are few and small).
      return { name: chunk.length <= NAMED_UP_TO || chunk.length === ROWS_PER_STATEMENT ? `gw_append_${chunk.length}` : undefined, text: this.statementFor(chunk.length), values }
    }
    // One statement is its own transaction: the usual batch costs one round trip.
    if (ordered.length <= ROWS_PER_STATEMENT) {
      await this.pool.query(statement(ordered))
      return true
    }
    const client = await this.pool.connect()
    try {
      await client.query('begin')
      for (let start = 0; start < ordered.length; start += ROWS_PER_STATEMENT) await client.query(statement(ordered.slice(start, start + ROWS_PER_STATEMENT)))
      await client.query('commit')
      return true
    } catch (err) {
      await client.query('rollback').catch(() => {})
      throw err
    } finally {
      client.release()
    }
  }

  private statementFor(count: number): string {
    let text = this.statements.get(count)
    if (!text) {
      text = appendStatement(count)
      if (count <= NAMED_UP_TO || count === ROWS_PER_STATEMENT) this.statements.set(count, text)
    }
    return text
  }

  async dailyUsage(day: string): Promise<DailyUsage[]> {
    const rows = await (await this.ready).select().from(dailyUsage).where(eq(dailyUsage.day, day))
    return rows.map((r) => ({
      ...r,
      requests: num(r.requests),
      chatRequests: num(r.chatRequests),
      promptTokens: num(r.promptTokens),
      completionTokens: num(r.completionTokens),
      totalTokens: num(r.totalTokens),
      costMicros: numOrNull(r.costMicros),
    }))
  }

  async usageBy(group: 'key' | 'day' | 'model', range: UsageRange): Promise<UsageGroup[]> {
    const db = await this.ready
    const g = { key: usageRollup.keyId, day: usageRollup.day, model: usageRollup.model }[group]
    const total = (column: PgColumn) => sql<number>`sum(${column})::bigint`
    const sums = await db
      .select({
        group: g,
        requests: total(usageRollup.requests),
        chatRequests: total(usageRollup.chatRequests),
        errors: total(usageRollup.errors),
        rateLimited: total(usageRollup.rateLimited),
        promptTokens: total(usageRollup.promptTokens),
        completionTokens: total(usageRollup.completionTokens),
        totalTokens: total(usageRollup.totalTokens),
        costMicros: sql<number | null>`sum(${usageRollup.costMicros})::bigint`,
      })
      .from(usageRollup)
      .where(and(gte(usageRollup.day, range.fromDay), lte(usageRollup.day, range.toDay), range.keyId !== undefined ? eq(usageRollup.keyId, range.keyId) : undefined))
      .groupBy(g)
      .orderBy(g)
    const lg = { key: sql`coalesce(${requestLog.keyId}, '')`, day: sql`${requestLog.day}`, model: sql`coalesce(${requestLog.model}, '')` }[group]
    const where = and(gte(requestLog.day, range.fromDay), lte(requestLog.day, range.toDay), range.keyId !== undefined ? eq(requestLog.keyId, range.keyId) : undefined)
    const latency = await db.execute<{ grp: string; n: number; p50: number | null; p95: number | null }>(sql`
      select ${lg} as grp, count(*)::bigint as n,
        percentile_disc(0.5) within group (order by ${requestLog.latencyMs}) as p50,
        percentile_disc(0.95) within group (order by ${requestLog.latencyMs}) as p95
      from ${requestLog} where ${where} group by 1`)
    const byGroup = new Map(latency.rows.map((r) => [r.grp, { n: num(r.n), p50: numOrNull(r.p50), p95: numOrNull(r.p95) }]))
    return sums.map((raw) => {
      const s = {
        group: raw.group,
        requests: num(raw.requests),
        chatRequests: num(raw.chatRequests),
        errors: num(raw.errors),
        rateLimited: num(raw.rateLimited),
        promptTokens: num(raw.promptTokens),
        completionTokens: num(raw.completionTokens),
        totalTokens: num(raw.totalTokens),
        costMicros: numOrNull(raw.costMicros),
      }
      // Percentiles need every request's latency: unknown once some of the group was pruned.
      const l = byGroup.get(s.group)
      const whole = l !== undefined && l.n === s.requests
      return { ...s, p50Ms: whole ? l.p50 : null, p95Ms: whole ? l.p95 : null }
    })
  }

  /** The log in id order, a page at a time (keyset on the id): no transaction spans the export. */
  async *iterateRequests(filter: RequestFilter): AsyncIterableIterator<RequestRow> {
    const db = await this.ready
    let after = 0
    for (;;) {
      const page = await db
        .select()
        .from(requestLog)
        .where(and(whereOf(filter), gt(requestLog.id, after)))
        .orderBy(requestLog.id)
        .limit(EXPORT_PAGE)
      for (const { id, ...row } of page) yield row
      if (page.length < EXPORT_PAGE) return
      after = page[page.length - 1].id
    }
  }

  async countRequests(filter: RequestFilter): Promise<number> {
    const [r] = await (await this.ready).select({ n: sql<number>`count(*)::bigint` }).from(requestLog).where(whereOf(filter))
    return num(r.n)
  }

  async logSpan(before: string): Promise<LogSpan> {
    const [r] = await (await this.ready)
      .select({ rows: sql<number>`count(*)::bigint`, first: sql<string | null>`min(${requestLog.timestamp})`, last: sql<string | null>`max(${requestLog.timestamp})` })
      .from(requestLog)
      .where(lt(requestLog.timestamp, before))
    return { rows: num(r.rows), first: r.first, last: r.last }
  }

  /** Small transactions (each its own statement), so no long lock or huge WAL burst; the rollup stays. */
  async pruneRequests(before: string): Promise<number> {
    const db = await this.ready
    let deleted = 0
    for (;;) {
      const oldest = db.select({ id: requestLog.id }).from(requestLog).where(lt(requestLog.timestamp, before)).limit(PRUNE_BATCH)
      const result = await db.delete(requestLog).where(sql`${requestLog.id} in (${oldest})`)
      const n = result.rowCount ?? 0
      deleted += n
      if (n < PRUNE_BATCH) return deleted
    }
  }

  // The dashboard's reads (issue 16) have no PostgreSQL queries yet: the gateway serves no
  // dashboard on PostgreSQL (compose.ts), so nothing calls these; they refuse if something does.
  async usageSeries(_span: UsageSpan, _by: 'all' | 'key' | 'model', _bucketMinutes: number): Promise<SeriesPoint[]> {
    throw dashboardOnly()
  }

  async latencyCounts(_fromHour: string, _toHour: string): Promise<LatencyCount[]> {
    throw dashboardOnly()
  }

  async latency(_span: UsageSpan): Promise<LatencyFigures> {
    throw dashboardOnly()
  }

  async errorsBy(_window: { since: string; until: string }, _bucket: 'day' | number): Promise<ErrorPoint[]> {
    throw dashboardOnly()
  }

  async listRequests(_filter: RequestFilter, _before: LogCursor | null, _limit: number): Promise<LoggedRequest[]> {
    throw dashboardOnly()
  }

  async getRequest(_id: number): Promise<RequestRow | undefined> {
    throw dashboardOnly()
  }

  async appliedMigrations(): Promise<number> {
    const r = await (await this.ready).execute<{ n: number }>(sql`select count(*)::bigint as n from drizzle.__drizzle_migrations`)
    return num(r.rows[0].n)
  }

  async close(): Promise<void> {
    await this.changes.close()
    await this.ready.catch(() => {})
    await this.pool.end()
  }
}
