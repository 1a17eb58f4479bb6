/**
 * `gateway logs export` and `gateway logs prune`: the real binary over a temp SQLite file whose
 * rows were written through the store's appendRequests (the gateway's own write path).
 */
import Database from 'better-sqlite3'
import { parse as parseStream } from 'csv-parse'
import { parse } from 'csv-parse/sync'
import { spawn } from 'node:child_process'
import { createReadStream, existsSync, readFileSync, rmSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { KeyManager } from '../../src/core/keys.js'
import type { RequestRow } from '../../src/core/types.js'
import { SqliteStore } from '../../src/storage/sqlite/sqlite-store.js'
import { cliEnv, runCli, runJson } from '../support/cli.js'
import { tempDir } from '../support/gateway.js'
import { CSV_COLUMNS, type LogRow, neutralised, runAll } from '../support/log-rows.js'


// Every CLI run is a fresh Node process (about a second of CPU): give a loaded machine time.
vi.setConfig({ testTimeout: 300_000, hookTimeout: 120_000 })

const BIN = fileURLToPath(new URL('../../bin/run.js', import.meta.url))
const DAY = 86_400_000
const utcDay = (ms: number) => new Date(ms).toISOString().slice(0, 10)


/** Key names a spreadsheet must get right: RFC 4180 quoting, Unicode, and formula-like text. */
const TRICKY = [
  'plain',
  'comma, name',
  'quote "q" and ""two""',
  'new\nline',
  'crlf\r\nline',
  'ünïcødé 日本語 🚀',
  '=1+1',
  '+cmd|calc',
  '-2+3',
  '@SUM(A1:A2)',
  '\ttab first',
  '\rcr first',
]



/** The JSON-lines contract: raw values, no spreadsheet quoting. */
function jsonOf(r: LogRow): Record<string, unknown> {
  return {
    timestamp: r.timestamp,
    request_id: r.request_id,
    key_id: r.key_id,
    key_name: r.key_name,
    ip: r.ip,
    method: r.method,
    route: r.route,
    model: r.model,
    status: r.status,
    error_code: r.error_code,
    prompt_tokens: r.prompt_tokens,
    completion_tokens: r.completion_tokens,
    total_tokens: r.total_tokens,
    tokens_estimated: r.estimated === 1,
    latency_ms: r.latency_ms,
    upstream_ms: r.upstream_ms,
    queued_ms: r.queued_ms,
    streamed: r.streamed === 1,
    user_agent: r.user_agent,
    cost_usd: r.cost_micros === null ? null : r.cost_micros / 1e6,
    upstream: r.upstream,
    served_model: r.served_model,
    attempts: r.attempts,
  }
}

/** Differences between CSV records (header first) and SQLite rows, in order; [] when equal. */
function csvDiff(records: string[][], rows: LogRow[]): string[] {
  const header = records[0]
  const diffs: string[] = []
  const missing = Object.keys(CSV_COLUMNS).filter((c) => !header.includes(c))
  if (missing.length > 0) return [`header lacks ${missing.join(', ')}`]
  if (records.length - 1 !== rows.length) diffs.push(`${records.length - 1} records for ${rows.length} rows`)
  for (let i = 0; i < Math.min(rows.length, records.length - 1) && diffs.length < 10; i++) {
    const rec = records[i + 1]
    if (rec.length !== header.length) diffs.push(`record ${i + 1} has ${rec.length} cells`)
    for (const [c, cell] of Object.entries(CSV_COLUMNS)) {
      const want = cell(rows[i])
      const got = rec[header.indexOf(c)]
      if (got !== want) diffs.push(`record ${i + 1} ${c}: ${JSON.stringify(got)} != ${JSON.stringify(want)}`)
    }
  }
  return diffs
}

function sqliteRows(db: string, where = '1 = 1', ...params: unknown[]): LogRow[] {
  const d = new Database(db, { readonly: true, fileMustExist: true })
  try {
    return d.prepare(`select * from request_log where ${where} order by id`).all(...params) as LogRow[]
  } finally {
    d.close()
  }
}

function baseRow(n: number, over: Partial<RequestRow> = {}): RequestRow {
  return {
    timestamp: new Date(Date.now() - 3_600_000 + n).toISOString(),
    requestId: `req_${n.toString().padStart(7, '0')}`,
    keyId: null,
    keyName: null,
    ip: '127.0.0.1',
    method: 'POST',
    route: '/v1/chat/completions',
    model: 'gpt-4o-mini',
    status: 200,
    errorCode: null,
    promptTokens: 10 + (n % 7),
    completionTokens: 5 + (n % 3),
    totalTokens: 15 + (n % 7) + (n % 3),
    estimated: n % 11 === 0,
    latencyMs: 12.5 + (n % 100) / 4,
    upstreamMs: 10.25,
    queuedMs: 0,
    streamed: n % 2 === 0,
    userAgent: 'OpenAI/JS 6.0',
    costMicros: n % 13 === 0 ? null : 5 + (n % 5),
    day: utcDay(Date.now()),
    requestBody: null,
    responseBody: null,
    upstream: null,
    servedModel: null,
    attempts: 0,
    ...over,
  }
}

// ---------------------------------------------------------------------------------------------

let dir: string
let db: string
let keyIds: Record<string, string>
const cli = (args: string[]) => runCli([...args, '--db', db])
const json = <T = any>(args: string[]) => runJson<T>([...args, '--db', db])

beforeAll(async () => {
  dir = tempDir('gw-logs-')
  db = join(dir, 'logs.db')
  const store = SqliteStore.open(db)
  try {
    const keys = new KeyManager(store, { now: Date.now })
    keyIds = {}
    for (const name of TRICKY) keyIds[name] = (await keys.create({ name })).key.id
    const rows: RequestRow[] = []
    TRICKY.forEach((name, i) => {
      const keyId = keyIds[name]
      rows.push(baseRow(i * 10, { keyId, keyName: name, userAgent: i % 3 === 0 ? '=HYPERLINK("http://evil.example","x")' : `agent ${name}` }))
      rows.push(baseRow(i * 10 + 1, { keyId, keyName: name, status: 429, errorCode: 'rate_limit_exceeded', upstreamMs: null, queuedMs: null, promptTokens: 0, completionTokens: 0, totalTokens: 0, costMicros: null }))
      rows.push(baseRow(i * 10 + 2, { keyId, keyName: name, model: i === 6 ? '=evil-model' : 'mock-echo', costMicros: null }))
    })
    rows.push(baseRow(500, { status: 401, errorCode: 'invalid_api_key', model: null, route: '/chat', promptTokens: 0, completionTokens: 0, totalTokens: 0, costMicros: null, userAgent: null }))
    // Older rows for the time filters.
    rows.push(baseRow(600, { timestamp: new Date(Date.now() - 3 * DAY).toISOString(), keyId: keyIds.plain, keyName: 'plain' }))
    rows.push(baseRow(601, { timestamp: new Date(Date.now() - 10 * DAY).toISOString(), keyId: keyIds.plain, keyName: 'plain' }))
    await store.appendRequests(rows)
  } finally {
    store.close()
  }
})

afterAll(() => {
  rmSync(dir, { recursive: true, force: true })
})

describe('logs export: CSV', () => {
  it('to stdout: UTF-8 BOM, a header row, CRLF records, RFC 4180 quoting, formulas neutralised, equal to SQLite', async () => {
    const r = await cli(['logs', 'export'])
    expect(r.code).toBe(0)
    const bytes = Buffer.from(r.stdout, 'utf8')
    expect([...bytes.subarray(0, 3)]).toEqual([0xef, 0xbb, 0xbf])
    expect(r.stdout.slice(1).startsWith('timestamp,request_id,')).toBe(true)
    expect(r.stdout.slice(1).split('\r\n')[0].split(',')).toEqual(expect.arrayContaining(Object.keys(CSV_COLUMNS)))
    expect(r.stdout.endsWith('\r\n')).toBe(true)
    // Quotes doubled inside a quoted field; a newline stays inside its quoted field.
    expect.soft(r.stdout.includes('"quote ""q"" and """"two"""""'), 'quotes are doubled inside a quoted field').toBe(true)
    // RFC 4180: a field holding a line break (LF or CR alone too) is quoted, or spreadsheets split the row.
    expect.soft(r.stdout.includes('"new\nline"'), 'the field "new\\nline" is quoted').toBe(true)
    expect.soft(r.stdout.includes(`"'\rcr first"`), 'the field "\\rcr first" is quoted').toBe(true)
    const records = parse(r.stdout, { bom: true }) as string[][]
    expect(csvDiff(records, sqliteRows(db))).toEqual([])
    const names = records.slice(1).map((rec) => rec[records[0].indexOf('key_name')])
    for (const name of TRICKY) expect(names).toContain(neutralised(name))
    for (const rec of records.slice(1)) for (const cell of rec) expect(cell).not.toMatch(/^[=+\-@\t\r]/)
  })

  it('--no-bom leaves the byte order mark out', async () => {
    const r = await cli(['logs', 'export', '--no-bom'])
    expect(r.code).toBe(0)
    expect(r.stdout.startsWith('timestamp,')).toBe(true)
    expect(csvDiff(parse(r.stdout) as string[][], sqliteRows(db))).toEqual([])
  })

  it('filters by --key (id or name), --status, --since and --until', async () => {
    const until = new Date(Date.now() - 2 * DAY).toISOString()
    const cases: [string[], LogRow[]][] = [
      [['--key', 'comma, name'], sqliteRows(db, 'key_id = ?', keyIds['comma, name'])],
      [['--key', keyIds['=1+1']], sqliteRows(db, 'key_id = ?', keyIds['=1+1'])],
      [['--status', '429'], sqliteRows(db, 'status = 429')],
      [['--since', '1d'], sqliteRows(db, 'timestamp >= ?', new Date(Date.now() - DAY).toISOString())],
      [['--since', utcDay(Date.now() - 20 * DAY), '--until', until, '--key', 'plain'], sqliteRows(db, 'timestamp < ? and key_id = ?', until, keyIds.plain)],
    ]
    const results = await runAll(cases.map(([flags]) => () => cli(['logs', 'export', ...flags])))
    results.forEach((r, i) => {
      expect(r.code).toBe(0)
      expect(cases[i][1].length).toBeGreaterThan(0)
      expect([cases[i][0].join(' '), csvDiff(parse(r.stdout, { bom: true }) as string[][], cases[i][1])]).toEqual([cases[i][0].join(' '), []])
    })
    expect(cases[4][1]).toHaveLength(2)
  })
})

describe('logs export: JSON lines and files', () => {
  it('--format jsonl: one JSON object per row, raw values (no spreadsheet quoting)', async () => {
    const r = await cli(['logs', 'export', '--format', 'jsonl'])
    expect(r.code).toBe(0)
    const lines = r.stdout.trimEnd().split('\n')
    expect(lines.map((l) => JSON.parse(l))).toEqual(sqliteRows(db).map(jsonOf))
  })

  it('--output FILE: a 0600 file, a progress line on stderr, a summary (human or --json)', async () => {
    const file = join(dir, 'out', 'export.csv')
    const jsonFile = join(dir, 'export.jsonl')
    const [human, machine] = await runAll<any>([
      () => runCli(['logs', 'export', '--output', join(dir, 'export.csv'), '--db', db]),
      () => runJson(['logs', 'export', '--format', 'jsonl', '--status', '429', '--output', jsonFile, '--db', db]),
    ])
    const n = sqliteRows(db).length
    expect(human.code).toBe(0)
    expect(human.stderr).toMatch(new RegExp(`exported ${n}/${n} rows \\(100%\\)`))
    expect(human.stdout).toContain(`Exported ${n} rows to`)
    expect(statSync(join(dir, 'export.csv')).mode & 0o777).toBe(0o600)
    expect(csvDiff(parse(readFileSync(join(dir, 'export.csv')), { bom: true }) as string[][], sqliteRows(db))).toEqual([])
    const n429 = sqliteRows(db, 'status = 429').length
    expect(machine.code).toBe(0)
    expect(machine.json).toMatchObject({ rows: n429, format: 'jsonl', output: jsonFile, status: 429 })
    expect(readFileSync(jsonFile, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l))).toEqual(sqliteRows(db, 'status = 429').map(jsonOf))
    // A directory that does not exist is an error, not a crash with a stack trace.
    const missingDir = await runCli(['logs', 'export', '--output', file, '--db', db])
    expect(missingDir.code).not.toBe(0)
    expect(missingDir.stderr).not.toMatch(/\n\s+at /)
  })

  it('exits 3 for an unknown --key and 2 for a bad --format, --status or --since', async () => {
    const cases: [string[], number][] = [
      [['logs', 'export', '--key', 'nobody'], 3],
      [['logs', 'export', '--format', 'xml'], 2],
      [['logs', 'export', '--status', '42'], 2],
      [['logs', 'export', '--since', 'the dawn of time'], 2],
    ]
    const results = await runAll(cases.map(([args]) => () => cli(args)))
    results.forEach((r, i) => expect([cases[i][0].join(' '), r.code]).toEqual([cases[i][0].join(' '), cases[i][1]]))
  })
})

