import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Calendar } from '../../src/core/calendar.js'
import { countPrompt, prepareCompletion, type PreparedChat } from '../../src/core/chat-request.js'
import { systemClock } from '../../src/core/clock.js'
import { GatewayError } from '../../src/core/errors.js'
import type { Limiter } from '../../src/core/limits/limiter.js'
import { MemoryLimiter } from '../../src/core/limits/memory-limiter.js'
import { FairQueue } from '../../src/core/queue.js'
import type { ApiKey, Limits } from '../../src/core/types.js'
import { RedisLimiter } from '../../src/storage/redis/redis-limiter.js'
import { SqliteStore } from '../../src/storage/sqlite/sqlite-store.js'
import { startRedis, type TestRedis } from '../support/redis.js'

/**
 * One contract, two limiters: what the gateway relies on from any Limiter, run against the
 * in-memory one and the Redis one (a private redis-server started for this file).
 */

const BASE: Limits = { rpm: null, tpm: null, concurrency: null, dailyTokens: null, maxTokens: null, maxInputChars: null, onBudgetShort: 'refuse' }
const USAGE = (total: number) => ({ promptTokens: total, completionTokens: 0, totalTokens: total, estimated: false })

let redis: TestRedis
const store = SqliteStore.open(':memory:')
const calendar = new Calendar('UTC')
const opened: Limiter[] = []

beforeAll(async () => {
  redis = await startRedis()
})

afterAll(async () => {
  for (const l of opened) await l.close()
  await redis.stop()
  store.close()
})

function queue(): FairQueue {
  return new FairQueue({ maxInflight: null, queueSize: 100, queueTimeoutMs: 5_000 }, systemClock)
}

const makers: Record<string, () => Promise<Limiter>> = {
  memory: async () => new MemoryLimiter(store, calendar, systemClock, queue()),
  redis: async () => {
    const l = new RedisLimiter({ url: redis.url, leaseMs: 60_000, timeoutMs: 100, queueTimeoutMs: 5_000, store, calendar, clock: systemClock, queue: queue(), warn: () => {} })
    await l.ready()
    opened.push(l)
    return l
  },
}

function newKey(): ApiKey {
  return { id: `key_${randomBytes(8).toString('hex')}`, name: 'k', admin: false, createdAt: 0, expiresAt: null, revokedAt: null, limits: {}, models: null }
}

function chat(key: ApiKey, limits: Limits, maxTokens = 100, counted = true): PreparedChat {
  const body = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello there' }], max_tokens: maxTokens }
  const p = prepareCompletion(body, Buffer.from(JSON.stringify(body)), key, limits)
  if (counted) countPrompt(p)
  return p
}

async function refusal(p: Promise<unknown>): Promise<GatewayError> {
  try {
    await p
  } catch (err) {
    if (err instanceof GatewayError) return err
    throw err
  }
  throw new Error('was admitted')
}

