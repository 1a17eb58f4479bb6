/**
 * Issue 7, scenario 6: body and field abuse. Over-limit bodies however framed, absurdly deep
 * JSON, bad max_tokens and n, 100,000 messages: 400 or 413 before any upstream call and
 * before any reservation (the mock sees nothing, /usage shows nothing reserved or spent),
 * with memory bounded while it happens.
 */
import { Agent, request } from 'node:http'
import { connect } from 'node:net'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { startGateway, NO_LIMITS, type TestGateway } from '../support/gateway.js'
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js'
import { expectNothingHeld, keyIdOf, rawHttp, rowFor, sleep } from './helpers.js'

const LIMIT = 256 * 1024

let mock: MockUpstream
let gw: TestGateway
let port: number
let key: string
let keyId: string

beforeAll(async () => {
  mock = await startMockUpstream()
  gw = await startGateway({ upstreamUrl: mock.url, bodyLimit: LIMIT })
  port = Number(new URL(gw.url).port)
  key = await gw.createKey({ name: 'alice', limits: { ...NO_LIMITS, dailyTokens: 1_000_000 } })
  keyId = await keyIdOf(gw, 'alice')
})

let callsBefore = 0
let spentBefore = 0
beforeEach(async () => {
  callsBefore = mock.requests.length
  spentBefore = (await gw.built.gateway.limiter.budget(keyId)).spent
})

afterEach(async () => {
  // Nothing of any of this reached the upstream, took a slot or reserved a token.
  expect(mock.requests.slice(callsBefore).map((r) => `${r.path} ${JSON.stringify(r.body).slice(0, 120)}`), 'upstream calls').toEqual([])
  await expectNothingHeld(gw, [keyId])
  expect((await gw.built.gateway.limiter.budget(keyId)).spent - spentBefore, 'tokens spent').toBe(0)
})

afterAll(async () => {
  await gw?.stop()
  await mock?.close()
})

const ROUTES = ['/chat', '/v1/chat/completions'] as const
const valid = (route: string, extra: Record<string, unknown> = {}) =>
  route === '/chat' ? { message: 'hi', ...extra } : { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], ...extra }

async function post(route: string, body: string): Promise<{ status: number; json: { error?: { code?: string; param?: string | null; type?: string } } }> {
  const res = await fetch(`${gw.url}${route}`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body })
  const text = await res.text()
  return { status: res.status, json: text ? JSON.parse(text) : {} }
}

/**
 * Streams `total` bytes with Transfer-Encoding: chunked (no Content-Length), on a fresh
 * connection unless an agent is given; 0 when no answer came within 15 s (a hang).
 */
function chunked(route: string, total: number, piece = 64 * 1024, agent: Agent | false = false): Promise<number> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      req.destroy()
      resolve(0)
    }, 15_000)
    const req = request(`${gw.url}${route}`, { method: 'POST', agent, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'transfer-encoding': 'chunked' } }, (res) => {
      res.resume()
      clearTimeout(timer)
      resolve(res.statusCode ?? 0)
    })
    req.on('error', (e) => ((e as NodeJS.ErrnoException).code === 'ECONNRESET' || (e as NodeJS.ErrnoException).code === 'EPIPE' ? undefined : reject(e)))
    const chunk = Buffer.alloc(piece, 0x20)
    let sent = 0
    const pump = () => {
      while (sent < total) {
        sent += piece
        if (!req.write(chunk)) return void req.once('drain', pump)
      }
      req.end()
    }
    req.write('{"message":"')
    pump()
  })
}

