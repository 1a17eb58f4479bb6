/**
 * Issue 7, scenario 9: upstream faults, with the SDK's retries off (one upstream call per
 * request). Each gives the documented status, or a stream that ends cleanly with an error
 * event; metering is right (reported usage, the estimate of what was streamed, or nothing);
 * no queue slot or reservation is left behind.
 */
import OpenAI from 'openai'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { countPromptTokens, countTextTokens } from '../../src/core/tokens.js'
import { startGateway, NO_LIMITS, type TestGateway } from '../support/gateway.js'
import { startMockUpstream, type Behavior, type MockUpstream } from '../support/mock-upstream.js'
import { expectNothingHeld, keyIdOf, readStream, rowFor, rowsOf, until } from './helpers.js'

let mock: MockUpstream
let gw: TestGateway
let key: string
let keyId: string
let n = 0
let callsBefore = 0

const MESSAGES = [{ role: 'user', content: 'hello there general' }]

beforeAll(async () => {
  mock = await startMockUpstream()
  gw = await startGateway({ upstreamUrl: mock.url, firstByteTimeoutMs: 500, totalTimeoutMs: 3_000 })
  key = await gw.createKey({ name: 'alice', limits: { ...NO_LIMITS, dailyTokens: 10_000_000 } })
  keyId = await keyIdOf(gw, 'alice')
})

beforeEach(() => {
  callsBefore = mock.requests.length
})

afterEach(async () => {
  await expectNothingHeld(gw, [keyId])
})

afterAll(async () => {
  await gw?.stop()
  await mock?.close()
})

interface Answer {
  id: string
  status: number
  text: string
  headers: Headers
  json: { error?: { code: string; type: string; message: string } } & Record<string, unknown>
}

async function send(route: '/chat' | '/v1', opts: { stream?: boolean; behavior?: Behavior; target?: TestGateway } = {}): Promise<Answer> {
  const target = opts.target ?? gw
  if (opts.behavior) mock.script(opts.behavior)
  const id = `uf-${++n}`
  const body = route === '/chat' ? { message: 'hello there general' } : { model: 'gpt-4o-mini', messages: MESSAGES, stream: opts.stream ?? false }
  const k = target === gw ? key : await target.createKey({ name: `k${n}`, limits: NO_LIMITS })
  const res = await target.post(route === '/chat' ? '/chat' : '/v1/chat/completions', k, body, { 'x-request-id': id })
  const text = await res.text()
  let json = {} as Answer['json']
  try {
    json = JSON.parse(text) as Answer['json']
  } catch {
    // a stream
  }
  return { id, status: res.status, text, headers: res.headers, json }
}

const upstreamCalls = () => mock.requests.length - callsBefore

describe('refused connection', () => {
  it('→ 502 upstream_unreachable on every route, nothing held', async () => {
    const dead = await startMockUpstream()
    const url = dead.url
    await dead.close()
    const other = await startGateway({ upstreamUrl: url, firstByteTimeoutMs: 500, totalTimeoutMs: 3_000 })
    try {
      for (const [route, stream] of [['/chat', false], ['/v1', false], ['/v1', true]] as const) {
        const a = await send(route, { stream, target: other })
        expect(a.status, `${route} stream=${stream}`).toBe(502)
        expect(a.json.error).toMatchObject({ type: 'upstream_error', code: 'upstream_unreachable' })
        expect(await rowFor(other, a.id)).toMatchObject({ status: 502, totalTokens: 0, errorCode: 'upstream_unreachable' })
      }
      await expectNothingHeld(other, (await other.admin.listKeys()).map((k) => k.id))
    } finally {
      await other.stop()
    }
  })
})

