/**
 * Issue 7, scenario 10: the store. The server and the CLI (the real binary, and a second
 * connection doing what the CLI does ~10 times a second) hammer one SQLite file: no
 * SQLITE_BUSY reaches a client or the CLI. A real `gateway serve` killed with SIGKILL under
 * load leaves an intact database in which every response a client received is logged once.
 */
import { readdirSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { KeyManager } from '../../src/core/keys.js'
import { UsageReports } from '../../src/core/usage.js'
import { SqliteStore } from '../../src/storage/sqlite/sqlite-store.js'
import { runCli } from '../support/cli.js'
import { settle, startGateway, tempDir, NO_LIMITS, type TestGateway } from '../support/gateway.js'
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js'
import { expectNothingHeld, keyIdOf, query, readStream, sleep, startChildGateway } from './helpers.js'

let mock: MockUpstream

beforeAll(async () => {
  mock = await startMockUpstream()
})

afterAll(async () => {
  await mock?.close()
})

const BUSY = /SQLITE_BUSY|database is locked|SQLITE_LOCKED/i

describe('server and CLI on one file', () => {
  let gw: TestGateway
  afterAll(async () => {
    await gw?.stop()
  })

  it('no SQLITE_BUSY reaches a client or the CLI while keys, limits and usage change under load', async () => {
    gw = await startGateway({ upstreamUrl: mock.url })
    const key = await gw.createKey({ name: 'load', limits: NO_LIMITS })
    const statuses: number[] = []
    const bad: string[] = []
    const ids: string[] = []
    let stop = false
    const deadline = Date.now() + 30_000
    let n = 0

    // Clients: /chat and streamed /v1, 4 at a time, until the CLI is done (bounded).
    const clients = Array.from({ length: 4 }, async (_, w) => {
      while (!stop && Date.now() < deadline && n < 3_000) {
        const id = `st-${++n}`
        ids.push(id)
        const stream = (n + w) % 3 === 0
        const res = stream
          ? await gw.post('/v1/chat/completions', key, { model: 'gpt-4o-mini', messages: [{ role: 'user', content: `load ${n}` }], stream: true }, { 'x-request-id': id })
          : await gw.post('/chat', key, { message: `load ${n}` }, { 'x-request-id': id })
        const text = await res.text()
        statuses.push(res.status)
        if (res.status !== 200 || BUSY.test(text) || (stream && !readStream(text).done)) bad.push(`${id}: ${res.status} ${text.slice(0, 120)}`)
      }
    })

    // A second connection doing the CLI's reads and writes ~10 times a second.
    const other = SqliteStore.open(gw.db)
    const manager = new KeyManager(other, { now: Date.now })
    const reports = new UsageReports(other)
    const writerErrors: string[] = []
    let writes = 0
    const writer = (async () => {
      for (let i = 0; !stop && Date.now() < deadline; i++) {
        try {
          switch (i % 5) {
            case 0:
              await manager.create({ name: `w${i}`, limits: { rpm: 100 } })
              break
            case 1:
              await manager.update(`w${i - 1}`, { limits: { rpm: 50, tpm: 10_000 } })
              break
            case 2:
              await reports.forDay(new Date().toISOString().slice(0, 10))
              break
            case 3:
              await other.usageBy('key', { fromDay: new Date().toISOString().slice(0, 10), toDay: new Date().toISOString().slice(0, 10) })
              break
            case 4:
              await manager.revoke(`w${i - 4}`)
              break
          }
          writes++
        } catch (err) {
          writerErrors.push(String(err))
        }
        await sleep(100)
      }
    })()

    // The real CLI, one command after another, while all of that runs.
    const cli: { args: string[]; code: number; stdout: string; stderr: string }[] = []
    let cliSecret = ''
    try {
      for (const args of [
        ['keys', 'create', '--name', 'cli-made', '--json'],
        ['limits', 'set', '--key', 'cli-made', '--rpm', '500', '--json'],
        ['usage', 'today', '--json'],
        ['logs', 'export', '--since', '5m', '--format', 'jsonl', '--output', join(gw.dir, 'export.jsonl')],
        ['limits', 'set', '--default', '--max-tokens', '2000', '--json'],
        ['keys', 'list', '--json'],
      ]) {
        const r = await runCli([...args, '--db', gw.db])
        cli.push({ args, ...r })
        if (args[1] === 'create' && r.code === 0) cliSecret = (JSON.parse(r.stdout) as { key: string }).key
      }
    } finally {
      stop = true
      await Promise.all([...clients, writer])
      other.close()
    }

    expect(cli.filter((c) => c.code !== 0 || BUSY.test(c.stdout + c.stderr)).map((c) => `${c.args.join(' ')} → ${c.code} ${c.stderr.slice(0, 200)}`)).toEqual([])
    expect(writerErrors).toEqual([])
    expect(bad).toEqual([])
    expect(statuses.length).toBeGreaterThan(50)
    expect(writes).toBeGreaterThan(10)

    // Every request is logged exactly once.
    await gw.built.requestLog.drain()
    const dup = query(gw.db, 'select request_id, count(*) as n from request_log group by request_id having n > 1')
    expect(dup).toEqual([])
    const logged = new Set(query<{ request_id: string }>(gw.db, "select request_id from request_log where request_id like 'st-%'").map((r) => r.request_id))
    expect(ids.filter((id) => !logged.has(id))).toEqual([])

    // What the CLI changed reaches the server (within a second) and works.
    await settle(1_100)
    const res = await gw.post('/chat', cliSecret, { message: 'made by the CLI' })
    expect(res.status).toBe(200)
    expect(res.headers.get('x-ratelimit-limit-requests')).toBe('500')
    expect(query(gw.db, 'pragma integrity_check')).toEqual([{ integrity_check: 'ok' }])
    await expectNothingHeld(gw, [await keyIdOf(gw, 'load')])
  }, 120_000)
})

describe('SIGKILL under load', () => {
  let dir: string
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true })
  })

  it('restarts onto an intact database in which every answered request is logged exactly once', async () => {
    dir = tempDir('gw-kill-')
    const db = join(dir, 'gateway.db')
    const store = SqliteStore.open(db)
    const created = await new KeyManager(store, { now: Date.now }).create({ name: 'load', limits: NO_LIMITS })
    store.close()
    const key = created.secret
    const env = { OPENAI_API_KEY: 'sk-test-upstream-key-0000', OPENAI_BASE_URL: mock.url }
    const first = await startChildGateway({ db, env })

    const answered: string[] = []
    let n = 0
    let killed = false
    const deadline = Date.now() + 20_000
    const loops = Array.from({ length: 6 }, async (_, w) => {
      while (!killed && Date.now() < deadline && n < 5_000) {
        const id = `kill-${++n}`
        const stream = w % 2 === 1
        try {
          const res = await fetch(`${first.url}${stream ? '/v1/chat/completions' : '/chat'}`, {
            method: 'POST',
            headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'x-request-id': id },
            body: JSON.stringify(stream ? { model: 'gpt-4o-mini', messages: [{ role: 'user', content: `s ${n}` }], stream: true } : { message: `c ${n}` }),
          })
          const text = await res.text()
          // Received means: the whole answer (a stream up to its [DONE]).
          if (res.status === 200 && (stream ? readStream(text).done : 'response' in (JSON.parse(text) as object))) answered.push(id)
        } catch {
          // the server is gone
        }
      }
    })
    const killer = (async () => {
      while (answered.length < 150 && Date.now() < deadline) await sleep(10)
      first.proc.kill('SIGKILL')
      killed = true
    })()
    await Promise.all([killer, ...loops])
    expect((await first.exited).signal).toBe('SIGKILL')
    expect(answered.length).toBeGreaterThanOrEqual(150)

    expect(query(db, 'pragma integrity_check')).toEqual([{ integrity_check: 'ok' }])
    const counts = new Map(query<{ request_id: string; n: number }>(db, 'select request_id, count(*) as n from request_log group by request_id').map((r) => [r.request_id, r.n]))
    expect(answered.filter((id) => counts.get(id) !== 1).map((id) => `${id}: ${counts.get(id) ?? 0} rows`)).toEqual([])
    expect([...counts.values()].filter((c) => c !== 1)).toEqual([])
    // Usage and log were committed together.
    const [logSum] = query<{ t: number; r: number }>(db, 'select coalesce(sum(total_tokens), 0) as t, count(*) as r from request_log where key_id = ? and model is not null', created.key.id)
    const [usage] = query<{ t: number; r: number }>(db, 'select coalesce(sum(total_tokens), 0) as t, coalesce(sum(requests), 0) as r from daily_usage where key_id = ?', created.key.id)
    expect(usage).toEqual(logSum)
    // The CSV log holds every answered request once too.
    const csv = readdirSync(dir)
      .filter((f) => f.endsWith('.csv'))
      .map((f) => readFileSync(join(dir, f), 'utf8'))
      .join('')
    expect(answered.filter((id) => csv.split(`,${id},`).length - 1 !== 1)).toEqual([])

    // Restart onto the same file.
    const second = await startChildGateway({ db, env })
    try {
      expect((await fetch(`${second.url}/health`)).status).toBe(200)
      const u = (await (await fetch(`${second.url}/usage`, { headers: { authorization: `Bearer ${key}` } })).json()) as { total_tokens: number; requests: number }
      expect({ t: u.total_tokens, r: u.requests }).toEqual(usage)
      const res = await fetch(`${second.url}/chat`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: '{"message":"after the crash"}' })
      expect(res.status).toBe(200)
    } finally {
      expect((await second.stop()).code).toBe(0)
    }
    expect(query(db, 'pragma integrity_check')).toEqual([{ integrity_check: 'ok' }])
  }, 120_000)
})
