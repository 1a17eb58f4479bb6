/** `gateway db migrate`: the real binary creating and upgrading a SQLite file. */
import Database from 'better-sqlite3'
import { existsSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { cliEnv, runCli, runJson } from '../support/cli.js'
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
    expect((await runCli(['db', 'migrate', '--db', db])).code).toBe(0)
    expect((await runJson<{ id: string }>(['keys', 'show', 'survivor', '--db', db])).json.id).toBe(created.json.id)
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
