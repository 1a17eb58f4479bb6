/**
 * Issue 7, scenario 11: the invariant audit. After a mixed workload (successes of every kind,
 * estimates, upstream faults, a client that leaves mid-stream, refusals, rate limits and a
 * queued burst): upstream calls seen by the mock = admitted rows in the log, usage entries =
 * the log's model rows, tokens in usage = tokens the mock reported plus the documented
 * estimates, one row per request, nothing in flight, queued or reserved.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { countPromptTokens, countTextTokens } from '../../src/core/tokens.js'
import type { RequestRow } from '../../src/core/types.js'
import { startGateway, NO_LIMITS, type TestGateway } from '../support/gateway.js'
import { startMockUpstream, type Behavior, type MockUpstream } from '../support/mock-upstream.js'
import { expectNothingHeld, query, readStream, rowsOf, sleep } from './helpers.js'

let mock: MockUpstream
let gw: TestGateway
const keys: Record<string, string> = {}
/** Every request sent: id → what the client saw. */
const sent = new Map<string, { status: number; estimateOf?: { messages: unknown[]; completion: string } }>()
let n = 0

beforeAll(async () => {
  mock = await startMockUpstream()
  gw = await startGateway({ upstreamUrl: mock.url, firstByteTimeoutMs: 500, totalTimeoutMs: 3_000, maxInflight: 3, queueSize: 100 })
  keys.alice = await gw.createKey({ name: 'alice', limits: NO_LIMITS })
  keys.bob = await gw.createKey({ name: 'bob', limits: { ...NO_LIMITS, concurrency: 1 } })
  keys.limited = await gw.createKey({ name: 'limited', limits: { ...NO_LIMITS, rpm: 3 } })
  keys.root = await gw.createKey({ name: 'root', admin: true, limits: NO_LIMITS })
})

afterAll(async () => {
  await gw?.stop()
  await mock?.close()
})

const MESSAGES = [{ role: 'user', content: 'audit me please' }]

