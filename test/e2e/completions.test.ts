import { collect } from '../support/log-rows.js'
import OpenAI, { APIError } from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mockCompletion } from '../../src/upstream/mock-provider.js'
import { startGateway, NO_LIMITS, type TestGateway } from '../support/gateway.js'
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js'

let upstream: MockUpstream
let gw: TestGateway
let key: string
let client: OpenAI

const messages = [{ role: 'user' as const, content: 'tell me about gateways' }]

beforeAll(async () => {
  upstream = await startMockUpstream()
  gw = await startGateway({ upstreamUrl: upstream.url, firstByteTimeoutMs: 800, totalTimeoutMs: 3_000 })
  key = await gw.createKey({ name: 'sdk', limits: NO_LIMITS })
  client = gw.client(key)
})

afterAll(async () => {
  await gw.stop()
  await upstream.close()
})

const lastRow = async () => {
  await gw.built.requestLog.drain()
  return (await collect(gw.admin.iterateRequests({}))).at(-1)!
}

describe('POST /v1/chat/completions, non-streamed', () => {
  it('works with the official SDK and returns the upstream body byte for byte', async () => {
    const raw = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages, max_tokens: 50 }),
    })
    const text = await raw.text()
    expect(text).toBe(JSON.stringify(mockCompletion({ model: 'gpt-4o-mini', messages, max_tokens: 50 })))
    // A layout and key order no re-serialisation would reproduce: only a passthrough keeps it.
    const odd = `{ "usage" : {"total_tokens":3, "prompt_tokens":1,"completion_tokens":2},\n  "id":"x", "object":"chat.completion", "created":1, "model":"gpt-4o-mini",\n  "choices":[{"index":0,"message":{"role":"assistant","content":"\\u00e9t\\u00e9"},"finish_reason":"stop"}] }`
    upstream.script({ kind: 'status', status: 200, body: odd })
    const passed = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages, max_tokens: 50 }),
    })
    expect(await passed.text()).toBe(odd)
    const completion = await client.chat.completions.create({ model: 'gpt-4o-mini', messages, max_tokens: 50 })
    expect(completion.choices[0].message.content).toBe('Echo: tell me about gateways')
    expect(completion.usage?.total_tokens).toBeGreaterThan(0)
  })

  it('forwards every field the client sent, with the operator key, and fills in max_tokens', async () => {
    const body = {
      model: 'gpt-4o-mini',
      messages,
      temperature: 0.3,
      n: 2,
      seed: 7,
      user: 'u-1',
      response_format: { type: 'json_object' },
      tools: [{ type: 'function', function: { name: 'weather', parameters: { type: 'object', properties: {} } } }],
    }
    const res = await gw.post('/v1/chat/completions', key, body)
    expect(res.status).toBe(200)
    const seen = upstream.requests.at(-1)!
    expect(seen.body).toEqual({ ...body, max_tokens: 1000 })
    expect(seen.headers.authorization).toBe('Bearer sk-test-upstream-key-0000')
  })

  it('meters from the upstream usage and logs it', async () => {
    const before = upstream.reportedTokens
    const completion = await client.chat.completions.create({ model: 'gpt-4o-mini', messages, max_tokens: 20 })
    const row = await lastRow()
    expect(row.totalTokens).toBe(completion.usage!.total_tokens)
    expect(row.totalTokens).toBe(upstream.reportedTokens - before)
    expect(row.estimated).toBe(false)
    expect(row.streamed).toBe(false)
  })

  it('estimates with the tokenizer when the upstream reports no usage, and says so', async () => {
    upstream.script({ kind: 'normal', omitUsage: true })
    const res = await gw.post('/v1/chat/completions', key, { model: 'gpt-4o-mini', messages, max_tokens: 20 })
    expect(res.status).toBe(200)
    expect(res.headers.get('x-gateway-tokens-estimated')).toBe('true')
    const row = await lastRow()
    expect(row.estimated).toBe(true)
    expect(row.completionTokens).toBeGreaterThan(0)
    expect(row.promptTokens).toBeGreaterThan(0)
  })

  it('echoes the client\'s x-request-id', async () => {
    const res = await gw.post('/v1/chat/completions', key, { model: 'gpt-4o-mini', messages }, { 'x-request-id': 'my-trace-42' })
    expect(res.headers.get('x-request-id')).toBe('my-trace-42')
    expect((await lastRow()).requestId).toBe('my-trace-42')
  })
})

