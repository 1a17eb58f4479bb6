import { sql } from 'drizzle-orm'
import { index, integer, primaryKey, real, sqliteTable, text, uniqueIndex } from 'drizzle-orm/sqlite-core'
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

export const dailyUsage = sqliteTable(
  'daily_usage',
  {
    keyId: text('key_id').notNull(),
    day: text('day').notNull(),
    requests: integer('requests').notNull().default(0),
    promptTokens: integer('prompt_tokens').notNull().default(0),
    completionTokens: integer('completion_tokens').notNull().default(0),
    totalTokens: integer('total_tokens').notNull().default(0),
    costMicros: integer('cost_micros'),
  },
  (t) => [primaryKey({ columns: [t.keyId, t.day] }), index('daily_usage_day').on(t.day)],
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
  },
  (t) => [index('request_log_timestamp').on(t.timestamp), index('request_log_key_timestamp').on(t.keyId, t.timestamp)],
)
