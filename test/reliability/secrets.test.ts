/**
 * Issue 7, scenario 5: secrets. With canary client keys and a canary upstream key, a real
 * `gateway serve` child (OPENAI_LOG=debug) serves successes and every kind of failure; no
 * 8-character piece of any canary may then be found in the database files (-wal and -shm
 * included), the CSV log, the child's stdout/stderr, response bodies and headers, /usage or
 * CLI output, except the one-time display at `keys create`. Files are created 0600.
 */
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runCli } from '../support/cli.js'
import { tempDir } from '../support/gateway.js'
import { startMockUpstream, type Behavior, type MockUpstream } from '../support/mock-upstream.js'
import { findLeaks, startChildGateway, type ChildGateway } from './helpers.js'

let dir: string
let db: string
let mock: MockUpstream
let child: ChildGateway | null = null
const canaries: Record<string, string> = {}
const haystacks: Record<string, string> = {}
let createOutputs: string[] = []
const modes: Record<string, number> = {}

/**
 * The stored display prefix is the key's first 7 characters and sits right before the hex
 * hash in the key_secrets row; when the hash's first digit equals the key's 8th character
 * that adjacency forms a false 8-character match (1 in 64). Such a key is set aside.
 */
const falseAdjacency = (k: string) => createHash('sha256').update(k).digest('hex')[0] === k[7]

async function createKey(name: string, admin = false): Promise<string> {
  for (let i = 0; ; i++) {
    const r = await runCli(['keys', 'create', '--name', i === 0 ? name : `${name}-${i}`, '--db', db, '--json', ...(admin ? ['--admin', '--rpm', 'off'] : ['--rpm', 'off'])])
    expect(r.code, r.stderr).toBe(0)
    createOutputs.push(r.stdout)
    const k = (JSON.parse(r.stdout) as { key: string }).key
    if (!falseAdjacency(k)) return k
  }
}

const readAll = (label: string) => {
  for (const f of readdirSync(dir)) {
    const p = join(dir, f)
    haystacks[`${label}:${f}`] = readFileSync(p).toString('latin1')
    modes[f] = statSync(p).mode & 0o777
  }
}

beforeAll(async () => {
  dir = tempDir('gw-secrets-')
  db = join(dir, 'gateway.db')
  mock = await startMockUpstream()
  canaries.upstream = `sk-${randomBytes(36).toString('base64url')}`
  canaries.alice = await createKey('alice')
  canaries.root = await createKey('root', true)
  canaries.unknown = `gw-${randomBytes(32).toString('base64url')}`
  canaries.malformed = `sk-client-${randomBytes(24).toString('base64url')}`
}, 120_000)