describe('accept and hang', () => {
  it.each([
    ['/chat', false],
    ['/v1', false],
    ['/v1', true],
  ] as const)('no headers: %s stream=%s → 504 upstream_timeout, the upstream connection closed', async (route, stream) => {
    const abandoned = mock.abandoned
    const a = await send(route, { stream, behavior: { kind: 'hang' } })
    expect(a.status).toBe(504)
    expect(a.json.error).toMatchObject({ code: 'upstream_timeout' })
    expect(upstreamCalls()).toBe(1)
    expect(await rowFor(gw, a.id)).toMatchObject({ status: 504, totalTokens: 0 })
    expect(await until(() => mock.abandoned === abandoned + 1), 'the upstream connection was closed').toBe(true)
  })

  it('headers, then nothing, on a stream → the stream ends with an upstream_timeout event (no [DONE])', async () => {
    const a = await send('/v1', { stream: true, behavior: { kind: 'headers-then-hang' } })
    expect(a.status).toBe(200)
    const s = readStream(a.text)
    expect(s.done).toBe(false)
    expect(s.errors.map((e) => e.code)).toEqual(['upstream_timeout'])
    expect(await rowFor(gw, a.id)).toMatchObject({ streamed: true, errorCode: 'upstream_timeout', totalTokens: countPromptTokens(MESSAGES), estimated: true })
  })

  it('headers, then nothing, non-streamed → 504', async () => {
    const a = await send('/v1', { behavior: { kind: 'headers-then-hang' } })
    expect(a.status).toBe(504)
    expect(await rowFor(gw, a.id)).toMatchObject({ status: 504, totalTokens: 0 })
  })
})

describe('429 from the upstream', () => {
  const cases: [string, Record<string, string> | (() => Record<string, string>), (retryAfter: number, ms: number) => void][] = [
    ['Retry-After in seconds', { 'retry-after': '7' }, (s, ms) => (expect(s).toBe(7), expect(ms).toBe(7_000))],
    ['Retry-After as an HTTP date', () => ({ 'retry-after': new Date(Date.now() + 30_000).toUTCString() }), (s) => (expect(s).toBeGreaterThanOrEqual(25), expect(s).toBeLessThanOrEqual(31))],
    ['an absurd Retry-After (years)', { 'retry-after': '99999999999' }, (s) => expect(s).toBe(3_600)],
    ['an absurd date (year 9999)', { 'retry-after': 'Fri, 31 Dec 9999 23:59:59 GMT' }, (s) => expect(s).toBe(3_600)],
    ['a date in the past', { 'retry-after': 'Thu, 01 Jan 1970 00:00:00 GMT' }, (s) => expect(s).toBe(1)],
    ['garbage', { 'retry-after': 'soon, maybe' }, (s) => expect(s).toBe(1)],
    ['a negative number', { 'retry-after': '-5' }, (s) => (expect(s).toBeGreaterThanOrEqual(1), expect(s).toBeLessThanOrEqual(3_600))],
    ['retry-after-ms', { 'retry-after-ms': '1500' }, (s, ms) => (expect(s).toBe(2), expect(ms).toBe(1_500))],
    ['an absurd retry-after-ms', { 'retry-after-ms': '1e20' }, (s) => expect(s).toBe(3_600)],
    ['none at all', {}, (s) => expect(s).toBe(1)],
  ]
  it.each(cases)('%s → 429 upstream_rate_limited with a sane Retry-After, one upstream call', async (_name, headers, check) => {
    for (const [route, stream] of [['/v1', false], ['/v1', true], ['/chat', false]] as const) {
      callsBefore = mock.requests.length
      const a = await send(route, { stream, behavior: { kind: 'status', status: 429, headers: typeof headers === 'function' ? headers() : headers, body: JSON.stringify({ error: { message: 'Rate limit reached', type: 'requests', code: 'rate_limit_exceeded' } }) } })
      expect(a.status).toBe(429)
      expect(a.json.error).toMatchObject({ type: 'rate_limit_error', code: 'upstream_rate_limited' })
      const s = Number(a.headers.get('retry-after'))
      expect(Number.isInteger(s), `retry-after ${a.headers.get('retry-after')}`).toBe(true)
      check(s, Number(a.headers.get('retry-after-ms')))
      expect(upstreamCalls(), 'no retry behind the client\'s back').toBe(1)
      expect(await rowFor(gw, a.id)).toMatchObject({ status: 429, totalTokens: 0 })
    }
  })
})

