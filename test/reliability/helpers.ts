import { collect } from '../support/log-rows.js'
/**
 * Local helpers of the reliability suite (issue 7). Real parts only: raw sockets, child
 * processes of the real CLI, a read-only look at the real SQLite file.
 */
import Database from 'better-sqlite3'
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { connect, createServer, type AddressInfo, type Socket } from 'node:net'
import { readFileSync } from 'node:fs'
import { expect } from 'vitest'
import type { RequestRow } from '../../src/core/types.js'
import { spawnServe, type ServeChild } from '../support/cli.js'
import { startGateway, type TestGateway } from '../support/gateway.js'
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js'

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/** Polls `check` until it returns true or `timeoutMs` passes (bounded); returns the last result. */
export async function until(check: () => boolean | Promise<boolean>, timeoutMs = 3_000, stepMs = 20): Promise<boolean> {
  const end = Date.now() + timeoutMs
  for (;;) {
    if (await check()) return true
    if (Date.now() > end) return false
    await sleep(stepMs)
  }
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP over a socket: for bytes fetch refuses to send (NUL, non-ASCII, bad framing).

export interface RawResponse {
  /** 0 when nothing parseable came back. */
  status: number
  statusLine: string
  /** Header lines as received (name: value). */
  headerLines: string[]
  headers: Record<string, string[]>
  body: string
  raw: string
  error: string | null
}

function dechunk(body: string): string {
  let out = ''
  let at = 0
  for (;;) {
    const eol = body.indexOf('\r\n', at)
    if (eol < 0) return out
    const size = parseInt(body.slice(at, eol), 16)
    if (!Number.isFinite(size) || size === 0) return out
    out += body.slice(eol + 2, eol + 2 + size)
    at = eol + 2 + size + 2
  }
}

export function parseRawResponse(raw: string, error: string | null = null): RawResponse {
  const end = raw.indexOf('\r\n\r\n')
  const head = end < 0 ? raw : raw.slice(0, end)
  const lines = head.split('\r\n')
  const statusLine = lines[0] ?? ''
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine)
  const headerLines = lines.slice(1).filter((l) => l.length > 0)
  const headers: Record<string, string[]> = {}
  for (const l of headerLines) {
    const i = l.indexOf(':')
    const name = l.slice(0, i).trim().toLowerCase()
    ;(headers[name] ??= []).push(l.slice(i + 1).trim())
  }
  let body = end < 0 ? '' : raw.slice(end + 4)
  if (headers['transfer-encoding']?.some((v) => /chunked/i.test(v))) body = dechunk(body)
  return { status: m ? Number(m[1]) : 0, statusLine, headerLines, headers, body, raw, error }
}

/**
 * Sends `data` as-is on a fresh connection and reads until the server closes it (send
 * `Connection: close`) or `timeoutMs` passes. The bytes are written latin1 when a string.
 */
export function rawHttp(port: number, data: string | Buffer | (string | Buffer)[], opts: { timeoutMs?: number; endAfterWrite?: boolean } = {}): Promise<RawResponse> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    const chunks: Buffer[] = []
    let error: string | null = null
    let done = false
    const finish = () => {
      if (done) return
      done = true
      clearTimeout(timer)
      socket.destroy()
      resolve(parseRawResponse(Buffer.concat(chunks).toString('latin1'), error))
    }
    const timer = setTimeout(finish, opts.timeoutMs ?? 5_000)
    socket.on('data', (d) => chunks.push(d))
    socket.on('error', (e) => {
      error = (e as NodeJS.ErrnoException).code ?? e.message
    })
    socket.on('close', finish)
    socket.on('connect', () => {
      for (const part of Array.isArray(data) ? data : [data]) socket.write(typeof part === 'string' ? Buffer.from(part, 'latin1') : part)
      if (opts.endAfterWrite) socket.end()
    })
  })
}

// ---------------------------------------------------------------------------------------------
// The real `gateway serve` in a child process.

export interface ChildGateway extends ServeChild {
  port: number
}

/** `gateway serve` on the shipped build, bound to 127.0.0.1, over `db`. */
export async function startChildGateway(opts: { db: string; env?: Record<string, string>; args?: string[]; nodeArgs?: string[] }): Promise<ChildGateway> {
  const child = await spawnServe(['--host', '127.0.0.1', '--db', opts.db, ...(opts.args ?? [])], opts.env, true, opts.nodeArgs)
  return { ...child, port: Number(new URL(child.url).port) }
}

/**
 * The real gateway over the mock upstream with the brute-force limit off: the matrices of
 * bad keys below would otherwise turn into 429s (that limit has tests of its own).
 */