describe.each(Object.keys(makers))('the %s limiter', (kind) => {
  const make = makers[kind]

  it('admits exactly rpm requests a minute, then 429 with Retry-After and the window in the headers', async () => {
    const limiter = await make()
    const key = newKey()
    const limits = { ...BASE, rpm: 5 }
    const results = await Promise.allSettled(Array.from({ length: 12 }, () => limiter.admit(key, limits, chat(key, limits), {})))
    const admitted = results.filter((r) => r.status === 'fulfilled')
    expect(admitted).toHaveLength(5)
    const err = (results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason as GatewayError
    expect(err.code).toBe('rate_limit_exceeded')
    expect(Number(err.headers['retry-after'])).toBeGreaterThanOrEqual(59)
    expect(err.headers['x-ratelimit-remaining-requests']).toBe('0')
    const first = (admitted[0] as PromiseFulfilledResult<Awaited<ReturnType<Limiter['admit']>>>).value
    expect(Number(first.headers['x-ratelimit-remaining-requests'])).toBeLessThan(5)
  })

  it('reserves the budget, settles it to what was used once however often settle is called', async () => {
    const limiter = await make()
    const key = newKey()
    const limits = { ...BASE, dailyTokens: 1_000 }
    const prepared = chat(key, limits, 300)
    const a = await limiter.admit(key, limits, prepared, {})
    expect((await limiter.budget(key.id)).reserved).toBe(prepared.promptTokens + 300)
    expect(a.headers['x-budget-remaining-tokens']).toBe('1000')
    a.settle(USAGE(40))
    a.settle(USAGE(40))
    await expect.poll(async () => limiter.budget(key.id)).toMatchObject({ spent: 40, reserved: 0 })
    // 960 left: a request that may use more is refused with the budget's message
    const err = await refusal(limiter.admit(key, limits, chat(key, limits, 990), {}))
    expect(err.code).toBe('daily_limit_exceeded')
    expect(err.message).toMatch(/^Daily token limit exceeded\. Used: 40\/1000\. 960 tokens are left today/)
    expect((await limiter.budget(key.id)).reserved).toBe(0)
  })

  it('never lets concurrent reservations overspend the budget', async () => {
    const limiter = await make()
    const key = newKey()
    const limits = { ...BASE, dailyTokens: 1_000 }
    const amount = chat(key, limits, 100).promptTokens + 100
    const results = await Promise.allSettled(Array.from({ length: 30 }, () => limiter.admit(key, limits, chat(key, limits, 100), {})))
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(Math.floor(1_000 / amount))
    expect((await limiter.budget(key.id)).reserved).toBe(Math.floor(1_000 / amount) * amount)
  })

  it('clamps max_tokens to the budget left when the key says clamp', async () => {
    const limiter = await make()
    const key = newKey()
    const limits: Limits = { ...BASE, dailyTokens: 500, onBudgetShort: 'clamp' }
    const prepared = chat(key, limits, 1_000)
    await limiter.admit(key, limits, prepared, {})
    expect(prepared.maxTokens).toBe(500 - prepared.promptTokens)
  })

  it('counts a prompt held at its byte bound when a token limit would refuse it, and then admits it', async () => {
    const limiter = await make()
    const key = newKey()
    const long = 'The quick brown fox jumps over the lazy dog. '.repeat(60)
    const limits = { ...BASE, tpm: 1_500 }
    const body = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: long }], max_tokens: 100 }
    const prepared = prepareCompletion(body, Buffer.from(JSON.stringify(body)), key, limits)
    expect(prepared.promptTokens).toBeGreaterThan(1_500) // the bound alone does not fit
    await limiter.admit(key, limits, prepared, {})
    expect(prepared.promptCounted).toBe(true)
  })

  it.each([
    ['tokens per minute', { ...BASE, tpm: 6_000 }, 'tokens_rate_limit_exceeded'],
    ['daily budget', { ...BASE, dailyTokens: 6_000 }, 'daily_limit_exceeded'],
  ] as const)('near the %s, with prompts held at their byte bound, admits as many as with every prompt counted', async (_name, limits, code) => {
    const limiter = await make()
    const long = 'The quick brown fox jumps over the lazy dog while the committee reviews the budget. '.repeat(40)
    const fill = async (counted: boolean) => {
      const key = newKey()
      for (let admitted = 0; admitted < 50; admitted++) {
        const body = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: long }], max_tokens: 100 }
        const prepared = prepareCompletion(body, Buffer.from(JSON.stringify(body)), key, limits)
        if (counted) countPrompt(prepared)
        try {
          await limiter.admit(key, limits, prepared, {})
        } catch (err) {
          return { admitted, code: (err as GatewayError).code }
        }
      }
      throw new Error('never refused')
    }
    const reference = await fill(true)
    expect(reference.admitted).toBeGreaterThan(3) // at their byte bound alone, only one would fit
    expect(await fill(false)).toEqual(reference)
    expect(reference.code).toBe(code)
  })

  it('refuses a request bigger than tokens per minute as request_too_large, and tokens over the window with a wait', async () => {
    const limiter = await make()
    const key = newKey()
    const limits = { ...BASE, tpm: 500 }
    expect((await refusal(limiter.admit(key, limits, chat(key, limits, 600), {}))).code).toBe('request_too_large')
    await limiter.admit(key, limits, chat(key, limits, 300), {})
    const err = await refusal(limiter.admit(key, limits, chat(key, limits, 300), {}))
    expect(err.code).toBe('tokens_rate_limit_exceeded')
    expect(Number(err.headers['retry-after'])).toBeGreaterThanOrEqual(59)
  })

  it('holds a key to its concurrency: the next waits for a settle, or times out with 503', async () => {
    const limiter = await make()
    const key = newKey()
    const limits = { ...BASE, concurrency: 1 }
    const first = await limiter.admit(key, limits, chat(key, limits), {})
    const timedOut = await refusal(limiter.admit(key, limits, chat(key, limits), { timeoutMs: 200 }))
    expect(timedOut.code).toBe('queue_timeout')
    let admitted = false
    const second = limiter.admit(key, limits, chat(key, limits), {}).then((a) => ((admitted = true), a))
    await new Promise((r) => setTimeout(r, 100))
    expect(admitted).toBe(false)
    first.settle(USAGE(1))
    const a = await second
    expect(a.queuedMs).toBeGreaterThan(0)
    a.settle(USAGE(1))
  })

  it('limits an address per minute, an IPv6 /64 as one, and failed authentications apart', async () => {
    const limiter = await make()
    const prefix = `2001:db8:${randomBytes(2).toString('hex')}:1`
    await limiter.admitAddress(`${prefix}::1`, 2)
    await limiter.admitAddress(`${prefix}::2`, 2)
    const err = await refusal(Promise.resolve().then(() => limiter.admitAddress(`${prefix}::3`, 2)))
    expect(err.code).toBe('ip_rate_limit_exceeded')
    await limiter.admitAddress(`2001:db8:ffff:2::1`, 2) // another /64
    const ip = `10.9.${randomBytes(1)[0]}.${randomBytes(1)[0]}`
    await limiter.countAuthFailure(ip, 1)
    expect((await refusal(Promise.resolve().then(() => limiter.countAuthFailure(ip, 1)))).code).toBe('auth_rate_limit_exceeded')
    await limiter.admitAddress(ip, 1) // the request limit is a separate window
  })
})