describe('5xx, truncated JSON, HTML', () => {
  it.each([500, 502, 503, 504, 520])('%s → 502 upstream_error, one upstream call', async (status) => {
    for (const route of ['/v1', '/chat'] as const) {
      callsBefore = mock.requests.length
      const a = await send(route, { behavior: { kind: 'status', status } })
      expect(a.status).toBe(502)
      expect(a.json.error).toMatchObject({ type: 'upstream_error', code: 'upstream_error' })
      expect(upstreamCalls()).toBe(1)
      expect(await rowFor(gw, a.id)).toMatchObject({ status: 502, totalTokens: 0 })
    }
  })

  it('truncated JSON with 200 → 502 upstream_malformed, nothing charged', async () => {
    for (const route of ['/v1', '/chat'] as const) {
      const a = await send(route, { behavior: { kind: 'status', status: 200, body: '{"id":"chatcmpl-x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assis' } })
      expect(a.status).toBe(502)
      expect(a.json.error).toMatchObject({ code: 'upstream_malformed' })
      expect(await rowFor(gw, a.id)).toMatchObject({ status: 502, totalTokens: 0 })
    }
  })

  it('an HTML error page (502 and 200) → a JSON error, not the page', async () => {
    const page = '<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>'
    for (const [status, code] of [[502, 'upstream_error'], [503, 'upstream_error'], [200, 'upstream_malformed']] as const) {
      for (const [route, stream] of [['/v1', false], ['/v1', true], ['/chat', false]] as const) {
        const a = await send(route, { stream, behavior: { kind: 'status', status, headers: { 'content-type': 'text/html' }, body: page } })
        if (status === 200 && stream) {
          // The stream had begun: it ends with a malformed-event error and no [DONE].
          expect(a.status).toBe(200)
          const s = readStream(a.text)
          expect(s.done).toBe(false)
          expect(s.errors.length).toBeGreaterThan(0)
          continue
        }
        expect(a.status, `${status} ${route} stream=${stream}`).toBe(502)
        expect(a.headers.get('content-type')).toMatch(/application\/json/)
        expect(a.json.error).toMatchObject({ code })
        expect(a.text).not.toContain('<html')
      }
    }
  })
})

