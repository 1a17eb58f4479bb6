/**
 * Issue 5, "who used what": the request log (SQLite + CSV), durability, /usage, cost,
 * `gateway usage`, /metrics, and the invariant that usage totals equal the sum of the log
 * rows, which equal what clients were told. Real gateway, real upstream server, real CLI.
 */
import Database from 'better-sqlite3'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse } from 'csv-parse/sync'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { runCli, runJson, spawnServe } from '../support/cli.js'
import { NO_LIMITS, settle, startGateway, tempDir, type TestGateway } from '../support/gateway.js'
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js'
import type { RequestRow } from '../../src/core/types.js'
import { CSV_COLUMNS, type LogRow, neutralised, requestRow } from '../support/log-rows.js'


// CLI runs and `serve` children are fresh Node processes: give a loaded two-core machine time.
vi.setConfig({ testTimeout: 240_000, hookTimeout: 60_000 })

const UA = 'usage-logs-test/1.0'
const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?Z$/
/** gpt-4o-mini in the bundled prices.json: USD per 1M tokens = micro-dollars per token. */
const MINI = { input: 0.15, output: 0.6 }

// ---------------------------------------------------------------------------------------------
// helpers


function sqlite<T>(db: string, fn: (d: Database.Database) => T): T {
  const d = new Database(db, { readonly: true, fileMustExist: true })
  try {
    return fn(d)
  } finally {
    d.close()
  }
}

function logRows(db: string): LogRow[] {
  return sqlite(db, (d) => d.prepare('select * from request_log order by id').all() as LogRow[])
}

function rowsById(db: string, id: string): LogRow[] {
  return sqlite(db, (d) => d.prepare('select * from request_log where request_id = ?').all(id) as LogRow[])
}

/** Waits (bounded) until a request id has a row: for requests whose client left before the end. */
async function waitForRow(db: string, id: string): Promise<LogRow[]> {
  for (let i = 0; i < 100; i++) {
    const rows = rowsById(db, id)
    if (rows.length > 0) return rows
    await settle(50)
  }
  return rowsById(db, id)
}

interface Sent {
  id: string
  status: number
  json: any
  headers: Headers
}

async function send(url: string, path: string, key: string | null, body?: unknown, headers: Record<string, string> = {}): Promise<Sent> {
  const res = await fetch(`${url}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: {
      'user-agent': UA,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      ...(key ? { authorization: `Bearer ${key}` } : {}),
      ...headers,
    },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  })
  const text = await res.text()
  let json: any = null
  try {
    json = JSON.parse(text)
  } catch {
    json = text
  }
  return { id: res.headers.get('x-request-id') ?? '', status: res.status, json, headers: res.headers }
}

/** What the client was told about tokens. */
interface Told {
  id: string
  prompt: number
  completion: number
  total: number
}

async function chatTold(url: string, key: string, message: string): Promise<Told> {
  const r = await send(url, '/chat', key, { message })
  expect(r.status).toBe(200)
  // /chat tells only the total; the split comes from the log row (checked against the total).
  return { id: r.id, prompt: -1, completion: -1, total: r.json.tokens_used }
}

async function completionTold(url: string, key: string, content: string, model = 'gpt-4o-mini'): Promise<Told> {
  const r = await send(url, '/v1/chat/completions', key, { model, messages: [{ role: 'user', content }] })
  expect(r.status).toBe(200)
  const u = r.json.usage
  return { id: r.id, prompt: u.prompt_tokens, completion: u.completion_tokens, total: u.total_tokens }
}

/** A streamed completion read to the end; the usage chunk is what the client was told. */
async function streamTold(url: string, key: string, content: string): Promise<Told & { text: string }> {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}`, 'user-agent': UA },
    body: JSON.stringify({ model: 'gpt-4o-mini', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content }] }),
  })
  expect(res.status).toBe(200)
  const body = await res.text()
  expect(body.trimEnd().endsWith('data: [DONE]')).toBe(true)
  let usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number } | null = null
  let text = ''
  for (const line of body.split('\n')) {
    if (!line.startsWith('data: ') || line === 'data: [DONE]') continue
    const chunk = JSON.parse(line.slice(6))
    if (chunk.usage) usage = chunk.usage
    for (const c of chunk.choices ?? []) text += c.delta?.content ?? ''
  }
  expect(usage).not.toBeNull()
  return { id: res.headers.get('x-request-id') ?? '', prompt: usage!.prompt_tokens, completion: usage!.completion_tokens, total: usage!.total_tokens, text }
}



/** Every CSV request-log file in a directory, parsed strictly (RFC 4180). */
function readCsvLogs(dir: string, stem = 'requests'): { file: string; day: string; records: string[][] }[] {
  const pattern = new RegExp(`^${stem}-(\\d{4}-\\d{2}-\\d{2})\\.csv$`)
  return readdirSync(dir)
    .filter((f) => pattern.test(f))
    .sort()
    .map((f) => ({ file: join(dir, f), day: pattern.exec(f)![1], records: parse(readFileSync(join(dir, f)), { bom: true, relax_column_count: false, skip_empty_lines: false }) as string[][] }))
}

/** Asserts each CSV data row equals its SQLite row cell by cell; returns request ids seen. */
function expectCsvMatchesSqlite(files: ReturnType<typeof readCsvLogs>, rows: LogRow[]): string[] {
  const byId = new Map<string, LogRow>()
  for (const r of rows) byId.set(r.request_id, r)
  const seen: string[] = []
  for (const { day, records } of files) {
    const header = records[0]
    expect(header).toEqual(expect.arrayContaining(Object.keys(CSV_COLUMNS)))
    // The header appears once, at the top.
    expect(records.slice(1).filter((r) => r.join(',') === header.join(','))).toEqual([])
    const idCol = header.indexOf('request_id')
    for (const record of records.slice(1)) {
      expect(record.length).toBe(header.length)
      const row = byId.get(record[idCol])
      expect(row, `CSV row ${record[idCol]} is not in SQLite`).toBeDefined()
      for (const [name, cell] of Object.entries(CSV_COLUMNS)) expect([name, record[header.indexOf(name)]]).toEqual([name, cell(row!)])
      // One file per UTC day: a row sits in its own day's file.
      expect(row!.timestamp.slice(0, 10)).toBe(day)
      seen.push(record[idCol])
    }
  }
  return seen
}

const utcDay = (ms = Date.now()) => new Date(ms).toISOString().slice(0, 10)

/** A log row inserted straight through the store (for other days and bulk data). */
function directRow(over: Partial<RequestRow>): RequestRow {
  return requestRow({ userAgent: UA, ...over })
}

