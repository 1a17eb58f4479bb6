import { collect } from '../support/log-rows.js'
import { afterEach, describe, expect, it } from 'vitest'
import { manualClock } from '../../src/core/clock.js'
import { KeyManager } from '../../src/core/keys.js'
import { startGateway, settle, tempDir, NO_LIMITS, type TestGateway } from '../support/gateway.js'
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js'

const messages = [{ role: 'user', content: 'hi' }]
const body = (max_tokens = 10) => ({ model: 'gpt-4o-mini', messages, max_tokens })

let cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const c of cleanups.reverse()) await c()
  cleanups = []
})

async function setup(options: Parameters<typeof startGateway>[0] = {}): Promise<{ gw: TestGateway; upstream: MockUpstream }> {
  const upstream = await startMockUpstream()
  const gw = await startGateway({ upstreamUrl: upstream.url, ...options })
  cleanups.push(async () => {
    await gw.stop()
    await upstream.close()
  })
  return { gw, upstream }
}

/** Waits (bounded) until the gateway reaches a state, instead of guessing with sleeps. */
async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 400 && !condition(); i++) await new Promise((r) => setTimeout(r, 5))
  if (!condition()) throw new Error(`timed out waiting for ${what}`)
}

const statuses = (responses: Response[]) => {
  const count: Record<number, number> = {}
  for (const r of responses) count[r.status] = (count[r.status] ?? 0) + 1
  return count
}

describe('requests per minute', () => {
  it('200 concurrent requests on a 10/minute key: exactly 10 pass', async () => {
    const { gw, upstream } = await setup()
    const key = await gw.createKey({ name: 'rpm10', limits: { rpm: 10, dailyTokens: null } })
    const responses = await Promise.all(Array.from({ length: 200 }, () => gw.post('/v1/chat/completions', key, body())))
    expect(statuses(responses)).toEqual({ 200: 10, 429: 190 })
    expect(upstream.requests.length).toBe(10)
    const refused = responses.find((r) => r.status === 429)!
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1)
    expect(Number(refused.headers.get('retry-after-ms'))).toBeGreaterThan(0)
    expect(refused.headers.get('x-ratelimit-remaining-requests')).toBe('0')
    expect(((await refused.json()) as { error: { type: string; code: string } }).error).toMatchObject({ type: 'rate_limit_error', code: 'rate_limit_exceeded' })
  })

  it('slides: no more than N in any 60 s window, across what a fixed window would reset', async () => {
    const clock = manualClock(Date.parse('2026-03-01T10:00:30Z'))
    const { gw } = await setup({ clock })
    const key = await gw.createKey({ name: 'slide', limits: { rpm: 3, dailyTokens: null } })
    const send = () => gw.post('/v1/chat/completions', key, body()).then((r) => r.status)
    expect([await send(), await send(), await send()]).toEqual([200, 200, 200])
    clock.advance(30_000) // 10:01:00 — a fixed window would have reset here
    const refused = await gw.post('/v1/chat/completions', key, body())
    expect(refused.status).toBe(429)
    expect(Number(refused.headers.get('retry-after-ms'))).toBe(30_000)
    clock.advance(29_999)
    expect(await send()).toBe(429)
    clock.advance(1)
    expect(await send()).toBe(200)
  })

  it('sends OpenAI\'s rate-limit headers and the IETF draft pair on success', async () => {
    const { gw } = await setup()
    const key = await gw.createKey({ name: 'headers', limits: { rpm: 5, tpm: 100_000, dailyTokens: 50_000 } })
    const res = await gw.post('/v1/chat/completions', key, body())
    expect(res.headers.get('x-ratelimit-limit-requests')).toBe('5')
    expect(res.headers.get('x-ratelimit-remaining-requests')).toBe('4')
    expect(res.headers.get('x-ratelimit-reset-requests')).toMatch(/^\d+(ms|s|m\d+s)$|^1m0s$/)
    expect(res.headers.get('x-ratelimit-limit-tokens')).toBe('100000')
    expect(Number(res.headers.get('x-ratelimit-remaining-tokens'))).toBeLessThan(100_000)
    expect(res.headers.get('x-budget-limit-tokens')).toBe('50000')
    expect(res.headers.get('ratelimit-policy')).toContain('"requests";q=5;w=60')
    expect(res.headers.get('ratelimit')).toContain('"requests";r=4')
  })

  it('the openai SDK honours the 429\'s retry headers and succeeds on its retry', async () => {
    const clock = manualClock(Date.parse('2026-03-01T10:00:00Z'))
    const { gw, upstream } = await setup({ clock })
    const key = await gw.createKey({ name: 'sdk-retry', limits: { rpm: 1, dailyTokens: null } })
    const client = gw.client(key, { maxRetries: 2 })
    await client.chat.completions.create(body() as never)
    clock.advance(59_700) // the next slot opens in 300 ms of gateway time
    setTimeout(() => clock.advance(1_000), 150)
    const completion = await client.chat.completions.create(body() as never)
    expect(completion.choices[0].message.content).toBe('Echo: hi')
    expect(upstream.requests.length).toBe(2)
    await gw.built.requestLog.drain()
    expect((await collect(gw.admin.iterateRequests({}))).map((r) => r.status)).toEqual([200, 429, 200])
  })
})

