/** `gateway limits show|set`: the real binary over a temp SQLite file, and its effect on a running server. */
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { runCli, runJson } from '../support/cli.js'
import { settle, startGateway, tempDir, type TestGateway } from '../support/gateway.js'
import { runAll } from '../support/log-rows.js'


// Every CLI run is a fresh Node process (about a second of CPU): give a loaded machine time.
vi.setConfig({ testTimeout: 240_000, hookTimeout: 60_000 })

let dir: string
let db: string
const cli = (args: string[]) => runCli([...args, '--db', db])
const json = <T = any>(args: string[]) => runJson<T>([...args, '--db', db])

beforeAll(async () => {
  dir = tempDir('gw-limits-')
  db = join(dir, 'limits.db')
  expect((await cli(['keys', 'create', '--name', 'alice'])).code).toBe(0)
})

afterAll(() => {
  rmSync(dir, { recursive: true, force: true })
})

describe('limits show', () => {
  it('--json: every limit with its value and source; the built-in seed defaults on a new database', async () => {
    const r = await json(['limits', 'show'])
    expect(r.code).toBe(0)
    expect(r.json).toEqual({
      key: null,
      limits: {
        rpm: { value: 10, source: 'built-in' },
        tpm: { value: null, source: 'built-in' },
        concurrency: { value: null, source: 'built-in' },
        'daily-tokens': { value: 50_000, source: 'built-in' },
        'max-tokens': { value: 1_000, source: 'built-in' },
        'max-input-chars': { value: 2_000, source: 'built-in' },
        'on-budget-short': { value: 'refuse', source: 'built-in' },
        'auth-failures-per-minute': { value: 10, source: 'built-in' },
        'ip-rpm': { value: null, source: 'built-in' },
      },
    })
  })

  it('without --json prints a LIMIT / VALUE / FROM table, "off" for no limit', async () => {
    const r = await cli(['limits', 'show'])
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^LIMIT\s+VALUE\s+FROM$/m)
    expect(r.stdout).toMatch(/^rpm\s+10\s+built-in default$/m)
    expect(r.stdout).toMatch(/^tpm\s+off\s+built-in default$/m)
    expect(r.stdout).toMatch(/^daily-tokens\s+50000\s+built-in default$/m)
  })

  it('exits 3 for an unknown key', async () => {
    const [human, machine] = await runAll<any>([() => cli(['limits', 'show', '--key', 'nobody']), () => json(['limits', 'show', '--key', 'nobody'])])
    expect(human.code).toBe(3)
    expect(machine.code).toBe(3)
    expect(machine.json).toMatchObject({ error: { code: 'key_not_found' } })
  })
})