/** Parses Prometheus text format into samples. */
function parseMetrics(text: string): { name: string; labels: Record<string, string>; value: number }[] {
  const out: { name: string; labels: Record<string, string>; value: number }[] = []
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$/.exec(line)
    if (!m) throw new Error(`not Prometheus text: ${line}`)
    const labels: Record<string, string> = {}
    for (const l of (m[3] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2]
    out.push({ name: m[1], labels, value: m[4] === '+Inf' ? Infinity : Number(m[4]) })
  }
  return out
}

function metric(samples: ReturnType<typeof parseMetrics>, name: string, labels: Record<string, string> = {}): number {
  return samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((a, s) => a + s.value, 0)
}

// ---------------------------------------------------------------------------------------------

let upstream: MockUpstream
let gw: TestGateway
let alice: string
let aliceId: string
let limited: string
let narrow: string
let admin: string
const testStart = new Date().toISOString()

beforeAll(async () => {
  upstream = await startMockUpstream()
  gw = await startGateway({ upstreamUrl: upstream.url, firstByteTimeoutMs: 500 })
  alice = await gw.createKey({ name: 'alice', limits: { ...NO_LIMITS, dailyTokens: 1_000_000 } })
  aliceId = (await gw.admin.findKey('alice'))!.id
  limited = await gw.createKey({ name: 'limited', limits: { ...NO_LIMITS, rpm: 1 } })
  narrow = await gw.createKey({ name: 'narrow', limits: NO_LIMITS, models: ['gpt-4o'] })
  admin = await gw.createKey({ name: 'root', admin: true, limits: NO_LIMITS })
})

afterAll(async () => {
  await gw.stop()
  await upstream.close()
})

