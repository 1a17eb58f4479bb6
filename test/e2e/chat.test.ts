import { request } from 'node:http'
import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { KeyManager } from '../../src/core/keys.js'
import { startGateway, settle, NO_LIMITS, type TestGateway } from '../support/gateway.js'
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js'

let upstream: MockUpstream
let gw: TestGateway
let key: string

beforeAll(async () => {
  upstream = await startMockUpstream()
  gw = await startGateway({ upstreamUrl: upstream.url, firstByteTimeoutMs: 500 })
  key = await gw.createKey({ name: 'alice', limits: NO_LIMITS })
})

afterAll(async () => {
  await gw.stop()
  await upstream.close()
})

const chat = (body: unknown, k: string | null = key, headers?: Record<string, string>) => gw.post('/chat', k, body, headers)

describe('POST /chat (the seed contract)', () => {
  it('answers {response, tokens_used, latency_ms} with the upstream\'s real usage', async () => {
    const before = upstream.reportedTokens
    const res = await chat({ message: 'hello gateway' })
    expect(res.status).toBe(200)
    const body = (await res.json()) as { response: string; tokens_used: number; latency_ms: number }
    expect(body.response).toBe('Echo: hello gateway')
    expect(body.tokens_used).toBe(upstream.reportedTokens - before)
    expect(body.tokens_used).toBeGreaterThan(0)
    expect(body.latency_ms).toBeGreaterThan(0)
    expect(res.headers.get('x-request-id')).toMatch(/^req_/)
  })

  it('forwards with the operator\'s key, the configured model and max_tokens 500 by default', async () => {
    await chat({ message: 'which key?' })
    const last = upstream.requests.at(-1)!
    expect(last.headers.authorization).toBe('Bearer sk-test-upstream-key-0000')
    expect(last.body).toMatchObject({ model: 'gpt-4o-mini', max_tokens: 500, messages: [{ role: 'user', content: 'which key?' }] })
  })

  it('keeps the seed\'s guard messages as their first sentence, from the default limits', async () => {
    const seed = await gw.createKey({ name: 'seed-defaults', limits: { rpm: null } })
    const chat = (body: unknown) => gw.post('/chat', seed, body)
    const tooMany = await chat({ message: 'hi', max_tokens: 1001 })
    expect(tooMany.status).toBe(400)
    expect(await tooMany.json()).toEqual({ error: { message: expect.stringMatching(/^max_tokens exceeds limit of 1000\. /), type: 'invalid_request_error', code: 'max_tokens_exceeded', param: 'max_tokens' } })
    const tooLong = await chat({ message: 'x'.repeat(2001) })
    expect(tooLong.status).toBe(400)
    expect(((await tooLong.json()) as { error: { message: string } }).error.message).toMatch(/^Message too long \(max 2000 characters\)\. /)
    expect((await chat({ message: 'x'.repeat(2000), max_tokens: 1000 })).status).toBe(200)
  })

  it.each([
    ['not json', '{"message": ', null],
    ['empty body', '', null],
    ['an array', [1, 2], null],
    ['missing message', { max_tokens: 5 }, 'message'],
    ['message of the wrong type', { message: 42 }, 'message'],
    ['blank message', { message: '   ' }, 'message'],
    ['max_tokens zero', { message: 'hi', max_tokens: 0 }, 'max_tokens'],
    ['max_tokens negative', { message: 'hi', max_tokens: -5 }, 'max_tokens'],
    ['max_tokens fractional', { message: 'hi', max_tokens: 1.5 }, 'max_tokens'],
    ['max_tokens as a string', { message: 'hi', max_tokens: '10' }, 'max_tokens'],
  ])('refuses %s with 400 naming the field, before any upstream call', async (_name, body, param) => {
    const calls = upstream.requests.length
    const res = await chat(body)
    expect(res.status).toBe(400)
    const json = (await res.json()) as { error: { type: string; param: string | null; message: string } }
    expect(json.error.type).toBe('invalid_request_error')
    expect(json.error.param).toBe(param)
    expect(upstream.requests.length).toBe(calls)
  })

  it('refuses a body over 1 MiB with 413, with or without Content-Length', async () => {
    const big = JSON.stringify({ message: 'x'.repeat(1024 * 1024 + 10) })
    expect((await chat(big)).status).toBe(413)
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(`${gw.url}/chat`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'transfer-encoding': 'chunked' } }, (res) => {
        res.resume()
        resolve(res.statusCode ?? 0)
      })
      req.on('error', reject)
      for (let i = 0; i < 20; i++) req.write('x'.repeat(64 * 1024))
      req.end()
    })
    expect(status).toBe(413)
  })
})

