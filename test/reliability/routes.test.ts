/**
 * Issue 7, scenario 3: the route inventory, read from the Hono app itself. Every route but
 * /health refuses a request without a key, whatever the method or the spelling of the path.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { NO_LIMITS, type TestGateway } from '../support/gateway.js'
import type { MockUpstream } from '../support/mock-upstream.js'
import { rawHttp , startOpenGateway } from './helpers.js'

let mock: MockUpstream
let gw: TestGateway
let port: number
let key: string
let admin: string

interface Route {
  method: string
  path: string
  /** A concrete path that matches the route. */
  concrete: string
}

let routes: Route[] = []

beforeAll(async () => {
  ;({ mock, gw } = await startOpenGateway())
  port = Number(new URL(gw.url).port)
  key = await gw.createKey({ name: 'alice', limits: NO_LIMITS })
  admin = await gw.createKey({ name: 'root', admin: true, limits: NO_LIMITS })
  const seen = new Set<string>()
  for (const r of gw.built.app.routes) {
    // The dashboard is exempt from the key check on purpose: it has its own session login (below, and test/dashboard/).
    if (r.path === '/*' || r.path === '*' || r.path === '/health' || r.path === '/dashboard' || r.path === '/dashboard/*') continue
    const id = `${r.method} ${r.path}`
    if (seen.has(id)) continue
    seen.add(id)
    routes.push({ method: r.method === 'ALL' ? 'GET' : r.method, path: r.path, concrete: r.path.replace(/:[A-Za-z_]+(\{[^}]*\})?/g, 'gpt-4o-mini') })
  }
})

afterAll(async () => {
  await gw?.stop()
  await mock?.close()
})

function variantsOf(path: string): string[] {
  const tail = path.slice(1)
  return [
    path,
    `/${path}`, // //v1/...
    `${path}/`,
    path.toUpperCase(),
    `/.${path}`,
    `/health/..${path}`,
    `/health/%2e%2e${path}`,
    `/health/%2E%2E${path}`,
    `/health/..%2f${tail}`,
    `/health%2f..${path}`,
    `${path.replace(/\//g, '%2f')}`,
    `/${tail.replace(/\//g, '%2F')}`,
    `/%${tail.charCodeAt(0).toString(16)}${tail.slice(1)}`,
    `${path}?x=1`,
    `${path};x=1`,
    `${path}%00`,
    `${path}%20`,
    `${path}#fragment`,
    `${path}/.`,
    `${path}/..${path}`,
    `/v1/..${path}`,
    `http://127.0.0.1${path}`,
    `http://evil.example${path}`,
  ]
}

