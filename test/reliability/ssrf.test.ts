/**
 * Issue 7, scenario 4: server-side request forgery. No body field, model name or header moves
 * where the gateway connects: a canary listener on another loopback port receives nothing,
 * upstream redirects are not followed, and the upstream sees the operator's key only.
 */
import { request } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, NO_LIMITS, type TestGateway } from '../support/gateway.js'
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js'
import { expectNothingHeld, keyIdOf, rowFor, startCanary, type Canary } from './helpers.js'

const OPERATOR_KEY = 'sk-test-upstream-key-0000'

let mock: MockUpstream
let canary: Canary
let gw: TestGateway
let key: string

beforeAll(async () => {
  mock = await startMockUpstream()
  canary = await startCanary()
  gw = await startGateway({ upstreamUrl: mock.url, firstByteTimeoutMs: 1_000 })
  key = await gw.createKey({ name: 'alice', limits: NO_LIMITS })
})

afterAll(async () => {
  await gw?.stop()
  await mock?.close()
  await canary?.close()
})

/** node:http, so Host and friends are sent exactly as given. */
function send(path: string, body: unknown, headers: Record<string, string | null> = {}, method = 'POST'): Promise<{ status: number; text: string; headers: Record<string, unknown> }> {
  const data = body === undefined ? '' : JSON.stringify(body)
  const url = new URL(gw.url)
  const all: Record<string, string | number | null> = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data), authorization: `Bearer ${key}`, ...headers }
  for (const [k, v] of Object.entries(all)) if (v === null) delete all[k]
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port: url.port, path, method, headers: all as Record<string, string | number> },
      (res) => {
        let text = ''
        res.setEncoding('utf8')
        res.on('data', (c) => (text += c))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text, headers: res.headers }))
      },
    )
    req.on('error', reject)
    req.end(data)
  })
}

const base = (extra: Record<string, unknown> = {}) => ({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], ...extra })

function expectUpstreamUntouched(from: number): void {
  expect(canary.hits, `canary got: ${canary.firstBytes.join(' | ')}`).toBe(0)
  const upstream = new URL(mock.url)
  for (const r of mock.requests.slice(from)) {
    expect(r.path).toMatch(/^\/v1\/(chat\/completions|models)$/)
    expect(r.headers.host).toBe(upstream.host)
    expect(r.headers.authorization).toBe(`Bearer ${OPERATOR_KEY}`)
    expect(r.headers['x-api-key']).toBeUndefined()
    const all = JSON.stringify(r.headers)
    expect(all).not.toContain(key)
    expect(all).not.toContain(String(canary.port))
    expect(all).not.toMatch(/evil|attacker/)
  }
}

describe('request fields cannot move the upstream', () => {
  const fields = () => {
    const c = canary.url
    return {
      api_base: `${c}/v1`,
      base_url: `${c}/v1`,
      baseURL: `${c}/v1`,
      api_key: 'sk-attacker-key',
      url: `${c}/v1/chat/completions`,
      endpoint: c,
      azure_endpoint: c,
      organization: 'org-evil',
      extra_body: { base_url: `${c}/v1`, api_base: `${c}/v1`, url: c },
      extra_headers: { Authorization: 'Bearer sk-attacker-key', Host: `127.0.0.1:${canary.port}` },
      extra_query: { 'api-version': '1', url: c },
      headers: { host: `127.0.0.1:${canary.port}` },
      constructor: { prototype: { baseURL: `${c}/v1` } },
      __proto__: { baseURL: `${c}/v1`, base_url: `${c}/v1` },
    }
  }

  it('base URL fields, nested extra_body, prototype keys: the mock answers, the canary hears nothing', async () => {
    const from = mock.requests.length
    for (const stream of [false, true]) {
      const body = JSON.parse(JSON.stringify(base({ ...fields(), stream }))) as Record<string, unknown>
      // JSON.stringify drops a literal __proto__ key; put it back as raw JSON text.
      const text = JSON.stringify(body).replace(/^\{/, `{"__proto__":{"baseURL":"${canary.url}/v1"},`)
      const res = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: text })
      expect(res.status).toBe(200)
      await res.text()
    }
    expect(mock.requests.length - from).toBe(2)
    expectUpstreamUntouched(from)
    expect(mock.requests.at(-1)!.headers.authorization).toBe(`Bearer ${OPERATOR_KEY}`)
  })

  it('odd model names (@ # / .. URLs) stay model names in the body', async () => {
    const from = mock.requests.length
    const models = [
      `gpt-4o-mini@127.0.0.1:${canary.port}`,
      `http://127.0.0.1:${canary.port}/v1`,
      `//127.0.0.1:${canary.port}/x`,
      `../../../127.0.0.1:${canary.port}`,
      `gpt-4o#@127.0.0.1:${canary.port}`,
      `gpt-4o/../../..`,
      '..',
      '../models',
      `@127.0.0.1:${canary.port}`,
      `gpt-4o?x=http://127.0.0.1:${canary.port}`,
      `%2e%2e%2f127.0.0.1:${canary.port}`,
    ]
    for (const model of models) {
      for (const stream of [false, true]) {
        const res = await send('/v1/chat/completions', base({ model, stream }))
        expect([200, 400], model).toContain(res.status)
        if (res.status === 200) expect(mock.requests.at(-1)!.body!.model).toBe(model)
      }
    }
    expectUpstreamUntouched(from)
    for (const r of mock.requests.slice(from)) expect(r.path).toBe('/v1/chat/completions')
  })

  it('a model id in the /v1/models/:model path is never fetched from anywhere', async () => {
    const from = mock.requests.length
    for (const id of [`http:%2F%2F127.0.0.1:${canary.port}`, `..%2F..%2F127.0.0.1:${canary.port}`, `@127.0.0.1:${canary.port}`]) {
      const res = await send(`/v1/models/${id}`, undefined, {}, 'GET')
      expect(res.status).toBe(404)
    }
    expectUpstreamUntouched(from)
  })
})

