import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse } from 'csv-parse/sync'
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { runJson, spawnServe } from '../support/cli.js'
import { startGateway, NO_LIMITS, tempDir, type TestGateway } from '../support/gateway.js'

/** Logs in over plain HTTP as a browser would; returns the session cookie and the page's CSRF token. */
async function login(gw: TestGateway, key: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${gw.url}/dashboard/login`, {
    method: 'POST',
    redirect: 'manual',
    headers: { origin: gw.url, 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams({ key }),
  })
  const setCookie = res.headers.get('set-cookie') ?? ''
  const cookie = setCookie.split(';')[0]
  const page = cookie ? await (await fetch(`${gw.url}/dashboard/keys`, { headers: { cookie } })).text() : ''
  const csrf = /name="csrf" value="([^"]+)"/.exec(page)?.[1] ?? ''
  return { res, setCookie, cookie, csrf }
}

describe('dashboard over HTTP: session, CSRF, headers', () => {
  let gw: TestGateway
  let admin: string
  let user: string
  beforeAll(async () => {
    gw = await startGateway({ trustProxy: true })
    admin = await gw.createKey({ name: 'root', admin: true, limits: NO_LIMITS })
    user = await gw.createKey({ name: '=HYPERLINK("x")', limits: NO_LIMITS })
  })
  afterAll(() => gw.stop())

  it('sends a page to the login form without a session, with a strict CSP', async () => {
    const res = await fetch(`${gw.url}/dashboard`, { redirect: 'manual' })
    expect(res.status).toBe(303)
    expect(res.headers.get('location')).toBe('/dashboard/login')
    const form = await fetch(`${gw.url}/dashboard/login`)
    expect(form.status).toBe(200)
    const csp = form.headers.get('content-security-policy')!
    expect(csp).toContain("default-src 'self'")
    expect(csp).toContain("frame-ancestors 'none'")
    expect(csp).not.toContain('unsafe-inline')
    expect(form.headers.get('x-content-type-options')).toBe('nosniff')
    const body = await form.text()
    expect(body).not.toMatch(/<script|style=/)
    // Its assets: named by digest, cached for a year, served by the gateway itself.
    const assets = [...body.matchAll(/(?:href)="(\/dashboard\/assets\/[^"]+)"/g)].map((m) => m[1])
    expect(assets).toHaveLength(2)
    for (const path of assets) {
      const res = await fetch(`${gw.url}${path}`)
      expect(res.status, path).toBe(200)
      expect(res.headers.get('cache-control'), path).toBe('public, max-age=31536000, immutable')
      expect(res.headers.get('content-type'), path).toMatch(/^(text\/css|image\/svg\+xml)/)
      expect(await res.text(), path).not.toMatch(/gw-[A-Za-z0-9_-]{8}/)
    }
  })

  it('sets an HttpOnly SameSite=Strict cookie scoped to /dashboard, Secure behind an https proxy', async () => {
    const plain = await login(gw, admin)
    expect(plain.res.status).toBe(303)
    expect(plain.setCookie).toMatch(/HttpOnly/)
    expect(plain.setCookie).toMatch(/SameSite=Strict/)
    expect(plain.setCookie).toMatch(/Path=\/dashboard/)
    expect(plain.setCookie).not.toMatch(/Secure/)
    expect(plain.setCookie).not.toContain(admin)
    const https = await login(gw, admin, { 'x-forwarded-proto': 'https', origin: gw.url.replace('http:', 'https:') })
    expect(https.setCookie).toMatch(/Secure/)
  })

  it('refuses a POST without the CSRF token, with a wrong token, or from another origin', async () => {
    const { cookie, csrf } = await login(gw, admin)
    expect(csrf.length).toBeGreaterThan(20)
    const post = (body: Record<string, string>, origin = gw.url) =>
      fetch(`${gw.url}/dashboard/keys`, { method: 'POST', redirect: 'manual', headers: { cookie, origin, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(body) })
    expect((await post({ name: 'no-token' })).status).toBe(403)
    expect((await post({ name: 'bad-token', csrf: `${csrf}x` })).status).toBe(403)
    expect((await post({ name: 'evil', csrf }, 'http://evil.example')).status).toBe(403)
    expect((await gw.admin.listKeys()).map((k) => k.name)).not.toContain('no-token')
    const ok = await post({ name: 'with-token', csrf })
    expect(ok.status).toBe(200)
    expect((await gw.admin.listKeys()).map((k) => k.name)).toContain('with-token')
  })

  it('refuses a non-admin key, and counts failed logins toward the per-IP limit', async () => {
    const nonAdmin = await login(gw, user)
    expect(nonAdmin.res.status).toBe(403)
    expect(await nonAdmin.res.text()).toContain('not an admin key')
    expect(nonAdmin.setCookie).toBe('')
    const ip = { 'x-forwarded-for': '203.0.113.9' }
    const statuses: number[] = []
    for (let i = 0; i < 11; i++) statuses.push((await login(gw, 'gw-wrong', ip)).res.status)
    expect(statuses.slice(0, 10).every((s) => s === 401)).toBe(true)
    expect(statuses[10]).toBe(429)
    // The API sees the same count: that address is now refused there too.
    const api = await fetch(`${gw.url}/v1/models`, { headers: { authorization: 'Bearer gw-wrong', ...ip } })
    expect(api.status).toBe(429)
  })

  it('rotates a key and sets its limits by the CLI\'s rules', async () => {
    const { cookie, csrf } = await login(gw, admin)
    const old = await gw.createKey({ name: 'rotated', limits: NO_LIMITS })
    const id = (await gw.admin.findKey('rotated'))!.id
    const post = (path: string, body: Record<string, string>) =>
      fetch(`${gw.url}/dashboard/keys/${id}/${path}`, { method: 'POST', headers: { cookie, origin: gw.url, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ csrf, ...body }) })
    const rotated = await post('rotate', { grace: '0' })
    expect(rotated.status).toBe(200)
    const secret = /id="new-secret">([^<]+)</.exec(await rotated.text())?.[1]?.trim()
    expect(secret).toMatch(/^gw-[A-Za-z0-9_-]{43}$/)
    expect((await gw.post('/chat', old, { message: 'hi' })).status).toBe(401)
    expect((await gw.post('/chat', secret!, { message: 'hi' })).status).toBe(200)
    // Limits: a number, "off", "default" (drops the key's own); empty fields stay.
    expect((await post('limits', { dailyTokens: '1234', rpm: 'off' })).status).toBe(200)
    expect((await gw.admin.findKey(id))!.limits).toMatchObject({ dailyTokens: 1234, rpm: null })
    expect((await post('limits', { dailyTokens: 'default' })).status).toBe(200)
    expect((await gw.admin.findKey(id))!.limits).not.toHaveProperty('dailyTokens')
    expect((await gw.admin.findKey(id))!.limits.rpm).toBeNull()
    const bad = await post('limits', { rpm: 'lots' })
    expect(bad.status).toBe(400)
    expect(await bad.text()).toContain('requests per minute must be a positive whole number or &quot;off&quot;')
    // The CLI's rule: a revoked key gets no new secret.
    expect((await post('revoke', {})).status).toBe(200)
    const again = await post('rotate', { grace: '0' })
    expect(again.status).toBe(400)
    expect(await again.text()).toContain('is revoked and cannot get a new secret')
  })

  it('refuses a form body over 16 KiB', async () => {
    const res = await fetch(`${gw.url}/dashboard/login`, { method: 'POST', headers: { origin: gw.url, 'content-type': 'application/x-www-form-urlencoded' }, body: `key=${'a'.repeat(100_000)}` })
    expect(res.status).toBe(413)
  })

  it('logout ends the session', async () => {
    const { cookie, csrf } = await login(gw, admin)
    const out = await fetch(`${gw.url}/dashboard/logout`, { method: 'POST', redirect: 'manual', headers: { cookie, origin: gw.url, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ csrf }) })
    expect(out.status).toBe(303)
    expect(out.headers.get('set-cookie')).toMatch(/Max-Age=0/)
    const after = await fetch(`${gw.url}/dashboard`, { redirect: 'manual', headers: { cookie } })
    expect(after.status).toBe(303)
  })

  it('exports exactly the filtered log rows as CSV, formula cells neutralised', async () => {
    for (let i = 0; i < 3; i++) expect((await gw.post('/chat', user, { message: 'hi' })).status).toBe(200)
    expect((await gw.post('/chat', admin, { message: 'hi' })).status).toBe(200)
    await gw.built.requestLog.drain()
    const { cookie } = await login(gw, admin)
    const keyId = (await gw.admin.listKeys()).find((k) => k.name.startsWith('='))!.id
    const res = await fetch(`${gw.url}/dashboard/log.csv?range=today&key=${keyId}`, { headers: { cookie } })
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toContain('text/csv')
    const rows = parse(await res.text(), { columns: true }) as Record<string, string>[]
    expect(rows).toHaveLength(3)
    expect(rows.every((r) => r.key_id === keyId && r.key_name === `'=HYPERLINK("x")`)).toBe(true)
  })
})