describe('streams that go wrong', () => {
  const chunk = (delta: Record<string, unknown>, finish: string | null = null) =>
    JSON.stringify({ id: 'chatcmpl-r', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta, finish_reason: finish }] })
  const usage = (p: number, c: number) => JSON.stringify({ id: 'chatcmpl-r', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [], usage: { prompt_tokens: p, completion_tokens: c, total_tokens: p + c } })

  it('cut mid-way → the client gets what came and an error event; the streamed text is charged (estimate)', async () => {
    const a = await send('/v1', { stream: true, behavior: { kind: 'drop-mid-stream', afterChunks: 3 } })
    expect(a.status).toBe(200)
    const s = readStream(a.text)
    expect(s.content).toBe('Echo: hello ')
    expect(s.done).toBe(false)
    expect(s.errors).toHaveLength(1)
    expect(['upstream_broken', 'upstream_incomplete']).toContain(s.errors[0].code)
    const row = await rowFor(gw, a.id)
    expect(row).toMatchObject({ status: 200, streamed: true, estimated: true, completionTokens: countTextTokens(s.content), promptTokens: countPromptTokens(MESSAGES) })
    expect(row.errorCode).not.toBeNull()
  })

  it('an error event mid-stream → re-issued by the gateway (scrubbed), then the stream ends without [DONE]; the partial text is charged', async () => {
    const a = await send('/v1', {
      stream: true,
      behavior: { kind: 'raw', chunks: [`data: ${chunk({ role: 'assistant', content: '' })}\n\n`, `data: ${chunk({ content: 'Partial answer' })}\n\n`, `data: ${JSON.stringify({ error: { message: 'The server had an error while processing your request.', type: 'server_error', param: null, code: null } })}\n\n`] },
    })
    expect(a.status).toBe(200)
    const s = readStream(a.text)
    expect(s.content).toBe('Partial answer')
    expect(s.done).toBe(false)
    expect(s.errors[0]).toMatchObject({ type: 'upstream_error', code: 'upstream_stream_error', message: 'The upstream reported an error mid-stream: The server had an error while processing your request.' })
    expect(await rowFor(gw, a.id)).toMatchObject({ streamed: true, errorCode: 'upstream_stream_error', estimated: true, completionTokens: countTextTokens('Partial answer') })
  })

  it('SSE comments and CRLF framing → relayed intact (the SDK reads it), usage chunk stripped unless asked, usage as reported', async () => {
    const frames = [`: OPENROUTER PROCESSING\r\n\r\n`, `data: ${chunk({ role: 'assistant', content: '' })}\r\n\r\n`, `data: ${chunk({ content: 'Hi' })}\r\n\r`, `\n: keep-alive\r\n\r\n`, `data: ${chunk({ content: ' there' })}\r\n\r\n`, `data: ${chunk({}, 'stop')}\r\n\r\n`, `data: ${usage(9, 2)}\r\n\r\n`, 'data: [DONE]\r\n\r\n']
    const client = new OpenAI({ apiKey: key, baseURL: `${gw.url}/v1`, maxRetries: 0 })
    for (const includeUsage of [false, true]) {
      mock.script({ kind: 'raw', chunks: frames })
      const id = `uf-crlf-${includeUsage}`
      let text = ''
      const usages: unknown[] = []
      const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: MESSAGES as never, stream: true, ...(includeUsage ? { stream_options: { include_usage: true } } : {}) }, { headers: { 'x-request-id': id } })
      for await (const c of stream) {
        text += c.choices[0]?.delta?.content ?? ''
        if (c.usage) usages.push(c.usage)
      }
      expect(text).toBe('Hi there')
      expect(usages).toEqual(includeUsage ? [{ prompt_tokens: 9, completion_tokens: 2, total_tokens: 11 }] : [])
      expect(await rowFor(gw, id)).toMatchObject({ status: 200, errorCode: null, totalTokens: 11, estimated: false })
    }
  })

  it('a multibyte character split across network chunks arrives whole', async () => {
    const words = ['héllo ', '🎉 ', 'wörld ', '✓ ', '日本語']
    const bytes = Buffer.from([chunk({ role: 'assistant', content: '' }), ...words.map((w) => chunk({ content: w })), chunk({}, 'stop'), usage(7, 5)].map((c) => `data: ${c}\n\n`).join('') + 'data: [DONE]\n\n')
    const pieces: Buffer[] = []
    for (let i = 0; i < bytes.length; i += 5) pieces.push(bytes.subarray(i, i + 5))
    expect(pieces.some((p) => p.toString('utf8').includes('\ufffd')), 'some piece really cuts a character').toBe(true)
    const a = await send('/v1', { stream: true, behavior: { kind: 'raw', chunks: pieces, chunkDelayMs: 1 } })
    const s = readStream(a.text)
    expect(a.text).not.toContain('\ufffd')
    expect(s.content).toBe(words.join(''))
    expect(s.done).toBe(true)
    expect(await rowFor(gw, a.id)).toMatchObject({ errorCode: null, totalTokens: 12, estimated: false })
  })

  it('a very slow stream (gaps longer than the first-byte timeout) completes', async () => {
    const own = await startMockUpstream()
    const slow = await startGateway({ upstreamUrl: own.url, firstByteTimeoutMs: 300, totalTimeoutMs: 30_000 })
    try {
      const k = await slow.createKey({ name: 'patient', limits: NO_LIMITS })
      own.script({ kind: 'normal', chunkDelayMs: 450 })
      const res = await slow.post('/v1/chat/completions', k, { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream: true }, { 'x-request-id': 'uf-slow' })
      const s = readStream(await res.text())
      expect(res.status).toBe(200)
      expect(s).toMatchObject({ content: 'Echo: hi', done: true, errors: [] })
      expect(own.reportedTokens).toBeGreaterThan(0)
      expect(await rowFor(slow, 'uf-slow')).toMatchObject({ errorCode: null, estimated: false, totalTokens: own.reportedTokens })
      await expectNothingHeld(slow, [await keyIdOf(slow, 'patient')])
    } finally {
      await slow.stop()
      await own.close()
    }
  }, 30_000)
})

