/**
 * Issue 7, scenarios 6, 8 and 9 (CPU and memory): inputs that are cheap to send but may be
 * expensive to handle. Each runs against a real `gateway serve` child, so a gateway that
 * blocks its event loop or balloons is caught (and killed) without taking the test runner
 * with it. "Responsive" means /health answers within 10 s while the abusive request is being
 * handled: a hang detector, not a latency measurement (a healthy gateway answers in ms).
 */
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import type { LimitOverrides } from '../../src/core/types.js'
import { KeyManager } from '../../src/core/keys.js'
import { SqliteStore } from '../../src/storage/sqlite/sqlite-store.js'
import { NO_LIMITS, tempDir } from '../support/gateway.js'
import { startMockUpstream, type Behavior, type MockUpstream } from '../support/mock-upstream.js'
import { procMemory, readStream, sleep, startChildGateway, startFloodUpstream, type ChildGateway, type FloodUpstream } from './helpers.js'

const cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

/** A child gateway over a fresh database with one key whose input limit is off. */
async function child(upstreamUrl: string, args: string[] = [], limits: LimitOverrides = {}): Promise<{ gw: ChildGateway; key: string }> {
  const dir = tempDir('gw-exhaust-')
  const db = join(dir, 'gateway.db')
  const store = SqliteStore.open(db)
  const key = (await new KeyManager(store, { now: Date.now }).create({ name: 'alice', limits: { ...NO_LIMITS, maxInputChars: null, maxTokens: null, ...limits } })).secret
  store.close()
  const gw = await startChildGateway({ db, env: { OPENAI_API_KEY: 'sk-test-upstream-key-0000', OPENAI_BASE_URL: upstreamUrl }, args })
  cleanups.push(async () => {
    await gw.stop(2_000)
    rmSync(dir, { recursive: true, force: true })
  })
  return { gw, key }
}

async function withMock(): Promise<MockUpstream> {
  const mock = await startMockUpstream()
  cleanups.push(() => mock.close())
  return mock
}

/** /health within 10 s, or 0. */
async function health(gw: ChildGateway): Promise<number> {
  try {
    const res = await fetch(`${gw.url}/health`, { signal: AbortSignal.timeout(10_000) })
    await res.arrayBuffer()
    return res.status
  } catch {
    return 0
  }
}

/** Sends the abusive request, then checks /health while it is handled; returns both results. */
async function abuseThenHealth(gw: ChildGateway, key: string, body: unknown): Promise<{ health: number; abusive: Promise<number> }> {
  expect(await health(gw)).toBe(200)
  const abusive = fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(15_000),
  })
    .then(async (r) => (await r.arrayBuffer(), r.status))
    .catch(() => 0)
  await sleep(300) // the abusive request is in the gateway now
  return { health: await health(gw), abusive }
}

describe('token counting cannot block the event loop', () => {
  it('control: with an ordinary prompt, /health answers while the request is handled', async () => {
    const mock = await withMock()
    const { gw, key } = await child(mock.url)
    mock.script({ kind: 'normal', delayMs: 1_000 })
    const r = await abuseThenHealth(gw, key, { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello there' }], max_tokens: 16 })
    expect(r.health).toBe(200)
    expect(await r.abusive).toBe(200)
  }, 60_000)

  // The prompt's byte bound (about 400,000 tokens) is over the key's 200,000 tokens per minute,
  // so the gateway must count it with the tokenizer (about 50,000-60,000) to admit it.
  it.each([
    ['a 400,000-character prompt without a blank (one huge pre-token)', 'x'.repeat(400_000)],
    ['a 120,000-character CJK prompt (no blanks, as Chinese text is)', '这是一个测试'.repeat(20_000)],
  ])('%s is counted and admitted, and the gateway stays responsive', async (_name, content) => {
    const mock = await withMock()
    const { gw, key } = await child(mock.url, [], { tpm: 200_000 })
    const r = await abuseThenHealth(gw, key, { model: 'gpt-4o-mini', messages: [{ role: 'user', content }], max_tokens: 16 })
    expect(r.health, '/health did not answer within 10 s: the event loop is blocked').toBe(200)
    expect(await r.abusive, 'admitted once counted (its byte bound alone would be refused)').toBe(200)
  }, 60_000)

  it('metering a 300,000-character streamed answer without usage (the estimate) leaves the gateway responsive', async () => {
    const mock = await withMock()
    const { gw, key } = await child(mock.url)
    const event = `data: ${JSON.stringify({ id: 'x', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta: { content: 'x'.repeat(1_000) }, finish_reason: null }] })}\n\n`
    const behavior: Behavior = { kind: 'raw', chunks: [...Array(300).fill(event), 'data: [DONE]\n\n'] }
    mock.script(behavior)
    const r = await abuseThenHealth(gw, key, { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream: true })
    expect(r.health, '/health did not answer within 10 s: the event loop is blocked').toBe(200)
  }, 60_000)
})

describe('an SSE event that never ends', () => {
  let flood: FloodUpstream
  it('is cut by size, not only by the upstream timeout: memory stays bounded and the stream ends with an error event', async () => {
    flood = await startFloodUpstream({ totalBytes: 512 * 1024 * 1024, separators: false })
    cleanups.push(() => flood.close())
    const { gw, key } = await child(flood.url, ['--upstream-timeout', '30s'])
    // Warm up, then take the baseline of the child's peak resident memory.
    expect(await health(gw)).toBe(200)
    const before = procMemory(gw.proc.pid!).hwm
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream: true }),
      signal: AbortSignal.timeout(45_000),
    })
    expect(res.status).toBe(200)
    const text = await res.text().catch(() => '')
    const grown = procMemory(gw.proc.pid!).hwm - before
    const s = readStream(text)
    expect(s.done).toBe(false)
    expect(s.errors, 'the stream ends with an error event').toHaveLength(1)
    expect(flood.finished, 'the gateway swallowed the whole 512 MiB event').toBe(0)
    expect(grown, `peak RSS grew by ${Math.round(grown / 1048576)} MiB while the upstream sent ${Math.round(flood.sent / 1048576)} MiB of one event`).toBeLessThan(128 * 1024 * 1024)
  }, 90_000)
})