/** Runs the CLI and reports the child's peak resident set size in MB. */
function peakRss(args: string[]): Promise<{ code: number; stdout: string; stderr: string; peakMb: number }> {
  const viaTime = existsSync('/usr/bin/time')
  const cmd = viaTime ? '/usr/bin/time' : process.execPath
  const argv = viaTime ? ['-v', process.execPath, BIN, ...args] : [BIN, ...args]
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: cliEnv() })
    let stdout = ''
    let stderr = ''
    let hwm = 0
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    const sampler = viaTime
      ? null
      : setInterval(() => {
          try {
            const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))
            if (m) hwm = Math.max(hwm, Number(m[1]))
          } catch {
            // exited
          }
        }, 20)
    child.on('error', reject)
    child.on('close', (code) => {
      if (sampler) clearInterval(sampler)
      const m = /Maximum resident set size \(kbytes\): (\d+)/.exec(stderr)
      const kb = viaTime ? Number(m?.[1] ?? NaN) : hwm
      resolve({ code: code ?? 1, stdout, stderr, peakMb: kb / 1024 })
    })
  })
}

describe('logs export streams with constant memory', () => {
  const ROWS = 200_000
  let big: string

  beforeAll(async () => {
    big = join(dir, 'big.db')
    const store = SqliteStore.open(big)
    try {
      const keys = new KeyManager(store, { now: Date.now })
      const ids: string[] = []
      for (const name of TRICKY) ids.push((await keys.create({ name })).key.id)
      for (let start = 0; start < ROWS; start += 5_000) {
        const batch: RequestRow[] = []
        for (let n = start; n < start + 5_000; n++) {
          const k = n % TRICKY.length
          batch.push(baseRow(n, { keyId: ids[k], keyName: TRICKY[k], userAgent: n % 5 === 0 ? '@agent' : 'Mozilla/5.0 (X11; Linux x86_64) "quoted", agent' }))
        }
        await store.appendRequests(batch)
      }
    } finally {
      store.close()
    }
  })

  it(`exports ${ROWS.toLocaleString('en')} rows to a file well under 200 MB peak RSS, and every row parses back equal to SQLite`, async () => {
    const out = join(dir, 'big.csv')
    const baseline = await peakRss(['logs', 'export', '--status', '599', '--output', join(dir, 'none.csv'), '--db', big])
    expect(baseline.code).toBe(0)
    const run = await peakRss(['logs', 'export', '--output', out, '--db', big])
    expect(run.code, run.stderr).toBe(0)
    expect(run.stderr).toMatch(new RegExp(`exported ${ROWS}/${ROWS} rows \\(100%\\)`))
    expect(Number.isFinite(run.peakMb)).toBe(true)
    expect(run.peakMb).toBeLessThan(200)
    // Constant memory: exporting 200k rows costs about what exporting none costs.
    expect(run.peakMb - baseline.peakMb).toBeLessThan(64)

    // Parse back (streamed) and compare every record with its SQLite row, in order.
    const first = readFileSync(out).subarray(0, 3)
    expect([...first]).toEqual([0xef, 0xbb, 0xbf])
    const d = new Database(big, { readonly: true })
    try {
      const rows = d.prepare('select * from request_log order by id').iterate() as IterableIterator<LogRow>
      const parser = createReadStream(out).pipe(parseStream({ bom: true }))
      let header: string[] | null = null
      let records = 0
      const diffs: string[] = []
      for await (const rec of parser as AsyncIterable<string[]>) {
        if (!header) {
          header = rec
          expect(header).toEqual(expect.arrayContaining(Object.keys(CSV_COLUMNS)))
          continue
        }
        records++
        const row = rows.next().value as LogRow | undefined
        if (!row) {
          diffs.push(`record ${records} has no row`)
          break
        }
        for (const [c, cell] of Object.entries(CSV_COLUMNS)) {
          const want = cell(row)
          if (rec[header.indexOf(c)] !== want && diffs.length < 10) diffs.push(`record ${records} ${c}: ${JSON.stringify(rec[header.indexOf(c)])} != ${JSON.stringify(want)}`)
        }
      }
      expect(diffs).toEqual([])
      expect(records).toBe(ROWS)
      expect(rows.next().done).toBe(true)
    } finally {
      d.close()
    }
  })
})