export async function startOpenGateway(): Promise<{ mock: MockUpstream; gw: TestGateway }> {
  const mock = await startMockUpstream()
  const gw = await startGateway({ upstreamUrl: mock.url })
  await gw.admin.mergeDefaults({ authFailuresPerMinute: null })
  await gw.built.gateway.refresh(true)
  return { mock, gw }
}

/** Peak and current resident memory of a process, from /proc (Linux), in bytes. */
export function procMemory(pid: number): { hwm: number; rss: number } {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN) * 1024
  return { hwm: kb('VmHWM'), rss: kb('VmRSS') }
}

// ---------------------------------------------------------------------------------------------
// The SQLite file, seen from outside the gateway.

/** The schema as SQLite stores it (`sqlite_master`), for before/after comparisons. */
export function schemaOf(dbPath: string): string {
  const db = new Database(dbPath, { readonly: true, fileMustExist: true })
  try {
    return JSON.stringify(db.prepare('select type, name, tbl_name, sql from sqlite_master order by type, name').all())
  } finally {
    db.close()
  }
}

export function query<T = Record<string, unknown>>(dbPath: string, sql: string, ...params: unknown[]): T[] {
  const db = new Database(dbPath, { fileMustExist: true })
  try {
    db.pragma('busy_timeout = 5000')
    return db.prepare(sql).all(...params) as T[]
  } finally {
    db.close()
  }
}

/** Every request-log row, once the group commit has written what is pending. */
export async function rowsOf(gw: TestGateway): Promise<RequestRow[]> {
  await gw.built.requestLog.drain()
  return (await collect(gw.admin.iterateRequests({})))
}

/** Rows of one request id (there must be exactly one per request). */
export async function rowsFor(gw: TestGateway, requestId: string): Promise<RequestRow[]> {
  return (await rowsOf(gw)).filter((r) => r.requestId === requestId)
}

/** The one row of a request id; waits (bounded) for a streamed request's row. */
export async function rowFor(gw: TestGateway, requestId: string): Promise<RequestRow> {
  let rows: RequestRow[] = []
  await until(async () => (rows = await rowsFor(gw, requestId)).length > 0, 3_000)
  expect(rows, `log rows of ${requestId}`).toHaveLength(1)
  return rows[0]
}

/**
 * Nothing in flight, nothing queued, nothing reserved: waits (bounded) for a stream's cleanup,
 * then asserts.
 */
export async function expectNothingHeld(gw: TestGateway, keyIds: string[]): Promise<void> {
  const q = gw.built.gateway.queue
  const limiter = gw.built.gateway.limiter
  const reserved = async () => Promise.all(keyIds.map(async (k) => (await limiter.budget(k)).reserved))
  const clean = async () => q.active === 0 && q.depth === 0 && (await reserved()).every((r) => r === 0)
  await until(clean, 3_000)
  expect({ active: q.active, depth: q.depth }).toEqual({ active: 0, depth: 0 })
  expect(await reserved(), 'tokens still reserved').toEqual(keyIds.map(() => 0))
}

export async function keyIdOf(gw: TestGateway, name: string): Promise<string> {
  const k = await gw.admin.findKey(name)
  if (!k) throw new Error(`no key ${name}`)
  return k.id
}

// ---------------------------------------------------------------------------------------------
// Secrets: 8-character pieces of a canary.

export function pieces(secret: string, n = 8): string[] {
  const out: string[] = []
  for (let i = 0; i + n <= secret.length; i++) out.push(secret.slice(i, i + n))
  return out
}

/** `where: canary piece` for every 8-character piece of any canary found in the haystack. */
export function findLeaks(haystacks: Record<string, string>, canaries: Record<string, string>): string[] {
  const table = new Map<string, string>()
  for (const [name, secret] of Object.entries(canaries)) for (const p of pieces(secret)) table.set(p, name)
  const found: string[] = []
  for (const [where, text] of Object.entries(haystacks)) {
    let reported = 0
    for (let i = 0; i + 8 <= text.length && reported < 5; i++) {
      const name = table.get(text.slice(i, i + 8))
      if (!name) continue
      reported++
      found.push(`${where}: ${name} (piece "${text.slice(i, i + 8)}" at ${i}, in ${JSON.stringify(text.slice(Math.max(0, i - 60), i + 40))})`)
      while (i + 8 <= text.length && table.has(text.slice(i, i + 8))) i++ // the rest of this run
    }
  }
  return found
}

// ---------------------------------------------------------------------------------------------
// Listeners that must stay silent, and an upstream that honours back-pressure.

