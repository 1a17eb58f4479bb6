#!/usr/bin/env node
// Screenshots of the dashboard for docs/dashboard.md: a gateway over a temp database with
// 30 days of synthetic traffic plus a few real requests, photographed by headless chromium.
//   npm run build && node scripts/dashboard-screenshots.js [outdir]
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { chromium } from 'playwright-core'
import { buildGateway, DEFAULT_SETTINGS } from '../dist/compose.js'
import { KeyManager } from '../dist/core/keys.js'
import { startServer } from '../dist/server.js'
import { SqliteStore } from '../dist/storage/sqlite/sqlite-store.js'
import { fillLog } from '../bench/dashboard-rows.js'

const out = resolve(process.argv[2] ?? 'docs/img')
const dir = mkdtempSync(join(tmpdir(), 'gw-shots-'))
const db = join(dir, 'gateway.db')
const now = Date.now()

const store = SqliteStore.open(db)
const keys = new KeyManager(store, { now: () => now })
const admin = keys.create({ name: 'ops', admin: true }).secret
const people = [
  ['search-backend', 6, { dailyTokens: 2_000_000, rpm: 600, tpm: 200_000 }],
  ['support-bot', 4, { dailyTokens: 1_200_000, rpm: 300 }],
  ['alice', 1, { dailyTokens: 200_000 }],
  ['bob', 1, {}],
  ['nightly-evals', 2, { dailyTokens: 800_000, rpm: null }],
]
const made = people.map(([name, weight, limits]) => ({ ...keys.create({ name, limits }), weight }))
store.close()
fillLog(db, { rows: 60_000, days: 30, now, keys: made.map((m) => ({ id: m.key.id, name: m.key.name, weight: m.weight })) })

const built = buildGateway({ ...DEFAULT_SETTINGS, db, mock: true, csvLog: null })
const server = await startServer(built, '127.0.0.1', 0)
for (let i = 0; i < 12; i++) {
  await fetch(`${server.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${made[i % 3].secret}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `hello ${i}` }] }),
  })
}
await built.requestLog.drain()

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
})
async function shoot(name, path, { viewport = { width: 1280, height: 800 }, colorScheme = 'light', fullPage = false } = {}) {
  const context = await browser.newContext({ locale: 'en-US', viewport, colorScheme })
  const page = await context.newPage()
  await page.goto(`${server.url}/dashboard/login`)
  await page.fill('input[name=key]', admin)
  await page.click('button[type=submit]')
  await page.goto(`${server.url}${path}`)
  await page.screenshot({ path: join(out, `${name}.png`), fullPage })
  await context.close()
}
try {
  await shoot('dashboard-overview', '/dashboard?range=7d')
  await shoot('dashboard-overview-dark', '/dashboard?range=24h', { colorScheme: 'dark' })
  await shoot('dashboard-usage', '/dashboard/usage?range=30d&by=model')
  await shoot('dashboard-budgets', '/dashboard/budgets')
  await shoot('dashboard-errors', '/dashboard/errors?range=7d')
  const logPage = '/dashboard/log?range=1h'
  await shoot('dashboard-log', logPage)
  await shoot('dashboard-keys', '/dashboard/keys')
  await shoot('dashboard-phone', '/dashboard?range=today', { viewport: { width: 390, height: 844 } })
  const context = await browser.newContext({ locale: 'en-US', viewport: { width: 1280, height: 800 } })
  const page = await context.newPage()
  await page.goto(`${server.url}/dashboard/login`)
  await page.screenshot({ path: join(out, 'dashboard-login.png') })
  await context.close()
} finally {
  await browser.close()
  await server.close(2_000)
  rmSync(dir, { recursive: true, force: true })
}
console.log(`screenshots in ${out}`)
