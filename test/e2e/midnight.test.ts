import { collect } from '../support/log-rows.js'
/**
 * Issue 11, item 3: a request admitted before midnight and finished after it is charged to
 * one day: the day of its reservation, in memory, in daily usage and in its row. Day 2's
 * budget as the gateway enforces it (its headers) then agrees with the database (`/usage`),
 * before and after a restart. The injected clock crosses midnight while the upstream answers.
 */
import { rmSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { manualClock } from '../../src/core/clock.js'
import { H } from '../../src/core/headers.js'
import { startGateway, tempDir, NO_LIMITS, type TestGateway } from '../support/gateway.js'
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js'

const DAY1 = '2026-03-01'
const DAY2 = '2026-03-02'
const BUDGET = 5_000
const messages = [{ role: 'user', content: 'hello there' }]

let upstream: MockUpstream
let dir: string
beforeAll(async () => {
  upstream = await startMockUpstream()
  dir = tempDir('gw-midnight-')
})
afterAll(async () => {
  await upstream?.close()
  rmSync(dir, { recursive: true, force: true })
})

/** Waits (bounded) until the upstream has received `n` chat requests. */
async function upstreamHas(n: number): Promise<void> {
  for (let i = 0; i < 400 && upstream.requests.filter((r) => r.path.endsWith('/chat/completions')).length < n; i++) await new Promise((r) => setTimeout(r, 5))
  expect(upstream.requests.filter((r) => r.path.endsWith('/chat/completions')).length).toBe(n)
}

/** What day 2's budget leaves as the gateway enforces it (a refused request's headers) and as the database has it (/usage). */
async function remaining(gw: TestGateway, key: string): Promise<{ enforced: number; stored: number }> {
  const refused = await gw.post('/v1/chat/completions', key, { model: 'gpt-4o-mini', messages, max_tokens: BUDGET + 1 })
  expect(refused.status).toBe(429)
  expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('daily_limit_exceeded')
  const usage = (await (await fetch(`${gw.url}/usage`, { headers: { authorization: `Bearer ${key}` } })).json()) as { date: string; remaining: number }
  expect(usage.date).toBe(DAY2)
  return { enforced: Number(refused.headers.get(H.budgetRemaining)), stored: usage.remaining }
}

describe('a request that crosses midnight', () => {
  it('is charged to the day it was admitted in, everywhere; day 2 as enforced matches the database, also after a restart', async () => {
    const clock = manualClock(Date.parse(`${DAY1}T23:59:58Z`))
    let gw = await startGateway({ upstreamUrl: upstream.url, clock, dir })
    const key = await gw.createKey({ name: 'night', limits: { ...NO_LIMITS, dailyTokens: BUDGET, maxTokens: null } })

    // Admitted on day 1; the upstream answers (and the stream ends) on day 2.
    upstream.script({ kind: 'normal', delayMs: 300 })
    const plain = gw.post('/v1/chat/completions', key, { model: 'gpt-4o-mini', messages, max_tokens: 50 })
    await upstreamHas(1)
    upstream.script({ kind: 'normal', chunkDelayMs: 100 })
    const streamed = gw.post('/v1/chat/completions', key, { model: 'gpt-4o-mini', messages, max_tokens: 50, stream: true })
    await upstreamHas(2)
    clock.set(Date.parse(`${DAY2}T00:00:01Z`))
    const answers = await Promise.all([plain, streamed])
    expect(answers.map((r) => r.status)).toEqual([200, 200])
    await Promise.all(answers.map((r) => r.text()))
    // One request wholly on day 2.
    expect((await gw.post('/v1/chat/completions', key, { model: 'gpt-4o-mini', messages, max_tokens: 50 })).status).toBe(200)
    await gw.built.requestLog.drain()

    const rows = (await collect(gw.admin.iterateRequests({}))).filter((r) => r.status === 200)
    expect(rows.map((r) => r.day)).toEqual([DAY1, DAY1, DAY2])
    const tokens = rows.map((r) => r.totalTokens)
    expect(tokens.every((t) => t > 0)).toBe(true)
    const daily = async (day: string) => (await gw.admin.dailyUsage(day)).find((u) => u.keyId === rows[0].keyId)?.totalTokens ?? 0
    expect(await daily(DAY1)).toBe(tokens[0] + tokens[1])
    expect(await daily(DAY2)).toBe(tokens[2])

    const before = await remaining(gw, key)
    expect(before).toEqual({ enforced: BUDGET - tokens[2], stored: BUDGET - tokens[2] })

    await gw.stop()
    gw = await startGateway({ upstreamUrl: upstream.url, clock, dir })
    try {
      expect(await remaining(gw, key)).toEqual(before)
    } finally {
      await gw.stop()
    }
  })
})