describe('the redis limiter when Redis is gone', () => {
  it('refuses at once with 503 limiter_unavailable and Retry-After 1, keeps the settle and sends it when Redis is back', async () => {
    const own = await startRedis()
    const limiter = new RedisLimiter({ url: own.url, leaseMs: 60_000, timeoutMs: 100, queueTimeoutMs: 5_000, store, calendar, clock: systemClock, queue: queue(), warn: () => {} })
    await limiter.ready()
    opened.push(limiter)
    const key = newKey()
    const limits = { ...BASE, dailyTokens: 10_000 }
    const held = await limiter.admit(key, limits, chat(key, limits, 100), {})
    // Redis stops answering scripts for a second: the settle goes unanswered and is sent again
    // every 250 ms; all of them run once Redis answers, and only the first may charge.
    await own.command('CLIENT', 'PAUSE', '1000', 'WRITE')
    held.settle(USAGE(77))
    const err = await refusal(limiter.admit(key, limits, chat(key, limits), {}))
    expect(err.status).toBe(503)
    expect(err.code).toBe('limiter_unavailable')
    expect(err.headers['retry-after']).toBe('1')
    await expect.poll(async () => limiter.budget(key.id), { timeout: 5_000 }).toMatchObject({ spent: 77, reserved: 0 })
    await own.stop()
  })
})
