/**
 * Issue 7, scenario 2: SQL injection payloads in every place a client or an operator can put
 * text that reaches a query: the key headers, `model`, `user`, /usage's query, and the CLI's
 * filter flags and key lookups. The answer is a refusal (400/401, or the CLI's documented
 * exit code), or, for fields that are free-form data, the payload kept verbatim as data; the
 * schema and the keys are unchanged afterwards; no SQL is built from strings.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runCli } from '../support/cli.js'
import { NO_LIMITS, type TestGateway } from '../support/gateway.js'
import type { MockUpstream } from '../support/mock-upstream.js'
import { query, rowFor, rowsOf, schemaOf, startOpenGateway } from './helpers.js'

/** Classic payloads: tautologies, stacked queries, comments, unions, attach, quotes of both kinds. */
const PAYLOADS = [
  `' OR '1'='1`,
  `' OR 1=1 --`,
  `alice' --`,
  `'; DROP TABLE api_keys; --`,
  `"; DROP TABLE request_log; --`,
  `x') UNION SELECT hash, prefix FROM key_secrets --`,
  `1; DELETE FROM request_log WHERE 1=1`,
  `%' OR name LIKE '%`,
  `'; ATTACH DATABASE '/tmp/pwn.db' AS pwn; --`,
  `' || (SELECT hash FROM key_secrets LIMIT 1) || '`,
  `'OR'1'='1`,
  `alice'/**/--`,
  `1'/**/OR/**/'1'='1`,
]
/** Payloads that survive "printable ASCII, no blanks" checks. */
const COMPACT = PAYLOADS.filter((p) => !/\s/.test(p))

let mock: MockUpstream
let gw: TestGateway
let key: string
let adminKey: string
let schemaBefore: string
let keysBefore: string

const keysSnapshot = () => JSON.stringify(query(gw.db, 'select k.*, s.prefix, s.hash, s.expires_at as secret_expires from api_keys k join key_secrets s on s.key_id = k.id order by k.id, s.id'))

beforeAll(async () => {
  ;({ mock, gw } = await startOpenGateway())
  key = await gw.createKey({ name: 'alice', limits: NO_LIMITS })
  adminKey = await gw.createKey({ name: 'root', admin: true, limits: NO_LIMITS })
  // Some history, so a tautology that leaked rows or a DELETE that ran would show.
  for (let i = 0; i < 3; i++) expect((await gw.post('/chat', key, { message: `seed ${i}` })).status).toBe(200)
  await gw.built.requestLog.drain()
  schemaBefore = schemaOf(gw.db)
  keysBefore = keysSnapshot()
})

afterAll(async () => {
  await gw?.stop()
  await mock?.close()
})

const completion = (extra: Record<string, unknown>, headers: Record<string, string> = {}) =>
  gw.post('/v1/chat/completions', key, { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], ...extra }, headers)

