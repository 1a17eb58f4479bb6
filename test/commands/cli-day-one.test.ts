/** What an operator meets first: help, typos, parse errors, a mistyped --db, time ranges, tables, environment switches, raw system errors. */
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { runCli, runJson, spawnServe } from '../support/cli.js'
import { settle, tempDir } from '../support/gateway.js'
import { runAll } from '../support/log-rows.js'

vi.setConfig({ testTimeout: 240_000, hookTimeout: 60_000 })

const README = new URL('../../README.md', import.meta.url).pathname
let dir: string
let db: string

beforeAll(async () => {
  dir = tempDir('gw-day1-')
  db = join(dir, 'day1.db')
  expect((await runCli(['db', 'migrate', '--db', db])).code).toBe(0)
})

afterAll(() => {
  rmSync(dir, { recursive: true, force: true })
})

describe('help', () => {
  it('gateway --help gives every topic its own summary and lists usage once', async () => {
    const r = await runCli(['--help'])
    expect(r.stdout).toMatch(/^ {2}keys\s+Create, list, show, update, rotate, revoke and delete API keys$/m)
    expect(r.stdout).toMatch(/^ {2}limits\s+Rate limits and token budgets/m)
    expect(r.stdout).toMatch(/^ {2}logs\s+Export or prune the request log$/m)
    expect(r.stdout).toMatch(/^ {2}db\s+The SQLite database/m)
    expect(r.stdout.match(/^ {2}usage\s/gm)).toHaveLength(1)
  })

  it('every command\'s help has EXAMPLES', async () => {
    const manifest = JSON.parse(readFileSync(new URL('../../oclif.manifest.json', import.meta.url), 'utf8')) as { commands: Record<string, unknown> }
    const ids = Object.keys(manifest.commands)
    expect(ids.length).toBeGreaterThan(10)
    const helps = await runAll(ids.map((id) => () => runCli([...id.split(':'), '--help'])))
    const without = ids.filter((_, i) => !/^EXAMPLES$/m.test(helps[i].stdout))
    expect(without).toEqual([])
  })

  it('a typo names the closest command in space syntax, exits 2 and never prompts', async () => {
    const [typo, topicTypo, asJson] = await runAll([() => runCli(['keys', 'lst']), () => runCli(['kyes', 'list']), () => runCli(['keys', 'lst', '--json'])])
    expect(asJson.code).toBe(2)
    expect(JSON.parse(asJson.stdout)).toEqual({ error: { message: expect.stringContaining('Did you mean "gateway keys list"?'), code: 'command_not_found', exit: 2 } })
    expect(typo.code).toBe(2)
    expect(typo.stderr).toContain('"gateway keys lst" is not a command.')
    expect(typo.stderr).toContain('Did you mean "gateway keys list"?')
    expect(typo.stderr).toContain('See "gateway keys --help"')
    expect(topicTypo.code).toBe(2)
    expect(topicTypo.stderr).toContain('Did you mean "gateway keys list"?')
  })

  it('a parse error keeps its own line breaks and escapes the control characters the user typed', async () => {
    const [missing, option] = await runAll([() => runCli(['keys', 'create', '--db', db]), () => runCli(['usage', '--by', 'day\u001b[2J', '--db', db])])
    expect(missing.code).toBe(2)
    expect(missing.stderr).toMatch(/Missing required flag name\nSee more help with --help/)
    expect(missing.stderr).not.toContain('\\n')
    expect(option.code).toBe(2)
    expect(option.stderr).toContain('day\\x1b[2J')
    expect(option.stderr).not.toContain('\u001b')
    expect(option.stderr).toMatch(/\nSee more help with --help/)
  })
})

