import { execFileSync } from 'node:child_process'
import { chmodSync, existsSync, mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { runCli, runJson, spawnServe, type ServeChild } from '../support/cli.js'
import { scratchDatabase } from '../support/postgres.js'

/** Every serve child a test started, stopped after it whatever happened. */
const children: ServeChild[] = []
afterEach(async () => {
  await Promise.all(children.splice(0).map((c) => c.stop()))
})

const NO_LIMITS = ['--rpm', 'off', '--tpm', 'off', '--daily-tokens', 'off', '--concurrency', 'off']

interface Told {
  id: string
  tokens: number
}

/** Up to `count` chat requests (fewer once `enough()`) spread round-robin over `urls`, at most `concurrency` at once; what each answer said. */
async function load(urls: () => string[], key: string, count: number, concurrency: number, onEach?: (n: number) => Promise<void>, enough: () => boolean = () => false): Promise<Told[]> {
  const told: Told[] = []
  let next = 0
  const worker = async () => {
    while (next < count && !enough()) {
      const n = next++
      await onEach?.(n)
      const list = urls()
      const r = await fetch(`${list[n % list.length]}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `request ${n}` }], max_tokens: 20 }),
      })
      const body = (await r.json()) as { usage?: { total_tokens: number } }
      expect(r.status, JSON.stringify(body)).toBe(200)
      told.push({ id: r.headers.get('x-request-id')!, tokens: body.usage!.total_tokens })
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  return told
}

/** The log as `logs export` prints it: request id → count. */
async function exportedIds(db: string): Promise<Map<string, number>> {
  const r = await runCli(['logs', 'export', '--db', db, '--format', 'jsonl'])
  expect(r.code, r.stderr).toBe(0)
  const ids = new Map<string, number>()
  for (const line of r.stdout.split('\n').filter((l) => l.length > 0)) {
    const row = JSON.parse(line) as { request_id: string; route: string }
    if (row.route !== '/v1/chat/completions') continue
    ids.set(row.request_id, (ids.get(row.request_id) ?? 0) + 1)
  }
  return ids
}

async function usageTokens(db: string): Promise<number> {
  const r = await runJson<{ groups: { total_tokens: number }[] }>(['usage', '--db', db, '--by', 'key', '--since', '1d'])
  expect(r.code, r.stderr).toBe(0)
  return r.json.groups.reduce((a, g) => a + g.total_tokens, 0)
}

async function createKey(db: string): Promise<string> {
  const r = await runJson<{ key: string }>(['keys', 'create', '--name', 'load', '--db', db, ...NO_LIMITS])
  expect(r.code, r.stderr).toBe(0)
  return r.json.key
}

function serveArgs(db: string, spool: string): string[] {
  return ['--db', db, '--mock', '--no-csv-log', '--access-log', 'off', '--spool-dir', spool]
}

describe('two gateways on one PostgreSQL database', () => {
  it('1,000 requests over both: the log has each exactly once, and usage is what the clients were told', async () => {
    const db = await scratchDatabase()
    const dir = mkdtempSync(join(tmpdir(), 'gw-pg2-'))
    try {
      await runCli(['db', 'migrate', '--db', db.url])
      const key = await createKey(db.url)
      const [a, b] = await Promise.all([spawnServe(serveArgs(db.url, join(dir, 'a'))), spawnServe(serveArgs(db.url, join(dir, 'b')))])
      children.push(a, b)
      const told = await load(() => [a.url, b.url], key, 1_000, 20)
      // A revocation with the CLI reaches both gateways (LISTEN/NOTIFY; bounded wait).
      expect((await runCli(['keys', 'revoke', 'load', '--db', db.url])).code).toBe(0)
      for (const g of [a, b]) {
        let status = 0
        for (let i = 0; i < 100 && status !== 401; i++) {
          status = (await fetch(`${g.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } })).status
          if (status !== 401) await new Promise((r) => setTimeout(r, 50))
        }
        expect(status).toBe(401)
      }
      await Promise.all([a.stop(), b.stop()])
      const ids = await exportedIds(db.url)
      expect(ids.size).toBe(1_000)
      expect([...ids.values()].every((n) => n === 1)).toBe(true)
      expect(new Set(told.map((t) => t.id))).toEqual(new Set(ids.keys()))
      expect(await usageTokens(db.url)).toBe(told.reduce((a, t) => a + t.tokens, 0))
    } finally {
      rmSync(dir, { recursive: true, force: true })
      await db.drop()
    }
  }, 120_000)
})

