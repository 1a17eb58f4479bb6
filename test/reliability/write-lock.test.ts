/**
 * Issue 11 item 5: another process holding SQLite's write lock (as a long `logs prune`
 * does) never freezes the server, and what the upstream answered is never lost for it.
 * The real `gateway serve` in a child process; the lock is held from this process.
 */
import Database from 'better-sqlite3'
import { join } from 'node:path'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { SqliteStore } from '../../src/storage/sqlite/sqlite-store.js'
import { runCli, runJson } from '../support/cli.js'
import { tempDir } from '../support/gateway.js'
import { requestRow, type LogRow } from '../support/log-rows.js'
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js'
import { sleep, startChildGateway, until, type ChildGateway } from './helpers.js'

let upstream: MockUpstream
let gw: ChildGateway
let db: string
let key: string
let keyId: string

beforeAll(async () => {
  upstream = await startMockUpstream()
  db = join(tempDir(), 'gateway.db')
  const created = await runJson<{ id: string; key: string }>(['keys', 'create', '--name', 'locked', '--rpm', 'off', '--db', db])
  key = created.json.key
  keyId = created.json.id
  gw = await startChildGateway({ db, env: { OPENAI_API_KEY: 'sk-write-lock-test', OPENAI_BASE_URL: upstream.url } })
})
afterAll(async () => {
  await gw?.stop()
  await upstream.close()
})

const chatRequests = () => upstream.requests.filter((r) => r.path.endsWith('/chat/completions')).length

/** Holds the write lock from a second connection, as another process would. */
function holdWriteLock(): { release(): void } {
  const conn = new Database(db)
  conn.exec('BEGIN IMMEDIATE')
  return {
    release: () => {
      conn.exec('COMMIT')
      conn.close()
    },
  }
}

function chat(message: string, events: string[]): Promise<{ status: number; id: string; tokens: number }> {
  return fetch(`${gw.url}/chat`, { method: 'POST', headers: { 'x-api-key': key, 'content-type': 'application/json' }, body: JSON.stringify({ message }) }).then(async (r) => {
    events.push('chat answered')
    const body = (await r.json()) as { tokens_used?: number }
    return { status: r.status, id: r.headers.get('x-request-id') ?? '', tokens: body.tokens_used ?? -1 }
  })
}

function rowsOf(ids: string[]): LogRow[] {
  const conn = new Database(db, { readonly: true })
  try {
    return conn.prepare(`select * from request_log where request_id in (${ids.map(() => '?').join(',')})`).all(...ids) as LogRow[]
  } finally {
    conn.close()
  }
}

function dailyTotals(): { requests: number; total_tokens: number } {
  const conn = new Database(db, { readonly: true })
  try {
    return (conn.prepare('select coalesce(sum(requests), 0) as requests, coalesce(sum(total_tokens), 0) as total_tokens from daily_usage where key_id = ?').get(keyId) as { requests: number; total_tokens: number })
  } finally {
    conn.close()
  }
}

/** Every answer 200, every row present exactly once, daily usage grown by exactly those rows. */
function expectAllLogged(answers: { status: number; id: string; tokens: number }[], before: { requests: number; total_tokens: number }): void {
  expect(answers.map((a) => a.status)).toEqual(answers.map(() => 200))
  const rows = rowsOf(answers.map((a) => a.id))
  expect(rows.map((r) => r.request_id).sort()).toEqual(answers.map((a) => a.id).sort())
  for (const a of answers) expect(rows.find((r) => r.request_id === a.id)?.total_tokens).toBe(a.tokens)
  const after = dailyTotals()
  expect(after.requests - before.requests).toBe(answers.length)
  expect(after.total_tokens - before.total_tokens).toBe(answers.reduce((s, a) => s + a.tokens, 0))
}

