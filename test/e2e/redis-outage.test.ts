import { join } from 'node:path'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { runJson, spawnServe, type ServeChild } from '../support/cli.js'
import { tempDir } from '../support/gateway.js'
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js'
import { startRedis, type TestRedis } from '../support/redis.js'

/** Redis killed under load and started again, empty: fail closed, no crash, resume, re-seed. */

let redis: TestRedis
let upstream: MockUpstream
let gateway: ServeChild
let db: string
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

beforeAll(async () => {
  redis = await startRedis()
  upstream = await startMockUpstream()
  db = join(tempDir(), 'gateway.db')
  gateway = await spawnServe(['--db', db, '--redis', redis.url, '--no-csv-log', '--access-log', 'off'], { OPENAI_API_KEY: 'sk-test-upstream-key-0000', OPENAI_BASE_URL: upstream.url })
}, 30_000)

afterAll(async () => {
  await gateway?.stop()
  await upstream?.close()
  await redis?.stop()
})

interface Answer {
  status: number
  code: string | null
  retryAfter: string | null
  ms: number
}

async function call(key: string): Promise<Answer> {
  const started = performance.now()
  const r = await fetch(`${gateway.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }], max_tokens: 20 }),
  })
  const body = (await r.json()) as { error?: { code: string } }
  return { status: r.status, code: body.error?.code ?? null, retryAfter: r.headers.get('retry-after'), ms: performance.now() - started }
}

async function spentInRedis(id: string, day: string): Promise<number | null> {
  const m = /^\$\d+\r\n(\d+)/m.exec(await redis.command('HGET', `gw:{${id}}:b:${day}`, 'spent'))
  return m ? Number(m[1]) : null
}

async function storeTotal(id: string): Promise<{ day: string; total: number }> {
  const today = (await runJson<{ date: string; keys: { key_id: string; total_tokens: number }[] }>(['usage', 'today', '--db', db])).json
  return { day: today.date, total: today.keys.find((k) => k.key_id === id)?.total_tokens ?? 0 }
}

it('Redis killed under load: 503 limiter_unavailable with Retry-After 1 at once (and from /health), no crash; started again empty: served within a second, the budget re-seeded from the store', async () => {
  const created = await runJson<{ key: string; id: string }>(['keys', 'create', '--db', db, '--name', 'outage', '--rpm', 'off', '--daily-tokens', '1000000'])
  const { key, id } = created.json
  for (let i = 0; i < 5; i++) expect((await call(key)).status).toBe(200)
  const before = await storeTotal(id)
  expect(await spentInRedis(id, before.day)).toBe(before.total)

  // Load: four clients calling one after another until told to stop.
  const answers: Answer[] = []
  let running = true
  const loops = Array.from({ length: 4 }, async () => {
    while (running) answers.push(await call(key))
  })
  await sleep(300)
  await redis.kill()
  const killedAt = answers.length
  let end = Date.now() + 5_000
  while (!answers.slice(killedAt).some((a) => a.status === 503) && Date.now() < end) await sleep(20)
  const refused = answers.slice(killedAt).filter((a) => a.status === 503)
  expect(refused.length).toBeGreaterThan(0)
  for (const a of refused) expect(a).toMatchObject({ code: 'limiter_unavailable', retryAfter: '1' })
  // Refused at once, not after a hang (a bound for "no hang", far above the few ms it takes).
  expect(Math.max(...refused.map((a) => a.ms))).toBeLessThan(1_000)
  expect(answers.slice(killedAt).every((a) => a.status === 200 || a.status === 503)).toBe(true)
  expect(gateway.proc.exitCode).toBeNull()
  // A load balancer's check says so too, so it can take this gateway out of rotation.
  const health = await fetch(`${gateway.url}/health`)
  expect(health.status).toBe(503)
  expect(((await health.json()) as { error: { code: string } }).error.code).toBe('limiter_unavailable')

  await redis.start()
  const backAt = answers.length
  const startedAt = Date.now()
  end = Date.now() + 5_000
  while (!answers.slice(backAt).some((a) => a.status === 200) && Date.now() < end) await sleep(10)
  const resumedIn = Date.now() - startedAt
  running = false
  await Promise.all(loops)
  expect(answers.slice(backAt).some((a) => a.status === 200)).toBe(true)
  expect(resumedIn).toBeLessThanOrEqual(1_000)
  expect((await fetch(`${gateway.url}/health`)).status).toBe(200)

  // The empty Redis took the day's spend from the store, and both counted on from there alike.
  const after = await storeTotal(id)
  expect(after.total).toBeGreaterThan(before.total)
  await expect.poll(() => spentInRedis(id, after.day), { timeout: 3_000 }).toBe(after.total)
  expect(gateway.stderr()).toMatch(/Redis unavailable/)
  expect(gateway.stderr()).toMatch(/Redis answers again/)
}, 60_000)