describe('logs export pages through the log', () => {
  it('holds no read transaction while its reader is slow: a WAL checkpoint(TRUNCATE) from another connection succeeds mid-export', async () => {
    const paged = join(dir, 'paged.db')
    const store = SqliteStore.open(paged)
    try {
      // Far more output than the pipe and the stream buffers hold, so the export waits on its reader.
      for (let start = 0; start < 20_000; start += 5_000) {
        await store.appendRequests(Array.from({ length: 5_000 }, (_, i) => baseRow(start + i, { userAgent: `agent ${'x'.repeat(300)}` })))
      }
    } finally {
      store.close()
    }
    const other = new Database(paged)
    try {
      other.pragma('wal_autocheckpoint = 0')
      const insert = other.prepare("insert into request_log (timestamp, request_id, ip, method, route, status, latency_ms, day) values (?, ?, '127.0.0.1', 'POST', '/chat', 200, 1, ?)")
      const now = new Date().toISOString()
      insert.run(now, 'req_before_export', now.slice(0, 10)) // the WAL has frames when the export starts
      const proc = spawn(process.execPath, [BIN, 'logs', 'export', '--format', 'jsonl', '--db', paged], { env: cliEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
      const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)))
      let stderr = ''
      proc.stderr.on('data', (d) => (stderr += d))
      const chunks: Buffer[] = []
      await new Promise<void>((resolve) => proc.stdout.once('data', (d: Buffer) => (chunks.push(d), resolve())))
      proc.stdout.pause() // a slow reader: the export cannot finish until we read on

      insert.run(new Date().toISOString(), 'req_during_export', now.slice(0, 10))
      other.pragma('busy_timeout = 5000') // a page being read at this instant ends within it
      const [checkpoint] = other.pragma('wal_checkpoint(TRUNCATE)') as { busy: number; log: number; checkpointed: number }[]
      expect(checkpoint).toEqual({ busy: 0, log: 0, checkpointed: 0 })

      proc.stdout.on('data', (d: Buffer) => chunks.push(d))
      proc.stdout.resume()
      expect(await exited, stderr).toBe(0)
      const ids = Buffer.concat(chunks).toString('utf8').trim().split('\n').map((line) => (JSON.parse(line) as { request_id: string }).request_id)
      // Every row that was there when it started, in order; not the one written after.
      expect(ids).toHaveLength(20_001)
      expect(ids.slice(0, 2)).toEqual(['req_0000000', 'req_0000001'])
      expect(ids.at(-1)).toBe('req_before_export')
    } finally {
      other.close()
    }
  })
})

