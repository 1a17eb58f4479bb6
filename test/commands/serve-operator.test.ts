/** Issue 12, items 12, 13 and 15: what `gateway serve` prints for an operator, run as the real binary. */
import { rmSync } from 'node:fs'
import { relative, join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { runCli, runJson, spawnServe, type ServeChild } from '../support/cli.js'
import { tempDir } from '../support/gateway.js'
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js'
import { renderBanner } from '../../src/cli/banner.js'

vi.setConfig({ testTimeout: 120_000, hookTimeout: 60_000 })

const UPSTREAM_KEY = 'sk-operator-test-upstream-key'
let dir: string
let upstream: MockUpstream
const running: ServeChild[] = []

beforeAll(async () => {
  dir = tempDir('gw-serve-op-')
  upstream = await startMockUpstream()
})
afterAll(async () => {
  for (const s of running) await s.stop()
  await upstream.close()
  rmSync(dir, { recursive: true, force: true })
})

async function serve(args: string[], env: Record<string, string> = {}, asJson = true): Promise<ServeChild> {
  const s = await spawnServe(args, env, asJson)
  running.push(s)
  return s
}

async function keyFor(db: string, name: string): Promise<string> {
  const r = await runJson<{ key: string }>(['keys', 'create', '--name', name, '--db', db])
  expect(r.code).toBe(0)
  return r.json.key
}

const chat = (url: string, key: string, message: string) =>
  fetch(`${url}/chat`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ message }) })

/** Waits (bounded) until `read()` holds `count` lines matching `pattern`. */
async function linesOf(read: () => string, pattern: RegExp, count: number): Promise<string[]> {
  let found: string[] = []
  for (let i = 0; i < 100; i++) {
    found = read().split('\n').filter((l) => pattern.test(l))
    if (found.length >= count) break
    await new Promise((r) => setTimeout(r, 50))
  }
  return found
}

describe('the banner', () => {
  it('is a closed box with absolute paths; with --mock and OPENAI_API_KEY set it blames --mock, not a missing key', async () => {
    const db = relative(process.cwd(), join(dir, 'banner', 'gw.db'))
    const s = await serve(['--db', db, '--mock'], { OPENAI_API_KEY: UPSTREAM_KEY }, false)
    await linesOf(s.stdout, /^No API keys yet/, 1)
    const lines = s.stdout().split('\n')
    const top = lines.findIndex((l) => l.startsWith('┌'))
    const bottom = lines.findIndex((l) => l.startsWith('└'))
    expect(top).toBe(0)
    expect(bottom).toBeGreaterThan(top)
    const box = lines.slice(top, bottom + 1)
    const width = [...box[0]].length
    for (const l of box) expect([...l].length, l).toBe(width)
    for (const l of box.slice(1, -1)) expect(l).toMatch(/^[│├].*[│┤]$/)
    expect(s.stdout()).toContain(`database:   ${join(dir, 'banner', 'gw.db')}`)
    expect(s.stdout()).toContain(`csv log:    ${join(dir, 'banner', 'requests-YYYY-MM-DD.csv')}`)
    expect(s.stdout()).toContain('MOCK MODE (--mock is on)')
    expect(s.stdout()).not.toContain('Set OPENAI_API_KEY')
    expect(s.stdout()).not.toContain(UPSTREAM_KEY)
    expect(s.stdout()).not.toContain('TLS')
    expect(s.stdout()).toContain(`--db ${join(dir, 'banner', 'gw.db')}`)
  })

  it('warns that TLS must be in front when bound beyond loopback (rendered as serve prints it; tests bind loopback only)', () => {
    const info = { url: 'http://0.0.0.0:8080', upstream: 'https://api.openai.com/v1', model: 'gpt-4o-mini', db: '/srv/gw.db', csvLog: null, timezone: 'UTC', mockReason: null, hasKeys: true, dbIsDefault: false }
    for (const host of ['0.0.0.0', '::', '10.1.2.3', 'gateway.example']) expect(renderBanner({ ...info, host })).toContain('unless TLS is in front')
    for (const host of ['127.0.0.1', '127.0.0.2', '::1', 'localhost']) expect(renderBanner({ ...info, host })).not.toContain('TLS')
  })
})

describe('the access log', () => {
  it('prints one text line per request on stdout with time, id, key, route, model, status, tokens and ms; control characters in a key name are escaped', async () => {
    const db = join(dir, 'access', 'gw.db')
    const key = await keyFor(db, 'al\u001b[31mice')
    const s = await serve(['--db', db], {}, false)
    const res = await chat(s.url, key, 'hello')
    expect(res.status).toBe(200)
    const id = res.headers.get('x-request-id')!
    const missing = await fetch(`${s.url}/usage`)
    expect(missing.status).toBe(401)
    const [line] = await linesOf(s.stdout, new RegExp(id), 1)
    expect(line).toMatch(new RegExp(`^\\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z ${id} "al\\\\x1b\\[31mice" POST /chat gpt-4o-mini 200 tokens=\\d+ [\\d.]+ms$`))
    expect(s.stdout()).not.toContain('\u001b')
    const [refused] = await linesOf(s.stdout, /GET \/usage/, 1)
    expect(refused).toMatch(/ - GET \/usage - 401 tokens=0 [\d.]+ms error=invalid_api_key$/)
  })

  it('with --json: the first line stays the start document, then one JSON line per request; --access-log off prints none', async () => {
    const db = join(dir, 'access-json', 'gw.db')
    const key = await keyFor(db, 'bob')
    const s = await serve(['--db', db])
    expect(s.stdout().split('\n')[0]).toBe(JSON.stringify(s.info))
    const res = await chat(s.url, key, 'hello')
    const id = res.headers.get('x-request-id')!
    const [line] = await linesOf(s.stdout, new RegExp(id), 1)
    expect(JSON.parse(line)).toMatchObject({ requestId: id, key: 'bob', method: 'POST', route: '/chat', model: 'gpt-4o-mini', status: 200, error: null })
    expect(JSON.parse(line).tokens).toBeGreaterThan(0)

    const quiet = await serve(['--db', join(dir, 'access-off', 'gw.db'), '--access-log', 'off'], {}, false)
    const before = quiet.stdout()
    for (let i = 0; i < 3; i++) expect((await fetch(`${quiet.url}/health`)).status).toBe(200)
    const env = await serve(['--db', join(dir, 'access-env', 'gw.db')], { GATEWAY_ACCESS_LOG: 'off' }, false)
    const envBefore = env.stdout()
    expect((await fetch(`${env.url}/health`)).status).toBe(200)
    await new Promise((r) => setTimeout(r, 500)) // with the log on, the lines are out within a tick

    expect(quiet.stdout()).toBe(before)
    expect(env.stdout()).toBe(envBefore)
  })
})

