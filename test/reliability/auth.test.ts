/**
 * Issue 7, scenario 1: the authentication header matrix. Every variant gets a fixed,
 * documented answer (200 for a valid key, else 401 with WWW-Authenticate, 400 or 431) and
 * never a 500. Unknown keys all look the same; a revoked or an expired key is told so (its
 * holder has the whole secret, so that reveals nothing new) and otherwise answered alike.
 */
import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { KeyManager } from '../../src/core/keys.js'
import { startGateway, NO_LIMITS, type TestGateway } from '../support/gateway.js'
import type { MockUpstream } from '../support/mock-upstream.js'
import { rawHttp, rowFor, sleep , startOpenGateway } from './helpers.js'

let mock: MockUpstream
let gw: TestGateway
let port: number
let key: string
let other: string
let revoked: string
let expired: string
let n = 0

const wellFormedUnknown = () => `gw-${randomBytes(32).toString('base64url')}`

beforeAll(async () => {
  ;({ mock, gw } = await startOpenGateway())
  port = Number(new URL(gw.url).port)
  key = await gw.createKey({ name: 'alice', limits: NO_LIMITS })
  other = await gw.createKey({ name: 'bob', limits: NO_LIMITS })
  revoked = await gw.createKey({ name: 'revoked', limits: NO_LIMITS })
  await new KeyManager(gw.admin, { now: Date.now }).revoke('revoked')
  expired = await gw.createKey({ name: 'expired', limits: NO_LIMITS, expiresInMs: 1 })
  await sleep(20)
  await gw.built.gateway.refresh(true)
})

afterAll(async () => {
  await gw?.stop()
  await mock?.close()
})

async function call(headers: Record<string, string>, path = '/usage'): Promise<{ status: number; body: string; headers: Headers; id: string }> {
  const id = `auth-${++n}`
  const res = await fetch(`${gw.url}${path}`, { headers: { 'x-request-id': id, ...headers } })
  return { status: res.status, body: await res.text(), headers: res.headers, id }
}

function expect401(r: { status: number; body: string; headers: Headers }, what: string): void {
  expect(r.status, what).toBe(401)
  expect(r.headers.get('www-authenticate'), what).toMatch(/^Bearer\b/)
  expect(JSON.parse(r.body), what).toMatchObject({ error: { type: 'authentication_error', code: 'invalid_api_key' } })
}

describe('a valid key is accepted in every documented spelling', () => {
  const cases: [string, () => Record<string, string>][] = [
    ['Authorization: Bearer KEY', () => ({ authorization: `Bearer ${key}` })],
    ['scheme in lower case', () => ({ authorization: `bearer ${key}` })],
    ['scheme in upper case', () => ({ authorization: `BEARER ${key}` })],
    ['scheme in mixed case', () => ({ authorization: `bEaReR ${key}` })],
    ['several spaces after the scheme', () => ({ authorization: `Bearer     ${key}` })],
    ['a tab after the scheme', () => ({ authorization: `Bearer\t${key}` })],
    ['X-API-Key: KEY', () => ({ 'x-api-key': key })],
    ['X-API-Key with surrounding blanks', () => ({ 'X-API-KEY': `  ${key}\t` })],
    ['both headers with the same key', () => ({ authorization: `Bearer ${key}`, 'x-api-key': key })],
  ]
  it.each(cases)('%s → 200', async (_name, headers) => {
    const r = await call(headers())
    expect(r.status).toBe(200)
    expect(JSON.parse(r.body)).toMatchObject({ key_name: 'alice' })
  })

  it('raw: leading whitespace, an upper-case header name', async () => {
    for (const line of [`Authorization: \t Bearer ${key}`, `AUTHORIZATION: Bearer ${key}`, `x-API-key:${key}`]) {
      const r = await rawHttp(port, `GET /usage HTTP/1.1\r\nHost: gw\r\n${line}\r\nConnection: close\r\n\r\n`)
      expect(r.status, line).toBe(200)
    }
  })
})