describe('logs prune', () => {
  it('--older-than 90d deletes older log rows only and keeps the daily usage totals', async () => {
    const pdb = join(dir, 'prune.db')
    const store = SqliteStore.open(pdb)
    const now = Date.now()
    try {
      const keyId = (await new KeyManager(store, { now: Date.now }).create({ name: 'old-timer' })).key.id
      await store.appendRequests(
        [120, 100, 91, 89, 30, 0].map((days, i) => {
          const t = now - days * DAY - 60_000
          return baseRow(i, { timestamp: new Date(t).toISOString(), day: utcDay(t), keyId, keyName: 'old-timer', totalTokens: 100, promptTokens: 60, completionTokens: 40 })
        }),
      )
    } finally {
      store.close()
    }
    const dailyUsage = () => {
      const d = new Database(pdb, { readonly: true })
      try {
        return d.prepare('select day, requests, total_tokens from daily_usage order by day').all()
      } finally {
        d.close()
      }
    }
    const usageBefore = dailyUsage()
    const r = await runJson<{ deleted: number; before: string }>(['logs', 'prune', '--older-than', '90d', '--db', pdb])
    expect(r.code).toBe(0)
    expect(r.json.deleted).toBe(3)
    expect(Math.abs(Date.parse(r.json.before) - (now - 90 * DAY))).toBeLessThan(10 * 60_000)
    const left = sqliteRows(pdb)
    expect(left).toHaveLength(3)
    for (const row of left) expect(Date.parse(row.timestamp)).toBeGreaterThan(now - 90 * DAY)
    const usageAfter = dailyUsage()
    expect(usageAfter).toEqual(usageBefore)
    expect(usageAfter).toHaveLength(6)
    const again = await runCli(['logs', 'prune', '--older-than', '90d', '--db', pdb])
    expect(again.code).toBe(0)
    expect(again.stdout).toMatch(/Deleted 0 request-log rows/)
  })

  it('exits 2 without --older-than or with a bad duration', async () => {
    const [missing, bad] = await runAll<any>([() => cli(['logs', 'prune']), () => json(['logs', 'prune', '--older-than', 'a while'])])
    expect(missing.code).toBe(2)
    expect(bad.code).toBe(2)
    expect(bad.json.error.message).toMatch(/older-than/)
    expect(sqliteRows(db).length).toBeGreaterThan(0)
  })
})