async function v1(opts: { key?: string; stream?: boolean; extra?: Record<string, unknown>; behavior?: Behavior; raw?: string } = {}): Promise<{ id: string; status: number; text: string; headers: Headers }> {
  if (opts.behavior) mock.script(opts.behavior)
  const id = `inv-${++n}`
  const body = opts.raw ?? JSON.stringify({ model: 'gpt-4o-mini', messages: MESSAGES, stream: opts.stream ?? false, ...opts.extra })
  const res = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${opts.key ?? keys.alice}`, 'content-type': 'application/json', 'x-request-id': id }, body })
  const text = await res.text()
  sent.set(id, { status: res.status })
  return { id, status: res.status, text, headers: res.headers }
}

async function chat(key = keys.alice, behavior?: Behavior): Promise<{ id: string; status: number; json: Record<string, unknown> }> {
  if (behavior) mock.script(behavior)
  const id = `inv-${++n}`
  const res = await gw.post('/chat', key, { message: 'audit me please' }, { 'x-request-id': id })
  const json = (await res.json()) as Record<string, unknown>
  sent.set(id, { status: res.status })
  return { id, status: res.status, json }
}

describe('a mixed workload', () => {
  it('successes: /chat, /v1 JSON (n = 1 and 2), streams with and without include_usage', async () => {
    for (let i = 0; i < 6; i++) expect((await chat()).status).toBe(200)
    for (const extra of [{}, {}, { n: 2 }, { n: 2, max_tokens: 3 }]) expect((await v1({ extra })).status).toBe(200)
    for (const extra of [{}, {}, { stream_options: { include_usage: true } }, { stream_options: { include_usage: true } }]) {
      const r = await v1({ stream: true, extra })
      expect(r.status).toBe(200)
      const s = readStream(r.text)
      expect(s.done).toBe(true)
      expect(s.usage.length).toBe('stream_options' in extra ? 1 : 0)
    }
  })

  it('answers without usage: metered by the documented estimate', async () => {
    for (let i = 0; i < 2; i++) {
      const r = await v1({ behavior: { kind: 'normal', omitUsage: true } })
      expect(r.status).toBe(200)
      expect(r.headers.get('x-gateway-tokens-estimated')).toBe('true')
      const content = (JSON.parse(r.text) as { choices: { message: { content: string } }[] }).choices[0].message.content
      sent.set(r.id, { status: 200, estimateOf: { messages: MESSAGES, completion: content } })
    }
    for (let i = 0; i < 2; i++) {
      const r = await v1({ stream: true, behavior: { kind: 'normal', omitUsage: true } })
      const s = readStream(r.text)
      expect(s.done).toBe(true)
      sent.set(r.id, { status: 200, estimateOf: { messages: MESSAGES, completion: s.content } })
    }
  })

  it('upstream faults: 500, hang, a cut stream, a 429', async () => {
    expect((await v1({ behavior: { kind: 'status', status: 500 } })).status).toBe(502)
    expect((await chat(keys.alice, { kind: 'hang' })).status).toBe(504)
    const cut = await v1({ stream: true, behavior: { kind: 'drop-mid-stream', afterChunks: 3 } })
    const s = readStream(cut.text)
    expect(s.done).toBe(false)
    sent.set(cut.id, { status: 200, estimateOf: { messages: MESSAGES, completion: s.content } })
    expect((await v1({ behavior: { kind: 'status', status: 429, headers: { 'retry-after': '2' } } })).status).toBe(429)
  })

  it('a client that leaves mid-stream', async () => {
    mock.script({ kind: 'normal', chunkDelayMs: 150 })
    const id = `inv-${++n}`
    const ctrl = new AbortController()
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${keys.alice}`, 'content-type': 'application/json', 'x-request-id': id },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'a fairly long answer is coming your way now' }], stream: true }),
      signal: ctrl.signal,
    })
    const reader = res.body!.getReader()
    let seen = ''
    for (let i = 0; i < 50 && !seen.includes('Echo'); i++) {
      const { value, done } = await reader.read()
      if (done) break
      seen += new TextDecoder().decode(value)
    }
    expect(seen).toContain('Echo')
    ctrl.abort()
    await reader.cancel().catch(() => {})
    sent.set(id, { status: 499 })
    await sleep(300)
  })

  it('refusals: bad bodies, bad keys, a key over its rate limit', async () => {
    for (const raw of ['{', '{"model":"gpt-4o-mini"}', '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}],"max_tokens":-1}']) expect((await v1({ raw })).status).toBe(400)
    for (const k of ['gw-nope', '', `gw-${'A'.repeat(43)}`]) {
      const id = `inv-${++n}`
      const res = await fetch(`${gw.url}/usage`, { headers: { authorization: `Bearer ${k}`, 'x-request-id': id } })
      await res.arrayBuffer()
      expect(res.status).toBe(401)
      sent.set(id, { status: 401 })
    }
    const statuses = []
    for (let i = 0; i < 5; i++) statuses.push((await chat(keys.limited)).status)
    expect(statuses).toEqual([200, 200, 200, 429, 429])
  })

  it('a burst through the queue (3 in flight at most, bob 1 at a time)', async () => {
    mock.script(...Array.from({ length: 24 }, () => ({ kind: 'normal', delayMs: 50 }) as Behavior))
    const results = await Promise.all(Array.from({ length: 24 }, (_, i) => (i % 2 ? chat(keys.bob) : v1({ stream: i % 4 === 0 }))))
    expect(results.map((r) => r.status)).toEqual(Array(24).fill(200))
  })
})

