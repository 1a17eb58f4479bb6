/** `gateway db backup`: the real binary copying a database a running gateway is writing to. */
import Database from 'better-sqlite3'
import { existsSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { runCli, runJson } from '../support/cli.js'
import { NO_LIMITS, startGateway, type TestGateway } from '../support/gateway.js'

vi.setConfig({ testTimeout: 120_000, hookTimeout: 60_000 })

let gw: TestGateway
const keyIds: string[] = []
let secret = ''

beforeAll(async () => {
  gw = await startGateway()
  for (let i = 0; i < 5; i++) {
    const s = await gw.createKey({ name: `user-${i}`, limits: NO_LIMITS })
    if (i === 0) secret = s
  }
  keyIds.push(...(await gw.admin.listKeys()).map((k) => k.id))
})
afterAll(async () => {
  await gw.stop()
})

function committedRequestIds(db: string): string[] {
  const d = new Database(db, { readonly: true })
  try {
    return (d.prepare('select request_id as id from request_log').all() as { id: string }[]).map((r) => r.id)
  } finally {
    d.close()
  }
}

describe('db backup', () => {
  it('copies a database under write load: the copy passes integrity_check, holds every key and every row committed before, and is 0600', async () => {
    let stop = false
    let sent = 0
    const client = gw.client(secret)
    const worker = async () => {
      for (let i = 0; i < 2_000 && !stop; i++) {
        await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `hello ${i}` }], max_tokens: 5 })
        sent++
      }
    }
    const load = Promise.all(Array.from({ length: 4 }, worker))
    // Wait (bounded) until the log holds rows, so there is something committed to find.
    for (let i = 0; i < 200 && committedRequestIds(gw.db).length < 20; i++) await new Promise((r) => setTimeout(r, 50))
    const before = committedRequestIds(gw.db)
    expect(before.length).toBeGreaterThanOrEqual(20)
    // A plain copy of the main file misses what sits in the WAL: the reason this command exists.
    expect(existsSync(`${gw.db}-wal`)).toBe(true)

    const file = join(gw.dir, 'backup.db')
    const r = await runJson<{ file: string; bytes: number; pages: number; db: string }>(['db', 'backup', file, '--db', gw.db])
    stop = true
    await load
    expect(sent).toBeGreaterThan(before.length)
    expect(committedRequestIds(gw.db).length).toBeGreaterThan(before.length) // writes went on around the copy
    expect(r.code).toBe(0)
    expect(r.json.file).toBe(file)
    expect(r.json.bytes).toBe(statSync(file).size)
    expect(r.json.pages).toBeGreaterThan(0)
    expect(statSync(file).mode & 0o777).toBe(0o600)
    expect(readdirSync(gw.dir).filter((f) => f.startsWith('backup.db'))).toEqual(['backup.db']) // no -wal, no partial file

    const copy = new Database(file, { readonly: true })
    try {
      expect(copy.pragma('integrity_check', { simple: true })).toBe('ok')
      const ids = (copy.prepare('select id from api_keys').all() as { id: string }[]).map((k) => k.id)
      expect(ids.sort()).toEqual([...keyIds].sort())
      const rows = new Set((copy.prepare('select request_id as id from request_log').all() as { id: string }[]).map((x) => x.id))
      expect(before.filter((id) => !rows.has(id))).toEqual([])
    } finally {
      copy.close()
    }
  })

  it('refuses to overwrite an existing file (exit 4) unless --force, and says so', async () => {
    const file = join(gw.dir, 'exists.db')
    writeFileSync(file, 'keep me')
    const refused = await runCli(['db', 'backup', file, '--db', gw.db])
    expect(refused.code).toBe(4)
    expect(refused.stderr).toContain('already exists; pass --force')
    expect(statSync(file).size).toBe(7)
    const forced = await runCli(['db', 'backup', file, '--db', gw.db, '--force'])
    expect(forced.code).toBe(0)
    expect(forced.stdout).toContain(`to ${file}`)
    const copy = new Database(file, { readonly: true })
    try {
      expect(copy.pragma('integrity_check', { simple: true })).toBe('ok')
    } finally {
      copy.close()
    }
  })

  it('names a missing target folder (exit 2) in one line', async () => {
    const r = await runCli(['db', 'backup', join(gw.dir, 'no-such-folder', 'b.db'), '--db', gw.db])
    expect(r.code).toBe(2)
    expect(r.stderr.trim()).toBe(`Error: No folder ${join(gw.dir, 'no-such-folder')} to write the backup in: create it first`)
  })

  it('names a missing source database (exit 3) and creates nothing', async () => {
    const missing = join(gw.dir, 'nope', 'gateway.db')
    const r = await runJson<{ error: { message: string } }>(['db', 'backup', join(gw.dir, 'x.db'), '--db', missing])
    expect(r.code).toBe(3)
    expect(r.json.error.message).toContain(`No database at ${missing}`)
    expect(existsSync(join(gw.dir, 'x.db'))).toBe(false)
  })
})