describe('streaming', () => {
  it('relays chunks to the SDK, ends with [DONE], and strips the usage chunk the client did not ask for', async () => {
    const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages, stream: true })
    let text = ''
    let sawUsage = false
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? ''
      if (chunk.usage) sawUsage = true
    }
    expect(text).toBe('Echo: tell me about gateways')
    expect(sawUsage).toBe(false)
    expect(upstream.requests.at(-1)!.body?.stream_options).toEqual({ include_usage: true })
    const row = await lastRow()
    expect(row.streamed).toBe(true)
    expect(row.estimated).toBe(false)
    expect(row.totalTokens).toBeGreaterThan(0)
    expect(row.errorCode).toBeNull()
  })

  it('keeps the usage chunk when the client asked for it', async () => {
    const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages, stream: true, stream_options: { include_usage: true } })
    let usage: OpenAI.CompletionUsage | null | undefined
    for await (const chunk of stream) if (chunk.usage) usage = chunk.usage
    expect(usage?.total_tokens).toBe((await lastRow()).totalTokens)
  })

  it('relays tool-call chunks', async () => {
    upstream.script({ kind: 'normal', toolCalls: true })
    const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages, stream: true })
    let args = ''
    for await (const chunk of stream) args += chunk.choices[0]?.delta?.tool_calls?.[0]?.function?.arguments ?? ''
    expect(args).toBe('{"city":"Paris"}')
    const row = await lastRow()
    expect(row.estimated).toBe(true) // this upstream sent no usage
    expect(row.completionTokens).toBeGreaterThan(0)
  })

  it('sends each chunk as it arrives, not at the end', async () => {
    upstream.script({ kind: 'normal', chunkDelayMs: 150 })
    const started = Date.now()
    const res = await gw.post('/v1/chat/completions', key, { model: 'gpt-4o-mini', messages, stream: true })
    const reader = res.body!.getReader()
    const first = await reader.read()
    const firstAt = Date.now() - started
    expect(new TextDecoder().decode(first.value)).toContain('"role":"assistant"')
    let rest = 0
    while (!(await reader.read()).done) rest++
    const total = Date.now() - started
    // 7 chunks 150 ms apart: the first must arrive well before the whole answer.
    expect(total - firstAt).toBeGreaterThan(500)
    expect(rest).toBeGreaterThan(2)
  })

  it('aborts the upstream request when the client leaves mid-stream, and meters what was streamed', async () => {
    upstream.script({ kind: 'normal', chunkDelayMs: 100 })
    const abandonedBefore = upstream.abandoned
    const controller = new AbortController()
    const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages, stream: true }, { signal: controller.signal })
    let n = 0
    try {
      for await (const _ of stream) if (++n === 2) controller.abort()
    } catch {
      // the SDK may end the loop or throw on abort; either way the client is gone
    }
    await new Promise((r) => setTimeout(r, 300))
    expect(upstream.abandoned).toBe(abandonedBefore + 1)
    const row = await lastRow()
    expect(row.status).toBe(499)
    expect(row.errorCode).toBe('client_closed_request')
    expect(row.estimated).toBe(true)
    expect(row.totalTokens).toBeGreaterThan(0)
    expect(gw.built.gateway.queue.active).toBe(0)
  })

  it('ends a stream the upstream cut with an error event, and meters the estimate', async () => {
    upstream.script({ kind: 'drop-mid-stream', afterChunks: 3 })
    const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages, stream: true })
    let text = ''
    await expect(
      (async () => {
        for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? ''
      })(),
    ).rejects.toThrow(/upstream/i)
    expect(text.length).toBeGreaterThan(0)
    const row = await lastRow()
    expect(row.errorCode).toMatch(/^upstream_/)
    expect(row.estimated).toBe(true)
    expect(gw.built.gateway.queue.active).toBe(0)
  })
})

describe('GET /v1/models', () => {
  it('lists what the upstream offers, or the key\'s allow-list', async () => {
    const all = await client.models.list()
    expect(all.data.map((m) => m.id)).toContain('gpt-4o')
    const limited = await gw.createKey({ name: 'mini-only', models: ['gpt-4o-mini'], limits: NO_LIMITS })
    const listed = await gw.client(limited).models.list()
    expect(listed.data.map((m) => m.id)).toEqual(['gpt-4o-mini'])
  })

  it('refuses a model outside the key\'s allow-list with 403, before any upstream call', async () => {
    const limited = await gw.createKey({ name: 'mini-only-2', models: ['gpt-4o-mini'], limits: NO_LIMITS })
    const calls = upstream.requests.length
    const err = await gw.client(limited).chat.completions.create({ model: 'gpt-4o', messages }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(OpenAI.PermissionDeniedError)
    expect((err as APIError).code).toBe('model_not_allowed')
    expect(upstream.requests.length).toBe(calls)
  })
})

describe('upstream faults', () => {
  const fault = async (): Promise<APIError> => {
    const result = await client.chat.completions.create({ model: 'gpt-4o-mini', messages }).catch((e: unknown) => e)
    if (!(result instanceof APIError)) throw new Error('expected the SDK to raise an APIError')
    return result
  }

  it('passes an upstream 429 on as 429 with its Retry-After', async () => {
    upstream.script({ kind: 'status', status: 429, headers: { 'retry-after': '7' } })
    const err = await fault()
    expect(err).toBeInstanceOf(OpenAI.RateLimitError)
    expect(err.headers?.get('retry-after')).toBe('7')
    expect(err.headers?.get('retry-after-ms')).toBe('7000')
  })

  it.each([
    ['a 500', 502, { kind: 'status', status: 500 } as const],
    ['a 503', 502, { kind: 'status', status: 503 } as const],
    ['malformed JSON', 502, { kind: 'status', status: 200, body: '{"id": "x", "choices": [' } as const],
    ['an HTML page', 502, { kind: 'status', status: 200, body: '<html>oops</html>', headers: { 'content-type': 'text/html' } } as const],
    ['a hang', 504, { kind: 'hang' } as const],
  ])('maps %s to %i and frees everything', async (_name, status, behavior) => {
    upstream.script(behavior)
    const err = await fault()
    expect(err.status).toBe(status)
    expect(JSON.stringify(err.error)).not.toContain('sk-test')
    expect(gw.built.gateway.queue.active).toBe(0)
    expect((await gw.built.gateway.limiter.budget((await lastRow()).keyId!)).reserved).toBe(0)
  })

  it('gives up on an upstream that sends headers but no body within the total timeout (504)', async () => {
    upstream.script({ kind: 'headers-then-hang' })
    const err = await fault()
    expect(err.status).toBe(504)
  })
})