afterAll(async () => {
  await child?.stop()
  await mock?.close()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

describe('no piece of a secret is written or shown anywhere', () => {
  it('serves successes and failures, then finds no canary outside `keys create`', async () => {
    child = await startChildGateway({ db, env: { OPENAI_API_KEY: canaries.upstream, OPENAI_BASE_URL: mock.url, OPENAI_LOG: 'debug' } })
    const responses: string[] = []
    const call = async (path: string, init: RequestInit & { headers?: Record<string, string> } = {}) => {
      const res = await fetch(`${child!.url}${path}`, { ...init, headers: { 'content-type': 'application/json', ...init.headers } })
      const text = await res.text()
      responses.push(`${res.status} ${JSON.stringify([...res.headers])}\n${text}`)
      return { status: res.status, text }
    }
    const A = canaries.alice
    const body = (extra: Record<string, unknown> = {}) => JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }], ...extra })

    // Successes: /chat, /v1 JSON and SSE, models, usage, metrics.
    expect((await call('/chat', { method: 'POST', headers: { authorization: `Bearer ${A}` }, body: JSON.stringify({ message: 'hi' }) })).status).toBe(200)
    expect((await call('/v1/chat/completions', { method: 'POST', headers: { 'x-api-key': A }, body: body() })).status).toBe(200)
    expect((await call('/v1/chat/completions', { method: 'POST', headers: { authorization: `Bearer ${A}` }, body: body({ stream: true }) })).status).toBe(200)
    const sdk = new OpenAI({ apiKey: A, baseURL: `${child.url}/v1`, maxRetries: 0 })
    let streamed = ''
    for await (const chunk of await sdk.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'sdk' }], stream: true, stream_options: { include_usage: true } })) {
      streamed += JSON.stringify(chunk)
    }
    responses.push(streamed)
    expect((await call('/v1/models', { headers: { authorization: `Bearer ${A}` } })).status).toBe(200)
    expect((await call('/usage', { headers: { authorization: `Bearer ${A}` } })).status).toBe(200)
    expect((await call('/usage', { headers: { authorization: `Bearer ${canaries.root}` } })).status).toBe(200)
    expect((await call('/metrics', { headers: { authorization: `Bearer ${canaries.root}` } })).status).toBe(200)

    // Refusals with canary keys.
    expect((await call('/usage', { headers: { authorization: `Bearer ${canaries.unknown}` } })).status).toBe(401)
    expect((await call('/chat', { method: 'POST', headers: { 'x-api-key': canaries.malformed }, body: '{"message":"x"}' })).status).toBe(401)
    expect((await call('/usage', { headers: { authorization: `Bearer ${A}`, 'x-api-key': canaries.unknown } })).status).toBe(400)

    // An upstream that echoes the operator's key in every way it can.
    const U = canaries.upstream
    const echoes: [Behavior, boolean][] = [
      [{ kind: 'status', status: 500, body: JSON.stringify({ error: { message: `internal error for ${U}`, type: 'server_error' } }) }, false],
      [{ kind: 'status', status: 401, headers: { 'content-type': 'text/plain' }, body: `Incorrect API key provided: ${U}` }, false],
      [{ kind: 'status', status: 400, body: JSON.stringify({ error: { message: `bad request with ${U}`, type: 'invalid_request_error', code: U, param: U } }) }, false],
      [{ kind: 'status', status: 404, body: JSON.stringify({ error: { message: `The model does not exist or ${U} has no access`, code: 'model_not_found' } }) }, false],
      [{ kind: 'status', status: 429, headers: { 'retry-after': '1', 'x-echo-key': U }, body: JSON.stringify({ error: { message: `Rate limit reached for ${U}` } }) }, false],
      [{ kind: 'status', status: 503, headers: { 'content-type': 'text/html' }, body: `<html><body><h1>503</h1><p>key=${U}</p></body></html>` }, false],
      [{ kind: 'status', status: 200, headers: { 'content-type': 'text/plain' }, body: `not json, but here is ${U}` }, false],
      [{ kind: 'raw', chunks: [`data: ${JSON.stringify({ id: 'x', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta: { content: 'Hi' }, finish_reason: null }] })}\n\n`, `data: ${JSON.stringify({ error: { message: `stream failed for ${U}`, type: 'server_error', code: U } })}\n\n`] }, true],
      [{ kind: 'status', status: 401, headers: { 'content-type': 'text/plain' }, body: `Incorrect API key provided: ${U}` }, true],
    ]
    for (const [behavior, stream] of echoes) {
      mock.script(behavior)
      const r = await call('/v1/chat/completions', { method: 'POST', headers: { authorization: `Bearer ${A}` }, body: body({ stream }) })
      expect(r.status, JSON.stringify(behavior).slice(0, 80)).not.toBe(500)
    }
    mock.script({ kind: 'status', status: 500, headers: { 'content-type': 'text/plain' }, body: `boom ${U}` })
    expect((await call('/chat', { method: 'POST', headers: { authorization: `Bearer ${A}` }, body: JSON.stringify({ message: 'hi' }) })).status).toBe(502)

    // The upstream did get the canary, so finding none below means something.
    const upstreamCalls = mock.requests.filter((r) => r.path.endsWith('/chat/completions'))
    expect(upstreamCalls.length).toBeGreaterThan(0)
    expect(upstreamCalls.every((r) => r.headers.authorization === `Bearer ${U}`)).toBe(true)

    // While the server runs: database, -wal, -shm, CSV.
    readAll('running')
    expect(Object.keys(haystacks).some((k) => k.endsWith('-wal'))).toBe(true)

    // What an operator sees.
    const cli: string[][] = [
      ['usage', 'today'],
      ['usage', 'today', '--json'],
      ['usage', '--by', 'key', '--json'],
      ['logs', 'export'],
      ['logs', 'export', '--format', 'jsonl'],
      ['keys', 'list'],
      ['keys', 'list', '--json'],
      ['keys', 'show', 'alice', '--json'],
      ['limits', 'show', '--key', 'alice'],
    ]
    const queue = [...cli]
    await Promise.all(
      Array.from({ length: 3 }, async () => {
        for (let args = queue.shift(); args; args = queue.shift()) {
          const r = await runCli([...args, '--db', db])
          expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0)
          haystacks[`cli: ${args.join(' ')}`] = r.stdout + r.stderr
        }
      }),
    )
    expect(haystacks['cli: logs export']).toContain('/v1/chat/completions') // the export has rows to search

    const exit = await child.stop()
    expect(exit.code).toBe(0)
    haystacks['serve stdout'] = child.stdout()
    haystacks['serve stderr'] = child.stderr()
    haystacks.responses = responses.join('\n')
    readAll('stopped')

    // Positive control: the finder does see a key where it is shown on purpose.
    expect(findLeaks({ 'keys create': createOutputs.join('\n') }, { alice: canaries.alice }).length).toBeGreaterThan(0)
    expect(findLeaks(haystacks, canaries)).toEqual([])
  }, 240_000)

  it('database, WAL, shared-memory and CSV files are created 0600', () => {
    const files = Object.keys(modes)
    expect(files).toEqual(expect.arrayContaining(['gateway.db', 'gateway.db-wal', 'gateway.db-shm']))
    expect(files.some((f) => /^requests-\d{4}-\d{2}-\d{2}\.csv$/.test(f))).toBe(true)
    const wrong = Object.entries(modes)
      .filter(([, m]) => m !== 0o600)
      .map(([f, m]) => `${f}: ${m.toString(8)}`)
    expect(wrong).toEqual([])
    expect(existsSync(db)).toBe(true)
  })
})