describe('limits set', () => {
  it('--default changes the defaults every key inherits', async () => {
    const r = await json(['limits', 'set', '--default', '--rpm', '60', '--daily-tokens', '200000', '--ip-rpm', '500'])
    expect(r.code).toBe(0)
    expect(r.json).toEqual({ key: null, limits: { rpm: 60, 'daily-tokens': 200_000, 'ip-rpm': 500 } })
    const [defaults, alice] = await runAll<any>([() => json(['limits', 'show']), () => json(['limits', 'show', '--key', 'alice'])])
    expect(defaults.json.limits).toMatchObject({ rpm: { value: 60, source: 'default' }, 'daily-tokens': { value: 200_000, source: 'default' }, 'ip-rpm': { value: 500, source: 'default' }, tpm: { value: null, source: 'built-in' } })
    expect(alice.json.limits).toMatchObject({ rpm: { value: 60, source: 'default' }, 'daily-tokens': { value: 200_000, source: 'default' } })
    expect(alice.json.limits).not.toHaveProperty('ip-rpm') // per-IP limits are server-wide, not a key's
  })

  it('--key overrides one key; "off" turns a limit off; human output names the change', async () => {
    const r = await json(['limits', 'set', '--key', 'alice', '--tpm', '2000', '--concurrency', '2', '--daily-tokens', 'off', '--on-budget-short', 'clamp'])
    expect(r.code).toBe(0)
    expect(r.json).toMatchObject({ key: { name: 'alice', id: expect.stringMatching(/^key_/) }, limits: { tpm: 2000, concurrency: 2, 'daily-tokens': null, 'on-budget-short': 'clamp' } })
    const [show, human, setHuman] = await runAll<any>([
      () => json(['limits', 'show', '--key', 'alice']),
      () => cli(['limits', 'show', '--key', 'alice']),
      () => cli(['limits', 'set', '--key', 'alice', '--max-tokens', '300']),
    ])
    expect(show.json.key).toMatchObject({ name: 'alice' })
    expect(show.json.limits).toMatchObject({
      tpm: { value: 2000, source: 'key' },
      concurrency: { value: 2, source: 'key' },
      'daily-tokens': { value: null, source: 'key' },
      'on-budget-short': { value: 'clamp', source: 'key' },
      rpm: { value: 60, source: 'default' },
    })
    expect(human.stdout).toMatch(/^daily-tokens\s+off\s+the key's own$/m)
    expect(human.stdout).toMatch(/^rpm\s+60\s+default \(limits set --default\)$/m)
    expect(setHuman.code).toBe(0)
    expect(setHuman.stdout).toMatch(/alice.*max-tokens=300/)
    // The other key settings are untouched by a later set.
    expect((await json(['limits', 'show', '--key', 'alice'])).json.limits).toMatchObject({ tpm: { value: 2000, source: 'key' }, 'max-tokens': { value: 300, source: 'key' } })
  })

  it('exits 2 on invalid usage and 3 for an unknown key', async () => {
    const cases: [string[], number][] = [
      [['limits', 'set', '--rpm', '5'], 2],
      [['limits', 'set', '--default', '--key', 'alice', '--rpm', '5'], 2],
      [['limits', 'set', '--default'], 2],
      [['limits', 'set', '--key', 'alice', '--ip-rpm', '5'], 2],
      [['limits', 'set', '--default', '--rpm', 'lots'], 2],
      [['limits', 'set', '--default', '--rpm', '-3'], 2],
      [['limits', 'set', '--default', '--on-budget-short', 'maybe'], 2],
      [['limits', 'set', '--key', 'nobody', '--rpm', '5'], 3],
    ]
    const results = await runAll(cases.map(([args]) => () => cli(args)))
    results.forEach((r, i) => expect([cases[i][0].join(' '), r.code]).toEqual([cases[i][0].join(' '), cases[i][1]]))
    // Nothing changed.
    expect((await json(['limits', 'show'])).json.limits.rpm).toEqual({ value: 60, source: 'default' })
  })
})

describe('limit changes reach a running server within one second', () => {
  let gw: TestGateway
  let key: string
  beforeAll(async () => {
    gw = await startGateway({})
    key = JSON.parse((await runCli(['keys', 'create', '--name', 'live', '--json', '--db', gw.db])).stdout).key
    await settle(1000)
  })
  afterAll(async () => {
    await gw.stop()
  })
  const chat = (body: unknown) => gw.post('/chat', key, body)

  it('a key limit (--key --rpm 1)', async () => {
    expect((await chat({ message: 'one' })).status).toBe(200)
    expect((await runCli(['limits', 'set', '--key', 'live', '--rpm', '1', '--db', gw.db])).code).toBe(0)
    await settle(1000)
    const res = await chat({ message: 'two' })
    expect(res.status).toBe(429)
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('rate_limit_exceeded')
    expect((await runCli(['limits', 'set', '--key', 'live', '--rpm', 'off', '--db', gw.db])).code).toBe(0)
    await settle(1000)
    expect((await chat({ message: 'three' })).status).toBe(200)
  })

  it('a default limit (--default --max-tokens 50)', async () => {
    expect((await chat({ message: 'hi', max_tokens: 100 })).status).toBe(200)
    expect((await runCli(['limits', 'set', '--default', '--max-tokens', '50', '--db', gw.db])).code).toBe(0)
    await settle(1000)
    const res = await chat({ message: 'hi', max_tokens: 100 })
    expect(res.status).toBe(400)
    expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/^max_tokens exceeds limit of 50\. /)
  })

  it('a daily budget (--key --daily-tokens)', async () => {
    expect((await runCli(['limits', 'set', '--key', 'live', '--daily-tokens', '20', '--db', gw.db])).code).toBe(0)
    await settle(1000)
    const res = await chat({ message: 'this needs more than twenty tokens', max_tokens: 40 })
    expect(res.status).toBe(429)
    expect(((await res.json()) as { error: { code: string; message: string } }).error).toMatchObject({ code: 'daily_limit_exceeded', message: expect.stringMatching(/^Daily token limit exceeded\. Used: \d+\/20/) })
  })
})