describe('an error answer that never finishes (the SDK reads it whole)', () => {
  it('a 500 whose body stalls → 502 within the first-byte timeout, the upstream connection closed', async () => {
    const abandoned = mock.abandoned
    const a = await send('/v1', { behavior: { kind: 'raw', status: 500, headers: { 'content-type': 'application/json' }, chunks: ['{"error": {"mess'], end: 'hang' } })
    expect(a.status).toBe(502)
    expect(a.json.error).toMatchObject({ code: 'upstream_error' })
    expect(await rowFor(gw, a.id)).toMatchObject({ status: 502, totalTokens: 0 })
    expect(await until(() => mock.abandoned === abandoned + 1), 'the upstream connection was closed').toBe(true)
  })

  it('a 500 whose body never ends → 502, the upstream connection closed', async () => {
    const abandoned = mock.abandoned
    const a = await send('/v1', { behavior: { kind: 'endless', status: 500 } })
    expect(a.status).toBe(502)
    expect(a.json.error).toMatchObject({ code: 'upstream_error' })
    expect(await until(() => mock.abandoned === abandoned + 1), 'the upstream connection was closed').toBe(true)
  })
})

describe('an endless body', () => {
  it('non-streamed → 502 upstream_too_large, the upstream connection closed', async () => {
    const abandoned = mock.abandoned
    const a = await send('/v1', { behavior: { kind: 'endless' } })
    expect(a.status).toBe(502)
    expect(a.json.error).toMatchObject({ code: 'upstream_too_large' })
    expect(await rowFor(gw, a.id)).toMatchObject({ status: 502, totalTokens: 0 })
    expect(await until(() => mock.abandoned === abandoned + 1), 'the upstream connection was closed').toBe(true)
  })

  it('streamed (bytes that never complete an event) → the stream ends with an error event, memory bounded', async () => {
    const abandoned = mock.abandoned
    const base = process.memoryUsage()
    let peak = 0
    const sampler = setInterval(() => {
      const m = process.memoryUsage()
      peak = Math.max(peak, m.heapUsed + m.arrayBuffers + m.external - base.heapUsed - base.arrayBuffers - base.external)
    }, 10)
    let a: Answer
    try {
      a = await send('/v1', { stream: true, behavior: { kind: 'endless' } })
    } finally {
      clearInterval(sampler)
    }
    expect(a.status).toBe(200)
    const s = readStream(a.text)
    expect(s.done).toBe(false)
    expect(s.errors).toHaveLength(1)
    expect(await rowFor(gw, a.id)).toMatchObject({ streamed: true })
    expect(await until(() => mock.abandoned === abandoned + 1), 'the upstream connection was closed').toBe(true)
    expect(peak, `heap + buffers grew by ${Math.round(peak / 1048576)} MiB while relaying an endless event`).toBeLessThan(128 * 1024 * 1024)
  })
})

describe('afterwards', () => {
  it('one row per request, every upstream call accounted for, nothing in flight', async () => {
    const rows = await rowsOf(gw)
    const ids = rows.map((r) => r.requestId)
    expect(new Set(ids).size).toBe(ids.length)
    const chatCalls = mock.requests.filter((r) => r.path.endsWith('/chat/completions')).length
    expect(rows.filter((r) => r.upstreamMs !== null).length).toBe(chatCalls)
    await expectNothingHeld(gw, [keyId])
  })
})
