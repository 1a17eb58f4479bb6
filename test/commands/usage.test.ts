/**
 * `gateway usage today` and `gateway usage --since … --by …`: the real binary over a temp
 * SQLite file whose log rows were written through the store (the gateway's own write path).
 */
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { KeyManager } from '../../src/core/keys.js'
import type { RequestRow } from '../../src/core/types.js'
import { SqliteStore } from '../../src/storage/sqlite/sqlite-store.js'
import { runCli, runJson } from '../support/cli.js'
import { tempDir } from '../support/gateway.js'
import { requestRow, runAll } from '../support/log-rows.js'


// Every CLI run is a fresh Node process (about a second of CPU): give a loaded machine time.
vi.setConfig({ testTimeout: 240_000, hookTimeout: 60_000 })


const DAY = 86_400_000
const utcDay = (ms: number) => new Date(ms).toISOString().slice(0, 10)

let dir: string
let db: string
let ids: Record<string, string>
let prefixes: Record<string, string>
const now = Date.now()
const rows: RequestRow[] = []
const cli = (args: string[]) => runCli([...args, '--db', db])
const json = <T = any>(args: string[]) => runJson<T>([...args, '--db', db])

function row(over: Partial<RequestRow>): RequestRow {
  const r = requestRow({ timestamp: new Date(now - 60_000).toISOString(), requestId: `req_${rows.length}`, ...over })
  rows.push(r)
  return r
}

const sum = (rs: RequestRow[], f: (r: RequestRow) => number) => rs.reduce((a, r) => a + f(r), 0)

beforeAll(async () => {
  dir = tempDir('gw-usage-')
  db = join(dir, 'usage.db')
  const store = SqliteStore.open(db)
  try {
    const keys = new KeyManager(store, { now: Date.now })
    const a = await keys.create({ name: 'alice', limits: { dailyTokens: 1_000 } })
    const b = await keys.create({ name: 'bob, "the builder"', limits: { dailyTokens: null } })
    ids = { alice: a.key.id, bob: b.key.id }
    prefixes = { alice: a.prefix, bob: b.prefix }
    const k = (name: 'alice' | 'bob') => ({ keyId: ids[name], keyName: name === 'alice' ? 'alice' : 'bob, "the builder"' })
    // Today (a minute ago): alice 3 × 200, one 429, one 502; bob 2 × 200 on gpt-4o and an unknown model; one 401.
    row({ ...k('alice'), promptTokens: 100, completionTokens: 50, totalTokens: 150, costMicros: 45, latencyMs: 10 })
    row({ ...k('alice'), promptTokens: 40, completionTokens: 10, totalTokens: 50, costMicros: 12, latencyMs: 20 })
    row({ ...k('alice'), promptTokens: 30, completionTokens: 20, totalTokens: 50, costMicros: 17, latencyMs: 30, streamed: true, route: '/v1/chat/completions' })
    row({ ...k('alice'), status: 429, errorCode: 'rate_limit_exceeded', latencyMs: 1, upstreamMs: null, queuedMs: null })
    row({ ...k('alice'), status: 502, errorCode: 'upstream_error', latencyMs: 40 })
    row({ ...k('bob'), model: 'gpt-4o', promptTokens: 200, completionTokens: 100, totalTokens: 300, costMicros: 1500, latencyMs: 5 })
    row({ ...k('bob'), model: 'mock-echo', promptTokens: 10, completionTokens: 10, totalTokens: 20, costMicros: null, latencyMs: 7 })
    row({ model: null, status: 401, errorCode: 'invalid_api_key', latencyMs: 1, upstreamMs: null, queuedMs: null })
    // Not a chat request: counted in requests, not in chat_requests.
    row({ ...k('bob'), method: 'GET', route: '/usage', model: null, promptTokens: 0, completionTokens: 0, totalTokens: 0, costMicros: null, latencyMs: 2, upstreamMs: null, queuedMs: null })
    // Earlier days.
    for (const ago of [2, 5, 9]) {
      const t = now - ago * DAY
      row({ ...k('alice'), timestamp: new Date(t).toISOString(), day: utcDay(t), promptTokens: 10 * ago, completionTokens: ago, totalTokens: 11 * ago, costMicros: ago })
    }
    await store.appendRequests(rows)
  } finally {
    store.close()
  }
})

afterAll(() => {
  rmSync(dir, { recursive: true, force: true })
})

const today = () => rows.filter((r) => r.day === utcDay(now - 60_000))