describe('everything else is refused with a fixed answer, never a 500', () => {
  const refused: [string, () => Record<string, string>][] = [
    ['no key at all', () => ({})],
    ['an empty Authorization', () => ({ authorization: '' })],
    ['an empty X-API-Key', () => ({ 'x-api-key': '' })],
    ['X-API-Key of blanks', () => ({ 'x-api-key': '   ' })],
    ['Bearer without a token', () => ({ authorization: 'Bearer' })],
    ['Bearer and blanks', () => ({ authorization: 'Bearer    ' })],
    ['another scheme (Basic)', () => ({ authorization: `Basic ${Buffer.from(`user:${key}`).toString('base64')}` })],
    ['another scheme (Token)', () => ({ authorization: `Token ${key}` })],
    ['the key without a scheme', () => ({ authorization: key })],
    ['no space after the scheme', () => ({ authorization: `Bearer${key}` })],
    ['a quoted token', () => ({ authorization: `Bearer "${key}"` })],
    ['a token followed by more text', () => ({ authorization: `Bearer ${key} extra` })],
    ['two tokens, comma-separated', () => ({ authorization: `Bearer ${key}, Bearer ${other}` })],
    ['an unknown well-formed key', () => ({ authorization: `Bearer ${wellFormedUnknown()}` })],
    ['an unknown key in X-API-Key', () => ({ 'x-api-key': wellFormedUnknown() })],
    ['the key minus its last character', () => ({ authorization: `Bearer ${key.slice(0, -1)}` })],
    ['the key plus one character', () => ({ authorization: `Bearer ${key}A` })],
    ['the key in lower case', () => ({ authorization: `Bearer ${key.toLowerCase()}` })],
    ['an OpenAI-looking key', () => ({ authorization: `Bearer sk-proj-${randomBytes(24).toString('base64url')}` })],
    ['a latin-1 (non-ASCII) key', () => ({ authorization: `Bearer gw-${'é'.repeat(43)}` })],
    ['a 12 KB key (under the header limit)', () => ({ authorization: `Bearer gw-${'A'.repeat(12 * 1024)}` })],
  ]
  it.each(refused)('%s → 401 with WWW-Authenticate', async (name, headers) => {
    const r = await call(headers())
    expect401(r, name)
    const row = await rowFor(gw, r.id)
    expect(row).toMatchObject({ status: 401, keyId: null, errorCode: 'invalid_api_key' })
  })

  it('a key in the query string is not a key', async () => {
    expect401(await call({}, `/usage?api_key=${encodeURIComponent(key)}&key=${encodeURIComponent(key)}`), 'query')
  })

  const conflicting: [string, () => Record<string, string>][] = [
    ['two different valid keys', () => ({ authorization: `Bearer ${key}`, 'x-api-key': other })],
    ['a valid bearer and an unknown X-API-Key', () => ({ authorization: `Bearer ${key}`, 'x-api-key': wellFormedUnknown() })],
    ['an unknown bearer and a valid X-API-Key', () => ({ authorization: `Bearer ${wellFormedUnknown()}`, 'x-api-key': key })],
    ['a Basic Authorization and a valid X-API-Key', () => ({ authorization: 'Basic dXNlcjpwYXNz', 'x-api-key': key })],
  ]
  it.each(conflicting)('%s → 400 conflicting_credentials', async (_name, headers) => {
    const r = await call(headers())
    expect(r.status).toBe(400)
    expect(JSON.parse(r.body)).toMatchObject({ error: { type: 'invalid_request_error', code: 'conflicting_credentials' } })
    expect(r.body).not.toContain(key)
  })

  it('a 64 KB key → 431, in either header', async () => {
    const big = `gw-${'A'.repeat(64 * 1024)}`
    for (const line of [`Authorization: Bearer ${big}`, `X-API-Key: ${big}`]) {
      const r = await rawHttp(port, `GET /usage HTTP/1.1\r\nHost: gw\r\n${line}\r\nConnection: close\r\n\r\n`)
      expect(r.status, `${line.slice(0, 20)}… (${r.error ?? 'no socket error'})`).toBe(431)
    }
    // The server is still fine afterwards.
    expect((await call({ authorization: `Bearer ${key}` })).status).toBe(200)
  })

  it('a NUL byte in a key header → 400 from the HTTP parser', async () => {
    for (const line of [`Authorization: Bearer ${key}\x00`, `X-API-Key: gw-\x00${key.slice(3)}`]) {
      const r = await rawHttp(port, `GET /usage HTTP/1.1\r\nHost: gw\r\n${line}\r\nConnection: close\r\n\r\n`)
      expect(r.status).toBe(400)
    }
  })

  it('UTF-8 (non-ASCII) bytes in a key header → 401', async () => {
    for (const value of [`Bearer gw-${'ключ'.repeat(11)}`, `Bearer ${key.slice(0, 10)}ü${key.slice(11)}`]) {
      const r = await rawHttp(port, Buffer.concat([Buffer.from('GET /usage HTTP/1.1\r\nHost: gw\r\nAuthorization: '), Buffer.from(value, 'utf8'), Buffer.from('\r\nConnection: close\r\n\r\n')]))
      expect(r.status).toBe(401)
      expect(r.headers['www-authenticate']?.[0]).toMatch(/^Bearer\b/)
    }
  })

  it('repeated key headers are joined by the parser and refused (401), not half-accepted', async () => {
    for (const lines of [
      [`Authorization: Bearer ${key}`, `Authorization: Bearer ${other}`],
      [`X-API-Key: ${key}`, `X-API-Key: ${other}`],
      [`Authorization: Bearer ${key}`, `Authorization: Bearer ${key}`],
    ]) {
      const r = await rawHttp(port, `GET /usage HTTP/1.1\r\nHost: gw\r\n${lines.join('\r\n')}\r\nConnection: close\r\n\r\n`)
      expect(r.status, lines.join(' | ').slice(0, 60)).toBe(401)
    }
  })

  it('an obs-folded (line-continued) Authorization is refused, not a 500', async () => {
    const r = await rawHttp(port, `GET /usage HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer\r\n ${key}\r\nConnection: close\r\n\r\n`)
    expect([400, 401]).toContain(r.status)
  })
})

