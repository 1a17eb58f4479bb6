/**
 * Issue 7, scenario 7: header and log injection. CR, LF, NUL, ANSI and C1 escapes and JSON or
 * CSV fragments in User-Agent, model, user, request id and key names give one log row per
 * request with no forged field, no injected response header, control characters escaped in
 * CLI output, and formula-like cells neutralised in the CSV log (parsed back with csv-parse).
 */
import { parse } from 'csv-parse/sync'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LOG_COLUMNS } from '../../src/core/log-columns.js'
import type { RequestRow } from '../../src/core/types.js'
import { BIN, cliEnv, runCli } from '../support/cli.js'
import { startGateway, NO_LIMITS, type TestGateway } from '../support/gateway.js'
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js'
import { controlChars, rawHttp, rowsOf, type RawResponse } from './helpers.js'

let mock: MockUpstream
let gw: TestGateway
let port: number
const keys: Record<string, string> = {}
/** What each request that reached the app was: id → expected status and fields. */
const sent = new Map<string, { status: number; userAgent?: string; keyName?: string; model?: (string | null)[] }>()
let n = 0

const EVIL_NAME = `=cmd|' /C calc'!A0 \x1b[31mRED\x1b[0m\r\nforged,row,"x"\u009b2J\u0007\x00","status":200,"x":"`
const FORMULA_NAMES = ['+SUM(1,2)', '-2+3', '@SUM(A1)', '\t=1+1', '\r=1+1']

beforeAll(async () => {
  mock = await startMockUpstream()
  gw = await startGateway({ upstreamUrl: mock.url })
  port = Number(new URL(gw.url).port)
  for (const name of ['alice', EVIL_NAME, ...FORMULA_NAMES]) keys[name] = await gw.createKey({ name, limits: NO_LIMITS })
})

afterAll(async () => {
  await gw?.stop()
  await mock?.close()
})

/** Response headers the gateway may send; anything else was injected. */
const KNOWN_HEADERS = /^(content-type|content-length|date|connection|keep-alive|transfer-encoding|x-request-id|www-authenticate|retry-after|retry-after-ms|x-ratelimit-[a-z-]+|x-budget-[a-z-]+|ratelimit|ratelimit-policy|x-gateway-[a-z-]+|cache-control|x-accel-buffering|x-should-retry)$/

function expectCleanHeaders(r: RawResponse, what: string): void {
  for (const line of r.headerLines) {
    expect(line, what).toMatch(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+: [\t\x20-\x7e]*$/)
    expect(line.split(':')[0].toLowerCase(), `${what}: unexpected response header`).toMatch(KNOWN_HEADERS)
  }
}

function raw(method: string, path: string, headers: (string | Buffer)[], body = ''): Promise<RawResponse> {
  const head = Buffer.concat([Buffer.from(`${method} ${path} HTTP/1.1\r\nHost: gw\r\n`), ...headers.flatMap((h) => [typeof h === 'string' ? Buffer.from(h, 'latin1') : h, Buffer.from('\r\n')]), Buffer.from(`Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n`)])
  return rawHttp(port, [head, Buffer.from(body)])
}

