import { sql } from 'drizzle-orm'
import { index, integer, primaryKey, real, sqliteTable, sqliteView, text, uniqueIndex } from 'drizzle-orm/sqlite-core'
import type { DefaultOverrides, LimitOverrides } from '../../core/types.js'

/** Milliseconds since the epoch. */
const millis = (name: string) => integer(name)

/** A name belongs to one live key, whatever its case; a revoked key's name is free again. */
export const apiKeys = sqliteTable(
  'api_keys',
  {
    id: text('id').primaryKey(),
    name: text('name').notNull(),
    role: text('role', { enum: ['user', 'admin'] }).notNull().default('user'),
    createdAt: millis('created_at').notNull(),
    expiresAt: millis('expires_at'),
    revokedAt: millis('revoked_at'),
    limits: text('limits', { mode: 'json' }).$type<LimitOverrides>().notNull().default(sql`'{}'`),
    models: text('models', { mode: 'json' }).$type<string[] | null>(),
  },
  (t) => [uniqueIndex('api_keys_live_name').on(sql`lower(${t.name})`).where(sql`${t.revokedAt} is null`)],
)

/** A key may have several secrets while a rotation's grace period runs. Only hashes are stored. */
export const keySecrets = sqliteTable(
  'key_secrets',
  {
    id: text('id').primaryKey(),
    keyId: text('key_id')
      .notNull()
      .references(() => apiKeys.id, { onDelete: 'cascade' }),
    prefix: text('prefix').notNull(),
    hash: text('hash').notNull().unique(),
    createdAt: millis('created_at').notNull(),
    expiresAt: millis('expires_at'),
  },
  (t) => [index('key_secrets_prefix').on(t.prefix), index('key_secrets_key').on(t.keyId)],
)

export const settings = sqliteTable('settings', {
  name: text('name').primaryKey(),
  value: text('value', { mode: 'json' }).$type<DefaultOverrides>().notNull(),
})

/** The sums both rollups keep beside their request counts. */
const outcomeSums = () => ({
  /** Answers with status >= 400 (429s included). */
  errors: integer('errors').notNull().default(0),
  rateLimited: integer('rate_limited').notNull().default(0),
  promptTokens: integer('prompt_tokens').notNull().default(0),
  completionTokens: integer('completion_tokens').notNull().default(0),
  totalTokens: integer('total_tokens').notNull().default(0),
  /** Null while no request of the group had a priced model. */
  costMicros: integer('cost_micros'),
})

/**
 * The kept totals: requests and tokens summed per budget day, key and model, written in the
 * same transaction as the log rows and never pruned. Every usage report reads them, so
 * reports agree before and after `logs prune`. No key and no model are stored as ''.
 */
export const usageRollup = sqliteTable(
  'usage_rollup',
  {
    day: text('day').notNull(),
    keyId: text('key_id').notNull(),
    model: text('model').notNull(),
    /** Every request: any route, any status. */
    requests: integer('requests').notNull().default(0),
    /** Requests to the chat routes (`/chat`, `/v1/chat/completions`). */
    chatRequests: integer('chat_requests').notNull().default(0),
    ...outcomeSums(),
  },
  (t) => [primaryKey({ columns: [t.day, t.keyId, t.model] })],
)

/**
 * The same sums per UTC hour (`YYYY-MM-DDTHH`), key and model, written with them: the
 * dashboard's 24-hour views read these instead of the log. Never pruned.
 */
export const usageHourly = sqliteTable(
  'usage_hourly',
  {
    hour: text('hour').notNull(),
    keyId: text('key_id').notNull(),
    model: text('model').notNull(),
    requests: integer('requests').notNull().default(0),
    ...outcomeSums(),
  },
  (t) => [primaryKey({ columns: [t.hour, t.keyId, t.model] })],
)

/** Requests per UTC hour and latency bucket (src/core/latency-histogram.ts): p50/p95 of any range without sorting the log. */
export const latencyHourly = sqliteTable(
  'latency_hourly',
  {
    hour: text('hour').notNull(),
    bucket: integer('bucket').notNull(),
    requests: integer('requests').notNull().default(0),
  },
  (t) => [primaryKey({ columns: [t.hour, t.bucket] })],
)

/** Per key and day, as the budget ledger reads it (kept for scripts that read the old table). */
export const dailyUsage = sqliteView('daily_usage').as((qb) =>
  qb
    .select({
      keyId: usageRollup.keyId,
      day: usageRollup.day,
      requests: sql<number>`sum(${usageRollup.requests})`.as('requests'),
      chatRequests: sql<number>`sum(${usageRollup.chatRequests})`.as('chat_requests'),
      promptTokens: sql<number>`sum(${usageRollup.promptTokens})`.as('prompt_tokens'),
      completionTokens: sql<number>`sum(${usageRollup.completionTokens})`.as('completion_tokens'),
      totalTokens: sql<number>`sum(${usageRollup.totalTokens})`.as('total_tokens'),
      costMicros: sql<number | null>`sum(${usageRollup.costMicros})`.as('cost_micros'),
    })
    .from(usageRollup)
    .where(sql`${usageRollup.keyId} <> ''`)
    .groupBy(usageRollup.day, usageRollup.keyId),
)

export const requestLog = sqliteTable(
  'request_log',
  {
    id: integer('id').primaryKey(),
    timestamp: text('timestamp').notNull(),
    requestId: text('request_id').notNull(),
    keyId: text('key_id'),
    keyName: text('key_name'),
    ip: text('ip').notNull(),
    method: text('method').notNull(),
    route: text('route').notNull(),
    model: text('model'),
    status: integer('status').notNull(),
    errorCode: text('error_code'),
    promptTokens: integer('prompt_tokens').notNull().default(0),
    completionTokens: integer('completion_tokens').notNull().default(0),
    totalTokens: integer('total_tokens').notNull().default(0),
    estimated: integer('estimated', { mode: 'boolean' }).notNull().default(false),
    latencyMs: real('latency_ms').notNull(),
    upstreamMs: real('upstream_ms'),
    queuedMs: real('queued_ms'),
    streamed: integer('streamed', { mode: 'boolean' }).notNull().default(false),
    userAgent: text('user_agent'),
    costMicros: integer('cost_micros'),
    day: text('day').notNull(),
    requestBody: text('request_body'),
    responseBody: text('response_body'),
    /** Who served (issue 15): the upstream's name, the model sent to it, the calls made. */
    upstream: text('upstream'),
    servedModel: text('served_model'),
    attempts: integer('attempts').notNull().default(0),
  },
  (t) => [
    index('request_log_timestamp').on(t.timestamp),
    index('request_log_key_timestamp').on(t.keyId, t.timestamp),
    // Latency percentiles of a day range (usage reports), optionally of one key.
    index('request_log_day_key').on(t.day, t.keyId),
    // The dashboard's errors by code and its log filtered to errors: the few failed rows only, covering.
    index('request_log_errors').on(t.timestamp, t.day, t.status, t.errorCode).where(sql`${t.status} >= 400`),
  ],
)
