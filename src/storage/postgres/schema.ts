import { sql } from 'drizzle-orm'
import { bigint, bigserial, boolean, doublePrecision, index, integer, jsonb, pgTable, pgView, primaryKey, text, uniqueIndex } from 'drizzle-orm/pg-core'
import type { DefaultOverrides, LimitOverrides } from '../../core/types.js'

/** PostgreSQL's side of the schema: the same tables as src/storage/sqlite/schema.ts, in this dialect's types. */

/** Milliseconds since the epoch (past 2^31: bigint, read back as a JS number). */
const millis = (name: string) => bigint(name, { mode: 'number' })
const count = (name: string) => bigint(name, { mode: 'number' })

/** A name belongs to one live key, whatever its case; a revoked key's name is free again. */
export const apiKeys = pgTable(
  'api_keys',
  {
    id: text('id').primaryKey(),
    name: text('name').notNull(),
    role: text('role', { enum: ['user', 'admin'] }).notNull().default('user'),
    createdAt: millis('created_at').notNull(),
    expiresAt: millis('expires_at'),
    revokedAt: millis('revoked_at'),
    limits: jsonb('limits').$type<LimitOverrides>().notNull().default(sql`'{}'::jsonb`),
    models: jsonb('models').$type<string[] | null>(),
  },
  (t) => [uniqueIndex('api_keys_live_name').on(sql`lower(${t.name})`).where(sql`${t.revokedAt} is null`)],
)

export const keySecrets = pgTable(
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

export const settings = pgTable('settings', {
  name: text('name').primaryKey(),
  value: jsonb('value').$type<DefaultOverrides>().notNull(),
})

/** The kept totals per budget day, key and model (see the SQLite schema); never pruned. */
export const usageRollup = pgTable(
  'usage_rollup',
  {
    day: text('day').notNull(),
    keyId: text('key_id').notNull(),
    model: text('model').notNull(),
    requests: count('requests').notNull().default(0),
    chatRequests: count('chat_requests').notNull().default(0),
    errors: count('errors').notNull().default(0),
    rateLimited: count('rate_limited').notNull().default(0),
    promptTokens: count('prompt_tokens').notNull().default(0),
    completionTokens: count('completion_tokens').notNull().default(0),
    totalTokens: count('total_tokens').notNull().default(0),
    costMicros: count('cost_micros'),
  },
  (t) => [primaryKey({ columns: [t.day, t.keyId, t.model] })],
)

export const dailyUsage = pgView('daily_usage').as((qb) =>
  qb
    .select({
      keyId: usageRollup.keyId,
      day: usageRollup.day,
      requests: sql<number>`sum(${usageRollup.requests})::bigint`.as('requests'),
      chatRequests: sql<number>`sum(${usageRollup.chatRequests})::bigint`.as('chat_requests'),
      promptTokens: sql<number>`sum(${usageRollup.promptTokens})::bigint`.as('prompt_tokens'),
      completionTokens: sql<number>`sum(${usageRollup.completionTokens})::bigint`.as('completion_tokens'),
      totalTokens: sql<number>`sum(${usageRollup.totalTokens})::bigint`.as('total_tokens'),
      costMicros: sql<number | null>`sum(${usageRollup.costMicros})::bigint`.as('cost_micros'),
    })
    .from(usageRollup)
    .where(sql`${usageRollup.keyId} <> ''`)
    .groupBy(usageRollup.day, usageRollup.keyId),
)

/**
 * The log. `entry_id` is unique: a batch retried after a lost commit acknowledgement (or
 * replayed from the spool) inserts nothing twice, and only rows really inserted reach the rollup.
 */
export const requestLog = pgTable(
  'request_log',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    timestamp: text('timestamp').notNull(),
    requestId: text('request_id').notNull(),
    /** The gateway's own id of the row (request ids may be the client's and repeat). */
    entryId: text('entry_id').notNull(),
    keyId: text('key_id'),
    keyName: text('key_name'),
    ip: text('ip').notNull(),
    method: text('method').notNull(),
    route: text('route').notNull(),
    model: text('model'),
    status: integer('status').notNull(),
    errorCode: text('error_code'),
    promptTokens: count('prompt_tokens').notNull().default(0),
    completionTokens: count('completion_tokens').notNull().default(0),
    totalTokens: count('total_tokens').notNull().default(0),
    estimated: boolean('estimated').notNull().default(false),
    latencyMs: doublePrecision('latency_ms').notNull(),
    upstreamMs: doublePrecision('upstream_ms'),
    queuedMs: doublePrecision('queued_ms'),
    streamed: boolean('streamed').notNull().default(false),
    userAgent: text('user_agent'),
    costMicros: count('cost_micros'),
    day: text('day').notNull(),
    requestBody: text('request_body'),
    responseBody: text('response_body'),
    /** Who served: the upstream's name, the model sent to it, the calls made. */
    upstream: text('upstream'),
    servedModel: text('served_model'),
    attempts: integer('attempts').notNull().default(0),
  },
  (t) => [
    uniqueIndex('request_log_entry_id').on(t.entryId),
    index('request_log_request_id').on(t.requestId),
    index('request_log_timestamp').on(t.timestamp),
    index('request_log_key_timestamp').on(t.keyId, t.timestamp),
    index('request_log_day_key').on(t.day, t.keyId),
  ],
)
