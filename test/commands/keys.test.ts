/** `gateway keys create|list|show|revoke|rotate|update`: the real binary over a temp SQLite file. */
import { readFileSync, readdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { runCli, runJson, type CliResult } from '../support/cli.js'
import { settle, startGateway, tempDir, type TestGateway } from '../support/gateway.js'
import { runAll } from '../support/log-rows.js'


const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/
const SECRET = /^gw-[A-Za-z0-9_-]{43}$/
const DAY = 86_400_000

let dir: string
let db: string
const secrets: string[] = []

// Every CLI run is a fresh Node process (about a second of CPU): give a loaded machine time.
vi.setConfig({ testTimeout: 240_000, hookTimeout: 60_000 })

const cli = (args: string[]) => runCli([...args, '--db', db])
const json = <T = any>(args: string[]) => runJson<T>([...args, '--db', db])

interface Created {
  id: string
  name: string
  key: string
  prefix: string
  createdAt: string
  expiresAt: string | null
  admin: boolean
}

async function create(name: string, ...flags: string[]): Promise<Created> {
  const r = await json<Created>(['keys', 'create', '--name', name, ...flags])
  expect(r.code, r.stderr).toBe(0)
  secrets.push(r.json.key)
  return r.json
}

/** Output with no secret in it, and no 8-character piece of one. */
function expectNoSecret(text: string): void {
  expect(secrets.length, 'secrets created so far').toBeGreaterThan(0)
  for (const s of secrets) {
    expect(text).not.toContain(s)
    expect(text).not.toContain(s.slice(3, 11))
  }
}

beforeAll(() => {
  dir = tempDir('gw-keys-')
  db = join(dir, 'keys.db')
})

afterAll(() => {
  rmSync(dir, { recursive: true, force: true })
})

describe('keys create', () => {
  it('--json prints exactly {id,name,key,prefix,createdAt,expiresAt,admin}', async () => {
    const before = new Date().toISOString()
    const k = await create('alice')
    const after = new Date().toISOString()
    expect(Object.keys(k).sort()).toEqual(['admin', 'createdAt', 'expiresAt', 'id', 'key', 'name', 'prefix'])
    expect(k.id).toMatch(/^key_/)
    expect(k.name).toBe('alice')
    expect(k.key).toMatch(SECRET)
    expect(k.prefix).toBe(k.key.slice(0, 7))
    expect(k.createdAt).toMatch(ISO)
    expect(k.createdAt >= before && k.createdAt <= after).toBe(true)
    expect(k.expiresAt).toBeNull()
    expect(k.admin).toBe(false)
  })

  it('--admin and --expires-in set the role and the expiry', async () => {
    const k = await create('ops', '--admin', '--expires-in', '30d')
    expect(k.admin).toBe(true)
    expect(Date.parse(k.expiresAt!) - Date.parse(k.createdAt)).toBe(30 * DAY)
  })

  it('--models and limit flags are stored on the key', async () => {
    const k = await create('scoped', '--models', 'gpt-4o, gpt-4o-mini', '--rpm', '5', '--daily-tokens', 'off', '--on-budget-short', 'clamp')
    const shown = await json(['keys', 'show', k.id])
    expect(shown.json.models).toEqual(['gpt-4o', 'gpt-4o-mini'])
    expect(shown.json.limits).toEqual({ rpm: 5, 'daily-tokens': null, 'on-budget-short': 'clamp' })
  })

  it('--models all means no restriction, as it does for keys update, not a model named "all"', async () => {
    const k = await create('unscoped', '--models', 'all')
    const shown = await json(['keys', 'show', k.id])
    expect(shown.json.models).toBeNull()
  })

  it('without --json prints the key once with a warning; only its hash and short prefix are stored', async () => {
    const r = await cli(['keys', 'create', '--name', 'human'])
    expect(r.code).toBe(0)
    const key = /gw-[A-Za-z0-9_-]{43}/.exec(r.stdout)?.[0]
    expect(key).toBeDefined()
    expect(r.stdout.split(key!).length - 1).toBe(1)
    expect(r.stdout).toContain('Created key "human"')
    expect(r.stdout).toMatch(/shown (it )?this once/i)
    expect(() => JSON.parse(r.stdout)).toThrow()
    for (const f of readdirSync(dir)) {
      const bytes = readFileSync(join(dir, f)).toString('latin1')
      expect(bytes).not.toContain(key!)
      expect(bytes).not.toContain(key!.slice(3, 11))
    }
    secrets.push(key!)
  })

  it('exits 4 when the name exists, with a JSON error under --json', async () => {
    const [human, machine] = await runAll<any>([() => cli(['keys', 'create', '--name', 'alice']), () => json(['keys', 'create', '--name', 'alice'])])
    expect(human.code).toBe(4)
    expect(human.stderr).toMatch(/exists/)
    expect(machine.code).toBe(4)
    expect(machine.json).toMatchObject({ error: { code: 'key_exists', exit: 4 } })
  })

  it('exits 2 on invalid usage or input', async () => {
    const cases = [
      ['keys', 'create'],
      ['keys', 'create', '--name', 'x1', '--rpm', 'abc'],
      ['keys', 'create', '--name', 'x2', '--rpm', '0'],
      ['keys', 'create', '--name', 'x3', '--expires-in', 'soon'],
      ['keys', 'create', '--name', 'key_reserved'],
      ['keys', 'create', '--name', '   '],
      ['keys', 'create', '--name', 'n'.repeat(201)],
      ['keys', 'create', '--name', 'x4', '--on-budget-short', 'maybe'],
      ['keys', 'create', '--name', 'x5', '--no-such-flag'],
    ]
    const results = await runAll(cases.map((c) => () => cli(c)))
    results.forEach((r, i) => expect([cases[i].join(' '), r.code]).toEqual([cases[i].join(' '), 2]))
    const names = ((await json<{ name: string }[]>(['keys', 'list'])).json).map((k) => k.name)
    for (const n of ['x1', 'x2', 'x3', 'x4', 'x5', 'key_reserved']) expect(names).not.toContain(n)
  })
})

describe('keys list and show', () => {
  it('list --json shows every key and never a secret', async () => {
    const r = await json<Record<string, unknown>[]>(['keys', 'list'])
    expect(r.code).toBe(0)
    expect(r.json.map((k) => k.name)).toEqual(expect.arrayContaining(['alice', 'ops', 'scoped', 'human']))
    for (const k of r.json) {
      expect(k).toMatchObject({ id: expect.stringMatching(/^key_/), prefix: expect.stringMatching(/^gw-.{4}$/), status: 'active', createdAt: expect.stringMatching(ISO) })
      expect(k).not.toHaveProperty('key')
      expect(k).not.toHaveProperty('hash')
    }
    expect(r.json.find((k) => k.name === 'ops')).toMatchObject({ admin: true })
    expectNoSecret(JSON.stringify(r.json))
  })

  it('list without --json prints a table with prefixes, never a secret', async () => {
    const r = await cli(['keys', 'list'])
    expect(r.code).toBe(0)
    const lines = r.stdout.trim().split('\n')
    expect(lines[0]).toMatch(/^ID\s+NAME\s+PREFIX\s+STATUS\s+ADMIN\s+CREATED\s+EXPIRES$/)
    const alice = (await json<Created[]>(['keys', 'list'])).json.find((k) => k.name === 'alice')!
    expect(lines.find((l) => l.includes(' alice '))).toMatch(new RegExp(`^${alice.id}\\s+alice\\s+${alice.prefix.replace(/[-]/g, '\\-')}…\\s+active`))
    expectNoSecret(r.stdout)
  })

  it('list on an empty database says so once; --json gives []', async () => {
    const empty = join(dir, 'empty.db')
    expect((await runCli(['db', 'migrate', '--db', empty])).code).toBe(0)
    const [human, machine] = await runAll<any>([() => runCli(['keys', 'list', '--db', empty]), () => runJson(['keys', 'list', '--db', empty])])
    expect(human.stdout.trim().split('\n')).toEqual(['No keys yet: create one with `gateway keys create --name NAME`.'])
    expect(human.code).toBe(0)
    expect(human.stdout).toMatch(/No keys yet/)
    expect(machine.json).toEqual([])
  })

  it('show by name or id; --json without a secret; exit 3 when there is no such key', async () => {
    const list = (await json<Created[]>(['keys', 'list'])).json
    const alice = list.find((k) => k.name === 'alice')!
    const [byName, byId, human, missing, missingJson] = await runAll<any>([() => json(['keys', 'show', 'alice']), () => json(['keys', 'show', alice.id]), () => cli(['keys', 'show', 'alice']), () => cli(['keys', 'show', 'nobody']), () => json(['keys', 'show', 'nobody'])])
    expect(byName.code).toBe(0)
    expect(byName.json).toEqual(byId.json)
    expect(byName.json).toMatchObject({ id: alice.id, name: 'alice', prefix: alice.prefix, prefixes: [alice.prefix], status: 'active', admin: false, revokedAt: null, models: null })
    expect(human.stdout).toContain(`alice (${alice.id})`)
    expect(human.stdout).toMatch(/status:\s+active/)
    expect(human.stdout).toContain(`${alice.prefix}…`)
    expectNoSecret(human.stdout + JSON.stringify(byName.json))
    expect(missing.code).toBe(3)
    expect(missing.stderr).toMatch(/nobody/)
    expect(missingJson.code).toBe(3)
    expect(missingJson.json).toMatchObject({ error: { code: 'key_not_found', exit: 3 } })
  })

  it('shows control characters in names escaped, so a name cannot drive the terminal', async () => {
    await create('evil\u001b[31mred\rname')
    const [list, show] = await Promise.all([cli(['keys', 'list']), cli(['keys', 'show', 'evil\u001b[31mred\rname'])])
    expect(list.code).toBe(0)
    expect(show.code).toBe(0)
    for (const out of [list.stdout, show.stdout]) {
      expect(out).not.toContain('\u001b')
      expect(out).not.toContain('\r')
      expect(out).toContain('evil\\x1b[31mred\\rname')
    }
  })
})

describe('keys revoke, rotate, update', () => {
  it('revoke: status revoked, idempotent, exit 3 for an unknown key', async () => {
    await create('to-revoke')
    const r = await json(['keys', 'revoke', 'to-revoke'])
    expect(r.code).toBe(0)
    expect(r.json).toMatchObject({ name: 'to-revoke', status: 'revoked', revokedAt: expect.stringMatching(ISO) })
    const again = await json(['keys', 'revoke', 'to-revoke'])
    expect(again.code).toBe(0)
    expect(again.json.revokedAt).toBe(r.json.revokedAt)
    const [human, missing] = await runAll<any>([() => cli(['keys', 'show', 'to-revoke']), () => cli(['keys', 'revoke', 'nobody'])])
    expect(human.stdout).toMatch(/status:\s+revoked/)
    expect(missing.code).toBe(3)
  })

  it('rotate: a new secret, same key; exit 2 for a revoked key or a bad --grace, 3 for an unknown one', async () => {
    const k = await create('rotor')
    const r = await json(['keys', 'rotate', 'rotor'])
    expect(r.code).toBe(0)
    expect(r.json).toMatchObject({ id: k.id, name: 'rotor', key: expect.stringMatching(SECRET), oldSecretExpiresAt: expect.stringMatching(ISO) })
    expect(r.json.key).not.toBe(k.key)
    expect(r.json.prefix).toBe(r.json.key.slice(0, 7))
    secrets.push(r.json.key)
    const human = await cli(['keys', 'rotate', 'rotor', '--grace', '1h'])
    expect(human.code).toBe(0)
    const newest = /gw-[A-Za-z0-9_-]{43}/.exec(human.stdout)![0]
    secrets.push(newest)
    const shown = await json(['keys', 'show', 'rotor'])
    expect(shown.json.prefixes).toEqual([newest.slice(0, 7), r.json.prefix]) // the 1 h grace keeps the previous one live
    const [revoked, badGrace, missing] = await runAll<any>([() => json(['keys', 'rotate', 'to-revoke']), () => cli(['keys', 'rotate', 'rotor', '--grace', 'later']), () => cli(['keys', 'rotate', 'nobody'])])
    expect(revoked.code).toBe(2)
    expect(revoked.json.error.message).toMatch(/revoked/)
    expect(badGrace.code).toBe(2)
    expect(missing.code).toBe(3)
  })

  it('update: limits merge, --models all and --expires-in never clear; exit 3 unknown, 2 invalid', async () => {
    await create('upd', '--rpm', '5')
    const r = await json(['keys', 'update', 'upd', '--tpm', '2000', '--models', 'gpt-4o', '--expires-in', '1h'])
    expect(r.code).toBe(0)
    expect(r.json.limits).toEqual({ rpm: 5, tpm: 2000 })
    expect(r.json.models).toEqual(['gpt-4o'])
    expect(Date.parse(r.json.expiresAt) - Date.now()).toBeGreaterThan(59 * 60_000)
    const cleared = await json(['keys', 'update', 'upd', '--models', 'all', '--expires-in', 'never', '--rpm', 'off'])
    expect(cleared.json).toMatchObject({ models: null, expiresAt: null, limits: { rpm: null, tpm: 2000 } })
    const [human, missing, bad] = await runAll<any>([() => cli(['keys', 'update', 'upd', '--concurrency', '3']), () => cli(['keys', 'update', 'nobody', '--rpm', '1']), () => cli(['keys', 'update', 'upd', '--tpm', '-1'])])
    expect(human.code).toBe(0)
    expect(human.stdout).toMatch(/limits:.*concurrency=3/)
    expect(missing.code).toBe(3)
    expect(bad.code).toBe(2)
  })
})

describe('CLI changes reach a running server within one second', () => {
  let gw: TestGateway
  beforeAll(async () => {
    gw = await startGateway({})
  })
  afterAll(async () => {
    await gw.stop()
  })
  const chat = (key: string) => gw.post('/chat', key, { message: 'hi' })
  const on = (args: string[]): Promise<CliResult> => runCli([...args, '--db', gw.db])

  it('a key created by the CLI works, and stops working once revoked', async () => {
    const created = JSON.parse((await on(['keys', 'create', '--name', 'live', '--rpm', 'off', '--json'])).stdout) as Created
    await settle(1000)
    expect((await chat(created.key)).status).toBe(200)
    expect((await on(['keys', 'revoke', 'live'])).code).toBe(0)
    await settle(1000)
    const res = await chat(created.key)
    expect(res.status).toBe(401)
  })

  it('rotate: the new secret works and the old one stops; with --grace both work', async () => {
    const created = JSON.parse((await on(['keys', 'create', '--name', 'rot-live', '--rpm', 'off', '--json'])).stdout) as Created
    const rotated = JSON.parse((await on(['keys', 'rotate', 'rot-live', '--json'])).stdout) as Created
    await settle(1000)
    expect((await chat(rotated.key)).status).toBe(200)
    expect((await chat(created.key)).status).toBe(401)
    const graced = JSON.parse((await on(['keys', 'rotate', 'rot-live', '--grace', '1h', '--json'])).stdout) as Created
    await settle(1000)
    expect((await chat(graced.key)).status).toBe(200)
    expect((await chat(rotated.key)).status).toBe(200)
  })

  it('update --models restricts the key at once', async () => {
    const created = JSON.parse((await on(['keys', 'create', '--name', 'models-live', '--rpm', 'off', '--json'])).stdout) as Created
    expect((await on(['keys', 'update', 'models-live', '--models', 'gpt-4o'])).code).toBe(0)
    await settle(1000)
    const res = await chat(created.key)
    expect(res.status).toBe(403)
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('model_not_allowed')
  })
})
