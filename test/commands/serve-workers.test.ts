import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runJson, spawnServe } from '../support/cli.js'
import { tempDir } from '../support/gateway.js'
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js'
import { startRedis, type TestRedis } from '../support/redis.js'

let redis: TestRedis
let upstream: MockUpstream
let db: string

beforeAll(async () => {
  redis = await startRedis()
  upstream = await startMockUpstream()
  db = join(tempDir(), 'gateway.db')
})

afterAll(async () => {
  await upstream?.close()
  await redis?.stop()
})

describe('serve --workers', () => {
  it('above 1 without --redis is refused: each process would count every limit again (exit 2)', async () => {
    const r = await runJson<{ error: { message: string; code: string } }>(['serve', '--port', '0', '--db', db, '--workers', '2'])
    expect(r.code).toBe(2)
    expect(r.json.error.message).toMatch(/^--workers 2 needs --redis/)
  })

  it('2 workers with --redis on one port: the 200-way race on a 10 rpm key admits exactly 10; SIGTERM stops them all', async () => {
    const created = await runJson<{ key: string }>(['keys', 'create', '--db', db, '--name', 'race', '--rpm', '10'])
    const served = await spawnServe(['--db', db, '--workers', '2', '--redis', redis.url, '--redis-timeout', '2s', '--no-csv-log', '--access-log', 'off'], { OPENAI_API_KEY: 'sk-test-upstream-key-0000', OPENAI_BASE_URL: upstream.url })
    try {
      expect(served.info.workers).toBe(2)
      const statuses = await Promise.all(
        Array.from({ length: 200 }, async () => {
          const r = await fetch(`${served.url}/v1/chat/completions`, {
            method: 'POST',
            headers: { authorization: `Bearer ${created.json.key}`, 'content-type': 'application/json', connection: 'close' },
            body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
          })
          await r.arrayBuffer()
          return r.status
        }),
      )
      expect(statuses.filter((s) => s === 200)).toHaveLength(10)
      expect(statuses.filter((s) => s === 429)).toHaveLength(190)
    } finally {
      const exit = await served.stop()
      expect(exit.code).toBe(0)
    }
    expect(served.stdout()).toContain('{"stopped":true,"cut":0}')
    await expect(fetch(`${served.url}/health`)).rejects.toThrow()
  }, 60_000)

  it('a worker that dies while serving is replaced; the port keeps answering', async () => {
    const created = await runJson<{ key: string }>(['keys', 'create', '--db', db, '--name', 'survivor', '--rpm', 'off'])
    const served = await spawnServe(['--db', db, '--workers', '2', '--redis', redis.url, '--redis-timeout', '2s', '--no-csv-log', '--access-log', 'off'], { OPENAI_API_KEY: 'sk-test-upstream-key-0000', OPENAI_BASE_URL: upstream.url })
    const call = async () => (await fetch(`${served.url}/v1/models`, { headers: { authorization: `Bearer ${created.json.key}`, connection: 'close' } })).status
    try {
      const workers = execFileSync('pgrep', ['-P', String(served.proc.pid)], { encoding: 'utf8' }).trim().split('\n').map(Number)
      expect(workers).toHaveLength(2)
      process.kill(workers[0], 'SIGKILL')
      const end = Date.now() + 15_000
      while (!/died \(SIGKILL\); starting another/.test(served.stderr()) && Date.now() < end) await new Promise((r) => setTimeout(r, 50))
      expect(served.stderr()).toMatch(/gateway: worker \d+ died \(SIGKILL\); starting another/)
      while (!/listening in place of the one that died/.test(served.stderr()) && Date.now() < end) await new Promise((r) => setTimeout(r, 50))
      const again = execFileSync('pgrep', ['-P', String(served.proc.pid)], { encoding: 'utf8' }).trim().split('\n').map(Number)
      expect(again).toHaveLength(2)
      expect(again).not.toContain(workers[0])
      expect(await Promise.all(Array.from({ length: 10 }, call))).toEqual(Array(10).fill(200))
    } finally {
      expect((await served.stop()).code).toBe(0)
    }
  }, 60_000)

  it('--redis that cannot be reached stops the start with the reason (exit 1), not a server refusing every request', async () => {
    const r = await runJson<{ error: { message: string; code: string } }>(['serve', '--port', '0', '--db', db, '--redis', 'redis://127.0.0.1:1'])
    expect(r.code).toBe(1)
    expect(r.json.error.code).toBe('limiter_unavailable')
    expect(r.json.error.message).toMatch(/^--redis: cannot reach redis:\/\/127\.0\.0\.1:1: no connection within 5s \(connect ECONNREFUSED/)
  }, 30_000)

  it('a server with --redis is refused beside one without it on the same database (exit 2)', async () => {
    const own = join(tempDir(), 'gateway.db')
    const lone = await spawnServe(['--db', own, '--no-csv-log', '--mock'])
    try {
      const r = await runJson<{ error: { message: string; code: string } }>(['serve', '--port', '0', '--db', own, '--redis', redis.url, '--mock'])
      expect(r.code).toBe(2)
      expect(r.json.error.code).toBe('database_in_use')
      expect(r.json.error.message).toContain(`A gateway server without --redis (pid ${lone.proc.pid})`)
    } finally {
      await lone.stop()
    }
  }, 30_000)
})
