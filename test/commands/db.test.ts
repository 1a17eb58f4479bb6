/** `gateway db migrate`: the real binary creating and upgrading a SQLite file. */
import Database from 'better-sqlite3'
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { runCli, runJson } from '../support/cli.js'
import { tempDir } from '../support/gateway.js'
import { latencyBucket } from '../../src/core/latency-histogram.js'

vi.setConfig({ testTimeout: 240_000, hookTimeout: 60_000 })

const MIGRATIONS = fileURLToPath(new URL('../../migrations/sqlite', import.meta.url))

/** A new database as the second release left it: migrations 0000 and 0001 only, still open. */
async function secondReleaseDatabase(file: string): Promise<Database.Database> {
  const second = join(dir, 'migrations-0001')
  mkdirSync(join(second, 'meta'), { recursive: true })
  for (const f of ['0000_init.sql', '0001_request_log_rowid.sql']) cpSync(join(MIGRATIONS, f), join(second, f))
  const journal = JSON.parse(readFileSync(join(MIGRATIONS, 'meta', '_journal.json'), 'utf8'))
  writeFileSync(join(second, 'meta', '_journal.json'), JSON.stringify({ ...journal, entries: journal.entries.slice(0, 2) }))
  const db = new Database(file)
  const { drizzle } = await import('drizzle-orm/better-sqlite3')
  const { migrate } = await import('drizzle-orm/better-sqlite3/migrator')
  migrate(drizzle({ client: db }), { migrationsFolder: second })
  return db
}

let dir: string
beforeAll(() => {
  dir = tempDir('gw-db-')
})
afterAll(() => {
  rmSync(dir, { recursive: true, force: true })
})