const PG_BIN = ['/usr/lib/postgresql/15/bin', '/usr/local/bin'].find((d) => existsSync(join(d, 'pg_ctl')))

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number }
      s.close(() => resolve(port))
    })
  })
}

/** A PostgreSQL cluster of the test's own (initdb + pg_ctl on a free port), never the machine's shared one. */
class ThrowawayCluster {
  readonly dir = mkdtempSync(join(tmpdir(), 'gw-pgcluster-'))
  readonly data = join(this.dir, 'data')
  port = 0
  /** initdb refuses to run as root: then the cluster belongs to the postgres user. */
  private readonly asRoot = process.getuid?.() === 0

  private run(cmd: string, args: string[]): void {
    const bin = join(PG_BIN!, cmd)
    if (this.asRoot) execFileSync('runuser', ['-u', 'postgres', '--', bin, ...args], { stdio: 'pipe' })
    else execFileSync(bin, args, { stdio: 'pipe' })
  }

  async init(): Promise<void> {
    if (this.asRoot) {
      chmodSync(this.dir, 0o777)
      execFileSync('chown', ['postgres', this.dir])
    }
    this.run('initdb', ['-D', this.data, '-A', 'trust', '-U', 'postgres', '--no-sync'])
    this.port = await freePort()
    this.start()
  }

  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`
  }

  start(): void {
    this.run('pg_ctl', ['-D', this.data, '-w', '-l', join(this.dir, 'log'), '-o', `-p ${this.port} -k ${this.dir} -c listen_addresses=127.0.0.1 -c fsync=off`, 'start'])
  }

  stop(): void {
    this.run('pg_ctl', ['-D', this.data, '-w', '-m', 'fast', 'stop'])
  }

  destroy(): void {
    try {
      this.stop()
    } catch {
      // already stopped
    }
    rmSync(this.dir, { recursive: true, force: true })
  }
}

describe('PostgreSQL down under load', () => {
  let cluster: ThrowawayCluster | null = null
  afterAll(() => cluster?.destroy())

  it('answers go on while it is stopped for 10 s (rows spooled, /health degraded); afterwards every row is in the database exactly once', async () => {
    expect(PG_BIN, 'pg_ctl not found in /usr/lib/postgresql/15/bin or /usr/local/bin').toBeDefined()
    cluster = new ThrowawayCluster()
    await cluster.init()
    const db = cluster.url
    const spool = join(cluster.dir, 'spool')
    const key = await createKey(db)
    const gw = await spawnServe(serveArgs(db, spool))
    children.push(gw)
    const health = async () => (await (await fetch(`${gw.url}/health`)).json()) as { status: string; spool?: { rows: number } }
    let degraded: { status: string; spool?: { rows: number } } | null = null
    let stoppedAt = -1
    let restartedAt = -1
    // 2 s of traffic, PostgreSQL stopped for 10 s, traffic throughout, then started again.
    const started = Date.now()
    const told = await load(
      () => [gw.url],
      key,
      20_000,
      4,
      async (n) => {
        if (stoppedAt < 0 && Date.now() - started > 2_000) {
          cluster!.stop() // synchronous: no other worker runs meanwhile
          stoppedAt = n
        }
        if (stoppedAt >= 0 && restartedAt < 0 && Date.now() - started > 12_000) {
          restartedAt = n // before the await: the other workers must not start it too
          degraded = await health()
          cluster!.start()
        }
        await new Promise((r) => setTimeout(r, 20))
      },
      () => Date.now() - started > 14_000,
    )
    expect(stoppedAt).toBeGreaterThan(0)
    expect(restartedAt).toBeGreaterThan(stoppedAt)
    expect(degraded).toMatchObject({ status: 'degraded' })
    expect(degraded!.spool!.rows).toBeGreaterThan(0)
    // The spool drains once the database is back (bounded wait).
    for (let i = 0; i < 150 && (await health()).status !== 'ok'; i++) await new Promise((r) => setTimeout(r, 200))
    expect(await health()).toEqual({ status: 'ok' })
    await gw.stop()
    const ids = await exportedIds(db)
    expect(ids.size).toBe(told.length)
    expect([...ids.values()].every((n) => n === 1)).toBe(true)
    expect(new Set(told.map((t) => t.id))).toEqual(new Set(ids.keys()))
    expect(await usageTokens(db)).toBe(told.reduce((a, t) => a + t.tokens, 0))
  }, 120_000)
})