describe('daily token budget', () => {
  it('100 concurrent max_tokens-1000 requests on 10,000 tokens left: reservations and usage never exceed the budget', async () => {
    const { gw, upstream } = await setup()
    const key = await gw.createKey({ name: 'budget', limits: { rpm: null, dailyTokens: 10_000 } })
    const keyId = (await gw.admin.findKey('budget'))!.id
    const limiter = gw.built.gateway.limiter
    let peak = 0
    const watch = setInterval(() => {
      void Promise.resolve(limiter.budget(keyId)).then((s) => (peak = Math.max(peak, s.spent + s.reserved)))
    }, 1)
    upstream.script(...Array.from({ length: 100 }, () => ({ kind: 'normal' as const, delayMs: 30 })))
    const responses = await Promise.all(Array.from({ length: 100 }, () => gw.post('/v1/chat/completions', key, body(1000))))
    clearInterval(watch)
    const counts = statuses(responses)
    expect(counts[200]).toBeGreaterThanOrEqual(9)
    expect(counts[200] + counts[429]).toBe(100)
    expect(peak).toBeLessThanOrEqual(10_000)
    const refused = responses.find((r) => r.status === 429)!
    expect(((await refused.json()) as { error: { message: string } }).error.message).toMatch(/^Daily token limit exceeded\. Used: \d+\/10000/)
    expect(refused.headers.get('x-should-retry')).toBe('false')
    await gw.built.requestLog.drain()
    const usage = (await gw.admin.dailyUsage(limiter.dayOf(Date.now())))[0]
    expect(usage.totalTokens).toBeLessThanOrEqual(10_000)
    expect(usage.totalTokens).toBe(upstream.reportedTokens)
    expect((await limiter.budget(keyId)).reserved).toBe(0)
  })

  it('survives a restart', async () => {
    const dir = tempDir()
    const upstream = await startMockUpstream()
    cleanups.push(() => upstream.close())
    const first = await startGateway({ upstreamUrl: upstream.url, dir })
    const key = await first.createKey({ name: 'persist', limits: { rpm: null, dailyTokens: 60 } })
    expect((await first.post('/v1/chat/completions', key, body(20))).status).toBe(200)
    const spent = upstream.reportedTokens
    await first.stop()
    const second = await startGateway({ upstreamUrl: upstream.url, dir })
    cleanups.push(() => second.stop())
    const keyId = (await second.admin.findKey('persist'))!.id
    expect((await second.built.gateway.limiter.budget(keyId)).spent).toBe(spent)
    // 60 - spent is less than the next reservation: refused, because the spend survived
    expect((await second.post('/v1/chat/completions', key, body(40))).status).toBe(429)
  })

  it('rolls over at midnight in the configured time zone', async () => {
    // 23:59 in New York is 04:59 UTC the next day.
    const clock = manualClock(Date.parse('2026-03-10T03:59:00Z'))
    const { gw } = await setup({ clock, timezone: 'America/New_York' })
    const key = await gw.createKey({ name: 'tz', limits: { rpm: null, dailyTokens: 200 } })
    expect((await gw.post('/v1/chat/completions', key, body(100))).status).toBe(200)
    const refused = await gw.post('/v1/chat/completions', key, body(190))
    expect(refused.status).toBe(429)
    expect(refused.headers.get('x-budget-reset')).toBe('2026-03-10T04:00:00.000Z')
    clock.advance(61_000)
    expect((await gw.post('/v1/chat/completions', key, body(150))).status).toBe(200)
    await gw.built.requestLog.drain()
    expect((await collect(gw.admin.iterateRequests({}))).map((r) => r.day)).toEqual(['2026-03-09', '2026-03-09', '2026-03-10'])
  })

  it('clamp mode lowers max_tokens to what the budget still covers', async () => {
    const { gw, upstream } = await setup()
    const key = await gw.createKey({ name: 'clamp', limits: { rpm: null, dailyTokens: 400, onBudgetShort: 'clamp' } })
    const res = await gw.post('/v1/chat/completions', key, body(1000))
    expect(res.status).toBe(200)
    const sent = upstream.requests.at(-1)!.body!.max_tokens as number
    expect(sent).toBeLessThan(400)
    expect(sent).toBeGreaterThanOrEqual(16)
  })
})