describe('usage today', () => {
  it('--json: per key requests, errors, 429s, tokens, budget, cost and p50/p95, and a total', async () => {
    const r = await json(['usage', 'today'])
    expect(r.code).toBe(0)
    expect(r.json).toMatchObject({ date: utcDay(Date.now()), timezone: 'UTC' })
    const by: Record<string, any> = Object.fromEntries((r.json.keys as { key_name: string | null }[]).map((k) => [k.key_name ?? '(none)', k]))
    const alice = today().filter((x) => x.keyId === ids.alice)
    expect(by.alice).toEqual({
      key_id: ids.alice,
      key_name: 'alice',
      prefix: prefixes.alice,
      requests: 5,
      chat_requests: 5,
      errors: 2,
      rate_limited: 1,
      prompt_tokens: sum(alice, (x) => x.promptTokens),
      completion_tokens: sum(alice, (x) => x.completionTokens),
      total_tokens: 250,
      estimated_cost_usd: expect.closeTo(74 / 1e6, 12),
      p50_ms: expect.any(Number),
      p95_ms: expect.any(Number),
      daily_budget: 1_000,
      budget_used: 0.25,
    })
    expect(by.alice.p50_ms).toBeGreaterThanOrEqual(1)
    expect(by.alice.p50_ms).toBeLessThanOrEqual(by.alice.p95_ms)
    expect(by.alice.p95_ms).toBeLessThanOrEqual(40)
    expect(by['bob, "the builder"']).toMatchObject({ requests: 3, chat_requests: 2, errors: 0, total_tokens: 320, daily_budget: null, budget_used: null, estimated_cost_usd: expect.closeTo(1500 / 1e6, 12) })
    expect(by['(none)']).toMatchObject({ key_id: null, requests: 1, errors: 1, total_tokens: 0 })
    expect(r.json.total).toMatchObject({ requests: 9, chat_requests: 8, errors: 3, rate_limited: 1, total_tokens: 570, prompt_tokens: sum(today(), (x) => x.promptTokens), completion_tokens: sum(today(), (x) => x.completionTokens) })
    expect(r.json.total.estimated_cost_usd).toBeCloseTo(1574 / 1e6, 12)
  })

  it('without --json: a table per key with prefix, budget bar, cost and latency, and a TOTAL row', async () => {
    const r = await cli(['usage', 'today'])
    expect(r.code).toBe(0)
    const lines = r.stdout.split('\n')
    expect(lines.some((l) => /^KEY\s+PREFIX\s+REQUESTS\s+CHAT\s+ERRORS\s+429S\s+TOKENS\s+BUDGET\s+COST\s+P50 MS\s+P95 MS$/.test(l))).toBe(true)
    const alice = lines.find((l) => l.startsWith('alice '))!
    expect(alice).toMatch(new RegExp(`^alice\\s+${prefixes.alice}…\\s+5\\s+5\\s+2\\s+1\\s+250\\s+[█░]{10} 25%\\s+\\$0\\.0001`))
    expect(lines.some((l) => l.startsWith('bob, "the builder" '))).toBe(true)
    expect(lines.find((l) => l.startsWith('TOTAL'))).toMatch(/^TOTAL\s+-?\s*9\s+8\s+3\s+1\s+570\s/)
    expect(r.stdout).toContain('REQUESTS counts every request; CHAT the requests to /chat and /v1/chat/completions.')
  })

  it('on a day without requests says so; --timezone must be a real zone (exit 2)', async () => {
    const empty = join(dir, 'empty.db')
    expect((await runCli(['db', 'migrate', '--db', empty])).code).toBe(0) // read commands create no database
    const [human, machine, badZone, zoned] = await runAll<any>([
      () => runCli(['usage', 'today', '--db', empty]),
      () => runJson(['usage', 'today', '--db', empty]),
      () => cli(['usage', 'today', '--timezone', 'Mars/Olympus_Mons']),
      () => json(['usage', 'today', '--timezone', 'Pacific/Kiritimati']),
    ])
    expect(human.code).toBe(0)
    expect(human.stdout).toMatch(/No requests on \d{4}-\d{2}-\d{2} \(UTC\) yet/)
    expect(machine.json).toMatchObject({ keys: [], total: { requests: 0, total_tokens: 0, estimated_cost_usd: null } })
    expect(badZone.code).toBe(2)
    expect(zoned.code).toBe(0)
    expect(zoned.json.date).toBe(new Intl.DateTimeFormat('en-CA', { timeZone: 'Pacific/Kiritimati', year: 'numeric', month: '2-digit', day: '2-digit' }).format(Date.now()))
  })
})