describe('unknown keys look the same; revoked and expired ones are told why, and nothing else differs', () => {
  const codeOf = (body: unknown) => (body as { error: { code: string } }).error.code
  const withoutCode = (body: unknown) => {
    const { error } = body as { error: Record<string, unknown> }
    return { ...error, code: undefined, message: undefined }
  }

  it('same status and headers; unknown and near-miss keys get the same body, revoked and expired keys their own code', async () => {
    const answers = await Promise.all(
      [wellFormedUnknown(), `gw-${key.slice(3, 7)}${randomBytes(32).toString('base64url').slice(4)}`, revoked, expired].map(async (k) => {
        const r = await call({ authorization: `Bearer ${k}` })
        const headers = [...r.headers].filter(([name]) => !['x-request-id', 'date', 'content-length'].includes(name)).sort()
        return { status: r.status, body: JSON.parse(r.body) as unknown, headers, id: r.id }
      }),
    )
    const [unknown, nearMiss, wasRevoked, wasExpired] = answers
    expect(nearMiss.body).toEqual(unknown.body)
    for (const a of answers) {
      expect(a.status).toBe(401)
      expect(a.headers).toEqual(unknown.headers)
      expect(withoutCode(a.body)).toEqual(withoutCode(unknown.body))
    }
    expect(answers.map((a) => codeOf(a.body))).toEqual(['invalid_api_key', 'invalid_api_key', 'key_revoked', 'key_expired'])
    expect((wasRevoked.body as { error: { message: string } }).error.message).toMatch(/^This key was revoked at \d{4}-\d{2}-\d{2}T/)
    expect((wasExpired.body as { error: { message: string } }).error.message).toMatch(/^This key expired at \d{4}-\d{2}-\d{2}T/)
    expect(await rowFor(gw, wasRevoked.id)).toMatchObject({ status: 401, keyId: null, errorCode: 'key_revoked' })
  })

  it('the same on a model route (POST /v1/chat/completions), and nothing reaches the upstream', async () => {
    const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] })
    const answers = await Promise.all(
      [wellFormedUnknown(), revoked, expired].map(async (k) => {
        const res = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${k}`, 'content-type': 'application/json' }, body })
        return { status: res.status, body: await res.json() }
      }),
    )
    expect(answers.map((a) => a.status)).toEqual([401, 401, 401])
    expect(answers.map((a) => codeOf(a.body))).toEqual(['invalid_api_key', 'key_revoked', 'key_expired'])
    expect(mock.requests.filter((r) => r.path.endsWith('/chat/completions'))).toHaveLength(0)
  })
})

describe('brute force (the built-in per-IP failure limit)', () => {
  it('past 10 failures a minute, failures get 429 with Retry-After while a valid key still passes', async () => {
    const fresh = await startGateway({ upstreamUrl: mock.url })
    try {
      const k = await fresh.createKey({ name: 'carol', limits: NO_LIMITS })
      const statuses: number[] = []
      for (let i = 0; i < 12; i++) {
        const res = await fetch(`${fresh.url}/usage`, { headers: { authorization: `Bearer ${wellFormedUnknown()}` } })
        statuses.push(res.status)
        if (res.status === 429) {
          expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1)
          expect(await res.json()).toMatchObject({ error: { code: 'auth_rate_limit_exceeded' } })
        } else await res.arrayBuffer()
      }
      expect(statuses).toEqual([...Array(10).fill(401), 429, 429])
      expect((await fetch(`${fresh.url}/usage`, { headers: { authorization: `Bearer ${k}` } })).status).toBe(200)
    } finally {
      await fresh.stop()
    }
  })

  it('a revoked key counts as a failure like an unknown one', async () => {
    const fresh = await startGateway({ upstreamUrl: mock.url })
    try {
      const gone = await fresh.createKey({ name: 'gone', limits: NO_LIMITS })
      await new KeyManager(fresh.admin, { now: Date.now }).revoke('gone')
      await fresh.built.gateway.refresh(true)
      const codes: string[] = []
      for (let i = 0; i < 11; i++) {
        const res = await fetch(`${fresh.url}/usage`, { headers: { authorization: `Bearer ${gone}` } })
        codes.push(((await res.json()) as { error: { code: string } }).error.code)
      }
      expect(codes).toEqual([...Array(10).fill('key_revoked'), 'auth_rate_limit_exceeded'])
    } finally {
      await fresh.stop()
    }
  })
})
