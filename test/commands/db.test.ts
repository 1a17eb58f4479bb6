/** `gateway db migrate`: the real binary creating and upgrading a SQLite file. */
import Database from 'better-sqlite3'
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { runCli, runJson } from '../support/cli.js'
import { tempDir } from '../support/gateway.js'


vi.setConfig({ testTimeout: 240_000, hookTimeout: 60_000 })

const MIGRATIONS = fileURLToPath(new URL('../../migrations', import.meta.url))

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
      expect(tables).toEqual(expect.arrayContaining(['api_keys', 'key_secrets', 'settings', 'daily_usage', 'request_log']))
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
    // A database before names became unique without regard to case: migrations 0000 and 0001.
    const before = join(dir, 'migrations-0001')
    mkdirSync(join(before, 'meta'), { recursive: true })
    for (const f of ['0000_init.sql', '0001_request_log_rowid.sql']) cpSync(join(MIGRATIONS, f), join(before, f))
    const journal = JSON.parse(readFileSync(join(MIGRATIONS, 'meta', '_journal.json'), 'utf8'))
    writeFileSync(join(before, 'meta', '_journal.json'), JSON.stringify({ ...journal, entries: journal.entries.slice(0, 2) }))
    const file = join(dir, 'names.db')
    const old = new Database(file)
    const { drizzle } = await import('drizzle-orm/better-sqlite3')
    const { migrate } = await import('drizzle-orm/better-sqlite3/migrator')
    migrate(drizzle({ client: old }), { migrationsFolder: before })
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
