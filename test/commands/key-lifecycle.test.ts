/** A key's whole life through the real CLI: names, lookups, expiry, rotation, delete; limit overrides dropped; 401 reasons over HTTP. */
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { runCli, runJson } from '../support/cli.js'
import { NO_LIMITS, settle, startGateway, tempDir, type TestGateway } from '../support/gateway.js'
import { runAll } from '../support/log-rows.js'

vi.setConfig({ testTimeout: 240_000, hookTimeout: 60_000 })

const DAY = 86_400_000
let dir: string
let db: string
const cli = (args: string[]) => runCli([...args, '--db', db])
const json = <T = any>(args: string[]) => runJson<T>([...args, '--db', db])

async function create(name: string, ...flags: string[]): Promise<any> {
  const r = await json(['keys', 'create', '--name', name, ...flags])
  expect(r.code, JSON.stringify(r.json)).toBe(0)
  return r.json
}

beforeAll(() => {
  dir = tempDir('gw-life-')
  db = join(dir, 'life.db')
})

afterAll(() => {
  rmSync(dir, { recursive: true, force: true })
})

describe('names', () => {
  it('are unique without regard to case; a revoked key frees its name, and the name then finds the live key', async () => {
    const bob = await create('Bob')
    const clash = await json(['keys', 'create', '--name', 'bob'])
    expect(clash.code).toBe(4)
    expect(clash.json.error.message).toMatch(/"Bob" exists already/)
    expect((await json(['keys', 'revoke', 'BOB'])).code).toBe(0)
    const again = await create('bob')
    expect(again.id).not.toBe(bob.id)
    const shown = await json(['keys', 'show', 'BoB'])
    expect(shown.json).toMatchObject({ id: again.id, status: 'active' })
  })

  it('keys rotate on a revoked key points at keys create, which then works', async () => {
    await create('old-ci')
    await json(['keys', 'revoke', 'old-ci'])
    const r = await json(['keys', 'rotate', 'old-ci'])
    expect(r.code).toBe(2)
    expect(r.json.error.message).toMatch(/name is free.*keys create/)
    await create('old-ci')
  })

  it('keys update --name renames (refusing a name another live key has) and --admin/--no-admin toggle the role', async () => {
    await create('carol')
    await create('dave')
    const renamed = await json(['keys', 'update', 'carol', '--name', 'carol-laptop', '--admin'])
    expect(renamed.json).toMatchObject({ name: 'carol-laptop', admin: true })
    const taken = await json(['keys', 'update', 'carol-laptop', '--name', 'DAVE'])
    expect(taken.code).toBe(4)
    const demoted = await json(['keys', 'update', 'carol-laptop', '--no-admin'])
    expect(demoted.json).toMatchObject({ name: 'carol-laptop', admin: false })
    expect((await json(['keys', 'show', 'carol'])).code).toBe(3)
  })

  it('keys update with nothing to change says what it can change and exits 2', async () => {
    await create('idle')
    const r = await cli(['keys', 'update', 'idle'])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/Nothing to change.*--name.*--admin\/--no-admin.*--expires-in.*--rpm/)
  })
})

describe('lookups', () => {
  it('keys show finds a key by display prefix and by whole secret, and never prints the secret', async () => {
    const k = await create('leaky')
    const [byPrefix, bySecret, human, unknown] = await runAll<any>([
      () => json(['keys', 'show', k.prefix]),
      () => json(['keys', 'show', k.key]),
      () => cli(['keys', 'show', k.key]),
      () => cli(['keys', 'show', `gw-${'A'.repeat(43)}`]),
    ])
    expect(byPrefix.json).toMatchObject({ id: k.id, name: 'leaky' })
    expect(bySecret.json).toMatchObject({ id: k.id, name: 'leaky' })
    expect(human.stdout).toContain('leaky')
    for (const out of [JSON.stringify(bySecret.json), human.stdout, human.stderr, unknown.stderr]) expect(out).not.toContain(k.key.slice(3, 11))
    expect(unknown.code).toBe(3)
    expect(unknown.stderr).toMatch(/No key has this secret \(gw-AAAA…\)/)
    expect(unknown.stderr).not.toContain('A'.repeat(8))
  })
})

describe('expiry', () => {
  it('--expires-in takes 1y, 12h30m, an ISO date and never', async () => {
    const [year, mixed, date, never] = await Promise.all([create('y', '--expires-in', '1y'), create('hm', '--expires-in', '12h30m'), create('d', '--expires-in', '2099-01-31'), create('n', '--expires-in', 'never')])
    expect(Date.parse(year.expiresAt) - Date.parse(year.createdAt)).toBe(365 * DAY)
    expect(Date.parse(mixed.expiresAt) - Date.parse(mixed.createdAt)).toBe(12.5 * 3_600_000)
    expect(date.expiresAt).toBe('2099-01-31T00:00:00.000Z')
    expect(never.expiresAt).toBeNull()
    const updated = await json(['keys', 'update', 'n', '--expires-in', '2099-02-01T12:00'])
    expect(updated.json.expiresAt).toBe('2099-02-01T12:00:00.000Z') // no zone: UTC
  })

  it('refuses 0s, a past date, a date that does not exist and nonsense with exit 2', async () => {
    const rs = await runAll<any>(['0s', '2001-01-01', 'soon', '2099-02-30'].map((v) => () => json(['keys', 'create', '--name', 'z', '--expires-in', v])))
    for (const r of rs) expect(r.code).toBe(2)
    expect(rs[0].json.error.message).toMatch(/not in the future/)
    expect(rs[1].json.error.message).toMatch(/not in the future/)
    expect((await json(['keys', 'show', 'z'])).code).toBe(3)
  })
})

