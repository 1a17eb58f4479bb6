/**
 * `gateway logs prune` keeps billing history: the server, the CLI reports and GET /usage read
 * the same kept totals, so they agree before and after a prune that empties the log.
 */
import { existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { runJson } from '../support/cli.js'
import { NO_LIMITS, startGateway, type TestGateway } from '../support/gateway.js'
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js'

vi.setConfig({ testTimeout: 240_000, hookTimeout: 60_000 })

let upstream: MockUpstream
let g: TestGateway
const utcDay = () => new Date().toISOString().slice(0, 10)

beforeAll(async () => {
  upstream = await startMockUpstream()
  g = await startGateway({ upstreamUrl: upstream.url })
})

afterAll(async () => {
  await g?.stop()
  await upstream?.close()
})

async function call(path: string, key: string | null, body?: unknown): Promise<{ status: number; json: any }> {
  const res = await fetch(`${g.url}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...(key ? { authorization: `Bearer ${key}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  return { status: res.status, json: await res.json() }
}

const FIGURES = ['requests', 'chat_requests', 'prompt_tokens', 'completion_tokens', 'total_tokens', 'estimated_cost_usd'] as const
const pick = (o: Record<string, unknown>) => Object.fromEntries(FIGURES.map((f) => [f, o[f]]))

/** Each report's figures per key name, and the token and cost totals. */
async function reports(admin: string) {
  const cli = <T>(args: string[]) => runJson<T>([...args, '--db', g.db]).then((r) => (expect(r.code, JSON.stringify(r.json)).toBe(0), r.json))
  const [today, byKey, byModel, byDay] = await Promise.all([
    cli<{ keys: any[]; total: any }>(['usage', 'today']),
    cli<{ groups: any[]; total: any }>(['usage', '--since', '1d', '--by', 'key']),
    cli<{ groups: any[]; total: any }>(['usage', '--since', '1d', '--by', 'model']),
    cli<{ groups: any[]; total: any }>(['usage', '--since', '1d', '--by', 'day']),
  ])
  const http = (await call('/usage', admin)).json
  const perKey = (rows: any[]) => Object.fromEntries(rows.filter((r) => r.key_name !== 'root').map((r) => [r.key_name ?? '(none)', pick(r)]))
  const totals = (t: any) => ({ total_tokens: t.total_tokens, estimated_cost_usd: t.estimated_cost_usd })
  return {
    keys: { today: perKey(today.keys), byKey: perKey(byKey.groups), http: perKey(http.keys) },
    totals: { today: totals(today.total), byKey: totals(byKey.total), byModel: totals(byModel.total), byDay: totals(byDay.total), http: totals(http.total) },
    // Without the no-model group, which the admin's own GET /usage calls grow.
    models: Object.fromEntries(byModel.groups.filter((m) => m.model !== null).map((m) => [m.model, pick(m)])),
    latency: today.keys.filter((k) => k.key_name !== 'root').map((k) => [k.key_name, k.p50_ms, k.p95_ms]),
  }
}

describe('logs prune keeps billing history', () => {
  it('usage today, usage --by key|model|day and GET /usage agree before and after prune --older-than 0s; --dry-run deletes nothing; old CSV files go, today\'s stays', async () => {
    const alice = await g.createKey({ name: 'alice', limits: NO_LIMITS })
    const bob = await g.createKey({ name: 'bob', limits: NO_LIMITS })
    const root = await g.createKey({ name: 'root', admin: true, limits: NO_LIMITS })
    // Spend: chat on both routes and two models, a non-chat request, an upstream failure.
    expect((await call('/v1/chat/completions', alice, { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'one two three' }] })).status).toBe(200)
    expect((await call('/v1/chat/completions', alice, { model: 'gpt-4o', messages: [{ role: 'user', content: 'four five' }] })).status).toBe(200)
    expect((await call('/chat', bob, { message: 'six seven eight nine' })).status).toBe(200)
    expect((await call('/usage', bob)).status).toBe(200)
    upstream.script({ kind: 'status', status: 503 })
    expect((await call('/chat', bob, { message: 'down' })).status).toBe(502)

    const before = await reports(root)
    // The three sources agree, and the spend is there.
    expect(before.keys.today).toEqual(before.keys.http)
    expect(before.keys.byKey).toEqual(before.keys.http)
    expect(before.keys.http.alice).toMatchObject({ requests: 2, chat_requests: 2 })
    expect(before.keys.http.bob).toMatchObject({ requests: 3, chat_requests: 2 })
    expect(before.keys.http.alice.total_tokens).toBeGreaterThan(0)
    expect(before.keys.http.alice.estimated_cost_usd).toBeGreaterThan(0)
    for (const t of Object.values(before.totals)) expect(t).toEqual(before.totals.http)
    expect(before.totals.http.total_tokens).toBe((before.keys.http.alice.total_tokens as number) + (before.keys.http.bob.total_tokens as number))
    expect(before.models['gpt-4o']).toMatchObject({ requests: 1, chat_requests: 1 })
    for (const [name, p50, p95] of before.latency) expect([name, typeof p50, typeof p95]).toEqual([name, 'number', 'number'])

    // CSV day files: two old days, today's (written by the server), and a file that is not a day file.
    const old = [join(g.dir, 'requests-2026-01-01.csv'), join(g.dir, 'requests-2026-01-02.csv')]
    for (const f of old) writeFileSync(f, 'timestamp\n')
    const todays = join(g.dir, `requests-${utcDay()}.csv`)
    const other = join(g.dir, 'requests-notes.csv')
    writeFileSync(other, 'x\n')
    expect(existsSync(todays)).toBe(true)

    const rowsBefore = await g.admin.countRequests({})
    const dry = await runJson<any>(['logs', 'prune', '--older-than', '0s', '--dry-run', '--db', g.db])
    expect(dry.code).toBe(0)
    expect(dry.json).toMatchObject({ dry_run: true, deleted: 0, csv_files: old })
    expect(dry.json.would_delete).toBeGreaterThanOrEqual(rowsBefore)
    expect(dry.json.first).toMatch(/^\d{4}-\d{2}-\d{2}T/)
    expect(await g.admin.countRequests({})).toBeGreaterThanOrEqual(rowsBefore)
    for (const f of old) expect(existsSync(f)).toBe(true)

    const pruned = await runJson<any>(['logs', 'prune', '--older-than', '0s', '--db', g.db])
    expect(pruned.code).toBe(0)
    expect(pruned.json).toMatchObject({ dry_run: false, csv_files: old })
    expect(pruned.json.deleted).toBeGreaterThanOrEqual(rowsBefore)
    expect(await g.admin.countRequests({ until: pruned.json.before })).toBe(0)
    for (const f of old) expect(existsSync(f)).toBe(false)
    expect(existsSync(todays)).toBe(true)
    expect(existsSync(other)).toBe(true)

    const after = await reports(root)
    // Same figures as before the prune, from every source.
    expect(after.keys.http).toEqual(before.keys.http)
    expect(after.keys.today).toEqual(before.keys.http)
    expect(after.keys.byKey).toEqual(before.keys.http)
    expect(after.models).toEqual(before.models)
    for (const t of Object.values(after.totals)) expect(t).toEqual(before.totals.http)
    // Percentiles of pruned requests are unknown, not zero.
    for (const [name, p50, p95] of after.latency) expect([name, p50, p95]).toEqual([name, null, null])
  })
})
