import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { Page } from 'playwright-core'
import { openBrowser, type TestBrowser } from '../support/browser.js'
import { runJson } from '../support/cli.js'
import { startGateway, NO_LIMITS, type TestGateway } from '../support/gateway.js'

interface UsageReport {
  total: { requests: number; total_tokens: number }
  keys: { key_id: string; key_name: string | null; total_tokens: number; requests: number }[]
}

/** The text of an element holding a figure, digits only ("1,234 tokens" → 1234). */
async function figure(page: Page, selector: string): Promise<number> {
  const text = await page.locator(selector).first().innerText()
  return Number(text.replace(/[^\d]/g, ''))
}

describe('dashboard in a real browser', () => {
  let gw: TestGateway
  let browser: TestBrowser
  let admin: string
  let alice: string
  let bob: string

  async function logIn(page: Page, key = admin) {
    await page.goto(`${gw.url}/dashboard/login`)
    await page.fill('input[name=key]', key)
    await page.click('button[type=submit]')
  }

  async function usage(): Promise<UsageReport> {
    return (await fetch(`${gw.url}/usage`, { headers: { authorization: `Bearer ${admin}` } })).json() as Promise<UsageReport>
  }

  beforeAll(async () => {
    gw = await startGateway()
    admin = await gw.createKey({ name: 'ops', admin: true, limits: NO_LIMITS })
    alice = await gw.createKey({ name: 'alice', limits: { ...NO_LIMITS, dailyTokens: 400 } })
    bob = await gw.createKey({ name: 'bob', limits: NO_LIMITS })
    for (let i = 0; i < 3; i++) await gw.client(alice).chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `hello ${i}` }] })
    await gw.client(bob).chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] })
    // One refused request: max_tokens over the key's limit is a 400.
    const refused = await gw.post('/v1/chat/completions', bob, { model: 'gpt-4o', max_tokens: 1_000_000, messages: [{ role: 'user', content: 'x' }] })
    expect(refused.status).toBe(400)
    await gw.built.requestLog.drain()
    browser = await openBrowser()
  })
  afterEach(() => {
    // Every browser test fails on a console error or a CSP violation in any of its pages.
    expect(browser.problems).toEqual([])
  })
  afterAll(async () => {
    await browser?.close()
    await gw?.stop()
  })

  it('refuses a wrong key and a non-admin key, then logs in with an admin key', async () => {
    const page = await browser.page()
    await logIn(page, 'gw-not-a-key')
    await expect(page.locator('.msg.error').innerText()).resolves.toContain('not valid')
    await logIn(page, alice)
    await expect(page.locator('.msg.error').innerText()).resolves.toContain('not an admin key')
    // The refused key is nowhere in the page or its address.
    expect(await page.content()).not.toContain(alice)
    expect(page.url()).not.toContain(alice)
    // The browser notes the two refusals' statuses (401, 403) on its console: expected here, and only these.
    expect(browser.take(/status of 40[13]/)).toBe(2)
    await logIn(page)
    expect(new URL(page.url()).pathname).toBe('/dashboard')
    expect(await page.content()).not.toContain(admin)
    await page.close()
  })

  it('overview and usage match `gateway usage` and GET /usage for today', async () => {
    const report = await usage()
    const today = new Date().toISOString().slice(0, 10)
    // The CLI's totals count every request, those without a key too (the /usage route's are per key).
    const cli = await runJson<{ total: { requests: number; total_tokens: number; errors: number } }>(['usage', '--db', gw.db, '--since', today])
    expect(cli.code).toBe(0)
    expect(cli.json.total.total_tokens).toBe(report.total.total_tokens)
    const page = await browser.page()
    await logIn(page)
    await page.goto(`${gw.url}/dashboard?range=today`)
    expect(await figure(page, '[data-figure=requests] .value')).toBe(cli.json.total.requests)
    expect(await figure(page, '[data-figure=tokens] .value')).toBe(report.total.total_tokens)
    expect(await page.locator('[data-figure=error-rate] .unit').innerText()).toBe(`${cli.json.total.errors} err`)
    // The page names the command it agrees with.
    expect(await page.locator('.ranges code').innerText()).toBe(`gateway usage --since ${today}`)
    expect(await page.locator('svg.chart').count()).toBe(2)
    await page.goto(`${gw.url}/dashboard/usage?range=today&by=key`)
    for (const k of report.keys) {
      expect(await figure(page, `#usage-table tr[data-group="${k.key_id}"] [data-figure=total_tokens]`)).toBe(k.total_tokens)
    }
    await page.close()
  })

  it('budgets show what is used and left today, and the limits in force', async () => {
    const report = await usage()
    const page = await browser.page()
    await logIn(page)
    await page.click('nav.main >> text=Budgets')
    const aliceRow = report.keys.find((k) => k.key_name === 'alice')!
    const aliceId = aliceRow.key_id
    expect(await figure(page, `#budgets-table tr[data-key="${aliceId}"] [data-figure=used]`)).toBe(aliceRow.total_tokens)
    const row = await page.locator(`#budgets-table tr[data-key="${aliceId}"]`).innerText()
    // The budget is the key's own; rpm is the key's too (off, from NO_LIMITS); concurrency not shown.
    expect(row).toMatch(/400 tokens\s+key/)
    expect(row).toContain(`${400 - aliceRow.total_tokens} tokens`)
    expect(row).toMatch(/off\s+key/)
    await page.close()
  })

  it('errors link into the log, filtered; filters change the URL and the table', async () => {
    const page = await browser.page()
    await logIn(page)
    await page.goto(`${gw.url}/dashboard/errors?range=today`)
    expect(await page.locator('#errors-table').innerText()).toContain('max_tokens_exceeded')
    await page.click('#errors-table >> text=Show in log')
    expect(new URL(page.url()).searchParams.get('status')).toBe('400')
    const statuses = await page.locator('#log-table tbody tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-status')))
    expect(statuses).toEqual(['400'])
    await page.click('text=Clear')
    expect(await page.locator('#log-table tbody tr').count()).toBeGreaterThanOrEqual(5)
    await page.selectOption('select[name=key]', { label: 'alice' })
    await page.click('form.filters button[type=submit]')
    expect(new URL(page.url()).searchParams.get('key')).toMatch(/^key_/)
    const keys = await page.locator('#log-table tbody tr td:nth-child(2)').allInnerTexts()
    expect(keys).toEqual(['alice', 'alice', 'alice'])
    // The detail panel of a row, without prompt or answer text (no --log-bodies).
    await page.locator('#log-table tbody tr a').first().click()
    const detail = await page.locator('#detail').innerText()
    expect(detail).toContain('/v1/chat/completions')
    expect(detail).not.toContain('hello')
    await page.close()
  })

  it('a key created in the page works at once; its secret is shown once and never in a URL', async () => {
    const page = await browser.page()
    await logIn(page)
    await page.goto(`${gw.url}/dashboard/keys`)
    await page.fill('#create-key input[name=name]', 'from-browser')
    await page.fill('#create-key input[name=dailyTokens]', '5000')
    await page.click('#create-key button[type=submit]')
    const secret = (await page.locator('#new-secret').innerText()).trim()
    expect(secret).toMatch(/^gw-[A-Za-z0-9_-]{43}$/)
    expect(page.url()).not.toContain(secret)
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
    })
    expect(res.status).toBe(200)
    expect((await gw.admin.findKey('from-browser'))?.limits.dailyTokens).toBe(5000)
    // Shown once: the keys page, loaded again, has only the prefix.
    await page.goto(`${gw.url}/dashboard/keys`)
    expect(await page.content()).not.toContain(secret)
    expect(await page.locator('#keys-table').innerText()).toContain(`${secret.slice(0, 7)}…`)
    // Revoked in the page: refused at once.
    const id = (await gw.admin.findKey('from-browser'))!.id
    await page.click(`#keys-table tr[data-key="${id}"] button.danger`)
    expect(await page.locator('.msg.ok').innerText()).toContain('Revoked')
    const after = await gw.post('/v1/chat/completions', secret, { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] })
    expect(after.status).toBe(401)
    await page.close()
  })

  it('logout ends the session', async () => {
    const page = await browser.page()
    await logIn(page)
    await page.click('text=Log out')
    expect(new URL(page.url()).pathname).toBe('/dashboard/login')
    await page.goto(`${gw.url}/dashboard/usage`)
    expect(new URL(page.url()).pathname).toBe('/dashboard/login')
    await page.close()
  })
})