describe('hostile text in headers and fields', () => {
  it('every key name (ANSI, CR/LF, NUL, C1, JSON and CSV fragments, formulas) is served and logged as is', async () => {
    for (const [name, k] of Object.entries(keys)) {
      const id = `li-${++n}`
      const res = await gw.post('/chat', k, { message: 'hi' }, { 'x-request-id': id })
      expect(res.status).toBe(200)
      await res.arrayBuffer()
      sent.set(id, { status: 200, keyName: name })
    }
  })

  it('User-Agent: obs-text (C1 escapes), JSON and CSV fragments, formulas, 2 KB → logged verbatim (512 max), one row each', async () => {
    const agents: Buffer[] = [
      Buffer.from('Mozilla\x9b31mRED\x85NEL\x8dRI\xff', 'latin1'),
      Buffer.from('", "status": 999, "key_id": "forged', 'latin1'),
      Buffer.from('a,b,"c",\\r\\n200,forged', 'latin1'),
      Buffer.from('=HYPERLINK("http://evil.example","x")', 'latin1'),
      Buffer.from('-1+1', 'latin1'),
      Buffer.from('@SUM(1)', 'latin1'),
      Buffer.from('+1', 'latin1'),
      Buffer.from('caf\u00e9 \u2603 \ud83d\ude00', 'utf8'),
      Buffer.from('U'.repeat(2048), 'latin1'),
    ]
    for (const ua of agents) {
      const id = `li-${++n}`
      const r = await raw('POST', '/chat', [`Authorization: Bearer ${keys.alice}`, `X-Request-Id: ${id}`, Buffer.concat([Buffer.from('User-Agent: '), ua])], '{"message":"hi"}')
      expect(r.status).toBe(200)
      expectCleanHeaders(r, `UA ${ua.toString('latin1').slice(0, 30)}`)
      sent.set(id, { status: 200, userAgent: ua.toString('latin1').slice(0, 512) })
    }
  })

  it('control characters in a header are refused by the HTTP parser (400), nothing echoed', async () => {
    for (const header of ['User-Agent: a\x1b[2Jb', 'User-Agent: a\x00b', 'User-Agent: a\rX-Injected: 1', 'X-Request-Id: abc\x1b[31m', 'X-Request-Id: a\x07b']) {
      const r = await raw('POST', '/chat', [`Authorization: Bearer ${keys.alice}`, header], '{"message":"hi"}')
      expect(r.status, JSON.stringify(header)).toBe(400)
      expect(r.raw).not.toMatch(/x-injected/i)
      expect(r.raw).not.toContain('\x1b')
    }
  })

  it('model with control characters → 400; formula-like and JSON-fragment models → forwarded, logged verbatim', async () => {
    const refused = ['gpt\u001b[31m', 'a\r\nX-Injected: 1', 'a\u0000b', '\u009b2J', 'a\nb', 'tab\there']
    const accepted = ['=1+1', '-2+3', '@SUM(A1)', '+1', '=HYPERLINK("http://evil.example")', 'gpt","status":"999']
    for (const model of [...refused, ...accepted]) {
      const id = `li-${++n}`
      const res = await gw.post('/v1/chat/completions', keys.alice, { model, messages: [{ role: 'user', content: 'hi' }] }, { 'x-request-id': id })
      const ok = accepted.includes(model)
      expect(res.status, JSON.stringify(model)).toBe(ok ? 200 : 400)
      expect(res.headers.get('x-injected')).toBeNull()
      await res.arrayBuffer()
      // A refused model is logged verbatim (as data) or not at all.
      sent.set(id, { status: ok ? 200 : 400, model: ok ? [model] : [null, model] })
    }
  })

  it('user with CR/LF/ANSI/JSON → forwarded as data, no header or log field forged', async () => {
    for (const user of ['\r\nX-Injected: 1', '\u001b[2J\u001b[H', '{"status":999}', 'a\u0000b']) {
      const id = `li-${++n}`
      const res = await gw.post('/v1/chat/completions', keys.alice, { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], user }, { 'x-request-id': id })
      expect(res.status).toBe(200)
      expect(res.headers.get('x-injected')).toBeNull()
      await res.arrayBuffer()
      expect(mock.requests.at(-1)!.body!.user).toBe(user)
      sent.set(id, { status: 200 })
    }
  })

  it('request ids: well-formed ones are echoed, anything else replaced by the gateway\'s own', async () => {
    const cases: [string, boolean][] = [
      ['good-id.1:2_x', true],
      ['-12', true],
      ['inj"ected', false],
      ['=1+1', false],
      ['abc def', false],
      ['x'.repeat(200), false],
      ['{"a":1}', false],
      ['a,b', false],
    ]
    for (const [id, echoed] of cases) {
      const res = await gw.post('/chat', keys.alice, { message: 'hi' }, { 'x-request-id': id })
      expect(res.status).toBe(200)
      await res.arrayBuffer()
      const got = res.headers.get('x-request-id')!
      if (echoed) expect(got).toBe(id)
      else expect(got).toMatch(/^req_[0-9a-f]{32}$/)
      sent.set(got, { status: 200 })
    }
    const r = await raw('GET', '/usage', [`Authorization: Bearer ${keys.alice}`, Buffer.from('X-Request-Id: caf\xe9\x9b', 'latin1')])
    expect(r.status).toBe(200)
    expect(r.headers['x-request-id']?.[0]).toMatch(/^req_[0-9a-f]{32}$/)
    sent.set(r.headers['x-request-id']![0], { status: 200 })
  })
})

describe('the request log', () => {
  let rows: RequestRow[]
  beforeAll(async () => {
    rows = await rowsOf(gw)
  })

  it('has exactly one row per request, with the fields as sent (nothing forged)', () => {
    for (const [id, want] of sent) {
      const mine = rows.filter((r) => r.requestId === id)
      expect(mine, id).toHaveLength(1)
      const row = mine[0]
      expect(row.status, id).toBe(want.status)
      if (want.userAgent !== undefined) expect(row.userAgent).toBe(want.userAgent)
      if (want.keyName !== undefined) expect(row.keyName).toBe(want.keyName)
      if (want.model !== undefined) expect(want.model).toContain(row.model)
    }
    expect(rows.filter((r) => r.status === 999 || r.keyId === 'forged' || r.requestId === 'forged')).toEqual([])
  })

  it('the CSV log parses back: same rows, same columns, formula-like cells neutralised', () => {
    const files = readdirSync(gw.dir).filter((f) => /^requests-\d{4}-\d{2}-\d{2}\.csv$/.test(f))
    expect(files).toHaveLength(1)
    const records = parse(readFileSync(join(gw.dir, files[0])), { bom: true, relax_column_count: false }) as string[][]
    expect(records[0]).toEqual([...LOG_COLUMNS])
    const body = records.slice(1)
    expect(body).toHaveLength(rows.length)
    const col = (name: (typeof LOG_COLUMNS)[number]) => LOG_COLUMNS.indexOf(name)
    const neutral = (v: string | null) => (v === null ? '' : /^[=+\-@\t\r]/.test(v) ? `'${v}` : v)
    for (const row of rows) {
      const mine = body.filter((r) => r[col('request_id')] === neutral(row.requestId))
      expect(mine, row.requestId).toHaveLength(1)
      const rec = mine[0]
      expect(rec[col('status')]).toBe(String(row.status))
      expect(rec[col('key_name')]).toBe(neutral(row.keyName))
      expect(rec[col('user_agent')]).toBe(neutral(row.userAgent))
      expect(rec[col('model')]).toBe(neutral(row.model))
    }
    const formulas = body.flatMap((r) => r.filter((cell) => /^[=+\-@\t\r]/.test(cell)))
    expect(formulas).toEqual([])
  })
})

