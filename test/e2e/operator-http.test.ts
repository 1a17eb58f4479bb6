/** Issue 12, items 12 and 14: what an operator and a client see when a route, a method or the upstream is wrong. */
import { createServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { manualClock } from '../../src/core/clock.js'
import { NO_LIMITS, startGateway, type TestGateway } from '../support/gateway.js'
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js'

vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 })

const UPSTREAM_KEY = 'sk-test-upstream-key-0000'

async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  const port = (server.address() as AddressInfo).port
  await new Promise<void>((r) => server.close(() => r()))
  return port
}

const chat = (gw: TestGateway, key: string) => gw.post('/v1/chat/completions', key, { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: 5 })

describe('routes and methods', () => {
  let gw: TestGateway
  let key: string
  beforeAll(async () => {
    gw = await startGateway()
    key = await gw.createKey({ name: 'alice', limits: NO_LIMITS })
  })
  afterAll(() => gw.stop())

  it('a known route with the wrong method is 405 with Allow, in OpenAI\'s error shape; it needs a key like any route', async () => {
    for (const [method, path, allow] of [
      ['GET', '/chat', 'POST'],
      ['PUT', '/v1/chat/completions', 'POST'],
      ['DELETE', '/v1/models', 'GET, HEAD'],
      ['POST', '/usage', 'GET, HEAD'],
    ] as const) {
      const res = await fetch(`${gw.url}${path}`, { method, headers: { authorization: `Bearer ${key}` } })
      expect(res.status, `${method} ${path}`).toBe(405)
      expect(res.headers.get('allow')).toBe(allow)
      expect(await res.json()).toEqual({ error: { message: `${method} is not allowed on ${path}; it takes ${allow.split(', ')[0]}`, type: 'invalid_request_error', code: 'method_not_allowed', param: null } })
      const anonymous = await fetch(`${gw.url}${path}`, { method })
      expect(anonymous.status).toBe(401)
    }
  })

  it('an unknown path is 404 naming the routes the gateway serves', async () => {
    const res = await fetch(`${gw.url}/v1/embeddings`, { method: 'POST', headers: { authorization: `Bearer ${key}` } })
    expect(res.status).toBe(404)
    const body = (await res.json()) as { error: { message: string; code: string } }
    expect(body.error.code).toBe('not_found')
    expect(body.error.message).toMatch(/^No route POST \/v1\/embeddings\. The gateway serves /)
    for (const route of ['POST /v1/chat/completions', 'GET /v1/models', 'GET /v1/models/{model}', 'POST /chat', 'GET /usage', 'GET /health']) expect(body.error.message).toContain(route)
  })

  it('/health?deep=1 needs an admin key and reports the store and the upstream; /health stays open and small', async () => {
    const admin = await gw.createKey({ name: 'root', admin: true, limits: NO_LIMITS })
    expect((await fetch(`${gw.url}/health?deep=1`)).status).toBe(401)
    expect((await fetch(`${gw.url}/health?deep=1`, { headers: { authorization: `Bearer ${key}` } })).status).toBe(403)
    const deep = await fetch(`${gw.url}/health?deep=1`, { headers: { authorization: `Bearer ${admin}` } })
    expect(deep.status).toBe(200)
    expect(await deep.json()).toMatchObject({ status: 'ok', store: { ok: true }, upstream: { mode: 'mock', lastFailure: null, failuresSinceSuccess: 0 } })
    expect(await (await fetch(`${gw.url}/health`)).json()).toEqual({ status: 'ok' })
  })
})