describe('a database that is not there', () => {
  it('read commands exit 3 with "no database at PATH" (human and --json) and create nothing', async () => {
    const nowhere = join(dir, 'typo', 'gatewy.db')
    const reads = [['limits', 'set', '--key', 'alice', '--rpm', '5'], ['keys', 'list'], ['keys', 'show', 'alice'], ['keys', 'revoke', 'alice'], ['keys', 'delete', 'alice'], ['limits', 'show'], ['usage'], ['usage', 'today'], ['logs', 'export'], ['logs', 'prune', '--older-than', '30d']]
    const human = await runAll(reads.map((args) => () => runCli([...args, '--db', nowhere])))
    const machine = await runAll(reads.slice(0, 3).map((args) => () => runJson<any>([...args, '--db', nowhere])))
    for (const [i, r] of human.entries()) {
      expect(r.code, reads[i].join(' ')).toBe(3)
      expect(r.stderr.trim(), reads[i].join(' ')).toBe(`Error: no database at ${nowhere}`)
    }
    for (const r of machine) expect(r.json).toEqual({ error: { message: `no database at ${nowhere}`, code: 'no_database', exit: 3 } })
    expect(existsSync(join(dir, 'typo'))).toBe(false)
  })

  it('keys create and limits set --default create one', async () => {
    const fresh = [join(dir, 'new-a', 'g.db'), join(dir, 'new-b', 'g.db')]
    const [created, set] = await runAll([() => runCli(['keys', 'create', '--name', 'first', '--db', fresh[0]]), () => runCli(['limits', 'set', '--default', '--rpm', '20', '--db', fresh[1]])])
    expect(created.code).toBe(0)
    expect(set.code).toBe(0)
    for (const f of fresh) expect(existsSync(f)).toBe(true)
  })
})

describe('time ranges', () => {
  it('--until before --since and a future --since exit 2; a time without a zone is UTC', async () => {
    const [backwards, future, exportBackwards, zoneless] = await runAll<any>([
      () => runJson(['usage', '--since', '1d', '--until', '2d', '--db', db]),
      () => runJson(['usage', '--since', '2099-01-01', '--db', db]),
      () => runCli(['logs', 'export', '--since', '2026-11-02', '--until', '2026-11-01', '--db', db]),
      () => runJson(['usage', '--since', '2026-01-01T10:00', '--until', '2026-01-02 10:30:15', '--db', db]),
    ])
    expect(backwards.code).toBe(2)
    expect(backwards.json.error.message).toMatch(/--until .* is not after --since/)
    expect(future.code).toBe(2)
    expect(future.json.error.message).toMatch(/--since 2099-01-01T00:00:00.000Z is in the future/)
    expect(exportBackwards.code).toBe(2)
    expect(exportBackwards.stdout).toBe('')
    expect(zoneless.json).toMatchObject({ since: '2026-01-01T10:00:00.000Z', until: '2026-01-02T10:30:15.000Z' })
  })
})

describe('tables', () => {
  it('line columns up by display width: CJK and emoji take two columns, combining marks none', async () => {
    const tdb = join(dir, 'wide.db')
    for (const name of ['abcdef', '日本語', 'cafe\u0301s', '🚀🚀x']) expect((await runCli(['keys', 'create', '--name', name, '--db', tdb])).code).toBe(0)
    const out = (await runCli(['keys', 'list', '--db', tdb])).stdout
    const row = (name: string) => out.split('\n').find((l) => l.includes(name))!
    const at = (name: string) => row(name).indexOf('gw-')
    // The PREFIX column starts at the same terminal column in every row, so its index in
    // UTF-16 units differs by (units - columns) of the name: 日本語 3 units in 6 columns,
    // cafe\u0301s 6 units in 5 columns, 🚀🚀x 5 units in 5 columns.
    expect(at('日本語')).toBe(at('abcdef') - 3)
    expect(at('cafe\u0301s')).toBe(at('abcdef') + 1)
    expect(at('🚀🚀x')).toBe(at('abcdef'))
    expect(out).toMatch(/\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z/)
    expect(out).not.toMatch(/:\d{2}\.\d{3}Z/)
  })

  it('an empty table says so once', async () => {
    const usage = await runCli(['usage', '--db', db])
    expect(usage.code).toBe(0)
    expect(usage.stdout.match(/No rows\./g)).toHaveLength(1)
    expect(usage.stdout).not.toMatch(/TOTAL/)
  })
})