it('while another connection holds the write lock, /health and admission answer; chats answer after the release, each logged once', async () => {
  const before = dailyTotals()
  const events: string[] = []
  const heldAt = Date.now()
  const lock = holdWriteLock()
  let answers: Promise<{ status: number; id: string; tokens: number }>[] = []
  try {
    const seen = chatRequests()
    answers = [0, 1, 2].map((i) => chat(`held ${i}`, events))
    expect(await until(() => chatRequests() === seen + 3, 10_000)).toBe(true)
    await sleep(100) // the upstream's answers reach the server, whose log write now finds the lock held
    for (let i = 0; i < 3; i++) {
      const health = await fetch(`${gw.url}/health`)
      expect(health.status).toBe(200)
      events.push('health answered')
    }
    // Admission keeps working: new requests are forwarded while the lock is still held.
    answers.push(chat('held 3', events), chat('held 4', events))
    expect(await until(() => chatRequests() === seen + 5, 10_000)).toBe(true)
    events.push('forwarded')
    await sleep(Math.max(0, 2_500 - (Date.now() - heldAt)))
  } finally {
    lock.release()
    events.push('released')
  }
  const done = await Promise.all(answers)
  expect(events).toEqual(['health answered', 'health answered', 'health answered', 'forwarded', 'released', ...done.map(() => 'chat answered')])
  expectAllLogged(done, before)
})

it('a hold longer than the old 5 s busy timeout loses nothing and answers no 500', async () => {
  const before = dailyTotals()
  const heldAt = Date.now()
  const lock = holdWriteLock()
  let answers: Promise<{ status: number; id: string; tokens: number }>[] = []
  try {
    const seen = chatRequests()
    answers = [0, 1, 2].map((i) => chat(`long hold ${i}`, []))
    expect(await until(() => chatRequests() === seen + 3, 10_000)).toBe(true)
    await sleep(Math.max(0, 6_000 - (Date.now() - heldAt)))
  } finally {
    lock.release()
  }
  expectAllLogged(await Promise.all(answers), before)
}, 30_000)

it('logs prune deletes in small transactions: another writer gets the lock between them', async () => {
  const pdb = join(tempDir(), 'prune.db')
  const OLD = 30_000
  const store = SqliteStore.open(pdb)
  const old = new Date(Date.now() - 10 * 86_400_000).toISOString()
  for (let i = 0; i < OLD; i += 5_000) await store.appendRequests(Array.from({ length: 5_000 }, () => requestRow({ timestamp: old })))
  await store.appendRequests([requestRow(), requestRow()])
  store.close()
  // A writer that never waits, as the server's log write: it tries the lock while prune runs.
  const other = new Database(pdb)
  other.pragma('busy_timeout = 0')
  const countOld = other.prepare('select count(*) as n from request_log where timestamp < ?')
  const seenWhileHeld = new Set<number>()
  let finished = false
  const prune = runCli(['logs', 'prune', '--older-than', '1d', '--json', '--db', pdb]).finally(() => (finished = true))
  for (let i = 0; i < 20_000 && !finished; i++) {
    try {
      other.exec('BEGIN IMMEDIATE')
      seenWhileHeld.add((countOld.get(old.slice(0, 10) + 'T23:59:59.999Z') as { n: number }).n)
      other.exec('COMMIT')
    } catch (err) {
      if (!String((err as { code?: string }).code).startsWith('SQLITE_BUSY')) throw err
    }
    await sleep(1)
  }
  const r = await prune
  other.close()
  expect(r.code).toBe(0)
  expect((JSON.parse(r.stdout) as { deleted: number }).deleted).toBe(OLD)
  // Some state between "nothing deleted yet" and "all deleted" was committed and visible.
  expect([...seenWhileHeld].some((n) => n > 0 && n < OLD), `counts seen: ${[...seenWhileHeld].join(', ')}`).toBe(true)
  const left = new Database(pdb, { readonly: true })
  expect((left.prepare('select count(*) as n from request_log').get() as { n: number }).n).toBe(2)
  left.close()
}, 60_000)
