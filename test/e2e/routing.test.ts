/**
 * Issue 15: several upstreams behind one gateway. Real sockets: mock upstreams (test/support),
 * an upstreams file read as `serve --upstreams` reads it, the real gateway on a loopback port.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse } from 'csv-parse/sync'
import { csvPathFor } from '../../src/storage/csv-log.js'
import { readStream, rowsOf, sleep, until } from '../reliability/helpers.js'
import { NO_LIMITS, startGateway, tempDir, upstreamsFile, type TestGateway } from '../support/gateway.js'
import { refusingPort, startMockUpstream, type Behavior, type MockUpstream } from '../support/mock-upstream.js'

const MESSAGES = [{ role: 'user', content: 'route me' }]
const chatCalls = (m: MockUpstream) => m.requests.filter((r) => r.method === 'POST').length

async function post(gw: TestGateway, key: string, body: Record<string, unknown>) {
  const res = await gw.post('/v1/chat/completions', key, { messages: MESSAGES, max_tokens: 20, ...body })
  return { status: res.status, json: (await res.json()) as Record<string, any> }
}

describe('models, weights and aliases', () => {
  let a: MockUpstream
  let b: MockUpstream
  let gw: TestGateway
  let key: string
  let deadPort: number

  beforeAll(async () => {
    a = await startMockUpstream()
    b = await startMockUpstream()
    deadPort = await refusingPort()
    const dir = tempDir()
    const upstreams = upstreamsFile(
      dir,
      `upstreams:
  - name: a
    base_url: ${a.url}
    api_key_env: A_KEY
    models: [shared, only-a]
    weight: 3
  - name: b
    base_url: ${b.url}
    models: [shared, only-b]
    weight: 1
  - name: dead
    base_url: http://127.0.0.1:${deadPort}/v1
    models: [only-b]
models:
  fast:
    - {upstream: dead, model: only-b}
    - {upstream: a, model: only-a}
    - {upstream: b, model: only-b}
cooldown: {failures: 1000}   # each test scripts its own failures: none may cool an upstream here
`,
      { A_KEY: 'sk-upstream-a-canary-0001' },
    )
    const prices = join(dir, 'prices.json')
    writeFileSync(prices, JSON.stringify({ shared: { input: 1, output: 1 }, 'a/shared': { input: 2, output: 2 } }))
    gw = await startGateway({ dir, upstreams, prices, metricsPublic: true, firstByteTimeoutMs: 2_000 })
    key = await gw.createKey({ name: 'router', limits: { ...NO_LIMITS, concurrency: null } })
  })
  afterAll(async () => {
    await gw.stop()
    await a.close()
    await b.close()
  })

  it('splits 1,000 requests for a model 3:1 between its upstreams, within ±5 %', async () => {
    const before = [chatCalls(a), chatCalls(b)]
    let next = 0
    const statuses: number[] = []
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < 1_000) {
          next++
          statuses.push((await gw.post('/v1/chat/completions', key, { model: 'shared', messages: MESSAGES, max_tokens: 5 })).status)
        }
      }),
    )
    expect(statuses.filter((s) => s === 200).length).toBe(1_000)
    const toA = chatCalls(a) - before[0]
    const toB = chatCalls(b) - before[1]
    expect(toA + toB).toBe(1_000)
    expect(Math.abs(toA - 750)).toBeLessThanOrEqual(50)
  }, 120_000)

  it('sends a model only to the upstreams listing it, with its key only to its upstream', async () => {
    const beforeB = chatCalls(b)
    expect((await post(gw, key, { model: 'only-a' })).status).toBe(200)
    expect(chatCalls(b)).toBe(beforeB)
    const last = a.requests.at(-1)!
    expect(last.headers.authorization).toBe('Bearer sk-upstream-a-canary-0001')
    expect(last.body?.model).toBe('only-a')
    expect((await post(gw, key, { model: 'only-b' })).status).toBe(200) // dead or b: the refusal falls back
    expect(b.requests.at(-1)!.headers.authorization).toBeUndefined() // no api_key_env: no credential
  })

  it('a model nobody serves → 404 model_not_found naming the models the key may use', async () => {
    const r = await post(gw, key, { model: 'gpt-nope' })
    expect(r.status).toBe(404)
    expect(r.json.error).toMatchObject({ code: 'model_not_found', param: 'model', type: 'invalid_request_error' })
    expect(r.json.error.message).toContain('"gpt-nope"')
    for (const m of ['shared', 'only-a', 'only-b', 'fast']) expect(r.json.error.message).toContain(m)
    const row = (await rowsOf(gw)).filter((x) => x.model === 'gpt-nope').at(-1)
    expect(row).toMatchObject({ status: 404, errorCode: 'model_not_found', upstream: null, attempts: 0, totalTokens: 0 })
    const limited = await gw.createKey({ name: 'limited', models: ['only-a', 'gpt-nope'], limits: NO_LIMITS })
    const l = await post(gw, limited, { model: 'gpt-nope' })
    expect(l.status).toBe(404)
    expect(l.json.error.message).toMatch(/this key may use: only-a$/)
  })

  it('/v1/models lists the models and aliases, filtered per key', async () => {
    const all = (await (await fetch(`${gw.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } })).json()) as { data: { id: string }[] }
    expect(all.data.map((m) => m.id).sort()).toEqual(['fast', 'only-a', 'only-b', 'shared'])
    const limited = await gw.createKey({ name: 'limited-2', models: ['fast', 'unknown-model'], limits: NO_LIMITS })
    const some = (await (await fetch(`${gw.url}/v1/models`, { headers: { authorization: `Bearer ${limited}` } })).json()) as { data: { id: string }[] }
    expect(some.data.map((m) => m.id)).toEqual(['fast'])
  })

  it('an alias falls back in order: from a refusing port to the next entry, renaming the model', async () => {
    const beforeA = chatCalls(a)
    const r = await post(gw, key, { model: 'fast' })
    expect(r.status).toBe(200)
    expect(chatCalls(a)).toBe(beforeA + 1)
    expect(a.requests.at(-1)!.body?.model).toBe('only-a')
  })

  it.each([
    ['a 500', { kind: 'status', status: 500 } as const],
    ['a 429', { kind: 'status', status: 429, headers: { 'retry-after': '30' } } as const],
    ['a 503', { kind: 'status', status: 503 } as const],
  ])('an alias falls back from %s to its next entry', async (_name, behavior) => {
    a.script(behavior)
    const [beforeA, beforeB] = [chatCalls(a), chatCalls(b)]
    const r = await post(gw, key, { model: 'fast' })
    expect(r.status).toBe(200)
    expect([chatCalls(a) - beforeA, chatCalls(b) - beforeB]).toEqual([1, 1])
  })

  it('the log, the CSV, the prices and the metrics say who served, under which name, after how many attempts', async () => {
    const r = await gw.post('/v1/chat/completions', key, { model: 'fast', messages: MESSAGES, max_tokens: 20 })
    expect(r.status).toBe(200)
    const id = r.headers.get('x-request-id')!
    const row = (await rowsOf(gw)).find((x) => x.requestId === id)!
    expect(row).toMatchObject({ model: 'fast', upstream: 'a', servedModel: 'only-a', attempts: 2, status: 200 })
    const csv = parse(readFileSync(csvPathFor(join(gw.dir, 'requests.csv'), row.timestamp.slice(0, 10)), 'utf8'), { columns: true }) as Record<string, string>[]
    expect(csv.find((x) => x.request_id === id)).toMatchObject({ model: 'fast', upstream: 'a', served_model: 'only-a', attempts: '2' })
    const rows = (await rowsOf(gw)).filter((x) => x.model === 'shared' && x.status === 200)
    for (const x of rows.slice(0, 50)) expect(x.costMicros).toBe((x.upstream === 'a' ? 2 : 1) * x.totalTokens)
    const metrics = await (await fetch(`${gw.url}/metrics`)).text()
    expect(metrics).toMatch(/gateway_requests_total\{route="\/v1\/chat\/completions",status="200",model="shared",upstream="a"\} \d+/)
    expect(metrics).toMatch(/gateway_requests_total\{route="\/v1\/chat\/completions",status="200",model="shared",upstream="b"\} \d+/)
  })

  it('an alias falls back from an upstream that sends no headers within the first-byte timeout', async () => {
    a.script({ kind: 'hang' })
    const [beforeB, abandoned] = [chatCalls(b), a.abandoned]
    const r = await post(gw, key, { model: 'fast' })
    expect(r.status).toBe(200)
    expect(chatCalls(b)).toBe(beforeB + 1)
    expect(a.abandoned, 'the hanging call was closed').toBe(abandoned + 1)
  })

  it('a 400 is not retried: the client gets it, the next entry is never asked', async () => {
    a.script({ kind: 'status', status: 400, body: JSON.stringify({ error: { message: 'bad field', code: 'invalid_value', param: 'temperature' } }) })
    const beforeB = chatCalls(b)
    const r = await post(gw, key, { model: 'fast' })
    expect(r.status).toBe(400)
    expect(r.json.error).toMatchObject({ code: 'invalid_value', param: 'temperature' })
    expect(chatCalls(b)).toBe(beforeB)
  })

  it('every entry failing: the last failure is the answer', async () => {
    a.script({ kind: 'status', status: 500 })
    b.script({ kind: 'status', status: 502 })
    const r = await post(gw, key, { model: 'fast' })
    expect(r.status).toBe(502)
    expect(r.json.error.code).toBe('upstream_error')
  })

  it('a stream falls back before its first byte (a 500, a connection closed or a stream ended with no data)', async () => {
    for (const behavior of [{ kind: 'status', status: 500 }, { kind: 'raw', chunks: [], end: false }, { kind: 'raw', chunks: [], end: true }] satisfies Behavior[]) {
      a.script(behavior)
      const beforeB = chatCalls(b)
      const res = await gw.post('/v1/chat/completions', key, { model: 'fast', messages: MESSAGES, max_tokens: 20, stream: true })
      expect(res.status).toBe(200)
      const s = readStream(await res.text())
      expect(s.errors).toEqual([])
      expect(s.done).toBe(true)
      expect(s.content).toBe('Echo: route me')
      expect(chatCalls(b)).toBe(beforeB + 1)
    }
  })

  it('a stream that broke after its first byte is not retried: the client gets the error event', async () => {
    a.script({ kind: 'drop-mid-stream', afterChunks: 2 })
    const beforeB = chatCalls(b)
    const res = await gw.post('/v1/chat/completions', key, { model: 'fast', messages: MESSAGES, max_tokens: 20, stream: true })
    expect(res.status).toBe(200)
    const s = readStream(await res.text())
    expect(s.done).toBe(false)
    expect(s.errors.length).toBe(1)
    expect(chatCalls(b)).toBe(beforeB)
  })
})

describe('cooldown', () => {
  let a: MockUpstream
  let b: MockUpstream
  let gw: TestGateway
  let key: string
  let admin: string

  beforeAll(async () => {
    a = await startMockUpstream()
    b = await startMockUpstream()
    const dir = tempDir()
    const upstreams = upstreamsFile(
      dir,
      `upstreams:
  - {name: a, base_url: "${a.url}", models: [m]}
  - {name: b, base_url: "${b.url}", models: [m]}
models:
  first-a: [{upstream: a, model: m}, {upstream: b, model: m}]
cooldown: {failures: 2, duration: 400ms}
`,
    )
    gw = await startGateway({ dir, upstreams })
    key = await gw.createKey({ name: 'cool', limits: NO_LIMITS })
    admin = await gw.createKey({ name: 'admin', admin: true, limits: NO_LIMITS })
  })
  afterAll(async () => {
    await gw.stop()
    await a.close()
    await b.close()
  })

  const stateOf = async (name: string) => {
    const deep = (await (await fetch(`${gw.url}/health?deep=1`, { headers: { authorization: `Bearer ${admin}` } })).json()) as { status: string; upstream: { upstreams: { name: string; state: string; failuresInRow: number }[] } }
    return { status: deep.status, ...deep.upstream.upstreams.find((u) => u.name === name)! }
  }

  it('an upstream failing twice in a row is skipped, then one request tries it again and it is back', async () => {
    a.script({ kind: 'status', status: 500 }, { kind: 'status', status: 500 })
    for (let i = 0; i < 2; i++) expect((await post(gw, key, { model: 'first-a' })).status).toBe(200)
    expect(chatCalls(a)).toBe(2)
    expect(await stateOf('a')).toMatchObject({ state: 'open', failuresInRow: 2, status: 'degraded' })
    const beforeB = chatCalls(b)
    for (let i = 0; i < 3; i++) expect((await post(gw, key, { model: 'first-a' })).status).toBe(200)
    expect(chatCalls(a), 'skipped while cooling').toBe(2)
    expect(chatCalls(b)).toBe(beforeB + 3)
    await sleep(500)
    expect((await stateOf('a')).state).toBe('half-open')
    expect((await post(gw, key, { model: 'first-a' })).status).toBe(200)
    expect(chatCalls(a), 'the probe').toBe(3)
    expect(await stateOf('a')).toMatchObject({ state: 'closed', failuresInRow: 0, status: 'ok' })
    expect((await post(gw, key, { model: 'first-a' })).status).toBe(200)
    expect(chatCalls(a)).toBe(4)
  })

  it('a model whose only upstreams are cooling is still tried, not refused untried', async () => {
    a.script({ kind: 'status', status: 500 }, { kind: 'status', status: 500 })
    b.script({ kind: 'status', status: 500 }, { kind: 'status', status: 500 })
    for (let i = 0; i < 2; i++) expect((await post(gw, key, { model: 'first-a' })).status).toBe(502)
    expect((await stateOf('a')).state).toBe('open')
    expect((await stateOf('b')).state).toBe('open')
    expect((await post(gw, key, { model: 'first-a' })).status).toBe(200)
  })
})

describe('Azure OpenAI', () => {
  let az: MockUpstream
  let gw: TestGateway
  let key: string

  beforeAll(async () => {
    az = await startMockUpstream({ azure: { apiVersion: '2024-10-21', key: 'azure-canary-key-0002', deployments: ['my-4o-mini'] } })
    const dir = tempDir()
    const upstreams = upstreamsFile(
      dir,
      `upstreams:
  - name: azure-eu
    provider: azure
    base_url: ${az.url}
    api_key_env: AZURE_TEST_KEY
    api_version: 2024-10-21
    deployments: {gpt-4o-mini: my-4o-mini}
`,
      { AZURE_TEST_KEY: 'azure-canary-key-0002' },
    )
    gw = await startGateway({ dir, upstreams })
    key = await gw.createKey({ name: 'azure', limits: NO_LIMITS })
  })
  afterAll(async () => {
    await gw.stop()
    await az.close()
  })

  it('posts to the deployment URL with api-version and the api-key header, streamed or not', async () => {
    const r = await post(gw, key, { model: 'gpt-4o-mini' })
    expect(r.status).toBe(200)
    expect(r.json.choices[0].message.content).toBe('Echo: route me')
    const sent = az.requests.at(-1)!
    expect(sent.path).toBe('/openai/deployments/my-4o-mini/chat/completions?api-version=2024-10-21')
    expect(sent.headers['api-key']).toBe('azure-canary-key-0002')
    expect(sent.headers.authorization).toBeUndefined()
    const res = await gw.post('/v1/chat/completions', key, { model: 'gpt-4o-mini', messages: MESSAGES, max_tokens: 20, stream: true })
    const s = readStream(await res.text())
    expect([s.done, s.content]).toEqual([true, 'Echo: route me'])
    const models = (await (await fetch(`${gw.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } })).json()) as { data: { id: string }[] }
    expect(models.data.map((m) => m.id)).toEqual(['gpt-4o-mini'])
  })
})

describe('max_inflight', () => {
  let p: MockUpstream
  let q: MockUpstream
  let gw: TestGateway
  let key: string

  beforeAll(async () => {
    p = await startMockUpstream()
    q = await startMockUpstream()
    const dir = tempDir()
    const upstreams = upstreamsFile(
      dir,
      `upstreams:
  - {name: p, base_url: "${p.url}", models: [m], max_inflight: 1}
  - {name: q, base_url: "${q.url}", models: [m]}
models:
  p-first: [{upstream: p, model: m}, {upstream: q, model: m}]
  p-only: [{upstream: p, model: m}]
`,
    )
    gw = await startGateway({ dir, upstreams })
    key = await gw.createKey({ name: 'cap', limits: { ...NO_LIMITS, concurrency: null } })
  })
  afterAll(async () => {
    await gw.stop()
    await p.close()
    await q.close()
  })

  it('an upstream at its max_inflight is passed over; with no other candidate the answer is 503 upstream_busy', async () => {
    p.script({ kind: 'normal', delayMs: 800 })
    const slow = post(gw, key, { model: 'p-first' })
    expect(await until(() => chatCalls(p) === 1)).toBe(true)
    const second = await post(gw, key, { model: 'p-first' })
    expect(second.status).toBe(200)
    expect(chatCalls(q)).toBe(1)
    const busy = await gw.post('/v1/chat/completions', key, { model: 'p-only', messages: MESSAGES, max_tokens: 5 })
    expect(busy.status).toBe(503)
    expect(busy.headers.get('retry-after')).toBe('1')
    expect(((await busy.json()) as { error: { code: string } }).error.code).toBe('upstream_busy')
    expect((await slow).status).toBe(200)
    expect(chatCalls(p)).toBe(1)
  })
})