describe('the audit', () => {
  const fresh = async () => {
    await expectNothingHeld(gw, (await gw.admin.listKeys()).map((k) => k.id))
    return rowsOf(gw)
  }

  it('nothing in flight, queued or reserved', async () => {
    await expectNothingHeld(gw, (await gw.admin.listKeys()).map((k) => k.id))
    const metrics = await (await fetch(`${gw.url}/metrics`, { headers: { authorization: `Bearer ${keys.root}` } })).text()
    expect(metrics).toMatch(/^gateway_upstream_inflight 0$/m)
    expect(metrics).toMatch(/^gateway_queue_depth 0$/m)
  })

  it('one row per request, with the status the client saw', async () => {
    const rows = await fresh()
    for (const [id, want] of sent) {
      const mine = rows.filter((r) => r.requestId === id)
      expect(mine, id).toHaveLength(1)
      expect(mine[0].status, id).toBe(want.status)
    }
  })

  it('upstream calls seen by the mock = admitted rows = rows that called the upstream', async () => {
    const rows = await fresh()
    const calls = mock.requests.filter((r) => r.path.endsWith('/chat/completions')).length
    expect(rows.filter((r) => r.queuedMs !== null).length).toBe(calls)
    expect(rows.filter((r) => r.upstreamMs !== null).length).toBe(calls)
    expect(calls).toBeGreaterThan(40)
  })

  it('usage entries = the log summed per key; usage tokens = log tokens = reported + estimated', async () => {
    const rows = await fresh()
    const sum = (f: (r: RequestRow) => number, of = rows) => of.reduce((a, r) => a + f(r), 0)
    for (const k of await gw.admin.listKeys()) {
      const mine = rows.filter((r) => r.keyId === k.id)
      const [u] = query<{ r: number | null; t: number | null }>(gw.db, 'select sum(requests) as r, sum(total_tokens) as t from daily_usage where key_id = ?', k.id)
      expect(u.t ?? 0, `tokens of ${k.name}`).toBe(sum((r) => r.totalTokens, mine))
      // Whether usage counts every request of the key or its model requests only, it is the log's count.
      expect([mine.length, mine.filter((r) => r.model !== null).length], `requests of ${k.name}`).toContain(u.r ?? 0)
    }
    expect(sum((r) => r.totalTokens, rows.filter((r) => !r.estimated))).toBe(mock.reportedTokens)
    expect(mock.reportedTokens).toBeGreaterThan(0)
    expect(rows.filter((r) => r.estimated).length).toBeGreaterThanOrEqual(6)
  })

  it('each estimate is the documented one: tokenizer count of the prompt and of the text streamed', async () => {
    const rows = await fresh()
    expect([...sent.values()].filter((w) => w.estimateOf).length, 'requests with a documented estimate').toBeGreaterThanOrEqual(5)
    for (const [id, want] of sent) {
      if (!want.estimateOf) continue
      const row = rows.find((r) => r.requestId === id)!
      expect(row, id).toMatchObject({ estimated: true, promptTokens: countPromptTokens(want.estimateOf.messages), completionTokens: countTextTokens(want.estimateOf.completion) })
      expect(row.totalTokens).toBe(row.promptTokens + row.completionTokens)
    }
    const left = rows.find((r) => r.status === 499)!
    expect(left).toMatchObject({ estimated: true, streamed: true, errorCode: 'client_closed_request' })
    expect(left.completionTokens).toBeGreaterThan(0)
  })

  it('/usage (admin) agrees with the store; refused and failed requests cost nothing', async () => {
    const rows = await fresh()
    const [usage] = query<{ r: number; t: number }>(gw.db, 'select sum(requests) as r, sum(total_tokens) as t from daily_usage')
    // Read right after the snapshot: /usage answers before its own row is counted.
    const u = (await (await fetch(`${gw.url}/usage`, { headers: { authorization: `Bearer ${keys.root}` } })).json()) as { total: { requests: number; total_tokens: number } }
    expect(u.total).toMatchObject({ requests: usage.r, total_tokens: usage.t })
    for (const r of rows.filter((r) => r.status >= 400 && r.status !== 499)) expect(r.totalTokens, `${r.requestId} ${r.status}`).toBe(0)
  })
})