describe('environment', () => {
  it('GATEWAY_CSV_LOG=off writes no CSV', async () => {
    const home = tempDir('gw-csv-off-')
    const gdb = join(home, 'g.db')
    try {
      const key = (await runJson<any>(['keys', 'create', '--name', 'csv', '--db', gdb])).json.key as string
      const serve = await spawnServe(['--db', gdb], { GATEWAY_CSV_LOG: 'off' })
      try {
        expect(serve.info.csvLog).toBeNull()
        const res = await fetch(`${serve.url}/chat`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: '{"message":"hi"}' })
        expect(res.status).toBe(200)
        await settle(500)
      } finally {
        await serve.stop()
      }
      expect(readdirSync(home).filter((f) => f.endsWith('.csv'))).toEqual([])
      expect(readdirSync(process.cwd()).filter((f) => /^off-.*\.csv$/.test(f))).toEqual([])
    } finally {
      rmSync(home, { recursive: true, force: true })
    }
  })

  it('boolean variables take on/off words both ways and refuse anything else', async () => {
    const env = { OPENAI_API_KEY: 'sk-test-not-used' }
    for (const [value, mode] of [['off', 'upstream'], ['0', 'upstream'], ['on', 'mock'], ['TRUE', 'mock']] as const) {
      const serve = await spawnServe(['--db', join(dir, 'env.db')], { ...env, GATEWAY_MOCK: value })
      await serve.stop()
      expect(serve.info.mode, `GATEWAY_MOCK=${value}`).toBe(mode)
    }
    const bad = await runCli(['serve', '--port', '0', '--db', join(dir, 'env.db')], { GATEWAY_MOCK: 'maybe' })
    expect(bad.code).toBe(2)
    expect(bad.stderr.trim()).toBe('Error: GATEWAY_MOCK=maybe is not on or off: use 1/true/yes/on or 0/false/no/off')
  })
})

describe('raw errors become one line naming the flag, the path and what to do, exit 2', () => {
  const oneLine = (r: { code: number; stderr: string }) => {
    expect(r.code).toBe(2)
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
    expect(r.stderr).not.toMatch(/\n\s+at /)
    return r.stderr.trim()
  }

  it('a busy port', async () => {
    const first = await spawnServe(['--db', join(dir, 'port.db')])
    try {
      const second = await runCli(['serve', '--port', String(first.info.port), '--db', join(dir, 'port2.db')])
      expect(oneLine(second)).toBe(`Error: --port ${String(first.info.port)}: 127.0.0.1:${String(first.info.port)} is in use by another process; stop it or choose another --port`)
    } finally {
      await first.stop()
    }
  })

  it('a file that is not a database, a folder that is a file, a bad or missing --prices file, an export into a missing folder', async () => {
    const bad = join(dir, 'bad-prices.json')
    writeFileSync(bad, '{"gpt-4o": {input: 1}')
    const [notDb, notDir, badPrices, noPrices, noFolder] = await runAll([
      () => runCli(['keys', 'list', '--db', README]),
      () => runCli(['db', 'migrate', '--db', join(README, 'sub', 'g.db')]),
      () => runCli(['serve', '--port', '0', '--prices', bad, '--db', join(dir, 'p.db')]),
      () => runCli(['serve', '--port', '0', '--prices', join(dir, 'nope.json'), '--db', join(dir, 'p.db')]),
      () => runCli(['logs', 'export', '--output', join(dir, 'no', 'such', 'x.csv'), '--db', db]),
    ])
    expect(oneLine(notDb)).toBe(`Error: --db ${README} is not a SQLite database; point --db at the gateway's database file or at a new file name`)
    expect(oneLine(notDir)).toMatch(/^Error: --db \S+README.md\/sub\/g.db: \S+README.md\/sub: a part of the path is a file, not a folder \(ENOTDIR\); check the path$/)
    expect(oneLine(badPrices)).toMatch(/^Error: --prices: \S+bad-prices.json is not valid JSON \(.*\); fix the file or leave the option out$/)
    expect(oneLine(noPrices)).toBe(`Error: --prices ${join(dir, 'nope.json')}: no such file or folder (ENOENT); check the path`)
    expect(oneLine(noFolder)).toBe(`Error: --output ${join(dir, 'no', 'such', 'x.csv')}: no such file or folder (ENOENT); check the path`)
  })
})