describe('usage --since/--until --by', () => {
  it('--by day (default, since 7d): one group per day of the log rows', async () => {
    const r = await json(['usage'])
    expect(r.code).toBe(0)
    expect(r.json.by).toBe('day')
    expect(Date.now() - Date.parse(r.json.since)).toBeGreaterThanOrEqual(7 * DAY)
    expect(Date.now() - Date.parse(r.json.since)).toBeLessThan(7 * DAY + 120_000)
    expect(r.json.until).toBeNull()
    const inRange = rows.filter((x) => Date.parse(x.timestamp) >= now - 7 * DAY)
    const days = [...new Set(inRange.map((x) => x.day))].sort()
    expect(r.json.groups.map((g: { day: string }) => g.day)).toEqual(days)
    for (const g of r.json.groups as { day: string; requests: number; total_tokens: number }[]) {
      const rs = inRange.filter((x) => x.day === g.day)
      expect([g.day, g.requests, g.total_tokens]).toEqual([g.day, rs.length, sum(rs, (x) => x.totalTokens)])
    }
    expect(r.json.total.total_tokens).toBe(sum(inRange, (x) => x.totalTokens))
  })

  it('--by key and --by model; --key narrows to one key', async () => {
    const [byKey, byModel, oneKey] = await runAll<any>([
      () => json(['usage', '--since', '30d', '--by', 'key']),
      () => json(['usage', '--since', '30d', '--by', 'model']),
      () => json(['usage', '--since', '30d', '--by', 'model', '--key', 'bob, "the builder"']),
    ])
    const k = Object.fromEntries((byKey.json.groups as { key: string | null; key_name: string | null }[]).map((g) => [g.key ?? '(none)', g]))
    expect(k[ids.alice]).toMatchObject({ key_name: 'alice', requests: 8, total_tokens: 250 + 11 * (2 + 5 + 9) })
    expect(k[ids.bob]).toMatchObject({ key_name: 'bob, "the builder"', requests: 3, chat_requests: 2, total_tokens: 320 })
    expect(k['(none)']).toMatchObject({ requests: 1, errors: 1 })
    const m = Object.fromEntries((byModel.json.groups as { model: string | null }[]).map((g) => [g.model ?? '(none)', g]))
    expect(m['gpt-4o']).toMatchObject({ requests: 1, total_tokens: 300, estimated_cost_usd: expect.closeTo(0.0015, 12) })
    expect(m['mock-echo']).toMatchObject({ requests: 1, total_tokens: 20, estimated_cost_usd: null })
    expect(oneKey.json.groups.map((g: { model: string | null }) => g.model)).toEqual([null, 'gpt-4o', 'mock-echo'])
    expect(oneKey.json.total).toMatchObject({ requests: 3, chat_requests: 2 })
    expect(oneKey.json.key).toEqual({ id: ids.bob, name: 'bob, "the builder"' })
    expect(byKey.json.key).toBeNull()
  })

  it('--until (exclusive) and ISO dates bound the range', async () => {
    const since = utcDay(now - 10 * DAY)
    const until = new Date(now - 3 * DAY).toISOString()
    const r = await json(['usage', '--since', since, '--until', until, '--by', 'day'])
    expect(r.code).toBe(0)
    expect(r.json.since).toBe(`${since}T00:00:00.000Z`)
    expect(r.json.until).toBe(until)
    expect(r.json.total).toMatchObject({ requests: 2, total_tokens: 11 * (5 + 9) })
  })

  it('without --json: a table with a TOTAL row', async () => {
    const r = await cli(['usage', '--since', '30d', '--by', 'key'])
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^KEY\s+REQUESTS\s+CHAT\s+ERRORS\s+429S\s+PROMPT\s+COMPLETION\s+TOKENS\s+COST\s+P50 MS\s+P95 MS$/m)
    expect(r.stdout).toMatch(/^alice\s+8\s+8\s+2\s+1\s/m)
    expect(r.stdout).toMatch(/^TOTAL\s+12\s+11\s+3\s+1\s/m)
  })

  it('--key names the key it reports on', async () => {
    const r = await cli(['usage', '--since', '30d', '--key', 'alice'])
    expect(r.code).toBe(0)
    expect(r.stdout.split('\n')[0]).toMatch(new RegExp(`^Usage of key alice \\(${ids.alice}\\) from \\d{4}-\\d{2}-\\d{2} to ${utcDay(Date.now())} \\(whole days, UTC\\), by day$`))
  })

  it('exits 2 on a bad --since, --until or --by, and 3 for an unknown --key', async () => {
    const cases: [string[], number][] = [
      [['usage', '--since', 'last tuesday'], 2],
      [['usage', '--until', '2026-13-45'], 2],
      [['usage', '--by', 'week'], 2],
      [['usage', '--key', 'nobody'], 3],
    ]
    const results = await runAll(cases.map(([args]) => () => cli(args)))
    results.forEach((r, i) => expect([cases[i][0].join(' '), r.code]).toEqual([cases[i][0].join(' '), cases[i][1]]))
  })
})