describe('rotation', () => {
  it('a second rotation without --grace refuses to end the first one\'s grace period; keys show says when the old secret stops', async () => {
    await create('rot2')
    const first = await json(['keys', 'rotate', 'rot2', '--grace', '1h'])
    expect(first.code).toBe(0)
    const shown = await cli(['keys', 'show', 'rot2'])
    expect(shown.stdout).toMatch(/retiring: gw-\S{4}… stops working at \d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z/)
    const showJson = await json(['keys', 'show', 'rot2'])
    expect(showJson.json.retiring).toEqual([{ prefix: expect.stringMatching(/^gw-/), expiresAt: first.json.oldSecretExpiresAt }])
    const listed = (await json(['keys', 'list'])).json.find((k: { name: string }) => k.name === 'rot2')
    expect(listed.retiring).toEqual(showJson.json.retiring) // the list shows the same key the same way
    const second = await json(['keys', 'rotate', 'rot2'])
    expect(second.code).toBe(4)
    expect(second.json.error.message).toMatch(/works until .*--grace/)
    expect((await json(['keys', 'show', 'rot2'])).json.retiring).toHaveLength(1) // nothing changed
    const ended = await json(['keys', 'rotate', 'rot2', '--grace', '0s'])
    expect(ended.code).toBe(0)
    expect((await json(['keys', 'show', 'rot2'])).json.retiring).toEqual([])
  })
})

describe('limit overrides', () => {
  it('"default" drops a key\'s override (limits set, keys update) and the defaults\' own value; "none" means off', async () => {
    await create('lim', '--rpm', '5', '--tpm', '900')
    const set = await json(['limits', 'set', '--key', 'lim', '--rpm', 'default', '--concurrency', 'none'])
    expect(set.code).toBe(0)
    expect(set.json.limits).toEqual({ tpm: 900, concurrency: null })
    const upd = await json(['keys', 'update', 'lim', '--tpm', 'default'])
    expect(upd.json.limits).toEqual({ concurrency: null })
    await json(['limits', 'set', '--default', '--rpm', '30'])
    expect((await json(['limits', 'show', '--key', 'lim'])).json.limits.rpm).toEqual({ value: 30, source: 'default' })
    await json(['limits', 'set', '--default', '--rpm', 'default'])
    const [shown, human] = await runAll<any>([() => json(['limits', 'show', '--key', 'lim']), () => cli(['limits', 'show', '--key', 'lim'])])
    expect(shown.json.limits).toMatchObject({ rpm: { value: 10, source: 'built-in' }, concurrency: { value: null, source: 'key' }, 'daily-tokens': { value: 50_000, source: 'built-in' } })
    expect(human.stdout).toMatch(/^concurrency\s+off\s+the key's own$/m)
    expect(human.stdout).toMatch(/^daily-tokens\s+50000\s+built-in default$/m)
  })
})

describe('keys delete', () => {
  let gw: TestGateway
  beforeAll(async () => {
    gw = await startGateway({})
  })
  afterAll(async () => {
    await gw.stop()
  })
  const on = (args: string[]) => runJson<any>([...args, '--db', gw.db])

  it('removes the key; its log rows keep its id and name; the server refuses it', async () => {
    const k = (await on(['keys', 'create', '--name', 'doomed', '--rpm', 'off'])).json
    await settle(1000)
    expect((await gw.post('/chat', k.key, { message: 'hi' })).status).toBe(200)
    const del = await on(['keys', 'delete', 'doomed'])
    expect(del).toMatchObject({ code: 0, json: { id: k.id, name: 'doomed', deleted: true } })
    await settle(1000)
    const res = await gw.post('/chat', k.key, { message: 'hi' })
    expect(res.status).toBe(401)
    expect(((await res.json()) as any).error.code).toBe('invalid_api_key')
    expect((await on(['keys', 'show', k.id])).code).toBe(3)
    const rows = (await runCli(['logs', 'export', '--format', 'jsonl', '--db', gw.db])).stdout.trim().split('\n').map((l) => JSON.parse(l))
    expect(rows.filter((r) => r.key_id === k.id && r.key_name === 'doomed' && r.status === 200)).toHaveLength(1)
  })

  it('a revoked key gets 401 key_revoked, an expired one 401 key_expired, an unknown one invalid_api_key', async () => {
    const revoked = await gw.createKey({ name: 'was-revoked', limits: NO_LIMITS })
    const expired = await gw.createKey({ name: 'was-expired', limits: NO_LIMITS, expiresInMs: 1 })
    expect((await runJson(['keys', 'revoke', 'was-revoked', '--db', gw.db])).code).toBe(0)
    await settle(1000)
    const answers = await Promise.all([revoked, expired, `gw-${'B'.repeat(43)}`].map(async (key) => {
      const res = await gw.post('/chat', key, { message: 'hi' })
      return { status: res.status, error: ((await res.json()) as any).error }
    }))
    expect(answers[0]).toMatchObject({ status: 401, error: { code: 'key_revoked', type: 'authentication_error', message: expect.stringMatching(/^This key was revoked at \d{4}-/) } })
    expect(answers[1]).toMatchObject({ status: 401, error: { code: 'key_expired', message: expect.stringMatching(/^This key expired at \d{4}-/) } })
    expect(answers[2]).toMatchObject({ status: 401, error: { code: 'invalid_api_key' } })
  })
})