describe('request headers cannot move the upstream', () => {
  it('Host, X-Forwarded-*, Forwarded and made-up upstream headers', async () => {
    const from = mock.requests.length
    const hostile = {
      host: `127.0.0.1:${canary.port}`,
      'x-forwarded-host': `127.0.0.1:${canary.port}`,
      'x-forwarded-proto': 'http',
      'x-forwarded-port': String(canary.port),
      'x-forwarded-server': `127.0.0.1:${canary.port}`,
      forwarded: `for=1.2.3.4;host=127.0.0.1:${canary.port};proto=http`,
      'x-original-host': `127.0.0.1:${canary.port}`,
      'x-host': `127.0.0.1:${canary.port}`,
      'x-upstream': canary.url,
      'openai-base-url': `${canary.url}/v1`,
      'x-openai-base-url': `${canary.url}/v1`,
      'openai-organization': 'org-evil',
      'x-api-key': key,
    }
    for (const path of ['/v1/chat/completions', '/chat']) {
      for (const stream of [false, true]) {
        const body = path === '/chat' ? { message: 'hi' } : base({ stream })
        const res = await send(path, body, hostile)
        expect(res.status, `${path} stream=${stream}`).toBe(200)
        if (path === '/chat') break
      }
    }
    const models = await send('/v1/models', undefined, hostile, 'GET')
    expect(models.status).toBe(200)
    expect(mock.requests.length - from).toBeGreaterThanOrEqual(3)
    expectUpstreamUntouched(from)
  })
})

describe('upstream redirects are not followed', () => {
  for (const status of [301, 302, 303, 307, 308]) {
    it(`${status} with Location at the canary → 502 upstream_redirect, canary silent, nothing held`, async () => {
      const from = mock.requests.length
      const location = `${canary.url}/v1/chat/completions`
      for (const [path, body] of [
        ['/v1/chat/completions', base()],
        ['/v1/chat/completions', base({ stream: true })],
        ['/chat', { message: 'hi' }],
      ] as const) {
        mock.script({ kind: 'status', status, headers: { location }, body: '' })
        const id = `redirect-${status}-${path}-${'stream' in body ? 's' : 'n'}`
        const res = await send(path, body, { 'x-request-id': id.replace(/\//g, '_') })
        expect(res.status, `${path}`).toBe(502)
        expect(JSON.parse(res.text)).toMatchObject({ error: { type: 'upstream_error', code: 'upstream_redirect' } })
        expect(res.headers.location).toBeUndefined()
        expect(res.text).not.toContain(String(canary.port))
        const row = await rowFor(gw, id.replace(/\//g, '_'))
        expect(row).toMatchObject({ status: 502, errorCode: 'upstream_redirect', totalTokens: 0 })
      }
      expect(mock.requests.length - from).toBe(3)
      expectUpstreamUntouched(from)
      await expectNothingHeld(gw, [await keyIdOf(gw, 'alice')])
    })
  }
})

describe('the client\'s credentials never travel upstream', () => {
  it('neither Authorization nor X-API-Key nor the key in any form reaches the mock', async () => {
    const from = mock.requests.length
    const statuses = [
      (await send('/v1/chat/completions', base(), { authorization: `Bearer ${key}` })).status,
      (await send('/v1/chat/completions', base({ stream: true }), { authorization: null, 'x-api-key': key })).status,
      (await send('/chat', { message: 'hi' }, { authorization: `bearer ${key}`, 'x-api-key': key })).status,
    ]
    expect(statuses).toEqual([200, 200, 200])
    expect(mock.requests.length - from).toBe(3)
    for (const r of mock.requests.slice(from)) {
      expect(r.headers.authorization).toBe(`Bearer ${OPERATOR_KEY}`)
      expect(JSON.stringify(r)).not.toContain(key.slice(3, 11))
    }
    expectUpstreamUntouched(from)
  })
})
