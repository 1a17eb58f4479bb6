/** `gateway serve` as a real child process: startup output, flags, shutdown, and CLI changes taking effect. */
import Database from 'better-sqlite3'
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { rmSync, writeFileSync } from 'node:fs'
import { createServer, type AddressInfo } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { BIN, cliEnv, runCli, runJson, spawnServe as spawnServeChild, type ServeChild } from '../support/cli.js'
import { settle, tempDir } from '../support/gateway.js'
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js'


// `serve` children and CLI runs are fresh Node processes: give a loaded two-core machine time.
vi.setConfig({ testTimeout: 240_000, hookTimeout: 60_000 })


const children: ChildProcess[] = []

/** The shared spawner, with every child remembered so afterEach can kill stragglers. */
async function spawnServe(args: string[], env: Record<string, string> = {}, asJson = true): Promise<ServeChild> {
  const child = await spawnServeChild(args, env, asJson)
  children.push(child.proc)
  return child
}


/** Runs the CLI with a hard time bound (a command that should exit must not hang the suite). */
function runBounded(args: string[], env: Record<string, string> = {}, timeoutMs = 60_000): Promise<{ code: number | null; stdout: string; stderr: string; killed: boolean }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: cliEnv(env), timeout: timeoutMs, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const e = err as (Error & { code?: unknown; killed?: boolean }) | null
      resolve({ code: e ? (typeof e.code === 'number' ? e.code : null) : 0, stdout, stderr, killed: e?.killed ?? false })
    })
  })
}

async function stop(s: ServeChild): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  s.proc.kill('SIGTERM')
  return s.exited
}

const post = (url: string, key: string | null, body: unknown, path = '/chat') =>
  fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}) }, body: JSON.stringify(body) })

function logRow(db: string, id: string): Record<string, unknown> | undefined {
  const d = new Database(db, { readonly: true })
  try {
    return d.prepare('select * from request_log where request_id = ?').get(id) as Record<string, unknown> | undefined
  } finally {
    d.close()
  }
}

let dir: string
let upstream: MockUpstream

beforeAll(async () => {
  dir = tempDir('gw-serve-')
  upstream = await startMockUpstream()
})

afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
})

afterAll(async () => {
  await upstream.close()
  rmSync(dir, { recursive: true, force: true })
})

describe('serve: startup and shutdown', () => {
  it('--json prints one JSON line with url and port once listening, on 127.0.0.1 by default, and exits 0 on SIGTERM', async () => {
    const db = join(dir, 'a', 'gw.db')
    const s = await spawnServe(['--db', db])
    const firstLine = s.stdout().split('\n')[0]
    let parsed: Record<string, unknown> | null = null
    try {
      parsed = JSON.parse(firstLine) as Record<string, unknown>
    } catch {
      parsed = null
    }
    expect(parsed, `the first stdout line is a JSON document: ${JSON.stringify(firstLine)}`).not.toBeNull()
    expect(s.stdout().trimEnd().split('\n'), 'one line while it runs').toHaveLength(1)
    expect(s.info).toMatchObject({ url: `http://127.0.0.1:${s.info.port}`, mode: 'mock', db })
    expect(s.info.port).toBeGreaterThan(0)
    const health = await fetch(`${s.url}/health`)
    expect(await health.json()).toEqual({ status: 'ok' })
    expect(await stop(s)).toEqual({ code: 0, signal: null })
  })

  it('without --json prints a banner: listening URL, MOCK MODE warning without OPENAI_API_KEY, database; stops on SIGINT', async () => {
    const db = join(dir, 'b', 'gw.db')
    const s = await spawnServe(['--db', db], {}, false)
    expect(s.stdout()).toContain('MOCK MODE')
    expect(s.stdout()).toMatch(/gateway listening on http:\/\/127\.0\.0\.1:\d+/)
    expect(s.stdout()).toContain(db)
    s.proc.kill('SIGINT')
    expect((await s.exited).code).toBe(0)
    expect(s.stdout()).toMatch(/stopped/)
  })

  it('forwards to OPENAI_BASE_URL with OPENAI_API_KEY, which never reaches its output', async () => {
    const db = join(dir, 'c', 'gw.db')
    const created = await runJson<{ key: string }>(['keys', 'create', '--name', 'fwd', '--db', db])
    const s = await spawnServe(['--db', db], { OPENAI_API_KEY: 'sk-serve-test-operator-key', OPENAI_BASE_URL: upstream.url })
    expect(s.info).toMatchObject({ mode: 'upstream', upstream: upstream.url })
    const calls = upstream.requests.length
    const res = await post(s.url, created.json.key, { message: 'through the real upstream' })
    expect(res.status).toBe(200)
    expect(((await res.json()) as { response: string }).response).toBe('Echo: through the real upstream')
    expect(upstream.requests.length).toBe(calls + 1)
    expect(upstream.requests.at(-1)!.headers.authorization).toBe('Bearer sk-serve-test-operator-key')
    await stop(s)
    expect(s.stdout() + s.stderr()).not.toContain('sk-serve-test-operator-key')
  })

  it('lets a request in flight finish on SIGTERM, logs it, then exits 0', async () => {
    const db = join(dir, 'd', 'gw.db')
    const created = await runJson<{ key: string }>(['keys', 'create', '--name', 'slow', '--db', db])
    const s = await spawnServe(['--db', db], { OPENAI_API_KEY: 'sk-serve-test-operator-key', OPENAI_BASE_URL: upstream.url })
    upstream.script({ kind: 'normal', delayMs: 1500 })
    const inFlight = post(s.url, created.json.key, { message: 'finish me' })
    for (let i = 0; i < 250 && !upstream.requests.some((r) => JSON.stringify(r.body).includes('finish me')); i++) await settle(20)
    s.proc.kill('SIGTERM')
    const res = await inFlight
    expect(res.status).toBe(200)
    expect(((await res.json()) as { response: string }).response).toBe('Echo: finish me')
    expect((await s.exited).code).toBe(0)
    expect(logRow(db, res.headers.get('x-request-id')!)).toMatchObject({ status: 200, route: '/chat' })
  })

  it('exits 2 on an invalid flag value and non-zero when the port is taken, without hanging', async () => {
    const db = join(dir, 'e', 'gw.db')
    const blocker = createServer()
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()))
    const port = (blocker.address() as AddressInfo).port
    try {
      const cases: [string[], number | 'nonzero'][] = [
        [['serve', '--timezone', 'Nowhere/Land'], 2],
        [['serve', '--port', '70000'], 2],
        [['serve', '--port', 'eighty'], 2],
        [['serve', '--upstream-timeout', 'forever'], 2],
        [['serve', '--max-inflight', 'many'], 2],
        [['serve', '--port', String(port)], 'nonzero'],
      ]
      for (const [args, want] of cases) {
        const r = await runBounded([...args, '--db', db])
        expect(r.killed, `${args.join(' ')} exits by itself`).toBe(false)
        if (want === 'nonzero') {
          expect(r.code).not.toBe(0)
          expect(r.code).not.toBeNull()
          expect(r.stderr).toMatch(/EADDRINUSE|in use/i)
        } else expect([args.join(' '), r.code]).toEqual([args.join(' '), want])
      }
    } finally {
      blocker.close()
    }
  })
})