describe('upstream failures are visible', () => {
  it('a refused port: one warning line per cause per 10 s with the count of the rest, never the upstream key; /health?deep=1 names the cause', async () => {
    const clock = manualClock(Date.now())
    const lines: string[] = []
    const gw = await startGateway({ upstreamUrl: `http://127.0.0.1:${await closedPort()}/v1`, clock, warn: (l) => lines.push(l) })
    try {
      const key = await gw.createKey({ name: 'alice', limits: NO_LIMITS })
      const admin = await gw.createKey({ name: 'root', admin: true, limits: NO_LIMITS })
      for (let i = 0; i < 20; i++) expect((await chat(gw, key)).status).toBe(502)
      expect(lines).toHaveLength(1)
      expect(lines[0]).toMatch(/^gateway: warning: upstream http:\/\/127\.0\.0\.1:\d+\/v1: connection refused/)
      clock.advance(10_001)
      expect((await chat(gw, key)).status).toBe(502)
      expect(lines).toHaveLength(2)
      expect(lines[1]).toContain('(19 more like it not shown since the last line)')
      expect(lines.join('\n')).not.toContain(UPSTREAM_KEY)
      const deep = (await (await fetch(`${gw.url}/health?deep=1`, { headers: { authorization: `Bearer ${admin}` } })).json()) as Record<string, any>
      expect(deep).toMatchObject({ status: 'degraded', upstream: { mode: 'upstream', lastSuccessAt: null, failuresSinceSuccess: 21, lastFailure: { cause: 'refused', status: null } } })
    } finally {
      await gw.stop()
    }
  })

  it('a 401 and a 500 from the upstream each print their own line with the status; a success clears the failing state', async () => {
    const mock: MockUpstream = await startMockUpstream()
    const lines: string[] = []
    const gw = await startGateway({ upstreamUrl: mock.url, warn: (l) => lines.push(l) })
    try {
      const key = await gw.createKey({ name: 'alice', limits: NO_LIMITS })
      const admin = await gw.createKey({ name: 'root', admin: true, limits: NO_LIMITS })
      mock.script({ kind: 'status', status: 401, body: JSON.stringify({ error: { message: `Incorrect API key provided: ${UPSTREAM_KEY}` } }) }, { kind: 'status', status: 500 }, { kind: 'status', status: 500 })
      expect((await chat(gw, key)).status).toBe(502)
      expect((await chat(gw, key)).status).toBe(502)
      expect((await chat(gw, key)).status).toBe(502)
      expect(lines).toHaveLength(2)
      expect(lines[0]).toContain('credentials refused (check OPENAI_API_KEY) (HTTP 401)')
      expect(lines[1]).toContain('server error (HTTP 500)')
      expect(lines.join('\n')).not.toContain(UPSTREAM_KEY)
      const failing = (await (await fetch(`${gw.url}/health?deep=1`, { headers: { authorization: `Bearer ${admin}` } })).json()) as Record<string, any>
      expect(failing).toMatchObject({ status: 'degraded', upstream: { lastFailure: { cause: 'server_error', status: 500 }, failuresSinceSuccess: 3 } })
      expect((await chat(gw, key)).status).toBe(200)
      const healed = (await (await fetch(`${gw.url}/health?deep=1`, { headers: { authorization: `Bearer ${admin}` } })).json()) as Record<string, any>
      expect(healed).toMatchObject({ status: 'ok', upstream: { failuresSinceSuccess: 0, lastFailure: { cause: 'server_error' } } })
      expect(typeof healed.upstream.lastSuccessAt).toBe('string')
    } finally {
      await gw.stop()
      await mock.close()
    }
  })

  it('an unknown host and an upstream that does not answer in time are named as such (DNS, timeout)', async () => {
    const lines: string[] = []
    const dns = await startGateway({ upstreamUrl: 'http://gateway-test.invalid/v1', warn: (l) => lines.push(l) })
    try {
      expect((await chat(dns, await dns.createKey({ name: 'alice', limits: NO_LIMITS }))).status).toBe(502)
    } finally {
      await dns.stop()
    }
    const mock = await startMockUpstream()
    const slow = await startGateway({ upstreamUrl: mock.url, firstByteTimeoutMs: 300, warn: (l) => lines.push(l) })
    try {
      mock.script({ kind: 'hang' })
      expect((await chat(slow, await slow.createKey({ name: 'alice', limits: NO_LIMITS }))).status).toBe(504)
    } finally {
      await slow.stop()
      await mock.close()
    }
    expect(lines).toEqual([
      'gateway: warning: upstream http://gateway-test.invalid/v1: DNS lookup failed (check the host name in OPENAI_BASE_URL)',
      expect.stringMatching(/^gateway: warning: upstream http:\/\/127\.0\.0\.1:\d+\/v1: no answer in time/),
    ])
  })
})