describe('HTTP', () => {
  it.each(PAYLOADS)('key headers: %s → 401', async (p) => {
    const variants: Record<string, string>[] = [{ authorization: `Bearer ${p}` }, { 'x-api-key': p }, { authorization: `Bearer gw-${p}` }]
    for (const headers of variants) {
      const res = await fetch(`${gw.url}/usage`, { headers })
      expect(res.status, JSON.stringify(headers)).toBe(401)
      expect(await res.json()).toMatchObject({ error: { code: 'invalid_api_key' } })
    }
  })

  it.each(PAYLOADS)('model: %s → 400, or forwarded and logged verbatim as data', async (p) => {
    const calls = mock.requests.length
    const res = await completion({ model: p }, { 'x-request-id': `model-${PAYLOADS.indexOf(p)}` })
    expect([200, 400]).toContain(res.status)
    const row = await rowFor(gw, `model-${PAYLOADS.indexOf(p)}`)
    if (res.status === 400) {
      expect(await res.json()).toMatchObject({ error: { param: 'model' } })
      expect(mock.requests.length).toBe(calls)
      expect([null, p]).toContain(row.model) // logged as data, or not at all
    } else {
      await res.arrayBuffer()
      expect(mock.requests.at(-1)!.body!.model).toBe(p)
      expect(row.model).toBe(p)
    }
    if (/\s/.test(p)) expect(res.status).toBe(400) // blanks are never part of a model name
  })

  it.each(PAYLOADS)('user: %s → forwarded verbatim as data (a free-form field), nothing executed', async (p) => {
    const res = await completion({ user: p })
    expect(res.status).toBe(200)
    await res.arrayBuffer()
    expect(mock.requests.at(-1)!.body!.user).toBe(p)
  })

  it.each(PAYLOADS)('/usage?date=%s → 400', async (p) => {
    for (const k of [key, adminKey]) {
      const res = await fetch(`${gw.url}/usage?date=${encodeURIComponent(p)}`, { headers: { authorization: `Bearer ${k}` } })
      expect(res.status).toBe(400)
      expect(await res.json()).toMatchObject({ error: { param: 'date' } })
      const res2 = await fetch(`${gw.url}/usage?date=2026-01-01${encodeURIComponent(p)}`, { headers: { authorization: `Bearer ${k}` } })
      expect(res2.status).toBe(400)
    }
  })

  it('/usage ignores parameters it does not define, whatever they hold (no other key\'s data)', async () => {
    // `requests` may count the /usage reads themselves; everything else must be identical.
    const withoutCount = (u: Record<string, unknown>) => ({ ...u, requests: undefined })
    const plain = withoutCount((await (await fetch(`${gw.url}/usage`, { headers: { authorization: `Bearer ${key}` } })).json()) as Record<string, unknown>)
    for (const p of PAYLOADS) {
      const qs = ['key', 'key_id', 'since', 'until', 'status', 'model', 'user'].map((n) => `${n}=${encodeURIComponent(p)}`).join('&')
      const res = await fetch(`${gw.url}/usage?${qs}`, { headers: { authorization: `Bearer ${key}` } })
      expect(res.status).toBe(200)
      const body = (await res.json()) as Record<string, unknown>
      expect(withoutCount(body)).toEqual(plain)
      expect(body).not.toHaveProperty('keys')
    }
  })

  it('a model id in the path (/v1/models/:model) is looked up, not executed', async () => {
    for (const p of PAYLOADS) {
      const res = await fetch(`${gw.url}/v1/models/${encodeURIComponent(p)}`, { headers: { authorization: `Bearer ${key}` } })
      expect(res.status).toBe(404)
      await res.arrayBuffer()
    }
  })

  it('the schema and the keys are unchanged, no seeded row was lost and none was written twice', async () => {
    const rows = await rowsOf(gw)
    expect(schemaOf(gw.db)).toBe(schemaBefore)
    expect(keysSnapshot()).toBe(keysBefore)
    expect(rows.filter((r) => r.route === '/chat' && r.status === 200)).toHaveLength(3)
    expect(new Set(rows.map((r) => r.requestId)).size, 'one row per request id').toBe(rows.length)
    expect(query<{ name: string }>(gw.db, "select name from pragma_database_list where name != 'main'")).toEqual([])
  })
})