describe('tokens per minute', () => {
  it('reserves before and settles after, so the window frees what was not used', async () => {
    const clock = manualClock()
    const { gw } = await setup({ clock })
    const key = await gw.createKey({ name: 'tpm', limits: { rpm: null, dailyTokens: null, tpm: 1_500 } })
    expect((await gw.post('/v1/chat/completions', key, body(1000))).status).toBe(200)
    // The first request's 1000-token reservation was settled to its real (small) usage.
    expect((await gw.post('/v1/chat/completions', key, body(1000))).status).toBe(200)
    const third = await gw.post('/v1/chat/completions', key, body(1000))
    expect(third.status).toBe(200)
    const never = await gw.post('/v1/chat/completions', await gw.createKey({ name: 'tpm-small', limits: { rpm: null, tpm: 100 } }), body(1000))
    expect(never.status).toBe(429)
    expect(((await never.json()) as { error: { code: string } }).error.code).toBe('request_too_large')
  })
})

describe('fair queue', () => {
  it('serves a key with one request within the first slots while another key has 100 queued', async () => {
    const { gw, upstream } = await setup({ maxInflight: 1 })
    const holder = await gw.createKey({ name: 'holder', limits: NO_LIMITS })
    const busy = await gw.createKey({ name: 'busy', limits: NO_LIMITS })
    const quiet = await gw.createKey({ name: 'quiet', limits: NO_LIMITS })
    const queue = gw.built.gateway.queue
    upstream.script({ kind: 'normal', delayMs: 4_000 })
    const held = gw.post('/v1/chat/completions', holder, { ...body(), user: 'holder' })
    await until(() => queue.active === 1, 'the holder in flight')
    const burst: Promise<Response>[] = []
    for (let i = 0; i < 100; i++) {
      burst.push(gw.post('/v1/chat/completions', busy, { ...body(), user: `busy-${i}` }))
      await until(() => queue.depth === i + 1, `busy-${i} queued`) // arrival order = FIFO order
    }
    const single = gw.post('/v1/chat/completions', quiet, { ...body(), user: 'quiet' })
    await until(() => queue.depth === 101, 'quiet queued')
    const all = await Promise.all([held, ...burst, single])
    expect(all.every((r) => r.status === 200)).toBe(true)
    const order = upstream.requests.map((r) => r.body?.user)
    // holder, then one of busy, then quiet: round-robin across keys
    expect(order.slice(0, 3)).toEqual(['holder', 'busy-0', 'quiet'])
    // FIFO within a key
    expect(order.filter((u) => u !== 'quiet' && u !== 'holder')).toEqual(Array.from({ length: 100 }, (_, i) => `busy-${i}`))
  })

  it('per-key concurrency: the third request waits and reports its queue time', async () => {
    const { gw, upstream } = await setup()
    const key = await gw.createKey({ name: 'conc', limits: { ...NO_LIMITS, concurrency: 2 } })
    upstream.script({ kind: 'normal', delayMs: 200 }, { kind: 'normal', delayMs: 200 }, { kind: 'normal' })
    await Promise.all([0, 1, 2].map(() => gw.post('/v1/chat/completions', key, body())))
    await gw.built.requestLog.drain()
    const queued = (await collect(gw.admin.iterateRequests({}))).map((r) => r.queuedMs ?? 0).sort((a, b) => a - b)
    expect(queued[0]).toBe(0)
    expect(queued[2]).toBeGreaterThan(100)
  })

  it('queue full and queue timeout give 503 with Retry-After; X-Queue-Timeout shortens the wait', async () => {
    const { gw, upstream } = await setup({ maxInflight: 1, queueSize: 1, queueTimeoutMs: 5_000 })
    const key = await gw.createKey({ name: 'q', limits: NO_LIMITS })
    const queue = gw.built.gateway.queue
    upstream.script({ kind: 'normal', delayMs: 1_000 })
    const holding = gw.post('/v1/chat/completions', key, body())
    await until(() => queue.active === 1, 'the first request in flight')
    const waiting = gw.post('/v1/chat/completions', key, body(), { 'x-queue-timeout': '0.3' })
    await until(() => queue.depth === 1, 'the second request queued')
    const full = await gw.post('/v1/chat/completions', key, body())
    expect(full.status).toBe(503)
    expect(full.headers.get('retry-after')).toBeTruthy()
    expect(((await full.json()) as { error: { code: string } }).error.code).toBe('queue_full')
    const timedOut = await waiting
    expect(timedOut.status).toBe(503)
    expect(((await timedOut.json()) as { error: { code: string } }).error.code).toBe('queue_timeout')
    expect((await holding).status).toBe(200)
  })

  it('a client that disconnects while queued leaves the queue and frees its reservation', async () => {
    const { gw, upstream } = await setup({ maxInflight: 1 })
    const key = await gw.createKey({ name: 'leaver', limits: { rpm: null, dailyTokens: 100_000 } })
    const keyId = (await gw.admin.findKey('leaver'))!.id
    upstream.script({ kind: 'normal', delayMs: 400 })
    const holding = gw.post('/v1/chat/completions', key, body())
    await until(() => gw.built.gateway.queue.active === 1, 'the first request in flight')
    const controller = new AbortController()
    const leaving = fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify(body(1000)),
      signal: controller.signal,
    }).catch(() => null)
    await until(() => gw.built.gateway.queue.depth === 1, 'the second request queued')
    controller.abort()
    await leaving
    await until(() => gw.built.gateway.queue.depth === 0, 'the queue to empty')
    expect((await holding).status).toBe(200)
    expect((await gw.built.gateway.limiter.budget(keyId)).reserved).toBe(0)
    expect(upstream.requests.length).toBe(1)
    await gw.built.requestLog.drain()
    expect((await collect(gw.admin.iterateRequests({}))).map((r) => r.status).sort()).toEqual([200, 499])
  })
})

