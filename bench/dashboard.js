#!/usr/bin/env node
// Times every dashboard page over a large request log: fills a temp SQLite database with
// synthetic rows (straight inserts, bench/dashboard-rows.js), starts the gateway in-process
// on a loopback port, logs in, and fetches each page several times. Prints the median and
// the slowest time per page against the 100 ms target.
//
//   npm run build && npm run bench:dashboard -- [--rows 1000000] [--days 30] [--runs 5]
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { buildGateway, DEFAULT_SETTINGS } from '../dist/compose.js'
import { KeyManager } from '../dist/core/keys.js'
import { startServer } from '../dist/server.js'
import { SqliteStore } from '../dist/storage/sqlite/sqlite-store.js'
import { fillLog } from './dashboard-rows.js'
import { median, table } from './lib.js'

const { values: opts } = parseArgs({ options: { rows: { type: 'string', default: '1000000' }, days: { type: 'string', default: '30' }, runs: { type: 'string', default: '5' } } })
const rows = Number(opts.rows)
const runs = Number(opts.runs)
const TARGET_MS = 100

const dir = mkdtempSync(join(tmpdir(), 'gw-bench-dash-'))
const db = join(dir, 'gateway.db')
const now = Date.now()
let server
try {
  const store = SqliteStore.open(db)
  const keys = new KeyManager(store, { now: () => now })
  const admin = keys.create({ name: 'ops', admin: true }).secret
  const users = Array.from({ length: 50 }, (_, i) => keys.create({ name: `user-${i}`, limits: i % 3 === 0 ? { dailyTokens: 500_000 } : {} }).key)
  store.close()
  let t = performance.now()
  fillLog(db, { rows, days: Number(opts.days), now, keys: users.map((k, i) => ({ id: k.id, name: k.name, weight: 1 + (i % 7) })) })
  console.log(`filled ${rows.toLocaleString('en-US')} rows over ${opts.days} days in ${((performance.now() - t) / 1000).toFixed(1)} s`)

  const built = buildGateway({ ...DEFAULT_SETTINGS, db, mock: true, csvLog: null })
  server = await startServer(built, '127.0.0.1', 0)
  const login = await fetch(`${server.url}/dashboard/login`, {
    method: 'POST',
    redirect: 'manual',
    headers: { origin: server.url, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ key: admin }),
  })
  const cookie = login.headers.get('set-cookie').split(';')[0]
  const some = users[3].id
  const pages = [
    '/dashboard?range=1h',
    '/dashboard?range=24h',
    '/dashboard?range=today',
    '/dashboard?range=7d',
    '/dashboard?range=30d',
    '/dashboard/usage?range=24h&by=key',
    '/dashboard/usage?range=30d&by=key',
    '/dashboard/usage?range=30d&by=model',
    '/dashboard/budgets',
    '/dashboard/errors?range=24h',
    '/dashboard/errors?range=7d',
    '/dashboard/errors?range=30d',
    '/dashboard/log?range=24h',
    '/dashboard/log?range=30d',
    `/dashboard/log?range=30d&key=${some}`,
    '/dashboard/log?range=7d&status=502',
    '/dashboard/log?range=30d&model=llama-3.1-70b&status=504',
    '/dashboard/keys',
  ]
  const results = []
  for (const path of pages) {
    const times = []
    for (let i = 0; i < runs + 1; i++) {
      t = performance.now()
      const res = await fetch(`${server.url}${path}`, { headers: { cookie } })
      await res.arrayBuffer()
      if (res.status !== 200) throw new Error(`${path}: ${res.status}`)
      if (i > 0) times.push(performance.now() - t) // the first run warms the page cache
    }
    const med = median(times)
    results.push([path, med.toFixed(1), Math.max(...times).toFixed(1), med < TARGET_MS ? 'PASS' : 'FAIL'])
  }
  console.log(table(['PAGE', 'MEDIAN MS', 'MAX MS', `< ${TARGET_MS} MS`], results))
} finally {
  await server?.close(2_000)
  rmSync(dir, { recursive: true, force: true })
}