describe('CLI filter flags and key lookups (the real binary)', () => {
  // Each CLI start costs over a second of CPU: the lookup flags get the tautology and the
  // comment payload (those would find "alice" if the lookup were string-built), every other
  // flag one payload each, cycling through the list.
  const lookup = [`' OR '1'='1`, `alice' --`, `alice'/**/--`]
  const cases: { args: (p: string) => string[]; payloads: string[]; exit: number }[] = [
    { args: (p) => ['logs', 'export', '--key', p], payloads: lookup, exit: 3 },
    { args: (p) => ['usage', '--key', p], payloads: lookup.slice(0, 1), exit: 3 },
    { args: (p) => ['keys', 'show', p], payloads: lookup.slice(0, 2), exit: 3 },
    { args: (p) => ['limits', 'show', '--key', p], payloads: lookup.slice(0, 1), exit: 3 },
    { args: (p) => ['logs', 'export', '--since', p], payloads: [PAYLOADS[1]], exit: 2 },
    { args: (p) => ['logs', 'export', '--until', p], payloads: [PAYLOADS[6]], exit: 2 },
    { args: (p) => ['logs', 'export', '--status', p], payloads: [PAYLOADS[0]], exit: 2 },
    { args: (p) => ['usage', '--since', p], payloads: [PAYLOADS[3]], exit: 2 },
    { args: (p) => ['usage', '--until', p], payloads: [`2026-01-01' OR '1'='1`], exit: 2 },
  ]
  const runs = cases.flatMap((c) => c.payloads.map((p) => ({ args: c.args(p), exit: c.exit })))

  it(`every run exits with the documented code and shows no data (${runs.length} runs)`, async () => {
    await gw.built.requestLog.drain()
    const aliceId = (await gw.admin.findKey('alice'))!.id
    const results: { args: string[]; exit: number; code: number; stdout: string; stderr: string }[] = []
    const queue = [...runs]
    await Promise.all(
      Array.from({ length: 3 }, async () => {
        for (let r = queue.shift(); r; r = queue.shift()) {
          const out = await runCli([...r.args, '--db', gw.db])
          results.push({ ...r, ...out })
        }
      }),
    )
    const wrong = results.filter((r) => r.code !== r.exit).map((r) => `${r.args.join(' ')} → exit ${r.code} (want ${r.exit}) ${r.stderr.slice(0, 200)}`)
    expect(wrong).toEqual([])
    for (const r of results) {
      expect(r.stdout + r.stderr, r.args.join(' ')).not.toMatch(/SQLITE|syntax error|no such/i)
      expect(r.stdout, r.args.join(' ')).not.toContain(aliceId)
      expect(r.stdout, r.args.join(' ')).not.toContain('seed 0')
    }
    expect(schemaOf(gw.db)).toBe(schemaBefore)
    expect(keysSnapshot()).toBe(keysBefore)
  }, 180_000)

  it('a real key name still works through the same flags (the refusals above are about the payload)', async () => {
    const r = await runCli(['keys', 'show', 'alice', '--db', gw.db, '--json'])
    expect(r.code).toBe(0)
    expect(JSON.parse(r.stdout)).toMatchObject({ name: 'alice' })
  }, 60_000)
})

describe('no SQL is built from strings (static check of src/)', () => {
  const root = fileURLToPath(new URL('../../src', import.meta.url))
  const files = (dir: string): string[] =>
    readdirSync(dir).flatMap((f) => {
      const p = join(dir, f)
      return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : []
    })
  /** A driver call whose SQL text is a template literal with a `${…}`, or a concatenation, or sql.raw. */
  const DANGEROUS = [
    /\b(prepare|exec|pragma|run|all|get|values|iterate)\(\s*`[^`]*\$\{/,
    /\b(prepare|exec)\(\s*['"`][^'"`]*['"`]\s*\+/,
    /\bsql\.raw\(/,
    /\b(prepare|exec)\(\s*[A-Za-z_$][\w$.]*\s*\+/,
  ]
  /** Interpolations that are numbers from configuration, not request or CLI text. */
  const ALLOWED = [/pragma\(`busy_timeout = \$\{options\.busyTimeoutMs \?\? \d+\}`\)/]

  it('finds none', () => {
    const found: string[] = []
    for (const file of files(root)) {
      readFileSync(file, 'utf8')
        .split('\n')
        .forEach((line, i) => {
          if (DANGEROUS.some((re) => re.test(line)) && !ALLOWED.some((re) => re.test(line))) found.push(`${file.slice(root.length + 1)}:${i + 1}: ${line.trim()}`)
        })
    }
    expect(found).toEqual([])
  })
})