describe('request log: one row per request, refused ones included', () => {
  it('writes exactly one complete row for each of 200, 400, 401, 403, 404, 413, 429, 499, 502 and 504', async () => {
    const url = gw.url
    const ids = { alice: aliceId, limited: (await gw.admin.findKey('limited'))!.id, narrow: (await gw.admin.findKey('narrow'))!.id, root: (await gw.admin.findKey('root'))!.id }
    type Expect = { r: Sent; route: string; method: string; model: string | null; key: keyof typeof ids | null; code: string | null; upstream: boolean; streamed?: boolean; told?: Told }
    const cases: Expect[] = []
    const add = (r: Sent, e: Omit<Expect, 'r'>) => cases.push({ r, ...e })

    const chat = await send(url, '/chat', alice, { message: 'log me please' })
    add(chat, { route: '/chat', method: 'POST', model: 'gpt-4o-mini', key: 'alice', code: null, upstream: true, told: { id: chat.id, prompt: -1, completion: -1, total: chat.json.tokens_used } })
    const v1 = await send(url, '/v1/chat/completions', alice, { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'json please' }] })
    add(v1, { route: '/v1/chat/completions', method: 'POST', model: 'gpt-4o-mini', key: 'alice', code: null, upstream: true, told: { id: v1.id, prompt: v1.json.usage.prompt_tokens, completion: v1.json.usage.completion_tokens, total: v1.json.usage.total_tokens } })
    const streamed = await streamTold(url, alice, 'stream please')
    const streamRows = rowsById(gw.db, streamed.id)
    add({ id: streamed.id, status: 200, json: null, headers: new Headers() }, { route: '/v1/chat/completions', method: 'POST', model: 'gpt-4o-mini', key: 'alice', code: null, upstream: true, streamed: true, told: streamed })
    expect(streamRows).toHaveLength(1) // committed before the client saw [DONE]
    add(await send(url, '/chat', alice, '{"message": '), { route: '/chat', method: 'POST', model: 'gpt-4o-mini', key: 'alice', code: 'invalid_json', upstream: false })
    add(await send(url, '/chat', null, { message: 'who am i' }), { route: '/chat', method: 'POST', model: null, key: null, code: 'invalid_api_key', upstream: false })
    add(await send(url, '/v1/chat/completions', 'gw-' + 'Z'.repeat(43), { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }), { route: '/v1/chat/completions', method: 'POST', model: null, key: null, code: 'invalid_api_key', upstream: false })
    // The model a refused request asked for is known, and "who tried what" is the point of the log.
    add(await send(url, '/v1/chat/completions', narrow, { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }), { route: '/v1/chat/completions', method: 'POST', model: 'gpt-4o-mini', key: 'narrow', code: 'model_not_allowed', upstream: false })
    add(await send(url, '/metrics', alice), { route: '/metrics', method: 'GET', model: null, key: 'alice', code: 'admin_required', upstream: false })
    add(await send(url, '/no/such/route', alice), { route: '/no/such/route', method: 'GET', model: null, key: 'alice', code: 'not_found', upstream: false })
    add(await send(url, '/chat', alice, JSON.stringify({ message: 'x'.repeat(1024 * 1024 + 10) })), { route: '/chat', method: 'POST', model: 'gpt-4o-mini', key: 'alice', code: 'body_too_large', upstream: false })
    const first = await send(url, '/chat', limited, { message: 'one' })
    add(first, { route: '/chat', method: 'POST', model: 'gpt-4o-mini', key: 'limited', code: null, upstream: true, told: { id: first.id, prompt: -1, completion: -1, total: first.json.tokens_used } })
    add(await send(url, '/chat', limited, { message: 'two' }), { route: '/chat', method: 'POST', model: 'gpt-4o-mini', key: 'limited', code: 'rate_limit_exceeded', upstream: false })
    upstream.script({ kind: 'status', status: 500 })
    add(await send(url, '/chat', alice, { message: 'upstream fails' }), { route: '/chat', method: 'POST', model: 'gpt-4o-mini', key: 'alice', code: 'upstream_error', upstream: true })
    upstream.script({ kind: 'hang' })
    add(await send(url, '/chat', alice, { message: 'upstream hangs' }), { route: '/chat', method: 'POST', model: 'gpt-4o-mini', key: 'alice', code: 'upstream_timeout', upstream: true })
    add(await send(url, '/usage', alice), { route: '/usage', method: 'GET', model: null, key: 'alice', code: null, upstream: false })
    add(await send(url, '/usage', admin), { route: '/usage', method: 'GET', model: null, key: 'root', code: null, upstream: false })
    add(await send(url, '/v1/models', alice), { route: '/v1/models', method: 'GET', model: null, key: 'alice', code: null, upstream: false })
    add(await send(url, '/health', null), { route: '/health', method: 'GET', model: null, key: null, code: null, upstream: false })

    const expectedStatus = [200, 200, 200, 400, 401, 401, 403, 403, 404, 413, 200, 429, 502, 504, 200, 200, 200, 200]
    expect(cases.map((c) => c.r.status)).toEqual(expectedStatus)
    const testEnd = new Date().toISOString()
    for (const c of cases) {
      expect.soft(c.r.id, `${c.route} ${c.r.status} has an x-request-id`).toMatch(/^req_/)
      // Committed before the response left: no drain, no wait.
      const rows = rowsById(gw.db, c.r.id)
      expect(rows, `${c.route} ${c.r.status} has exactly one row`).toHaveLength(1)
      const row = rows[0]
      expect.soft(row).toMatchObject({
        request_id: c.r.id,
        method: c.method,
        route: c.route,
        status: c.r.status,
        model: c.model,
        key_id: c.key ? ids[c.key] : null,
        key_name: c.key,
        ip: '127.0.0.1',
        user_agent: UA,
        error_code: c.code,
        streamed: c.streamed ? 1 : 0,
        request_body: null,
        response_body: null,
      })
      if (c.r.status >= 400 && c.r.json && typeof c.r.json === 'object') expect.soft(row.error_code).toBe(c.r.json.error.code) // what the client was told
      expect.soft(row.timestamp).toMatch(ISO_UTC)
      expect.soft(row.timestamp >= testStart && row.timestamp <= testEnd).toBe(true)
      expect.soft(row.latency_ms).toBeGreaterThan(0)
      if (c.upstream) {
        expect.soft(row.upstream_ms).toBeGreaterThan(0)
        expect.soft(row.queued_ms).not.toBeNull()
        expect.soft(row.queued_ms!).toBeGreaterThanOrEqual(0)
      } else {
        expect.soft(row.upstream_ms).toBeNull()
      }
      if (c.told) {
        expect.soft(row.total_tokens).toBe(c.told.total)
        if (c.told.prompt >= 0) expect.soft([row.prompt_tokens, row.completion_tokens]).toEqual([c.told.prompt, c.told.completion])
        expect.soft(row.prompt_tokens + row.completion_tokens).toBe(row.total_tokens)
        expect.soft(row.total_tokens).toBeGreaterThan(0)
        expect.soft(row.estimated).toBe(0)
      } else {
        expect.soft([row.prompt_tokens, row.completion_tokens, row.total_tokens]).toEqual([0, 0, 0])
      }
    }
  })

  it('honours a well-formed client x-request-id and logs a client that leaves mid-stream once, with what was streamed', async () => {
    const id = `client-abort-${Date.now()}`
    upstream.script({ kind: 'normal', chunkDelayMs: 60 })
    const controller = new AbortController()
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      signal: controller.signal,
      headers: { 'content-type': 'application/json', authorization: `Bearer ${alice}`, 'x-request-id': id, 'user-agent': UA },
      body: JSON.stringify({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'one two three four five six seven eight nine ten eleven twelve' }] }),
    })
    expect(res.headers.get('x-request-id')).toBe(id)
    const reader = res.body!.getReader()
    await reader.read()
    await reader.read()
    controller.abort()
    await reader.cancel().catch(() => {})
    const rows = await waitForRow(gw.db, id)
    expect(rows).toHaveLength(1)
    expect(rows[0]).toMatchObject({ status: 499, streamed: 1, key_id: aliceId, model: 'gpt-4o-mini', error_code: 'client_closed_request' })
    expect(rows[0].completion_tokens).toBeGreaterThan(0)
    await settle(300)
    expect(rowsById(gw.db, id)).toHaveLength(1) // and never a second one
  })

  it('marks tokens the gateway had to count itself as estimated', async () => {
    upstream.script({ kind: 'normal', omitUsage: true })
    const r = await send(gw.url, '/v1/chat/completions', alice, { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'count me yourself' }] })
    expect(r.status).toBe(200)
    expect(r.headers.get('x-gateway-tokens-estimated')).toBe('true')
    const [row] = rowsById(gw.db, r.id)
    expect(row.estimated).toBe(1)
    expect(row.total_tokens).toBeGreaterThan(0)
  })

  it('stores no prompt or response text by default, anywhere on disk', async () => {
    const marker = `secret-prompt-${Date.now()}-zq`
    const r = await send(gw.url, '/chat', alice, { message: marker })
    expect(r.status).toBe(200)
    expect(rowsById(gw.db, r.id)[0]).toMatchObject({ request_body: null, response_body: null })
    await gw.built.requestLog.drain()
    for (const f of readdirSync(gw.dir)) expect(readFileSync(join(gw.dir, f)).toString('latin1'), f).not.toContain(marker)
  })

  it('stores prompt and response bodies with --log-bodies (logBodies)', async () => {
    const g = await startGateway({ upstreamUrl: upstream.url, logBodies: true })
    try {
      const k = await g.createKey({ name: 'bodies', limits: NO_LIMITS })
      const r = await send(g.url, '/chat', k, { message: 'remember this text' })
      expect(r.status).toBe(200)
      const [row] = rowsById(g.db, r.id)
      expect(row.request_body).toContain('remember this text')
      expect(row.response_body).toContain('Echo: remember this text')
    } finally {
      await g.stop()
    }
  })
})