describe('CLI output escapes control characters', () => {
  let outputs: Record<string, { code: number; stdout: string; stderr: string }> = {}
  beforeAll(async () => {
    await gw.built.requestLog.drain()
    const runs: Record<string, string[]> = {
      'logs export': ['logs', 'export', '--escape', 'always'],
      'logs export --format jsonl': ['logs', 'export', '--format', 'jsonl'],
      'usage today': ['usage', 'today'],
      'usage today --json': ['usage', 'today', '--json'],
    }
    outputs = Object.fromEntries(await Promise.all(Object.entries(runs).map(async ([name, args]) => [name, await runCli([...args, '--db', gw.db])] as const)))
  }, 120_000)

  it('logs export escapes by itself when its output is a terminal (a real pty via script(1))', async () => {
    const { execFile } = await import('node:child_process')
    const tty = await new Promise<string>((resolve, reject) =>
      execFile('script', ['-qec', `${process.execPath} ${BIN} logs export --db ${gw.db}`, '/dev/null'], { env: cliEnv(), maxBuffer: 64 * 1024 * 1024 }, (err, stdout) => (err ? reject(err) : resolve(stdout))),
    )
    expect(tty).toContain('\\x1b[31mRED')
    // CSV rows end in CRLF and script(1) turns each LF into CRLF again: apart from line ends, no control byte.
    expect(controlChars(tty.replace(/\r+\n/g, '\n'), '\n')).toEqual([])
  })

  it('logs export --escape always (CSV for a terminal): no raw control character in any cell, no forged row, formulas neutralised', async () => {
    const out = outputs['logs export']
    expect(out.code, out.stderr).toBe(0)
    const records = parse(out.stdout, { bom: true }) as string[][]
    expect(records[0]).toEqual([...LOG_COLUMNS])
    expect(records.length - 1, 'one record per logged request, none forged').toBe(await gw.admin.countRequests({}))
    // A tab is harmless on a terminal; ESC, CR, LF, NUL, BEL and C1 (CSI, NEL…) are not.
    const bad = records.flatMap((r, i) => r.filter((cell) => controlChars(cell, '\t').length > 0).map((cell) => `record ${i}: ${JSON.stringify(cell).slice(0, 80)} has ${controlChars(cell, '\t').join(' ')}`))
    expect(bad).toEqual([])
    expect(records.slice(1).flatMap((r) => r.filter((c) => /^[=+\-@\t\r]/.test(c)))).toEqual([])
  })

  it('logs export --format jsonl: one JSON object per line, no raw C0 control character', async () => {
    const out = outputs['logs export --format jsonl']
    expect(out.code, out.stderr).toBe(0)
    const lines = out.stdout.split('\n').filter(Boolean)
    expect(lines.length, 'one line per logged request, none forged').toBe(await gw.admin.countRequests({}))
    for (const l of lines) expect(() => JSON.parse(l)).not.toThrow()
    expect(controlChars(out.stdout, '\n').filter((c) => parseInt(c.slice(2), 16) < 0x20)).toEqual([])
    const evil = lines.map((l) => JSON.parse(l) as { key_name: string }).find((r) => r.key_name?.includes('calc'))
    expect(evil?.key_name).toBe(EVIL_NAME)
  })

  it('usage today (table): control characters shown escaped, each key on one line', () => {
    const out = outputs['usage today']
    expect(out.code, out.stderr).toBe(0)
    expect(controlChars(out.stdout, '\n')).toEqual([])
    expect(out.stdout).toContain('\\x1b[31mRED')
    const lines = out.stdout.split('\n')
    expect(lines.filter((l) => l.includes('calc'))).toHaveLength(1)
  })

  it('usage today --json: valid JSON, no raw C0 control character', () => {
    const out = outputs['usage today --json']
    expect(out.code, out.stderr).toBe(0)
    const json = JSON.parse(out.stdout) as { keys: { key_name: string }[] }
    expect(json.keys.map((k) => k.key_name)).toContain(EVIL_NAME)
    expect(controlChars(out.stdout, '\n').filter((c) => parseInt(c.slice(2), 16) < 0x20)).toEqual([])
  })
})
