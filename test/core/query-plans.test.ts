import { collect } from '../support/log-rows.js'
/**
 * Reads use indexes: every query the usage reports, `logs export` and `logs prune` run is
 * traced from the store's own connection and checked with EXPLAIN QUERY PLAN. None may scan
 * request_log or the usage rollup whole.
 */
import Database from 'better-sqlite3'
import { drizzle } from 'drizzle-orm/better-sqlite3'
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { KeyManager } from '../../src/core/keys.js'
import * as schema from '../../src/storage/sqlite/schema.js'
import { SqliteStore } from '../../src/storage/sqlite/sqlite-store.js'
import { tempDir } from '../support/gateway.js'
import { requestRow } from '../support/log-rows.js'

let dir: string
let sqlite: Database.Database
let store: SqliteStore
let keyId: string
const traced: string[] = []
const DAY = '2026-11-20'

beforeAll(async () => {
  dir = tempDir('gw-plans-')
  const file = join(dir, 'gateway.db')
  SqliteStore.open(file).close() // created and migrated the usual way
  sqlite = new Database(file, { verbose: (text) => traced.push(String(text)) })
  store = new SqliteStore({ sqlite, db: drizzle({ client: sqlite, schema }) })
  keyId = (await new KeyManager(store, { now: Date.now }).create({ name: 'planned' })).key.id
  await store.appendRequests(
    Array.from({ length: 50 }, (_, i) =>
      requestRow({ timestamp: `${DAY}T10:00:${String(i).padStart(2, '0')}.000Z`, day: DAY, keyId: i % 2 ? keyId : null, status: i % 5 ? 200 : 429, latencyMs: i }),
    ),
  )
})

afterAll(async () => {
  await store.close()
  rmSync(dir, { recursive: true, force: true })
})

/** Runs `read`, then the plan of each statement it ran on the log or the rollup. */
async function plansOf(read: () => Promise<unknown>): Promise<{ sql: string; plan: string[] }[]> {
  traced.length = 0
  await read()
  return traced
    .filter((text) => /\b(request_log|usage_rollup|daily_usage|usage_hourly|latency_hourly)\b/.test(text))
    .map((text) => ({ sql: text, plan: (sqlite.prepare(`explain query plan ${text}`).all() as { detail: string }[]).map((r) => r.detail) }))
}

const range = { fromDay: '2026-11-14', toDay: DAY }
const window = { since: `${DAY}T00:00:00.000Z`, until: `${DAY}T23:59:59.000Z` }
const hour = { since: `${DAY}T09:30:00.000Z`, until: `${DAY}T10:30:00.000Z` }

describe('query plans', () => {
  it.each([
    ['usage today / GET /usage: daily totals per key', () => store.dailyUsage(DAY)],
    ['usage --by key', () => store.usageBy('key', range)],
    ['usage --by day --key', () => store.usageBy('day', { ...range, keyId })],
    ['usage --by model', () => store.usageBy('model', range)],
    ['logs export', () => collect(store.iterateRequests({}))],
    ['logs export --since --until --key --status', () => collect(store.iterateRequests({ since: `${DAY}T10:00:10.000Z`, until: `${DAY}T10:00:40.000Z`, keyId, status: 429 }))],
    ['logs export --output (the progress count)', () => store.countRequests({ since: `${DAY}T10:00:10.000Z`, status: 429 })],
    ['logs prune --dry-run', () => store.logSpan(`${DAY}T10:00:30.000Z`)],
    ['dashboard: days by key (the kept totals)', () => store.usageSeries(range, 'key', 1440)],
    ['dashboard: 24 hours by model (the hourly sums)', () => store.usageSeries(window, 'model', 60)],
    ['dashboard: the last hour in 5-minute buckets (the log)', () => store.usageSeries(hour, 'all', 5)],
    ['dashboard: latency counts of a month', () => store.latencyCounts('2026-10-21T00', `${DAY}T23`)],
    ['dashboard: exact latency of the last hour', () => store.latency(hour)],
    ['dashboard: errors by day and code', () => store.errorsBy(window, 'day')],
    ['dashboard: errors by hour and code', () => store.errorsBy(window, 60)],
    ['dashboard: a log page', () => store.listRequests(window, null, 51)],
    ['dashboard: a later log page of one key', () => store.listRequests({ ...window, keyId }, { timestamp: `${DAY}T10:00:30.000Z`, id: 31 }, 51)],
    ['dashboard: a log page of 429s of one model', () => store.listRequests({ ...window, status: 429, model: 'gpt-4o-mini' }, null, 51)],
    ['dashboard: a log row', () => store.getRequest(7)],
  ])('%s: no full scan', async (_name, read) => {
    const plans = await plansOf(read)
    expect(plans.length).toBeGreaterThan(0)
    for (const { sql, plan } of plans) {
      expect({ sql, plan: plan.filter((step) => /^SCAN (request_log|usage_rollup|usage_hourly|latency_hourly)\b/.test(step)) }).toEqual({ sql, plan: [] })
      // And they read through an index or a rowid range. A bare "SEARCH request_log" is a
      // min/max walk along the rowid: only fine with no condition to walk past.
      expect({ sql, searches: plan.some((step) => /^SEARCH (request_log|usage_rollup|usage_hourly|latency_hourly)\b/.test(step)) }).toEqual({ sql, searches: true })
      if (/ where /i.test(sql)) expect({ sql, walks: plan.filter((step) => /^SEARCH (request_log|usage_rollup)$/.test(step)) }).toEqual({ sql, walks: [] })
    }
  })

  it('the paged export still returns every matching row, in id order', async () => {
    const all = (await collect(store.iterateRequests({})))
    expect(all.map((r) => r.timestamp)).toEqual(Array.from({ length: 50 }, (_, i) => `${DAY}T10:00:${String(i).padStart(2, '0')}.000Z`))
    const filtered = (await collect(store.iterateRequests({ since: `${DAY}T10:00:10.000Z`, until: `${DAY}T10:00:40.000Z`, keyId, status: 429 })))
    expect(filtered.map((r) => r.latencyMs)).toEqual([15, 25, 35])
    expect(await store.countRequests({ since: `${DAY}T10:00:10.000Z`, until: `${DAY}T10:00:40.000Z`, keyId, status: 429 })).toBe(3)
  })
})