export interface Canary {
  url: string
  port: number
  /** Connections received (anything at all is a failure of the test using it). */
  hits: number
  firstBytes: string[]
  close(): Promise<void>
}

/** A TCP listener on another loopback port that counts every connection it gets. */
export async function startCanary(): Promise<Canary> {
  const sockets = new Set<Socket>()
  const state = { url: '', port: 0, hits: 0, firstBytes: [] as string[], close: async () => {} }
  const server = createServer((socket) => {
    state.hits++
    sockets.add(socket)
    socket.once('data', (d) => state.firstBytes.push(d.toString('latin1').slice(0, 200)))
    socket.on('error', () => {})
    socket.on('close', () => sockets.delete(socket))
    setTimeout(() => socket.destroy(), 50)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  state.port = (server.address() as AddressInfo).port
  state.url = `http://127.0.0.1:${state.port}`
  state.close = async () => {
    for (const s of sockets) s.destroy()
    await new Promise<void>((r) => server.close(() => r()))
  }
  return state
}

export interface FloodUpstream {
  /** Base URL with /v1. */
  url: string
  /** Bytes the upstream managed to hand to its socket (write() accepted them). */
  sent: number
  /** Responses the gateway closed before they ended. */
  abandoned: number
  finished: number
  requests: number
  close(): Promise<void>
}

/**
 * An OpenAI-compatible upstream whose stream is `totalBytes` long (~1 KiB content events),
 * written only as fast as the reader takes it (it waits for 'drain'), counting what it sent.
 * `separators: false` sends bytes that never complete an SSE event.
 */
export async function startFloodUpstream(opts: { totalBytes: number; separators?: boolean }): Promise<FloodUpstream> {
  const sockets = new Set<Socket>()
  // Words, so that metering a cut stream (a tokenizer over the text) stays cheap here.
  const content = 'lorem ipsum '.repeat(83)
  const event = Buffer.from(`data: ${JSON.stringify({ id: 'flood', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta: { content }, finish_reason: null }] })}\n\n`)
  const junk = Buffer.alloc(64 * 1024, 0x78)
  const state: FloodUpstream = { url: '', sent: 0, abandoned: 0, finished: 0, requests: 0, close: async () => {} }
  const server = createHttpServer((req: IncomingMessage, res: ServerResponse) => {
    req.resume()
    req.on('end', () => {
      state.requests++
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      let ended = false
      res.on('close', () => {
        if (!ended) state.abandoned++
      })
      const piece = opts.separators === false ? junk : event
      let written = 0
      const pump = () => {
        while (!res.destroyed && written < opts.totalBytes) {
          written += piece.length
          state.sent += piece.length
          if (!res.write(piece)) {
            res.once('drain', pump)
            return
          }
        }
        if (res.destroyed) return
        ended = true
        state.finished++
        res.end('data: [DONE]\n\n')
      }
      pump()
    })
  })
  server.on('connection', (s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`
  state.close = async () => {
    for (const s of sockets) s.destroy()
    await new Promise<void>((r) => server.close(() => r()))
  }
  return state
}

// ---------------------------------------------------------------------------------------------
// SSE as a client sees it.

export function sseData(text: string): string[] {
  return text
    .split(/\r?\n\r?\n/)
    .map((e) =>
      e
        .split(/\r?\n/)
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(l.charCodeAt(5) === 32 ? 6 : 5))
        .join('\n'),
    )
    .filter((d) => d.length > 0)
}

/** The streamed text and the error events of an SSE body. */
export function readStream(text: string): { content: string; done: boolean; errors: { code: string; type: string; message: string }[]; usage: unknown[] } {
  let content = ''
  let done = false
  const errors: { code: string; type: string; message: string }[] = []
  const usage: unknown[] = []
  for (const d of sseData(text)) {
    if (d.trim() === '[DONE]') {
      done = true
      continue
    }
    const j = JSON.parse(d) as { error?: { code: string; type: string; message: string }; choices?: { delta?: { content?: string } }[]; usage?: unknown }
    if (j.error) errors.push(j.error)
    for (const c of j.choices ?? []) if (typeof c.delta?.content === 'string') content += c.delta.content
    if (j.usage) usage.push(j.usage)
  }
  return { content, done, errors, usage }
}

/** C0 controls (except those listed in `allow`), DEL and C1 controls found in a text. */
export function controlChars(text: string, allow = ''): string[] {
  const found = new Set<string>()
  for (const ch of text) {
    const c = ch.charCodeAt(0)
    if (((c < 0x20 || (c >= 0x7f && c <= 0x9f)) && !allow.includes(ch))) found.add(`\\x${c.toString(16).padStart(2, '0')}`)
  }
  return [...found]
}
