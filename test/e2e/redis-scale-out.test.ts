import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runJson, spawnServe, type ServeChild } from '../support/cli.js'
import { tempDir } from '../support/gateway.js'
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js'
import { startRedis, type TestRedis } from '../support/redis.js'

/**
 * Three real gateway processes on one SQLite file and one private Redis: each limit is one
 * limit across them, however the requests are spread.
 */

let redis: TestRedis
let upstream: MockUpstream
let dir: string
let db: string
let gateways: ServeChild[] = []
const extra: ServeChild[] = []

const env = () => ({ OPENAI_API_KEY: 'sk-test-upstream-key-0000', OPENAI_BASE_URL: upstream.url })
// A shared 2-core test machine can starve Redis of CPU for over 100 ms under these bursts, which the
// default timeout rightly answers with 503: these tests are about exactness, so they allow 2 s.
const serve = (args: string[] = []) => spawnServe(['--db', db, '--redis', redis.url, '--redis-timeout', '2s', '--no-csv-log', '--access-log', 'off', ...args], env())

async function createKey(name: string, limits: string[]): Promise<{ key: string; id: string }> {
  const r = await runJson<{ key: string; id: string }>(['keys', 'create', '--db', db, '--name', name, ...limits])
  expect(r.code).toBe(0)
  return r.json
}

function chat(url: string, key: string, body: Record<string, unknown> = {}, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }], ...body }),
  })
}

const chatCalls = () => upstream.requests.filter((r) => r.path.endsWith('/chat/completions')).length

/** A budget hash in Redis, as numbers. */
async function budgetInRedis(id: string, day: string): Promise<{ spent: number; reserved: number }> {
  const reply = await redis.command('HMGET', `gw:{${id}}:b:${day}`, 'spent', 'reserved')
  const [spent, reserved] = [...reply.matchAll(/^\$\d+\r\n(\d+)/gm)].map((m) => Number(m[1]))
  return { spent, reserved }
}

beforeAll(async () => {
  redis = await startRedis()
  upstream = await startMockUpstream()
  dir = tempDir()
  db = join(dir, 'gateway.db')
  expect((await runJson(['db', 'migrate', '--db', db])).code).toBe(0)
  gateways = await Promise.all([serve(), serve(), serve()])
}, 60_000)

afterAll(async () => {
  await Promise.all([...gateways, ...extra].map((g) => g.stop()))
  await upstream?.close()
  await redis?.stop()
})