describe('over-limit bodies → 413, however framed', () => {
  it.each(ROUTES)('%s: with Content-Length', async (route) => {
    const r = await post(route, JSON.stringify(valid(route, { pad: 'x'.repeat(LIMIT) })))
    expect(r.status).toBe(413)
    expect(r.json).toMatchObject({ error: { code: 'body_too_large' } })
  })

  it.each(ROUTES)('%s: a huge declared Content-Length, refused before the body is read', async (route) => {
    const r = await rawHttp(port, `POST ${route} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer ${key}\r\nContent-Type: application/json\r\nContent-Length: 99999999999\r\nConnection: close\r\n\r\n{"message":"hi"`)
    expect(r.status).toBe(413)
  })

  it.each(ROUTES)('%s: chunked, without Content-Length', async (route) => {
    expect(await chunked(route, 4 * LIMIT)).toBe(413)
  })

  it.each(ROUTES)('%s: a keep-alive connection still answers its next request after a chunked 413', async (route) => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 })
    try {
      expect(await chunked(route, 4 * LIMIT, 64 * 1024, agent)).toBe(413)
      const next = await new Promise<number>((resolve) => {
        const timer = setTimeout(() => {
          req.destroy()
          resolve(0)
        }, 15_000)
        const req = request(`${gw.url}/usage`, { agent, headers: { authorization: `Bearer ${key}` } }, (res) => {
          res.resume()
          clearTimeout(timer)
          resolve(res.statusCode ?? 0)
        })
        req.on('error', () => resolve(-1))
        req.end()
      })
      // The server either keeps the connection usable or closes it with the 413 (Connection:
      // close), so the client opens a new one; 0 is a hang, -1 a reset on the reused socket.
      expect(next, next === 0 ? 'no answer in 15 s on the reused connection' : 'the reused connection was reset').toBe(200)
    } finally {
      agent.destroy()
    }
  }, 40_000)

  it.each(ROUTES)('%s: Content-Length and Transfer-Encoding together → refused (400) or 413, never forwarded', async (route) => {
    const body = JSON.stringify(valid(route, { pad: 'x'.repeat(LIMIT) }))
    const chunkedBody = `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`
    const r = await rawHttp(port, `POST ${route} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer ${key}\r\nContent-Type: application/json\r\nContent-Length: 20\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${chunkedBody}`)
    expect([400, 413]).toContain(r.status)
    const small = JSON.stringify(valid(route))
    const r2 = await rawHttp(port, `POST ${route} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer ${key}\r\nContent-Type: application/json\r\nContent-Length: ${small.length}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${small.length.toString(16)}\r\n${small}\r\n0\r\n\r\n`)
    expect(r2.status, 'CL + TE is request smuggling; it must be refused').toBe(400)
  })

  it.each(ROUTES)('%s: a Content-Length shorter than the body → 400 (truncated JSON), the rest not taken as a request', async (route) => {
    const body = JSON.stringify(valid(route))
    const smuggled = `POST ${route} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer ${key}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`
    const r = await rawHttp(port, `POST ${route} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer ${key}\r\nContent-Type: application/json\r\nContent-Length: 5\r\nConnection: close\r\n\r\n${body}${smuggled}`)
    expect(r.status).toBe(400)
    expect(r.raw.match(/HTTP\/1\.1 200/g)).toBeNull()
  })
})

describe('JSON nested 100,000 deep → 400', () => {
  const deepArray = (n: number) => '['.repeat(n) + ']'.repeat(n)
  const deepObject = (n: number) => '{"a":'.repeat(n) + '1' + '}'.repeat(n)

  it.each(ROUTES)('%s: as the whole body', async (route) => {
    expect((await post(route, deepArray(100_000))).status).toBe(400)
    expect((await post(route, deepObject(40_000))).status).toBe(400)
  })

  it.each(ROUTES)('%s: inside an otherwise valid request', async (route) => {
    const prefix = JSON.stringify(valid(route)).slice(0, -1)
    for (const deep of [deepArray(100_000), deepObject(40_000)]) {
      const r = await post(route, `${prefix},"metadata":${deep}}`)
      expect(r.status).toBe(400)
      expect(r.json.error?.type).toBe('invalid_request_error')
    }
  })

  it('/v1/chat/completions: inside a message', async () => {
    const r = await post('/v1/chat/completions', `{"model":"gpt-4o-mini","messages":[{"role":"user","content":${deepArray(100_000)}}]}`)
    expect(r.status).toBe(400)
  })

  it('/chat: as the message', async () => {
    expect((await post('/chat', `{"message":${deepArray(100_000)}}`)).status).toBe(400)
  })
})