describe('limits changed while the server runs', () => {
  it('applies a CLI limit change within a second', async () => {
    const { gw } = await setup()
    const key = await gw.createKey({ name: 'live', limits: { rpm: null, dailyTokens: null } })
    expect((await gw.post('/v1/chat/completions', key, body(500))).status).toBe(200)
    await new KeyManager(gw.admin, { now: Date.now }).update('live', { limits: { maxTokens: 100 } })
    await settle()
    const res = await gw.post('/v1/chat/completions', key, body(500))
    expect(res.status).toBe(400)
    expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/^max_tokens exceeds limit of 100\. /)
    await gw.admin.mergeDefaults({ rpm: 1 })
    await settle()
    const fresh = await gw.createKey({ name: 'fresh' })
    expect((await gw.post('/v1/chat/completions', fresh, body())).status).toBe(200)
    expect((await gw.post('/v1/chat/completions', fresh, body())).status).toBe(429)
  })
})

describe('per-IP authentication failures', () => {
  it('after 10 failures an IP gets 429 for bad keys, while a valid key from it still works', async () => {
    const { gw } = await setup()
    const key = await gw.createKey({ name: 'good', limits: NO_LIMITS })
    const bad = await Promise.all(Array.from({ length: 12 }, () => gw.post('/v1/chat/completions', 'gw-' + 'x'.repeat(43), body())))
    expect(statuses(bad)).toEqual({ 401: 10, 429: 2 })
    expect((await gw.post('/v1/chat/completions', key, body())).status).toBe(200)
  })
})