describe('three gateways sharing limits through Redis', () => {
  it('one key at 10 rpm, 300 concurrent requests over the three: exactly 10 pass, 290 get 429 with Retry-After, the upstream saw 10', async () => {
    const { key } = await createKey('rpm10', ['--rpm', '10'])
    const before = chatCalls()
    const responses = await Promise.all(Array.from({ length: 300 }, (_, i) => chat(gateways[i % 3].url, key)))
    const ok = responses.filter((r) => r.status === 200)
    const limited = responses.filter((r) => r.status === 429)
    expect(ok).toHaveLength(10)
    expect(limited).toHaveLength(290)
    for (const r of limited) expect(Number(r.headers.get('retry-after'))).toBeGreaterThan(0)
    const bodies = await Promise.all(limited.map((r) => r.json() as Promise<{ error: { code: string } }>))
    expect(new Set(bodies.map((b) => b.error.code))).toEqual(new Set(['rate_limit_exceeded']))
    await Promise.all(ok.map((r) => r.arrayBuffer()))
    expect(chatCalls() - before).toBe(10)
  })

  it('a 10,000-token budget, 300 concurrent requests with max_tokens 700: the upstream used at most 10,000; nothing held after; Redis, the store and /usage agree', async () => {
    const { key, id } = await createKey('budget10k', ['--rpm', 'off', '--daily-tokens', '10000'])
    const tokensBefore = upstream.reportedTokens
    const responses = await Promise.all(Array.from({ length: 300 }, (_, i) => chat(gateways[i % 3].url, key, { max_tokens: 700 })))
    const statuses = responses.map((r) => r.status)
    const odd = responses.filter((r) => r.status !== 200 && r.status !== 429)
    expect(await Promise.all(odd.slice(0, 3).map(async (r) => `${r.status} ${await r.text()}`)), gateways.map((g) => g.stderr()).join('')).toEqual([])
    expect(statuses.filter((s) => s === 200).length).toBeGreaterThanOrEqual(10_000 / (700 + 50))
    await Promise.all(responses.map((r) => (r.bodyUsed ? null : r.arrayBuffer())))
    const used = upstream.reportedTokens - tokensBefore
    expect(used).toBeGreaterThan(0)
    expect(used).toBeLessThanOrEqual(10_000)
    const today = (await runJson<{ date: string; keys: { key_id: string; total_tokens: number }[] }>(['usage', 'today', '--db', db])).json
    const inStore = today.keys.find((k) => k.key_id === id)!.total_tokens
    expect(inStore).toBe(used)
    // Settles go to Redis after the answers (the store's rows before them): give them a moment.
    await expect.poll(() => budgetInRedis(id, today.date), { timeout: 5_000 }).toEqual({ spent: used, reserved: 0 })
    const viaHttp = (await (await fetch(`${gateways[1].url}/usage`, { headers: { authorization: `Bearer ${key}` } })).json()) as Record<string, unknown>
    expect(JSON.stringify(viaHttp)).toContain(`"total_tokens":${used}`)
  })

  it('concurrency 5 across the three with 2-second answers: never more than 5 at the upstream at once', async () => {
    const { key } = await createKey('conc5', ['--rpm', 'off', '--concurrency', '5'])
    upstream.maxInflight = 0
    upstream.script(...Array.from({ length: 15 }, () => ({ kind: 'normal' as const, delayMs: 2_000 })))
    const responses = await Promise.all(Array.from({ length: 15 }, (_, i) => chat(gateways[i % 3].url, key, { stream: true })))
    await Promise.all(responses.map((r) => r.text()))
    expect(responses.map((r) => r.status)).toEqual(Array(15).fill(200))
    expect(upstream.maxInflight).toBe(5)
  }, 60_000)

  it('a gateway SIGKILLed mid-stream: its slot is free again within its lease + 1 s, and its reservation is charged in full', async () => {
    const leaseMs = 2_000
    const doomed = await serve(['--redis-lease', `${leaseMs / 1000}s`])
    extra.push(doomed)
    const { key, id } = await createKey('killed', ['--rpm', 'off', '--concurrency', '1', '--daily-tokens', '100000'])
    upstream.script({ kind: 'raw', chunks: ['data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'], end: 'hang' })
    const streaming = await chat(doomed.url, key, { stream: true, max_tokens: 100 })
    expect(streaming.status).toBe(200)
    await streaming.body!.getReader().read() // the first event: the stream runs, holding the key's one slot
    // The slot is the key's, not the gateway's: another gateway waits for it in vain.
    const meanwhile = await chat(gateways[0].url, key, { max_tokens: 5 }, { 'x-queue-timeout': '1' })
    expect(meanwhile.status).toBe(503)
    expect(((await meanwhile.json()) as { error: { code: string } }).error.code).toBe('queue_timeout')
    doomed.proc.kill('SIGKILL')
    await doomed.exited
    const killedAt = Date.now()
    const after = await chat(gateways[0].url, key, { max_tokens: 5 }, { 'x-queue-timeout': '20' })
    const freedIn = Date.now() - killedAt
    expect(after.status).toBe(200)
    await after.arrayBuffer()
    expect(freedIn).toBeLessThanOrEqual(leaseMs + 1_000)
    // The dead gateway's reservation was charged in full (money-safe) and said so.
    const logs = gateways.map((g) => g.stderr()).join('')
    const line = /reservation \S+ of key (\S+) outlived its lease .*charged in full: (\d+) tokens/.exec(logs)
    expect(line?.[1]).toBe(id)
    const day = new Date().toISOString().slice(0, 10)
    const budget = await budgetInRedis(id, day)
    expect(budget.reserved).toBe(0)
    expect(Number(line![2])).toBeGreaterThan(100)
    expect(budget.spent).toBeGreaterThanOrEqual(Number(line![2]))
  }, 60_000)

  it('a stream running longer than its lease keeps its slot: the lease is extended while it runs', async () => {
    const shortLease = await serve(['--redis-lease', '1s'])
    extra.push(shortLease)
    const { key, id } = await createKey('long-stream', ['--rpm', 'off', '--concurrency', '1'])
    upstream.script({ kind: 'raw', chunks: Array.from({ length: 6 }, () => 'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'), chunkDelayMs: 500 })
    const streaming = await chat(shortLease.url, key, { stream: true, max_tokens: 20 })
    expect(streaming.status).toBe(200)
    const reader = streaming.body!.getReader()
    await reader.read()
    await new Promise((r) => setTimeout(r, 1_500)) // past the 1 s lease
    const meanwhile = await chat(gateways[0].url, key, { max_tokens: 5 }, { 'x-queue-timeout': '0.5' })
    expect(meanwhile.status).toBe(503)
    expect(((await meanwhile.json()) as { error: { code: string } }).error.code).toBe('queue_timeout')
    while (!(await reader.read()).done);
    const logs = gateways.map((g) => g.stderr()).join('') + shortLease.stderr()
    expect(logs).not.toContain(`of key ${id} outlived its lease`)
  }, 30_000)

  it('refuses a server without --redis on the database the Redis-sharing servers use', async () => {
    const r = await runJson<{ error: { code: string; message: string } }>(['serve', '--port', '0', '--db', db, '--no-csv-log'], env())
    expect(r.code).toBe(2)
    expect(r.json.error.code).toBe('database_in_use')
    expect(r.json.error.message).toMatch(/^Gateway servers with --redis are serving .*give it the same --redis/)
  })
})