describe('db migrate', () => {
  it('creates a new database (and its directory) 0600 with every migration; --json reports it; a second run changes nothing', async () => {
    const db = join(dir, 'nested', 'deeper', 'gw.db')
    const r = await runJson<{ db: string; migrations: number }>(['db', 'migrate', '--db', db])
    expect(r.code).toBe(0)
    const sqlFiles = readdirSync(MIGRATIONS).filter((f) => f.endsWith('.sql')).length
    expect(r.json).toEqual({ db, migrations: sqlFiles })
    expect(sqlFiles).toBeGreaterThan(0)
    expect(statSync(db).mode & 0o777).toBe(0o600)
    const d = new Database(db, { readonly: true })
    try {
      const tables = (d.prepare("select name from sqlite_master where type = 'table'").all() as { name: string }[]).map((t) => t.name)
      expect(tables).toEqual(expect.arrayContaining(['api_keys', 'key_secrets', 'settings', 'usage_rollup', 'request_log']))
      // The per-key-day totals older scripts read are a view over the rollup now.
      expect(d.prepare("select type from sqlite_master where name = 'daily_usage'").pluck().get()).toBe('view')
      const columns = (d.prepare('pragma table_info(request_log)').all() as { name: string }[]).map((c) => c.name)
      expect(columns).toEqual(
        expect.arrayContaining(['timestamp', 'request_id', 'key_id', 'key_name', 'ip', 'route', 'model', 'status', 'error_code', 'prompt_tokens', 'completion_tokens', 'total_tokens', 'estimated', 'latency_ms', 'upstream_ms', 'queued_ms', 'streamed', 'user_agent']),
      )
    } finally {
      d.close()
    }
    const again = await runCli(['db', 'migrate', '--db', db])
    expect(again.code).toBe(0)
    expect(again.stdout).toContain(`Database ${db} is up to date (${sqlFiles} migrations applied)`)
  })

  it('keeps existing data', async () => {
    const db = join(dir, 'data.db')
    const created = await runJson<{ id: string }>(['keys', 'create', '--name', 'survivor', '--db', db])
    expect(created.code).toBe(0)
    expect(created.json.id).toMatch(/^key_/)
    expect((await runCli(['db', 'migrate', '--db', db])).code).toBe(0)
    expect((await runJson<{ id: string }>(['keys', 'show', 'survivor', '--db', db])).json.id).toBe(created.json.id)
  })

  it('upgrades a log written before request_log dropped AUTOINCREMENT: rows, ids and order kept', async () => {
    // A database as the first release left it: only migration 0000 applied, with log rows.
    const first = join(dir, 'migrations-0000')
    mkdirSync(join(first, 'meta'), { recursive: true })
    cpSync(join(MIGRATIONS, '0000_init.sql'), join(first, '0000_init.sql'))
    const journal = JSON.parse(readFileSync(join(MIGRATIONS, 'meta', '_journal.json'), 'utf8'))
    writeFileSync(join(first, 'meta', '_journal.json'), JSON.stringify({ ...journal, entries: journal.entries.slice(0, 1) }))
    const file = join(dir, 'old.db')
    const old = new Database(file)
    const { drizzle } = await import('drizzle-orm/better-sqlite3')
    const { migrate } = await import('drizzle-orm/better-sqlite3/migrator')
    migrate(drizzle({ client: old }), { migrationsFolder: first })
    const insert = old.prepare("insert into request_log (timestamp, request_id, ip, method, route, status, latency_ms, day) values (?, ?, '127.0.0.1', 'POST', '/v1/chat/completions', 200, 1.5, '2026-11-26')")
    for (let i = 0; i < 3; i++) insert.run(`2026-11-26T10:00:0${i}.000Z`, `req_old_${i}`)
    expect(old.prepare("select sql from sqlite_master where name = 'request_log'").pluck().get()).toMatch(/AUTOINCREMENT/)
    old.close()

    expect((await runCli(['db', 'migrate', '--db', file])).code).toBe(0)
    const upgraded = new Database(file)
    expect(upgraded.prepare("select sql from sqlite_master where name = 'request_log'").pluck().get()).not.toMatch(/AUTOINCREMENT/)
    upgraded.prepare("insert into request_log (timestamp, request_id, ip, method, route, status, latency_ms, day) values ('2026-11-26T10:00:09.000Z', 'req_new', '127.0.0.1', 'POST', '/v1/chat/completions', 200, 1.5, '2026-11-26')").run()
    expect(upgraded.prepare('select id, request_id from request_log order by id').all()).toEqual([
      { id: 1, request_id: 'req_old_0' },
      { id: 2, request_id: 'req_old_1' },
      { id: 3, request_id: 'req_old_2' },
      { id: 4, request_id: 'req_new' },
    ])
    expect(upgraded.prepare("select count(*) from sqlite_master where name in ('request_log_timestamp', 'request_log_key_timestamp')").pluck().get()).toBe(2)
    upgraded.close()
  })

  it('upgrades keys whose names differ only in case: the newer live one gets its id appended, revoked ones keep theirs', async () => {
    // A database before names became unique without regard to case.
    const file = join(dir, 'names.db')
    const old = await secondReleaseDatabase(file)
    const insert = old.prepare('insert into api_keys (id, name, created_at, revoked_at) values (?, ?, ?, ?)')
    insert.run('key_a', 'Alice', 1, null)
    insert.run('key_b', 'alice', 2, null)
    insert.run('key_c', 'ALICE', 3, 5)
    old.close()

    expect((await runCli(['db', 'migrate', '--db', file])).code).toBe(0)
    const upgraded = new Database(file)
    expect(upgraded.prepare('select id, name from api_keys order by id').all()).toEqual([
      { id: 'key_a', name: 'Alice' },
      { id: 'key_b', name: 'alice (key_b)' },
      { id: 'key_c', name: 'ALICE' },
    ])
    upgraded.close()
  })

  it('backfills the usage rollup from the log and from daily totals whose rows were pruned', async () => {
    // A database as the second release left it: the log and daily_usage.
    const file = join(dir, 'before-rollup.db')
    const old = await secondReleaseDatabase(file)
    old.prepare("insert into api_keys (id, name, created_at) values ('key_a', 'alice', 0)").run()
    const log = old.prepare(
      "insert into request_log (timestamp, request_id, key_id, ip, method, route, model, status, prompt_tokens, completion_tokens, total_tokens, latency_ms, cost_micros, day) values (?, ?, ?, '127.0.0.1', ?, ?, ?, ?, ?, ?, ?, 5, ?, ?)",
    )
    // Day 2 still has its rows; day 1 was pruned down to one row (daily_usage kept its totals).
    log.run('2026-11-02T10:00:00.000Z', 'r1', 'key_a', 'POST', '/v1/chat/completions', 'gpt-4o', 200, 10, 5, 15, 100, '2026-11-02')
    log.run('2026-11-02T10:00:01.000Z', 'r2', 'key_a', 'POST', '/chat', 'gpt-4o-mini', 429, 0, 0, 0, null, '2026-11-02')
    log.run('2026-11-02T10:00:02.000Z', 'r3', 'key_a', 'GET', '/usage', null, 200, 0, 0, 0, null, '2026-11-02')
    log.run('2026-11-02T10:00:03.000Z', 'r4', null, 'POST', '/chat', null, 401, 0, 0, 0, null, '2026-11-02')
    log.run('2026-11-01T10:00:00.000Z', 'r0', 'key_a', 'POST', '/chat', 'gpt-4o', 200, 20, 10, 30, 200, '2026-11-01')
    const daily = old.prepare('insert into daily_usage (key_id, day, requests, prompt_tokens, completion_tokens, total_tokens, cost_micros) values (?, ?, ?, ?, ?, ?, ?)')
    daily.run('key_a', '2026-11-02', 3, 10, 5, 15, 100)
    daily.run('key_a', '2026-11-01', 5, 120, 60, 180, 1200)
    old.close()

    expect((await runCli(['db', 'migrate', '--db', file])).code).toBe(0)
    const upgraded = new Database(file, { readonly: true })
    try {
      expect(upgraded.prepare('select * from usage_rollup order by day, key_id, model').all()).toEqual([
        // The pruned part of day 1 (4 requests, 150 tokens) under no model; the row that is left under its own.
        { day: '2026-11-01', key_id: 'key_a', model: '', requests: 4, chat_requests: 0, errors: 0, rate_limited: 0, prompt_tokens: 100, completion_tokens: 50, total_tokens: 150, cost_micros: 1000 },
        { day: '2026-11-01', key_id: 'key_a', model: 'gpt-4o', requests: 1, chat_requests: 1, errors: 0, rate_limited: 0, prompt_tokens: 20, completion_tokens: 10, total_tokens: 30, cost_micros: 200 },
        { day: '2026-11-02', key_id: '', model: '', requests: 1, chat_requests: 1, errors: 1, rate_limited: 0, prompt_tokens: 0, completion_tokens: 0, total_tokens: 0, cost_micros: null },
        { day: '2026-11-02', key_id: 'key_a', model: '', requests: 1, chat_requests: 0, errors: 0, rate_limited: 0, prompt_tokens: 0, completion_tokens: 0, total_tokens: 0, cost_micros: null },
        { day: '2026-11-02', key_id: 'key_a', model: 'gpt-4o', requests: 1, chat_requests: 1, errors: 0, rate_limited: 0, prompt_tokens: 10, completion_tokens: 5, total_tokens: 15, cost_micros: 100 },
        { day: '2026-11-02', key_id: 'key_a', model: 'gpt-4o-mini', requests: 1, chat_requests: 1, errors: 1, rate_limited: 1, prompt_tokens: 0, completion_tokens: 0, total_tokens: 0, cost_micros: null },
      ])
      // The old per-key totals read the same through the view.
      expect(upgraded.prepare('select key_id, day, requests, total_tokens, cost_micros from daily_usage order by day').all()).toEqual([
        { key_id: 'key_a', day: '2026-11-01', requests: 5, total_tokens: 180, cost_micros: 1200 },
        { key_id: 'key_a', day: '2026-11-02', requests: 3, total_tokens: 15, cost_micros: 100 },
      ])
      // The dashboard's hourly sums and latency counts, from the rows still in the log; the
      // bucket the migration's SQL computes is the one the server writes (latencyBucket).
      expect(upgraded.prepare('select hour, key_id, model, requests, errors, rate_limited, total_tokens, cost_micros from usage_hourly order by hour, key_id, model').all()).toEqual([
        { hour: '2026-11-01T10', key_id: 'key_a', model: 'gpt-4o', requests: 1, errors: 0, rate_limited: 0, total_tokens: 30, cost_micros: 200 },
        { hour: '2026-11-02T10', key_id: '', model: '', requests: 1, errors: 1, rate_limited: 0, total_tokens: 0, cost_micros: null },
        { hour: '2026-11-02T10', key_id: 'key_a', model: '', requests: 1, errors: 0, rate_limited: 0, total_tokens: 0, cost_micros: null },
        { hour: '2026-11-02T10', key_id: 'key_a', model: 'gpt-4o', requests: 1, errors: 0, rate_limited: 0, total_tokens: 15, cost_micros: 100 },
        { hour: '2026-11-02T10', key_id: 'key_a', model: 'gpt-4o-mini', requests: 1, errors: 1, rate_limited: 1, total_tokens: 0, cost_micros: null },
      ])
      expect(upgraded.prepare('select hour, bucket, requests from latency_hourly order by hour').all()).toEqual([
        { hour: '2026-11-01T10', bucket: latencyBucket(5), requests: 1 },
        { hour: '2026-11-02T10', bucket: latencyBucket(5), requests: 4 },
      ])
    } finally {
      upgraded.close()
    }
  })

  it('fails with a message and a non-zero exit when the path cannot be a database', async () => {
    const file = join(dir, 'not-a-dir')
    writeFileSync(file, 'x')
    const r = await runCli(['db', 'migrate', '--db', join(file, 'gw.db')])
    expect(r.code).not.toBe(0)
    expect(r.stderr).toMatch(/^Error: /m)
    expect(r.stderr).not.toMatch(/\n\s+at /) // a message, not a stack trace
    const garbage = join(dir, 'garbage.db')
    writeFileSync(garbage, 'this is not a SQLite database, just text '.repeat(200))
    const g = await runJson(['db', 'migrate', '--db', garbage])
    expect(g.code).not.toBe(0)
    expect(g.json).toHaveProperty('error.message')
    expect(existsSync(garbage)).toBe(true)
  })
})