describe('serve: flags', () => {
  it('--metrics-public serves /metrics without a key; without it /metrics needs a key', async () => {
    const db = join(dir, 'f', 'gw.db')
    const open = await spawnServe(['--db', db, '--metrics-public'])
    try {
      const res = await fetch(`${open.url}/metrics`)
      expect(res.status).toBe(200)
      expect(await res.text()).toContain('gateway_requests_total')
    } finally {
      await stop(open)
    }
    const closed = await spawnServe(['--db', db])
    try {
      expect((await fetch(`${closed.url}/metrics`)).status).toBe(401)
    } finally {
      await stop(closed)
    }
  })

  it('--prices FILE prices requests from the file; a malformed file stops startup', async () => {
    const db = join(dir, 'g', 'gw.db')
    const prices = join(dir, 'prices.json')
    writeFileSync(prices, JSON.stringify({ 'gpt-4o-mini': { input: 1000, output: 3000 } }))
    const created = await runJson<{ key: string }>(['keys', 'create', '--name', 'priced', '--db', db])
    const s = await spawnServe(['--db', db, '--prices', prices])
    try {
      const res = await post(s.url, created.json.key, { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'price' }] }, '/v1/chat/completions')
      const body = (await res.json()) as { usage: { prompt_tokens: number; completion_tokens: number } }
      const row = logRow(db, res.headers.get('x-request-id')!)!
      expect(row.cost_micros).toBe(body.usage.prompt_tokens * 1000 + body.usage.completion_tokens * 3000)
    } finally {
      await stop(s)
    }
    const broken = join(dir, 'broken-prices.json')
    writeFileSync(broken, JSON.stringify({ 'gpt-4o-mini': { input: 'cheap' } }))
    const r = await runBounded(['serve', '--port', '0', '--db', db, '--prices', broken])
    expect(r.killed).toBe(false)
    expect(r.code).not.toBe(0)
    expect(r.stderr).toMatch(/gpt-4o-mini/)
  })

  it('--log-bodies stores request and response text', async () => {
    const db = join(dir, 'h', 'gw.db')
    const created = await runJson<{ key: string }>(['keys', 'create', '--name', 'bodies', '--db', db])
    const s = await spawnServe(['--db', db, '--log-bodies'])
    try {
      const res = await post(s.url, created.json.key, { message: 'keep my words' })
      expect(res.status).toBe(200)
      const row = logRow(db, res.headers.get('x-request-id')!)!
      expect(row.request_body).toContain('keep my words')
      expect(row.response_body).toContain('Echo: keep my words')
    } finally {
      await stop(s)
    }
  })
})

describe('serve picks up CLI changes within one second', () => {
  it('keys create, limits set, keys revoke', async () => {
    const db = join(dir, 'i', 'gw.db')
    const s = await spawnServe(['--db', db])
    try {
      const created = await runJson<{ key: string }>(['keys', 'create', '--name', 'watched', '--rpm', 'off', '--db', db])
      expect(created.code).toBe(0)
      await settle(1000)
      expect((await post(s.url, created.json.key, { message: 'new key' })).status).toBe(200)
      expect((await runCli(['limits', 'set', '--key', 'watched', '--rpm', '1', '--db', db])).code).toBe(0)
      await settle(1000)
      expect((await post(s.url, created.json.key, { message: 'first' })).status).toBe(200)
      expect((await post(s.url, created.json.key, { message: 'second' })).status).toBe(429)
      expect((await runCli(['keys', 'revoke', 'watched', '--db', db])).code).toBe(0)
      await settle(1000)
      expect((await post(s.url, created.json.key, { message: 'revoked' })).status).toBe(401)
    } finally {
      await stop(s)
    }
  })
})