describe('GET /health', () => {
  it('answers without a key', async () => {
    const res = await fetch(`${gw.url}/health`)
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({ status: 'ok' })
  })
})

describe('API keys', () => {
  it('accepts X-API-Key and Authorization: Bearer alike', async () => {
    expect((await chat({ message: 'a' }, null, { 'x-api-key': key })).status).toBe(200)
    expect((await chat({ message: 'b' }, null, { authorization: `bearer ${key}` })).status).toBe(200)
  })

  it('refuses missing, unknown and malformed keys with 401 in OpenAI\'s shape', async () => {
    for (const k of [null, 'gw-' + 'A'.repeat(43), 'sk-not-ours', key.slice(0, -1) + (key.endsWith('A') ? 'B' : 'A')]) {
      const res = await chat({ message: 'hi' }, k)
      expect(res.status).toBe(401)
      expect(res.headers.get('www-authenticate')).toContain('Bearer')
      expect(res.headers.get('x-request-id')).toMatch(/^req_/)
      const json = (await res.json()) as { error: { type: string; code: string } }
      expect(json.error).toMatchObject({ type: 'authentication_error', code: 'invalid_api_key' })
    }
  })

  it('refuses a key revoked by another connection (the CLI) within a second, without restart', async () => {
    const k = await gw.createKey({ name: 'to-revoke', limits: NO_LIMITS })
    expect((await chat({ message: 'hi' }, k)).status).toBe(200)
    await new KeyManager(gw.admin, { now: Date.now }).revoke('to-revoke')
    await settle()
    expect((await chat({ message: 'hi' }, k)).status).toBe(401)
  })

  it('refuses an expired key', async () => {
    const k = await gw.createKey({ name: 'short-lived', expiresInMs: 1000, limits: NO_LIMITS })
    expect((await chat({ message: 'hi' }, k)).status).toBe(200)
    await settle(1100)
    expect((await chat({ message: 'hi' }, k)).status).toBe(401)
  })

  it('rotation: the new secret works at once; the old one only during the grace period', async () => {
    const old = await gw.createKey({ name: 'rotating', limits: NO_LIMITS })
    const manager = new KeyManager(gw.admin, { now: Date.now })
    const rotated = await manager.rotate('rotating', 600)
    await settle(300)
    expect((await chat({ message: 'new' }, rotated.secret)).status).toBe(200)
    expect((await chat({ message: 'old' }, old)).status).toBe(200)
    await settle(500)
    expect((await chat({ message: 'old' }, old)).status).toBe(401)
    expect((await chat({ message: 'new' }, rotated.secret)).status).toBe(200)
  })
})

describe('upstream failures', () => {
  it('maps an upstream 500 to 502 with a clean message', async () => {
    upstream.script({ kind: 'status', status: 500, body: '{"error":{"message":"boom with sk-test-upstream-key-0000"}}' })
    const res = await chat({ message: 'hi' })
    expect(res.status).toBe(502)
    const text = await res.text()
    expect(JSON.parse(text)).toMatchObject({ error: { type: 'upstream_error', code: 'upstream_error' } })
    expect(text).not.toContain('sk-test')
  })

  it('maps an upstream that does not answer to 504', async () => {
    upstream.script({ kind: 'hang' })
    const res = await chat({ message: 'hi' })
    expect(res.status).toBe(504)
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('upstream_timeout')
  })

  it('maps a refused connection to 502', async () => {
    const dead = await startMockUpstream()
    const url = dead.url
    await dead.close()
    const other = await startGateway({ upstreamUrl: url })
    try {
      const k = await other.createKey({ name: 'x', limits: NO_LIMITS })
      const res = await other.post('/chat', k, { message: 'hi' })
      expect(res.status).toBe(502)
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('upstream_unreachable')
    } finally {
      await other.stop()
    }
  })

  it('never writes the upstream key or a whole client key to the log files', async () => {
    await gw.built.requestLog.drain()
    for (const name of readdirSync(gw.dir)) {
      const content = readFileSync(join(gw.dir, name)).toString('latin1')
      expect(content).not.toContain('sk-test-upstream-key')
      expect(content).not.toContain(key.slice(3, 11))
    }
  })
})