describe('CSV request log', () => {
  it('appends to requests-YYYY-MM-DD.csv with one header across restarts, neutralised formulas, and the same cells as SQLite', async () => {
    const dir = tempDir()
    const tricky = ['=HYPERLINK("http://evil.example","click")', '+SUM(1,2)', '-2+3', '@cmd', '\ttabbed', '\rreturn', 'comma, "quoted"\nnew line ü 日本 🚀', 'bare\nnewline']
    try {
      const ids: string[] = []
      for (const round of [0, 1]) {
        const g = await startGateway({ upstreamUrl: upstream.url, dir })
        try {
          for (const [i, name] of tricky.entries()) {
            const k = await g.createKey({ name: `${name}#${round}`, limits: NO_LIMITS })
            ids.push((await send(g.url, '/chat', k, { message: `row ${i}` }, { 'user-agent': i % 2 ? '=cmd|calc' : '@agent' })).id)
          }
          ids.push((await send(g.url, '/chat', null, { message: 'no key' })).id)
        } finally {
          await g.stop()
        }
      }
      const files = readCsvLogs(dir)
      expect(files.map((f) => f.day)).toContain(utcDay())
      const raw = readFileSync(files.find((f) => f.day === utcDay())!.file, 'utf8')
      expect(raw.startsWith('timestamp,')).toBe(true)
      // RFC 4180: a field holding a line break (LF or CR alone too) is quoted, or spreadsheets split the row.
      expect.soft(raw.includes('"bare\nnewline#0"'), 'the field "bare\\nnewline#0" is quoted').toBe(true)
      expect.soft(raw.includes(`"'\rreturn#0"`), 'the field "\\rreturn#0" is quoted').toBe(true)
      const rows = logRows(join(dir, 'gateway.db'))
      const seen = expectCsvMatchesSqlite(files, rows)
      expect([...seen].sort()).toEqual([...ids].sort())
      expect(seen.sort()).toEqual(rows.map((r) => r.request_id).sort())
      const all = files.flatMap((f) => f.records.slice(1))
      const header = files[0].records[0]
      const names = all.map((r) => r[header.indexOf('key_name')])
      for (const name of tricky) expect(names).toContain(neutralised(`${name}#0`))
      expect(names).toContain("'=HYPERLINK(\"http://evil.example\",\"click\")#1")
      expect(all.map((r) => r[header.indexOf('user_agent')])).toEqual(expect.arrayContaining(["'=cmd|calc", "'@agent"]))
      for (const r of all) for (const cell of r) expect(cell).not.toMatch(/^[=+\-@\t\r]/)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('serve writes it beside the database by default, to --csv-log PATH, and not at all with --no-csv-log', async () => {
    const dir = tempDir()
    try {
      const db = join(dir, 'db', 'gw.db')
      const k = (await runJson<{ key: string }>(['keys', 'create', '--name', 'csv', '--rpm', 'off', '--db', db])).json.key
      const variants: [string[], string | null][] = [
        [[], join(dir, 'db', `requests-${utcDay()}.csv`)],
        [['--csv-log', join(dir, 'custom', 'audit.csv')], join(dir, 'custom', `audit-${utcDay()}.csv`)],
        [['--no-csv-log'], null],
      ]
      for (const [flags, expected] of variants) {
        const before = readdirSync(join(dir, 'db')).filter((f) => f.endsWith('.csv')).length
        const s = await spawnServe(['--db', db, ...flags])
        try {
          const r = await send(s.url, '/chat', k, { message: 'csv location' })
          expect(r.status).toBe(200)
          if (expected) {
            expect(s.info.csvLog).toBe(expected.replace(utcDay(), 'YYYY-MM-DD'))
            const files = readCsvLogs(join(expected, '..'), expected.includes('audit') ? 'audit' : 'requests')
            const idCol = files[0].records[0].indexOf('request_id')
            expect(files.flatMap((f) => f.records.slice(1)).filter((rec) => rec[idCol] === r.id)).toHaveLength(1)
          } else {
            expect(s.info.csvLog).toBeNull()
            expect(readdirSync(join(dir, 'db')).filter((f) => f.endsWith('.csv')).length).toBe(before)
            const idCol = (rec: string[][]) => rec[0].indexOf('request_id')
            expect(readCsvLogs(join(dir, 'db'), 'requests').flatMap((f) => f.records.slice(1).filter((rec) => rec[idCol(f.records)] === r.id))).toEqual([])
            expect(rowsById(db, r.id)).toHaveLength(1) // SQLite still logs
          }
        } finally {
          s.proc.kill('SIGTERM')
          await s.exited
        }
      }
      expect(existsSync(join(dir, 'custom', `audit-${utcDay()}.csv`))).toBe(true)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('durability', () => {
  it('every response a client received is in the log, the CSV and the daily usage after SIGKILL right after the last one', async () => {
    const dir = tempDir()
    try {
      const db = join(dir, 'gw.db')
      const created = await runJson<{ id: string; key: string }>(['keys', 'create', '--name', 'durable', '--rpm', 'off', '--daily-tokens', 'off', '--max-input-chars', 'off', '--db', db])
      expect(created.code).toBe(0)
      const key = created.json.key
      const told: Told[] = []
      const refused: string[] = []
      for (let round = 0; round < 3; round++) {
        const s = await spawnServe(['--db', db])
        const batch: Promise<void>[] = []
        for (let i = 0; i < 24; i++) {
          const kind = i % 4
          if (kind === 0) batch.push(chatTold(s.url, key, `durable chat ${round}-${i}`).then((t) => void told.push(t)))
          else if (kind === 1) batch.push(completionTold(s.url, key, `durable json ${round}-${i}`).then((t) => void told.push(t)))
          else if (kind === 2) batch.push(streamTold(s.url, key, `durable stream ${round}-${i}`).then((t) => void told.push(t)))
          else batch.push(send(s.url, '/chat', 'gw-' + 'Q'.repeat(43), { message: 'nope' }).then((r) => void (expect(r.status).toBe(401), refused.push(r.id))))
        }
        await Promise.all(batch)
        s.proc.kill('SIGKILL') // immediately after the last response was read in full
        expect((await s.exited).signal).toBe('SIGKILL')
      }
      expect(told).toHaveLength(54)
      const rows = logRows(db)
      const count = new Map<string, number>()
      for (const r of rows) count.set(r.request_id, (count.get(r.request_id) ?? 0) + 1)
      for (const t of told) expect([t.id, count.get(t.id)]).toEqual([t.id, 1])
      for (const id of refused) expect([id, count.get(id)]).toEqual([id, 1])
      for (const t of told) expect(rows.find((r) => r.request_id === t.id)!.total_tokens).toBe(t.total)
      const toldTotal = told.reduce((a, t) => a + t.total, 0)
      const daily = sqlite(db, (d) => d.prepare('select sum(requests) as requests, sum(total_tokens) as tokens from daily_usage where key_id = ?').get(created.json.id) as { requests: number; tokens: number })
      expect(daily).toEqual({ requests: 54, tokens: toldTotal })
      // The CSV log is appended likewise.
      const csvIds = readCsvLogs(dir).flatMap((f) => f.records.slice(1).map((r) => r[f.records[0].indexOf('request_id')]))
      for (const id of [...told.map((t) => t.id), ...refused]) expect([id, csvIds.filter((c) => c === id).length]).toEqual([id, 1])
      // And the CLI sees the same.
      const exported = await runCli(['logs', 'export', '--format', 'jsonl', '--db', db])
      expect(exported.code).toBe(0)
      const lines = exported.stdout.trim().split('\n').map((l) => JSON.parse(l) as { request_id: string })
      for (const id of [...told.map((t) => t.id), ...refused]) expect([id, lines.filter((l) => l.request_id === id).length]).toEqual([id, 1])
      const today = await runJson<{ keys: { key_id: string; total_tokens: number }[] }>(['usage', 'today', '--db', db])
      expect(today.json.keys.find((k) => k.key_id === created.json.id)?.total_tokens).toBe(toldTotal)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('GET /usage', () => {
  it('a normal key sees its own usage today: requests, tokens, budget, remaining and cost', async () => {
    const g = await startGateway({ upstreamUrl: upstream.url })
    try {
      const k = await g.createKey({ name: 'usage-own', limits: { ...NO_LIMITS, dailyTokens: 100_000 } })
      const other = await g.createKey({ name: 'usage-other', limits: NO_LIMITS })
      const told = [await chatTold(g.url, k, 'a'.repeat(400)), await completionTold(g.url, k, 'b '.repeat(300)), await streamTold(g.url, k, 'c '.repeat(200))]
      await chatTold(g.url, other, 'somebody else entirely')
      const r = await send(g.url, '/usage', k)
      expect(r.status).toBe(200)
      const ownId = (await g.admin.findKey('usage-own'))!.id
      const rows = logRows(g.db).filter((x) => x.key_id === ownId && x.model !== null)
      const prompt = rows.reduce((a, x) => a + x.prompt_tokens, 0)
      const completion = rows.reduce((a, x) => a + x.completion_tokens, 0)
      const total = told.reduce((a, t) => a + t.total, 0)
      expect(r.json).toMatchObject({
        date: utcDay(),
        key_name: 'usage-own',
        requests: 3,
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: total,
        daily_budget: 100_000,
        remaining: 100_000 - total,
      })
      expect(prompt + completion).toBe(total)
      expect(r.json.keys).toBeUndefined()
      expect(JSON.stringify(r.json)).not.toContain('usage-other')
      const exact = (prompt * MINI.input + completion * MINI.output) / 1e6
      expect(Math.abs(r.json.estimated_cost_usd - exact)).toBeLessThanOrEqual(3 * 0.5e-6 + 1e-12)
    } finally {
      await g.stop()
    }
  })

  it('an admin key sees the total and a per-key breakdown', async () => {
    const g = await startGateway({ upstreamUrl: upstream.url })
    try {
      const a = await g.createKey({ name: 'bd-a', limits: { ...NO_LIMITS, dailyTokens: 9_000 } })
      const b = await g.createKey({ name: 'bd-b', limits: NO_LIMITS })
      const root = await g.createKey({ name: 'bd-root', admin: true, limits: NO_LIMITS })
      const ta = [await chatTold(g.url, a, 'first of a'), await chatTold(g.url, a, 'second of a')]
      const tb = [await completionTold(g.url, b, 'only one of b')]
      const r = await send(g.url, '/usage', root)
      expect(r.status).toBe(200)
      const sum = (t: Told[]) => t.reduce((x, y) => x + y.total, 0)
      expect(r.json.date).toBe(utcDay())
      expect(r.json.total).toMatchObject({ requests: 3, total_tokens: sum(ta) + sum(tb) })
      const byName = Object.fromEntries((r.json.keys as { key_name: string }[]).map((k) => [k.key_name, k]))
      expect(byName['bd-a']).toMatchObject({ key_id: (await g.admin.findKey('bd-a'))!.id, requests: 2, total_tokens: sum(ta), daily_budget: 9_000, remaining: 9_000 - sum(ta) })
      expect(byName['bd-b']).toMatchObject({ requests: 1, total_tokens: sum(tb), prompt_tokens: tb[0].prompt, completion_tokens: tb[0].completion })
      const keys = r.json.keys as { requests: number; prompt_tokens: number; completion_tokens: number; total_tokens: number; estimated_cost_usd: number | null }[]
      for (const f of ['requests', 'prompt_tokens', 'completion_tokens', 'total_tokens'] as const) expect(r.json.total[f]).toBe(keys.reduce((x, k) => x + k[f], 0))
      expect(r.json.total.estimated_cost_usd).toBeCloseTo(keys.reduce((x, k) => x + (k.estimated_cost_usd ?? 0), 0), 9)
      // What the admin sees of a key is what the key sees of itself.
      const own = await send(g.url, '/usage', a)
      for (const f of ['requests', 'prompt_tokens', 'completion_tokens', 'total_tokens', 'estimated_cost_usd', 'daily_budget', 'remaining']) expect([f, own.json[f]]).toEqual([f, byName['bd-a'][f as keyof (typeof byName)['bd-a']]])
    } finally {
      await g.stop()
    }
  })

  it('?date=YYYY-MM-DD shows another day; a bad date is 400', async () => {
    const day = '2020-01-15'
    await gw.admin.appendRequests([
      directRow({ timestamp: `${day}T10:00:00.000Z`, day, keyId: aliceId, keyName: 'alice', promptTokens: 100, completionTokens: 50, totalTokens: 150, costMicros: 45 }),
      directRow({ timestamp: `${day}T11:00:00.000Z`, day, keyId: aliceId, keyName: 'alice', promptTokens: 10, completionTokens: 20, totalTokens: 30, costMicros: 14 }),
    ])
    const r = await send(gw.url, `/usage?date=${day}`, alice)
    expect(r.status).toBe(200)
    expect(r.json).toMatchObject({ date: day, requests: 2, prompt_tokens: 110, completion_tokens: 70, total_tokens: 180, daily_budget: 1_000_000, remaining: 1_000_000 - 180 })
    expect(r.json.estimated_cost_usd).toBeCloseTo(0.000059, 12)
    const adm = await send(gw.url, `/usage?date=${day}`, admin)
    expect(adm.json.total).toMatchObject({ requests: 2, total_tokens: 180 })
    expect(adm.json.keys).toHaveLength(1)
    const empty = await send(gw.url, '/usage?date=2019-06-01', alice)
    expect(empty.status).toBe(200)
    expect(empty.json).toMatchObject({ date: '2019-06-01', requests: 0, total_tokens: 0 })
    for (const bad of ['yesterday', '2026-1-5', '2026-02-30', '2026-13-01', '20260101', '2026-11-26T00:00:00Z', '']) {
      const res = await send(gw.url, `/usage?date=${encodeURIComponent(bad)}`, alice)
      expect([bad, res.status]).toEqual([bad, 400])
      expect(res.json.error).toMatchObject({ type: 'invalid_request_error', param: 'date' })
      expect(rowsById(gw.db, res.id)).toMatchObject([{ status: 400, route: '/usage' }])
    }
  })
})

describe('cost', () => {
  it('comes from the bundled price table, from --prices FILE when given, and is null (not zero) for an unknown model', async () => {
    const dir = tempDir()
    const prices = join(dir, 'prices.json')
    writeFileSync(prices, JSON.stringify({ 'gpt-4o-mini': { input: 1000, output: 2000 } }))
    const bundled = await startGateway({ upstreamUrl: upstream.url })
    const custom = await startGateway({ upstreamUrl: upstream.url, prices })
    try {
      for (const [g, price] of [
        [bundled, MINI],
        [custom, { input: 1000, output: 2000 }],
      ] as const) {
        const k = await g.createKey({ name: 'coster', limits: NO_LIMITS })
        const t = await completionTold(g.url, k, 'price me '.repeat(50))
        const [row] = rowsById(g.db, t.id)
        const exact = t.prompt * price.input + t.completion * price.output
        expect(Math.abs(row.cost_micros! - exact)).toBeLessThanOrEqual(0.5)
        const u = await send(g.url, '/usage', k)
        expect(u.json.estimated_cost_usd).toBeCloseTo(row.cost_micros! / 1e6, 12)
        // A model the table does not know: cost unknown, not free.
        const unknownKey = await g.createKey({ name: 'unknown-model', limits: NO_LIMITS })
        const x = await completionTold(g.url, unknownKey, 'what does this cost', 'mock-echo')
        expect(x.total).toBeGreaterThan(0)
        expect(rowsById(g.db, x.id)[0].cost_micros).toBeNull()
        const ux = await send(g.url, '/usage', unknownKey)
        expect(ux.json.total_tokens).toBe(x.total)
        expect(ux.json.estimated_cost_usd).toBeNull()
        const cli = await runJson<{ keys: { key_name: string; estimated_cost_usd: number | null }[] }>(['usage', 'today', '--db', g.db])
        expect(cli.json.keys.find((kk) => kk.key_name === 'unknown-model')?.estimated_cost_usd).toBeNull()
        expect(cli.json.keys.find((kk) => kk.key_name === 'coster')?.estimated_cost_usd).toBeCloseTo(row.cost_micros! / 1e6, 12)
      }
      const csv = readCsvLogs(custom.dir)
      const header = csv[0].records[0]
      const unknownRows = csv.flatMap((f) => f.records.slice(1)).filter((r) => r[header.indexOf('model')] === 'mock-echo')
      expect(unknownRows.length).toBeGreaterThan(0)
      for (const r of unknownRows) expect(r[header.indexOf('cost_usd')]).toBe('')
    } finally {
      await bundled.stop()
      await custom.stop()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('the main invariant: usage totals = sum of log rows = what clients were told', () => {
  it('holds per key and in total for /usage, `usage today`, `usage --by key` and daily_usage', async () => {
    const g = await startGateway({ upstreamUrl: upstream.url })
    try {
      const names = ['inv-a', 'inv-b', 'inv-c'] as const
      const keys = {
        'inv-a': await g.createKey({ name: 'inv-a', limits: { ...NO_LIMITS, dailyTokens: 200_000 } }),
        'inv-b': await g.createKey({ name: 'inv-b', limits: NO_LIMITS }),
        'inv-c': await g.createKey({ name: 'inv-c', limits: { ...NO_LIMITS, rpm: 2 } }),
      }
      const root = await g.createKey({ name: 'inv-root', admin: true, limits: NO_LIMITS })
      const ids = Object.fromEntries(await Promise.all(names.map(async (n) => [n, (await g.admin.findKey(n))!.id]))) as Record<(typeof names)[number], string>
      const told: Record<string, Told[]> = { 'inv-a': [], 'inv-b': [], 'inv-c': [] }
      told['inv-a'].push(await chatTold(g.url, keys['inv-a'], 'alpha one'), await chatTold(g.url, keys['inv-a'], 'alpha two two'))
      told['inv-a'].push(await completionTold(g.url, keys['inv-a'], 'alpha json'), await streamTold(g.url, keys['inv-a'], 'alpha stream of words'))
      expect((await send(g.url, '/chat', keys['inv-a'], { message: 'bad', max_tokens: 0 })).status).toBe(400)
      upstream.script({ kind: 'status', status: 503 })
      expect((await send(g.url, '/chat', keys['inv-a'], { message: 'upstream down' })).status).toBe(502)
      told['inv-b'].push(await streamTold(g.url, keys['inv-b'], 'beta stream'), await completionTold(g.url, keys['inv-b'], 'beta json '.repeat(30)))
      told['inv-c'].push(await chatTold(g.url, keys['inv-c'], 'gamma 1'), await chatTold(g.url, keys['inv-c'], 'gamma 2'))
      expect((await send(g.url, '/chat', keys['inv-c'], { message: 'gamma 3' })).status).toBe(429)
      expect((await send(g.url, '/chat', null, { message: 'anonymous' })).status).toBe(401)

      const sum = (t: Told[]) => t.reduce((a, x) => a + x.total, 0)
      const rows = logRows(g.db).filter((r) => r.timestamp.slice(0, 10) === utcDay())
      const logged = (n: (typeof names)[number]) => rows.filter((r) => r.key_id === ids[n])
      const grand = names.reduce((a, n) => a + sum(told[n]), 0)

      // 1. the log rows equal what the clients were told
      for (const n of names) {
        expect([n, logged(n).reduce((a, r) => a + r.total_tokens, 0)]).toEqual([n, sum(told[n])])
        for (const t of told[n]) expect(logged(n).find((r) => r.request_id === t.id)?.total_tokens).toBe(t.total)
      }

      // 2. /usage (admin view, read before any key reads its own) equals the log
      const adm = await send(g.url, '/usage', root)
      expect(adm.json.total.total_tokens).toBe(grand)
      const admBy = Object.fromEntries((adm.json.keys as Record<string, any>[]).map((k) => [k.key_name, k as Record<string, number>]))
      // 3. `gateway usage today --json`
      const today = await runJson<{ keys: Record<string, any>[]; total: Record<string, number> }>(['usage', 'today', '--db', g.db])
      expect(today.code).toBe(0)
      const todayBy = Object.fromEntries(today.json.keys.map((k) => [k.key_name, k]))
      // 4. `gateway usage --since 1d --by key --json`
      const range = await runJson<{ groups: Record<string, any>[]; total: Record<string, number> }>(['usage', '--since', '1d', '--by', 'key', '--db', g.db])
      expect(range.code).toBe(0)
      const rangeBy = Object.fromEntries(range.json.groups.map((k) => [k.key_name, k]))
      // 5. the daily_usage table
      const daily = sqlite(g.db, (d) => d.prepare('select * from daily_usage where day = ?').all(utcDay()) as Record<string, number | string>[])

      for (const n of names) {
        const l = logged(n)
        const expected = {
          requests: l.length,
          prompt_tokens: l.reduce((a, r) => a + r.prompt_tokens, 0),
          completion_tokens: l.reduce((a, r) => a + r.completion_tokens, 0),
          total_tokens: sum(told[n]),
        }
        for (const [source, got] of [
          ['/usage admin', admBy[n]],
          ['usage today', todayBy[n]],
          ['usage --by key', rangeBy[n]],
        ] as const) {
          expect.soft({ source, key: n, ...pick(got, Object.keys(expected)) }).toEqual({ source, key: n, ...expected })
        }
        const d = daily.find((x) => x.key_id === ids[n])!
        expect.soft({ key: n, requests: d.requests, prompt_tokens: d.prompt_tokens, completion_tokens: d.completion_tokens, total_tokens: d.total_tokens }).toEqual({ key: n, ...expected })
        const cost = l.reduce((a, r) => a + (r.cost_micros ?? 0), 0) / 1e6
        expect(todayBy[n].estimated_cost_usd).toBeCloseTo(cost, 12)
        expect(admBy[n].estimated_cost_usd).toBeCloseTo(cost, 12)
        expect(todayBy[n].errors).toBe(l.filter((r) => r.status >= 400).length)
        expect(todayBy[n].rate_limited).toBe(l.filter((r) => r.status === 429).length)
        const lat = l.map((r) => r.latency_ms)
        expect(todayBy[n].p50_ms).toBeGreaterThanOrEqual(Math.min(...lat))
        expect(todayBy[n].p95_ms).toBeGreaterThanOrEqual(todayBy[n].p50_ms)
        expect(todayBy[n].p95_ms).toBeLessThanOrEqual(Math.max(...lat))
      }
      expect(todayBy['inv-a'].daily_budget).toBe(200_000)
      expect(todayBy['inv-a'].budget_used).toBeCloseTo(sum(told['inv-a']) / 200_000, 9)
      expect(today.json.total.total_tokens).toBe(grand)
      expect(range.json.total.total_tokens).toBe(grand)
      expect(today.json.total.requests).toBe(today.json.keys.reduce((a, k) => a + k.requests, 0))

      // 6. each key's own /usage
      for (const n of names) {
        const own = await send(g.url, '/usage', keys[n])
        expect([n, own.json.total_tokens]).toEqual([n, sum(told[n])])
        expect([n, own.json.requests]).toEqual([n, admBy[n].requests])
      }
    } finally {
      await g.stop()
    }
  })
})

function pick(o: Record<string, unknown> | undefined, fields: string[]): Record<string, unknown> {
  return Object.fromEntries(fields.map((f) => [f, o?.[f]]))
}

describe('gateway usage (CLI) over real traffic', () => {
  it('`usage today` prints a table per key with prefix, budget bar, cost and latency, and a total row', async () => {
    const r = await runCli(['usage', 'today', '--db', gw.db])
    expect(r.code).toBe(0)
    const lines = r.stdout.split('\n')
    expect(lines.some((l) => /KEY\s+PREFIX\s+REQUESTS\s+CHAT\s+ERRORS\s+429S\s+TOKENS\s+BUDGET\s+COST\s+P50 MS\s+P95 MS/.test(l))).toBe(true)
    const prefix = alice.slice(0, 7)
    const aliceLine = lines.find((l) => l.startsWith('alice '))!
    expect(aliceLine).toContain(`${prefix}…`)
    expect(aliceLine).toMatch(/[█░]{10} \d+%/)
    expect(aliceLine).toMatch(/\$\d+\.\d+/)
    expect(lines.some((l) => l.startsWith('limited '))).toBe(true)
    const total = lines.find((l) => l.startsWith('TOTAL'))!
    const json = await runJson<{ total: { requests: number } }>(['usage', 'today', '--db', gw.db])
    expect(total.split(/\s+/)).toContain(String(json.json.total.requests))
    expect(r.stdout).not.toContain(alice)
  })

  it('`usage --since 7d --by day|model` groups the log rows; --until bounds the range', async () => {
    const g = await startGateway({ upstreamUrl: upstream.url })
    try {
      const k = await g.createKey({ name: 'ranged', limits: NO_LIMITS })
      const id = (await g.admin.findKey('ranged'))!.id
      const told = [await chatTold(g.url, k, 'today one'), await completionTold(g.url, k, 'today two', 'gpt-4o')]
      const old = new Date(Date.now() - 3 * 86_400_000)
      const older = new Date(Date.now() - 10 * 86_400_000)
      await g.admin.appendRequests([
        directRow({ timestamp: old.toISOString(), day: utcDay(old.getTime()), keyId: id, keyName: 'ranged', promptTokens: 7, completionTokens: 3, totalTokens: 10, costMicros: 3 }),
        directRow({ timestamp: older.toISOString(), day: utcDay(older.getTime()), keyId: id, keyName: 'ranged', promptTokens: 70, completionTokens: 30, totalTokens: 100, costMicros: 29 }),
      ])
      const byDay = await runJson<{ by: string; groups: { day: string; requests: number; total_tokens: number }[]; total: { total_tokens: number } }>(['usage', '--since', '7d', '--by', 'day', '--db', g.db])
      expect(byDay.code).toBe(0)
      expect(byDay.json.by).toBe('day')
      const todayTokens = told.reduce((a, t) => a + t.total, 0)
      expect(byDay.json.groups).toEqual([
        expect.objectContaining({ day: utcDay(old.getTime()), requests: 1, total_tokens: 10 }),
        expect.objectContaining({ day: utcDay(), requests: 2, total_tokens: todayTokens }),
      ])
      expect(byDay.json.total.total_tokens).toBe(10 + todayTokens)
      const byModel = await runJson<{ groups: { model: string; requests: number; total_tokens: number }[] }>(['usage', '--since', '30d', '--by', 'model', '--db', g.db])
      const models = Object.fromEntries(byModel.json.groups.map((m) => [m.model, m]))
      expect(models['gpt-4o']).toMatchObject({ requests: 1, total_tokens: told[1].total })
      expect(models['gpt-4o-mini']).toMatchObject({ requests: 3, total_tokens: told[0].total + 110 })
      const until = await runJson<{ groups: { day: string }[]; total: { total_tokens: number } }>(['usage', '--since', '30d', '--until', '2d', '--by', 'day', '--db', g.db])
      expect(until.json.total.total_tokens).toBe(110)
      const human = await runCli(['usage', '--since', '7d', '--by', 'key', '--db', g.db])
      expect(human.code).toBe(0)
      expect(human.stdout).toMatch(/ranged\s+3\s/)
      expect(human.stdout).toMatch(/^TOTAL\s+3\s/m)
    } finally {
      await g.stop()
    }
  })
})

describe('GET /metrics', () => {
  it('needs an admin key: 401 without a key, 403 for a normal key, 200 Prometheus text for an admin', async () => {
    expect((await send(gw.url, '/metrics', null)).status).toBe(401)
    const normal = await send(gw.url, '/metrics', alice)
    expect(normal.status).toBe(403)
    const res = await fetch(`${gw.url}/metrics`, { headers: { authorization: `Bearer ${admin}` } })
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/)
    const samples = parseMetrics(await res.text())
    expect(samples.length).toBeGreaterThan(0)
  })

  it('is public with metricsPublic (--metrics-public)', async () => {
    const g = await startGateway({ upstreamUrl: upstream.url, metricsPublic: true })
    try {
      const res = await fetch(`${g.url}/metrics`)
      expect(res.status).toBe(200)
      expect(parseMetrics(await res.text()).length).toBeGreaterThan(0)
    } finally {
      await g.stop()
    }
  })

  it('counts requests by route/status/model, tokens, latency, refusals and the queue depth, matching the log', async () => {
    const g = await startGateway({ upstreamUrl: upstream.url, maxInflight: 1 })
    try {
      const k = await g.createKey({ name: 'metered', limits: { ...NO_LIMITS, rpm: 3 } })
      const root = await g.createKey({ name: 'metrics-root', admin: true, limits: NO_LIMITS })
      await chatTold(g.url, k, 'm one')
      await completionTold(g.url, k, 'm two')
      await streamTold(g.url, k, 'm three')
      expect((await send(g.url, '/chat', k, { message: 'm four' })).status).toBe(429)
      expect((await send(g.url, '/chat', null, { message: 'nobody' })).status).toBe(401)
      // Queue depth: one request holds the only slot, a second waits.
      const k2 = await g.createKey({ name: 'queued', limits: NO_LIMITS })
      upstream.script({ kind: 'normal', delayMs: 3000 }, { kind: 'normal', delayMs: 0 })
      const slow = send(g.url, '/chat', k2, { message: 'hold the slot' })
      await settle(200)
      const waiting = send(g.url, '/chat', k2, { message: 'wait for it' })
      let depth = 0
      for (let i = 0; i < 100 && depth === 0; i++) {
        await settle(25)
        depth = metric(parseMetrics(await (await fetch(`${g.url}/metrics`, { headers: { authorization: `Bearer ${root}` } })).text()), 'gateway_queue_depth')
      }
      expect(depth).toBe(1)
      expect((await slow).status).toBe(200)
      expect((await waiting).status).toBe(200)

      const samples = parseMetrics(await (await fetch(`${g.url}/metrics`, { headers: { authorization: `Bearer ${root}` } })).text())
      const rows = logRows(g.db)
      for (const route of ['/chat', '/v1/chat/completions']) {
        for (const status of [200, 401, 429]) {
          const n = rows.filter((r) => r.route === route && r.status === status).length
          expect([route, status, metric(samples, 'gateway_requests_total', { route, status: String(status) })]).toEqual([route, status, n])
        }
      }
      expect(metric(samples, 'gateway_requests_total', { route: '/chat', status: '200', model: 'gpt-4o-mini' })).toBe(rows.filter((r) => r.route === '/chat' && r.status === 200).length)
      const prompt = rows.reduce((a, r) => a + r.prompt_tokens, 0)
      const completion = rows.reduce((a, r) => a + r.completion_tokens, 0)
      expect(metric(samples, 'gateway_tokens_total', { kind: 'prompt' })).toBe(prompt)
      expect(metric(samples, 'gateway_tokens_total', { kind: 'completion' })).toBe(completion)
      const chatRows = rows.filter((r) => r.route === '/chat').length
      expect(metric(samples, 'gateway_request_duration_seconds_count', { route: '/chat' })).toBe(chatRows)
      expect(metric(samples, 'gateway_request_duration_seconds_bucket', { route: '/chat', le: '+Inf' })).toBe(chatRows)
      expect(samples.some((s) => s.name === 'gateway_upstream_duration_seconds_bucket')).toBe(true)
      expect(samples.some((s) => s.name === 'gateway_queue_wait_seconds_bucket')).toBe(true)
      expect(metric(samples, 'gateway_refusals_total', { reason: 'rate_limit_exceeded' })).toBe(rows.filter((r) => r.error_code === 'rate_limit_exceeded').length)
      expect(metric(samples, 'gateway_refusals_total', { reason: 'invalid_api_key' })).toBe(rows.filter((r) => r.error_code === 'invalid_api_key').length)
      expect(metric(samples, 'gateway_queue_depth')).toBe(0)
    } finally {
      await g.stop()
    }
  })

  it('labels come from fixed sets: error codes an upstream chose are counted as `other`, never as label values', async () => {
    const g = await startGateway({ upstreamUrl: upstream.url, metricsPublic: true })
    try {
      const k = await g.createKey({ name: 'chosen', limits: NO_LIMITS })
      const chosen = Array.from({ length: 6 }, (_, i) => `zz_${Math.random().toString(36).slice(2)}_${i}`)
      const statuses = [400, 404, 409, 422, 400, 422]
      for (const [i, code] of chosen.entries()) {
        upstream.script({ kind: 'status', status: statuses[i], body: JSON.stringify({ error: { message: 'no', type: 'invalid_request_error', code, param: null } }) })
        const res = await send(g.url, '/v1/chat/completions', k, { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] })
        expect(res.status).toBe(statuses[i])
        expect(res.json.error.code).toBe(code) // the client still hears the upstream's code
      }
      const text = await (await fetch(`${g.url}/metrics`)).text()
      for (const code of chosen) expect(text).not.toContain(code)
      expect(metric(parseMetrics(text), 'gateway_refusals_total', { reason: 'other' })).toBe(chosen.length)
      const statusLabels = parseMetrics(text).filter((s) => s.name === 'gateway_requests_total').map((s) => s.labels.status)
      expect(statusLabels.every((s) => /^[1-5]\d\d$/.test(s))).toBe(true)
    } finally {
      await g.stop()
    }
  })
})