describe('route inventory', () => {
  it('is read from the app and holds the documented routes', () => {
    const ids = routes.map((r) => `${r.method} ${r.path}`)
    for (const documented of ['POST /v1/chat/completions', 'GET /v1/models', 'POST /chat', 'GET /usage', 'GET /metrics']) expect(ids).toContain(documented)
    expect(gw.built.app.routes.some((r) => r.path === '/health')).toBe(true)
  })

  it('with a key, every route is reachable (so the refusals below are about the key)', async () => {
    for (const r of routes) {
      const res = await fetch(`${gw.url}${r.concrete}`, {
        method: r.method,
        headers: { authorization: `Bearer ${r.concrete === '/metrics' ? admin : key}`, 'content-type': 'application/json' },
        body: r.method === 'POST' ? JSON.stringify(r.concrete === '/chat' ? { message: 'hi' } : { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }) : undefined,
      })
      await res.arrayBuffer()
      expect(res.status, `${r.method} ${r.concrete}`).toBe(200)
    }
  })

  it('without a key, every route but /health answers 401, for its method, HEAD and others (a 405 is for key holders only)', async () => {
    for (const r of routes) {
      for (const method of [r.method, 'HEAD', 'GET', 'POST', 'PUT', 'DELETE', 'PATCH']) {
        const res = await fetch(`${gw.url}${r.concrete}`, { method, body: ['POST', 'PUT', 'PATCH'].includes(method) ? '{}' : undefined })
        await res.arrayBuffer()
        expect(res.status, `${method} ${r.concrete}`).toBe(401)
        expect(res.headers.get('www-authenticate'), `${method} ${r.concrete}`).toMatch(/^Bearer\b/)
      }
    }
  })

  it('no spelling of a protected path reaches its handler without a key (raw request targets)', async () => {
    const leaks: string[] = []
    const upstreamCalls = mock.requests.length
    for (const r of routes) {
      for (const target of variantsOf(r.concrete)) {
        for (const method of [r.method, 'HEAD', 'OPTIONS']) {
          const body = method === 'POST' ? '{"message":"hi","model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}' : ''
          const res = await rawHttp(port, `${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`)
          // 401 (auth runs for every path), or 400/404 from the parser for targets it refuses;
          // OPTIONS is answered without a key, with no body (CORS is off).
          const ok = method === 'OPTIONS' ? [400, 404].includes(res.status) || (res.status === 204 && res.body === '') : [400, 401, 404].includes(res.status)
          if (!ok) leaks.push(`${method} ${target} → ${res.status} ${res.body.slice(0, 80)}`)
          if (/"(key_id|total_tokens|object":"list|response)"/.test(res.body) || /gateway_requests_total/.test(res.body)) leaks.push(`${method} ${target} → data: ${res.body.slice(0, 80)}`)
        }
      }
    }
    expect(leaks).toEqual([])
    expect(mock.requests.length, 'upstream calls made by unauthenticated requests').toBe(upstreamCalls)
  })

  it('rewrite headers (X-Original-URL, X-Rewrite-URL, X-Forwarded-Prefix) do not route /health to a protected handler', async () => {
    for (const r of routes) {
      for (const header of ['X-Original-URL', 'X-Rewrite-URL', 'X-Forwarded-Prefix', 'X-Forwarded-Path']) {
        const res = await rawHttp(port, `GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n${header}: ${r.concrete}\r\nConnection: close\r\n\r\n`)
        expect(res.status).toBe(200)
        expect(JSON.parse(res.body)).toEqual({ status: 'ok' })
      }
    }
  })

  it('the dashboard, exempt from the key check, sends a browser without a session to its login form and refuses its forms', async () => {
    expect(gw.built.app.routes.some((r) => r.path === '/dashboard/*')).toBe(true)
    for (const path of ['/dashboard', '/dashboard/', '/dashboard/usage', '/dashboard/budgets', '/dashboard/errors', '/dashboard/log', '/dashboard/log.csv', '/dashboard/keys', '/dashboard/nope']) {
      for (const method of ['GET', 'HEAD']) {
        const res = await fetch(`${gw.url}${path}`, { method, redirect: 'manual' })
        expect(res.status, `${method} ${path}`).toBe(303)
        expect(res.headers.get('location'), `${method} ${path}`).toBe('/dashboard/login')
      }
    }
    for (const path of ['/dashboard/keys', '/dashboard/keys/x/revoke', '/dashboard/logout']) {
      const res = await fetch(`${gw.url}${path}`, { method: 'POST', headers: { origin: gw.url, 'content-type': 'application/x-www-form-urlencoded' }, body: 'name=x' })
      expect(res.status, path).toBe(403)
    }
    expect(await gw.admin.findKey('x')).toBeUndefined()
  })

  it('/health answers without a key and says nothing more than ok', async () => {
    for (const method of ['GET', 'HEAD']) {
      const res = await fetch(`${gw.url}/health`, { method })
      expect(res.status).toBe(200)
      if (method === 'GET') expect(await res.json()).toEqual({ status: 'ok' })
    }
  })

  it('OPTIONS is answered without a key: 204 with Allow and no CORS headers on a route, 404 elsewhere', async () => {
    for (const r of routes) {
      const res = await fetch(`${gw.url}${r.concrete}`, { method: 'OPTIONS', headers: { origin: 'https://evil.example', 'access-control-request-method': r.method } })
      expect(res.status, r.concrete).toBe(204)
      expect(res.headers.get('allow'), r.concrete).toContain(r.method)
      expect(res.headers.get('access-control-allow-origin'), r.concrete).toBeNull()
    }
    const unknown = await fetch(`${gw.url}/v1/nope`, { method: 'OPTIONS' })
    expect(unknown.status).toBe(404)
    expect(((await unknown.json()) as { error: { code: string } }).error.code).toBe('not_found')
  })
})