describe('dashboard off', () => {
  it('gateway serve has it on; --no-dashboard and GATEWAY_DASHBOARD=off turn it off', async () => {
    const dir = tempDir('gw-dash-serve-')
    try {
      for (const [args, env, status] of [
        [[], {}, 200],
        [['--no-dashboard'], {}, 401],
        [[], { GATEWAY_DASHBOARD: 'off' }, 401],
      ] as const) {
        const child = await spawnServe(['--db', join(dir, 'g.db'), '--no-csv-log', ...args], { ...env })
        try {
          const res = await fetch(`${child.url}/dashboard/login`)
          await res.arrayBuffer()
          expect(res.status, JSON.stringify({ args, env })).toBe(status)
        } finally {
          await child.stop()
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('--no-dashboard leaves /dashboard to the API (a key is needed, no page)', async () => {
    const gw = await startGateway({ dashboard: false })
    try {
      const res = await fetch(`${gw.url}/dashboard/login`)
      expect(res.status).toBe(401)
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('invalid_api_key')
    } finally {
      await gw.stop()
    }
  })
})

describe('the log detail', () => {
  it('shows prompt and answer text only when the gateway stores them (--log-bodies)', async () => {
    for (const logBodies of [false, true]) {
      const gw = await startGateway({ logBodies })
      try {
        const admin = await gw.createKey({ name: 'root', admin: true, limits: NO_LIMITS })
        expect((await gw.post('/chat', admin, { message: 'the secret recipe' })).status).toBe(200)
        await gw.built.requestLog.drain()
        const { cookie } = await login(gw, admin)
        const list = await (await fetch(`${gw.url}/dashboard/log?range=today&route=/chat`, { headers: { cookie } })).text()
        const link = /href="(\/dashboard\/log\?[^"]*id=\d+)"/.exec(list)![1].replace(/&amp;/g, '&')
        const detail = await (await fetch(`${gw.url}${link}`, { headers: { cookie } })).text()
        expect(detail).toContain('id="detail"')
        expect(detail.includes('the secret recipe'), `logBodies ${logBodies}`).toBe(logBodies)
      } finally {
        await gw.stop()
      }
    }
  })
})

describe('dashboard sessions expire', () => {
  it('after 30 minutes idle, and after 12 hours however busy', async () => {
    let t = Date.now()
    const gw = await startGateway({ clock: { now: () => t } })
    try {
      const admin = await gw.createKey({ name: 'root', admin: true, limits: NO_LIMITS })
      const page = (cookie: string) => fetch(`${gw.url}/dashboard/budgets`, { redirect: 'manual', headers: { cookie } })
      const idle = await login(gw, admin)
      t += 29 * 60_000
      expect((await page(idle.cookie)).status).toBe(200) // used: the idle time starts again
      t += 29 * 60_000
      expect((await page(idle.cookie)).status).toBe(200)
      t += 31 * 60_000
      expect((await page(idle.cookie)).status).toBe(303)
      const busy = await login(gw, admin)
      const statuses: number[] = []
      for (let i = 1; i <= 26; i++) {
        t += 29 * 60_000
        statuses.push((await page(busy.cookie)).status)
      }
      // Used every 29 minutes: alive for the 24 visits within 12 hours of the login, then gone.
      expect(statuses).toEqual([...Array(24).fill(200), 303, 303])
    } finally {
      await gw.stop()
    }
  })
})

describe('dashboard figures and paging', () => {
  let gw: TestGateway
  let admin: string
  beforeAll(async () => {
    gw = await startGateway()
    admin = await gw.createKey({ name: 'root', admin: true, limits: NO_LIMITS })
    const user = await gw.createKey({ name: 'paged', limits: NO_LIMITS })
    for (let i = 0; i < 56; i++) expect((await gw.post('/chat', user, { message: `m${i}` })).status).toBe(200)
    await gw.built.requestLog.drain()
  })
  afterAll(() => gw.stop())

  it('the 24-hour view (hourly sums) and the latency (hourly counts) agree with `gateway usage`', async () => {
    const today = new Date().toISOString().slice(0, 10)
    const cli = await runJson<{ total: { requests: number; total_tokens: number }; groups: { p50_ms: number; p95_ms: number }[] }>(['usage', '--db', gw.db, '--since', today])
    expect(cli.code).toBe(0)
    const { cookie } = await login(gw, admin)
    for (const range of ['24h', 'today']) {
      const html = await (await fetch(`${gw.url}/dashboard?range=${range}`, { headers: { cookie } })).text()
      const value = (id: string) => Number(new RegExp(`data-figure="${id}"><div class="label">[^<]*</div><div class="value">([\\d,.]+)`).exec(html)?.[1]?.replace(/,/g, ''))
      expect(value('requests')).toBe(cli.json.total.requests)
      expect(value('tokens')).toBe(cli.json.total.total_tokens)
      // 5 % buckets read back at their middle, shown in whole ms.
      for (const [id, exact] of [['p50', cli.json.groups[0].p50_ms], ['p95', cli.json.groups[0].p95_ms]] as const) {
        expect(Math.abs(value(id) - exact)).toBeLessThanOrEqual(Math.max(1, exact * 0.03))
      }
    }
  })

  it('pages the log newest first by a cursor, without overlap or gaps', async () => {
    const { cookie } = await login(gw, admin)
    const ids = (html: string) => [...html.matchAll(/href="\/dashboard\/log\?[^"]*id=(\d+)"/g)].map((m) => Number(m[1]))
    const first = await (await fetch(`${gw.url}/dashboard/log?range=today&route=/chat`, { headers: { cookie } })).text()
    const older = /id="older" href="([^"]+)"/.exec(first)?.[1]?.replace(/&amp;/g, '&')
    expect(older).toBeDefined()
    const second = await (await fetch(`${gw.url}${older}`, { headers: { cookie } })).text()
    const page1 = ids(first)
    const page2 = ids(second)
    expect(page1).toHaveLength(50)
    expect(page2).toHaveLength(6)
    const all = [...page1, ...page2]
    expect(all).toEqual([...all].sort((a, b) => b - a))
    expect(new Set(all).size).toBe(56)
    expect(/id="older"/.test(second)).toBe(false)
  })
})