describe('client IP', () => {
  it('is the socket address, unless --trust-proxy reads the address the proxy appended', async () => {
    const plain = await setup()
    const k1 = await plain.gw.createKey({ name: 'ip1', limits: NO_LIMITS })
    await plain.gw.post('/chat', k1, { message: 'a' }, { 'x-forwarded-for': '203.0.113.7' })
    const proxied = await setup({ trustProxy: true })
    const k2 = await proxied.gw.createKey({ name: 'ip2', limits: NO_LIMITS })
    await proxied.gw.post('/chat', k2, { message: 'b' }, { 'x-forwarded-for': '198.51.100.1, 203.0.113.7' })
    for (const g of [plain.gw, proxied.gw]) await g.built.requestLog.drain()
    expect((await collect(plain.gw.admin.iterateRequests({}))).map((r) => r.ip)).toEqual(['127.0.0.1'])
    expect((await collect(proxied.gw.admin.iterateRequests({}))).map((r) => r.ip)).toEqual(['203.0.113.7'])
    // Authentication failures count per client IP behind the proxy, not per proxy.
    const bad = 'gw-' + 'y'.repeat(43)
    for (let i = 0; i < 10; i++) await proxied.gw.post('/chat', bad, { message: 'x' }, { 'x-forwarded-for': '203.0.113.8' })
    expect((await proxied.gw.post('/chat', bad, { message: 'x' }, { 'x-forwarded-for': '203.0.113.8' })).status).toBe(429)
    expect((await proxied.gw.post('/chat', bad, { message: 'x' }, { 'x-forwarded-for': '203.0.113.9' })).status).toBe(401)
  })
})

describe('IPv6 clients count per /64, IPv4-mapped addresses as IPv4', () => {
  it('addresses rotating inside one /64 hit the failed-authentication limit; another /64 does not', async () => {
    const { gw } = await setup({ trustProxy: true })
    const bad = 'gw-' + 'z'.repeat(43)
    const from = (ip: string) => gw.post('/chat', bad, { message: 'x' }, { 'x-forwarded-for': ip })
    const answers: number[] = []
    for (let i = 1; i <= 12; i++) answers.push((await from(`2001:db8:7:9:${i.toString(16)}::${i}`)).status)
    expect(answers).toEqual([...Array(10).fill(401), 429, 429])
    expect((await from('2001:db8:7:a::1')).status).toBe(401)
  })

  it('::ffff:192.0.2.5 and 192.0.2.5 are one client for the failed-authentication limit', async () => {
    const { gw } = await setup({ trustProxy: true })
    const bad = 'gw-' + 'w'.repeat(43)
    const from = (ip: string) => gw.post('/chat', bad, { message: 'x' }, { 'x-forwarded-for': ip })
    for (let i = 0; i < 10; i++) expect((await from(i % 2 === 0 ? '192.0.2.5' : '::ffff:192.0.2.5')).status).toBe(401)
    expect((await from('::FFFF:c000:205')).status).toBe(429)
    expect((await from('192.0.2.5')).status).toBe(429)
  })

  it('the per-IP request limit counts one /64 as one client', async () => {
    const { gw } = await setup({ trustProxy: true })
    const key = await gw.createKey({ name: 'six', limits: NO_LIMITS })
    await gw.admin.mergeDefaults({ ipRpm: 2 })
    const from = (ip: string) => gw.post('/chat', key, { message: 'x' }, { 'x-forwarded-for': ip })
    const answers = [await from('2001:db8:5:5::1'), await from('2001:db8:5:5:ffff::2'), await from('2001:db8:5:5::3')]
    expect(answers.map((r) => r.status)).toEqual([200, 200, 429])
    expect(((await answers[2].json()) as { error: { code: string } }).error.code).toBe('ip_rate_limit_exceeded')
    expect((await from('2001:db8:5:6::1')).status).toBe(200)
  })
})

describe('per-IP limit on all requests', () => {
  it('is off by default and, when set, refuses an IP past it whatever its keys', async () => {
    const { gw } = await setup()
    const a = await gw.createKey({ name: 'ip-a', limits: NO_LIMITS })
    const b = await gw.createKey({ name: 'ip-b', limits: NO_LIMITS })
    await gw.admin.mergeDefaults({ ipRpm: 3 })
    await gw.built.gateway.refresh()
    const results = [await gw.post('/chat', a, { message: '1' }), await gw.post('/chat', b, { message: '2' }), await gw.post('/chat', a, { message: '3' }), await gw.post('/chat', b, { message: '4' })]
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 429])
    expect(((await results[3].json()) as { error: { code: string } }).error.code).toBe('ip_rate_limit_exceeded')
  })
})

describe('/chat shares the limits', () => {
  it('counts /chat against the same rpm', async () => {
    const { gw } = await setup()
    const key = await gw.createKey({ name: 'seed', limits: { rpm: 2 } })
    expect((await gw.post('/chat', key, { message: 'a' })).status).toBe(200)
    expect((await gw.post('/v1/chat/completions', key, body())).status).toBe(200)
    expect((await gw.post('/chat', key, { message: 'c' })).status).toBe(429)
  })
})