describe('several upstreams (issue 15): no upstream key reaches a client, a log, a message or the CSV', () => {
  it('serves through each upstream, falls back, echoes every key in failures, then finds no canary', async () => {
    const home = tempDir('gw-secrets-multi-')
    const base = join(home, 'gateway.db')
    const keys = { one: `sk-${randomBytes(36).toString('base64url')}`, two: `sk-${randomBytes(36).toString('base64url')}`, azure: randomBytes(16).toString('hex') }
    const one = await startMockUpstream()
    const two = await startMockUpstream()
    const azure = await startMockUpstream({ azure: { apiVersion: '2024-10-21', key: keys.azure, deployments: ['dep-mini'] } })
    const file = join(home, 'upstreams.yaml')
    writeFileSync(
      file,
      `upstreams:
  - {name: one, base_url: "${one.url}", api_key_env: ONE_KEY, models: [gpt-4o-mini, gpt-4o]}
  - {name: two, base_url: "${two.url}", api_key_env: TWO_KEY, models: [gpt-4o-mini]}
  - {name: az, provider: azure, base_url: "${azure.url}", api_key_env: AZ_KEY, api_version: 2024-10-21, deployments: {gpt-4o-mini: dep-mini}}
models:
  chain: [{upstream: one, model: gpt-4o}, {upstream: az, model: gpt-4o-mini}, {upstream: two, model: gpt-4o-mini}]
cooldown: {failures: 1000}
`,
    )
    const env = { ONE_KEY: keys.one, TWO_KEY: keys.two, AZ_KEY: keys.azure, GATEWAY_DB: base }
    const found: Record<string, string> = {}
    const created: string[] = []
    const make = async (name: string, admin: boolean) => {
      for (let i = 0; ; i++) {
        const r = await runCli(['keys', 'create', '--name', `${name}${i || ''}`, '--json', '--rpm', 'off', ...(admin ? ['--admin'] : [])], env)
        created.push(r.stdout)
        const k = (JSON.parse(r.stdout) as { key: string }).key
        if (!falseAdjacency(k)) return k
      }
    }
    const user = await make('user', false)
    const admin = await make('ops', true)
    const gw = await startChildGateway({ db: base, env, args: ['--upstreams', file] })
    try {
      const responses: string[] = []
      const chat = async (model: string, stream = false) => {
        const res = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${user}`, 'content-type': 'application/json' }, body: JSON.stringify({ model, stream, messages: [{ role: 'user', content: 'hi' }] }) })
        responses.push(`${res.status} ${JSON.stringify([...res.headers])}\n${await res.text()}`)
        return res.status
      }
      for (const stream of [false, true]) for (let i = 0; i < 4; i++) expect(await chat(i % 2 ? 'gpt-4o-mini' : 'chain', stream)).toBe(200)
      // Each upstream echoes its own key in its failures; the chain falls back through all three.
      // Two requests fail on all three (a 500, then a 429); the third stops at one's 400, which is
      // relayed (no retry); every script is used up, so `upstreams check` below finds them well.
      for (const [mock, key] of [[one, keys.one], [azure, keys.azure], [two, keys.two]] as const) {
        mock.script(
          { kind: 'status', status: 500, body: JSON.stringify({ error: { message: `internal error for ${key}` } }) },
          { kind: 'status', status: 429, headers: { 'x-echo': key }, body: JSON.stringify({ error: { message: `Rate limit reached for ${key}` } }) },
        )
      }
      one.script({ kind: 'status', status: 400, body: JSON.stringify({ error: { message: `bad request with ${keys.one}`, code: keys.one, param: keys.one } }) })
      for (let i = 0; i < 4; i++) await chat('chain', i % 2 === 1)
      expect(one.requests.some((r) => r.headers.authorization === `Bearer ${keys.one}`)).toBe(true)
      expect(two.requests.some((r) => r.headers.authorization === `Bearer ${keys.two}`)).toBe(true)
      expect(azure.requests.some((r) => r.headers['api-key'] === keys.azure)).toBe(true)
      const haystack: Record<string, string> = { responses: responses.join('\n') }
      const cli = [['upstreams', '--upstreams', file], ['upstreams', '--upstreams', file, '--url', gw.url, '--key', admin, '--json'], ['upstreams', 'check', '--upstreams', file, '--json'], ['logs', 'export'], ['usage', '--by', 'upstream'], ['try', '--url', gw.url, '--key', user, '--model', 'chain', 'hi']]
      for (const args of cli) {
        const r = await runCli(args, env)
        haystack[`cli: ${args.join(' ')}`] = r.stdout + r.stderr
      }
      expect(haystack[`cli: logs export`]).toContain('chain')
      const check = JSON.parse(haystack[`cli: upstreams check --upstreams ${file} --json`]) as { upstreams: { name: string; ok: boolean }[] }
      expect(check.upstreams.map((u) => [u.name, u.ok])).toEqual([['one', true], ['two', true], ['az', true]]) // Azure through the SDK's AzureOpenAI too
      await gw.stop()
      haystack['serve'] = gw.stdout() + gw.stderr()
      for (const f of readdirSync(home)) if (!f.endsWith('.yaml')) haystack[f] = readFileSync(join(home, f)).toString('latin1')
      expect(findLeaks({ 'keys create': created.join('\n') }, { user }).length).toBeGreaterThan(0)
      expect(findLeaks(haystack, { ...keys, user, admin })).toEqual([])
    } finally {
      await gw.stop()
      await Promise.all([one.close(), two.close(), azure.close()])
      rmSync(home, { recursive: true, force: true })
    }
  }, 240_000)
})