describe('bad max_tokens and n → 400 naming the field', () => {
  const badTokens: [string, string][] = [
    ['negative', '-1'],
    ['zero', '0'],
    ['huge', '1000000000000'],
    ['beyond 2^53', '18014398509481984'],
    ['overflowing to Infinity', '1e400'],
    ['a float', '1.5'],
    ['a string', '"10"'],
    ['a boolean', 'true'],
    ['an array', '[10]'],
    ['an object', '{"n":10}'],
  ]
  for (const [name, raw] of badTokens) {
    it.each(ROUTES)(`max_tokens ${name} (${raw}) on %s`, async (route) => {
      const base = JSON.stringify(valid(route)).slice(0, -1)
      const r = await post(route, `${base},"max_tokens":${raw}}`)
      expect(r.status).toBe(400)
      expect(r.json.error?.param).toBe('max_tokens')
    })
  }
  for (const [name, raw] of badTokens) {
    it(`max_completion_tokens ${name} (${raw}) on /v1/chat/completions`, async () => {
      const base = JSON.stringify(valid('/v1/chat/completions')).slice(0, -1)
      const r = await post('/v1/chat/completions', `${base},"max_completion_tokens":${raw}}`)
      expect(r.status).toBe(400)
      expect(r.json.error?.param).toBe('max_completion_tokens')
    })
  }
  for (const raw of ['0', '1000', '-1', '1.5', '"2"', '1e400', 'true']) {
    it(`n = ${raw}`, async () => {
      const base = JSON.stringify(valid('/v1/chat/completions')).slice(0, -1)
      const r = await post('/v1/chat/completions', `${base},"n":${raw}}`)
      expect(r.status).toBe(400)
      expect(r.json.error?.param).toBe('n')
    })
  }
})

describe('100,000 messages → 400 (or 413 when the body is over the limit)', () => {
  it('compact enough to fit the body limit', async () => {
    const r = await post('/v1/chat/completions', `{"model":"gpt-4o-mini","messages":[${Array(100_000).fill('0').join(',')}]}`)
    expect(r.status).toBe(400)
    expect(r.json.error?.param).toBe('messages')
  })

  it('real messages, over the body limit', async () => {
    const r = await post('/v1/chat/completions', JSON.stringify({ model: 'gpt-4o-mini', messages: Array(100_000).fill({ role: 'user', content: 'x' }) }))
    expect([400, 413]).toContain(r.status)
  })

  it('real messages under a larger body limit: refused by count, not size', async () => {
    const big = await startGateway({ upstreamUrl: mock.url, bodyLimit: 8 * 1024 * 1024 })
    try {
      const k = await big.createKey({ name: 'bob', limits: NO_LIMITS })
      const res = await big.post('/v1/chat/completions', k, { model: 'gpt-4o-mini', messages: Array(100_000).fill({ role: 'user', content: 'x' }) })
      expect(res.status).toBe(400)
      expect(await res.json()).toMatchObject({ error: { param: 'messages' } })
      await expectNothingHeld(big, [await keyIdOf(big, 'bob')])
    } finally {
      await big.stop()
    }
  })
})

describe('a client that leaves mid-body', () => {
  it('is logged once as 499 client_closed, reaches nothing, and the gateway serves the next request', async () => {
    const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x'.repeat(10_000) }] })
    const socket = connect(port, '127.0.0.1')
    await new Promise((r) => socket.once('connect', r))
    socket.write(
      `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\nX-Request-Id: left-mid-body\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 4_000)}`,
    )
    await sleep(50) // the gateway has the headers and part of the body
    socket.destroy()
    expect(await rowFor(gw, 'left-mid-body')).toMatchObject({ status: 499, errorCode: 'client_closed_request', totalTokens: 0 })
    const next = await gw.post('/v1/chat/completions', key, { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] })
    expect(next.status).toBe(200)
    // That one reached the upstream and spent tokens, as it should: not what afterEach checks.
    callsBefore = mock.requests.length
    spentBefore = (await gw.built.gateway.limiter.budget(keyId)).spent
  })
})

describe('/usage after all of it', () => {
  it('shows nothing reserved and only what reached the upstream spent (nothing, when every refusal held)', async () => {
    const usage = (await (await fetch(`${gw.url}/usage`, { headers: { authorization: `Bearer ${key}` } })).json()) as Record<string, number>
    expect(usage).toMatchObject({ total_tokens: mock.reportedTokens, remaining: 1_000_000 - mock.reportedTokens })
  })
})

describe('memory stays bounded', () => {
  it('8 concurrent 24 MiB chunked uploads (192 MiB) against a 256 KiB limit do not grow the heap by their size', async () => {
    const base = process.memoryUsage()
    let peak = 0
    const sample = setInterval(() => {
      const m = process.memoryUsage()
      peak = Math.max(peak, m.heapUsed + m.arrayBuffers - base.heapUsed - base.arrayBuffers)
    }, 5)
    try {
      const statuses = await Promise.all(Array.from({ length: 8 }, (_, i) => chunked(ROUTES[i % 2], 24 * 1024 * 1024)))
      expect(statuses).toEqual(Array(8).fill(413))
    } finally {
      clearInterval(sample)
    }
    expect(peak, `heap + buffers grew by ${Math.round(peak / 1048576)} MiB`).toBeLessThan(96 * 1024 * 1024)
  }, 60_000)
})