describe('the access log under a stdout that does not keep up', () => {
  it('drops lines and says how many instead of piling them up, and keeps serving', async () => {
    const s = await serve(['--db', join(dir, 'access-slow', 'gw.db')], {}, false)
    s.proc.stdout!.pause() // nobody reads: the pipe fills
    for (let i = 0; i < 3_000; i++) expect((await fetch(`${s.url}/health`)).status).toBe(200)
    s.proc.stdout!.resume()
    await new Promise((r) => setTimeout(r, 200))
    expect((await fetch(`${s.url}/health`)).status).toBe(200)
    const [note] = await linesOf(s.stdout, /access log: \d+ lines dropped/, 1)
    expect(note).toMatch(/^gateway: access log: \d+ lines dropped \(stdout was not keeping up\)$/)
    const logged = s.stdout().split('\n').filter((l) => / GET \/health - 200 /.test(l)).length
    const dropped = Number(/(\d+) lines dropped/.exec(note)![1])
    expect(logged + dropped).toBeGreaterThanOrEqual(3_000)
    expect(dropped).toBeGreaterThan(0)
  })
})

describe('the upstream', () => {
  it('an OPENAI_BASE_URL without http(s):// stops start-up with exit 2 and one line naming it', async () => {
    for (const bad of ['localhost:11434/v1', 'api.openai.com/v1', 'ftp://example.com/v1']) {
      const r = await runCli(['serve', '--port', '0', '--db', join(dir, 'url', 'gw.db')], { OPENAI_API_KEY: UPSTREAM_KEY, OPENAI_BASE_URL: bad })
      expect(r.code, bad).toBe(2)
      expect(r.stderr.trim().split('\n'), bad).toEqual([expect.stringMatching(new RegExp(`^Error: OPENAI_BASE_URL "${bad.replace(/[.]/g, '\\.')}" is not an http\\(s\\) URL`))])
      expect(r.stdout + r.stderr).not.toContain(UPSTREAM_KEY)
    }
  })

  it('a bad --shutdown-timeout exits 2 at start-up with one line naming it, before listening', async () => {
    const r = await runCli(['serve', '--port', '0', '--db', join(dir, 'shutdown', 'gw.db'), '--shutdown-timeout', 'bogus'])
    expect(r.code).toBe(2)
    expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^Error: --shutdown-timeout must be a duration .*got "bogus"/)])
    expect(r.stdout).toBe('')
  })

  it('--check-upstream lists the models once and reports it; a refused upstream exits 2 naming the cause', async () => {
    const ok = await serve(['--db', join(dir, 'check', 'gw.db'), '--check-upstream'], { OPENAI_API_KEY: UPSTREAM_KEY, OPENAI_BASE_URL: upstream.url })
    expect(ok.info.upstreamCheck).toMatchObject({ ok: true, models: expect.any(Number) })
    expect(upstream.requests.some((r) => r.path.endsWith('/models'))).toBe(true)
    await ok.stop()
    const refused = await runCli(['serve', '--port', '0', '--db', join(dir, 'check', 'gw.db'), '--check-upstream'], { OPENAI_API_KEY: UPSTREAM_KEY, OPENAI_BASE_URL: 'http://127.0.0.1:1/v1' })
    expect(refused.code).toBe(2)
    expect(refused.stderr).toContain('--check-upstream: http://127.0.0.1:1/v1 failed: connection refused')
    expect(refused.stdout + refused.stderr).not.toContain(UPSTREAM_KEY)
  })

  it('each upstream failure while serving prints a warning line on stderr with its cause, rate-limited', async () => {
    const db = join(dir, 'warn', 'gw.db')
    const key = await keyFor(db, 'carol')
    const s = await serve(['--db', db], { OPENAI_API_KEY: UPSTREAM_KEY, OPENAI_BASE_URL: 'http://127.0.0.1:1/v1' })
    for (let i = 0; i < 10; i++) expect((await chat(s.url, key, 'x')).status).toBe(502)
    const warnings = await linesOf(s.stderr, /warning: upstream/, 1)
    expect(warnings).toEqual([expect.stringContaining('gateway: warning: upstream http://127.0.0.1:1/v1: connection refused')])
    expect(s.stderr()).not.toContain(UPSTREAM_KEY)
  })
})
