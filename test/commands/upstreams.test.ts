/**
 * Issue 15 from the operator's side: `serve --upstreams` refusing a bad file, then a serve
 * process routing to two mock upstreams, and the real CLI: `upstreams` (with the live state),
 * `upstreams check`, `try` and `usage --by upstream`.
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { tempDir } from '../support/gateway.js'
import { runCli, runJson, spawnServe, type ServeChild } from '../support/cli.js'
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js'

const KEY_A = 'sk-upstream-a-canary-0003'

describe('serve --upstreams refuses a bad file at start', () => {
  it('exit 2, one line per problem naming the file, the line and the field', async () => {
    const dir = tempDir()
    const file = join(dir, 'bad.yaml')
    writeFileSync(
      file,
      ['upstreams:', '  - name: a', '    base_url: not-a-url', '    weight: heavy', '    provider: bedrock', '  - name: a', '    base_url: http://127.0.0.1:1/v1', 'models:', '  fast: [{upstream: nobody, model: m}]', ''].join('\n'),
    )
    const r = await runCli(['serve', '--port', '0', '--db', join(dir, 'g.db'), '--upstreams', file])
    expect(r.code).toBe(2)
    const lines = r.stderr.trim().split('\n')
    expect(lines).toEqual([
      `Error: ${file}:3: upstreams[0].base_url: an absolute http(s) URL is required, e.g. https://api.openai.com/v1`,
      `Error: ${file}:4: upstreams[0].weight: must be a number above 0`,
      `Error: ${file}:5: upstreams[0].provider: must be openai or azure`,
      `Error: ${file}:6: upstreams[1].name: "a" names two upstreams`,
      `Error: ${file}:9: models.fast[0].upstream: no upstream is named "nobody"`,
    ])
  })

  it.each([
    ['an api_key field', '    api_key: whatever\n', 'upstreams[0].api_key: keys come from the environment'],
    ['a key-looking value', '    api_key_env: OPENAI_API_KEY\n    models: [sk-proj-abcdefghijklmnopqrstuvwx]\n', 'upstreams[0].models[0]: looks like a key'],
    ['credentials in the URL', '', 'upstreams[0].base_url: credentials in the URL'],
  ])('a file holding a key (%s) is refused, the key never echoed', async (_name, extra, message) => {
    const dir = tempDir()
    const file = join(dir, 'keys.json.yaml')
    const url = message.includes('URL') ? 'https://user:hunter2-secret@example.com/v1' : 'https://example.com/v1'
    writeFileSync(file, `upstreams:\n  - name: a\n    base_url: ${url}\n${extra}`)
    const r = await runCli(['serve', '--port', '0', '--db', join(dir, 'g.db'), '--upstreams', file], { OPENAI_API_KEY: 'sk-env-key-000000000000' })
    expect(r.code).toBe(2)
    expect(r.stderr).toContain(message)
    expect(r.stderr + r.stdout).not.toMatch(/hunter2|sk-proj-abc|whatever/)
  })

  it('an api_key_env that is not set is named', async () => {
    const dir = tempDir()
    const file = join(dir, 'u.json')
    writeFileSync(file, JSON.stringify({ upstreams: [{ name: 'a', base_url: 'http://127.0.0.1:1/v1', api_key_env: 'NOT_SET_ANYWHERE' }] }))
    const r = await runCli(['serve', '--port', '0', '--db', join(dir, 'g.db'), '--upstreams', file])
    expect(r.code).toBe(2)
    expect(r.stderr.trim()).toBe(`Error: ${file}: upstream "a": api_key_env NOT_SET_ANYWHERE is not set in the environment`)
  })
})

describe('a serve process with two upstreams, and the CLI', () => {
  let a: MockUpstream
  let b: MockUpstream
  let serve: ServeChild
  let dir: string
  let file: string
  let db: string
  let user: string
  let admin: string
  const env = () => ({ A_KEY: KEY_A, GATEWAY_DB: db })

  beforeAll(async () => {
    a = await startMockUpstream()
    b = await startMockUpstream()
    dir = tempDir()
    db = join(dir, 'g.db')
    file = join(dir, 'upstreams.yaml')
    writeFileSync(
      file,
      `upstreams:
  - {name: a, base_url: "${a.url}", api_key_env: A_KEY, models: [gpt-4o-mini]}
  - {name: b, base_url: "${b.url}"}
models:
  fast: [{upstream: a, model: gpt-4o-mini}, {upstream: b, model: gpt-4o}]
`,
    )
    serve = await spawnServe(['--db', db, '--upstreams', file], env())
    user = (await runJson<{ key: string }>(['keys', 'create', '--name', 'user', '--rpm', 'off'], env())).json.key
    admin = (await runJson<{ key: string }>(['keys', 'create', '--name', 'ops', '--admin'], env())).json.key
  })
  afterAll(async () => {
    await serve?.stop()
    await a.close()
    await b.close()
  })

  it('try: streams an answer through the running gateway with the SDK, an alias falling back', async () => {
    a.script({ kind: 'status', status: 503 })
    const r = await runCli(['try', '--url', serve.url, '--key', user, '--model', 'fast', 'hello there'], env())
    expect(r.code).toBe(0)
    expect(r.stdout).toContain('Echo: hello there')
    const j = await runJson<{ content: string; usage: { total_tokens: number } }>(['try', '--url', serve.url, '--key', user, '--model', 'fast', 'again'], env())
    expect(j.json.content).toBe('Echo: again')
    expect(j.json.usage.total_tokens).toBeGreaterThan(0)
    const bad = await runJson<{ error: { code: string; message: string } }>(['try', '--url', serve.url, '--key', 'gw-not-a-key', 'x'], env())
    expect([bad.code, bad.json.error.code]).toEqual([2, 'invalid_api_key'])
  })

  it('upstreams: the config and, with --url, each upstream\'s live state; never a key', async () => {
    const r = await runJson<{ upstreams: { name: string; key_set: boolean | null; live: { state: string; lastSuccessAt: string | null } }[]; aliases: unknown[] }>(['upstreams', '--upstreams', file, '--url', serve.url, '--key', admin], env())
    expect(r.code).toBe(0)
    expect(r.json.upstreams.map((u) => [u.name, u.key_set, u.live.state])).toEqual([
      ['a', true, 'closed'],
      ['b', null, 'closed'],
    ])
    expect(r.json.aliases).toEqual([{ alias: 'fast', targets: [{ upstream: 'a', model: 'gpt-4o-mini' }, { upstream: 'b', model: 'gpt-4o' }] }])
    const human = await runCli(['upstreams', '--upstreams', file], env())
    expect(human.stdout).toContain('A_KEY (set)')
    expect(human.stdout + r.stderr).not.toContain(KEY_A)
  })

  it('upstreams check: each upstream\'s models and a 1-token completion, through the SDK; exit 1 when one fails', async () => {
    const r = await runJson<{ ok: boolean; upstreams: { name: string; ok: boolean; models: string[]; model: string; completion_ms: number }[] }>(['upstreams', 'check', '--upstreams', file], env())
    expect(r.code).toBe(0)
    expect(r.json.upstreams.map((u) => [u.name, u.ok, u.model])).toEqual([
      ['a', true, 'gpt-4o-mini'],
      ['b', true, 'gpt-4o-mini'],
    ])
    expect(r.json.upstreams[1].models).toContain('mock-echo') // b has no list: its /models was asked
    const sent = a.requests.filter((q) => q.body?.max_tokens === 1).at(-1)!
    expect(sent.headers.authorization).toBe(`Bearer ${KEY_A}`)
    b.script({ kind: 'status', status: 500 })
    const failing = await runJson<{ ok: boolean; upstreams: { name: string; ok: boolean; completion_error: string }[] }>(['upstreams', 'check', '--upstreams', file], env())
    expect(failing.code).toBe(1)
    expect(failing.json.upstreams.find((u) => u.name === 'b')).toMatchObject({ ok: false, completion_error: expect.stringContaining('500') })
  })

  it('usage --by upstream: the requests each upstream served', async () => {
    const r = await runJson<{ groups: { upstream: string | null; requests: number; chat_requests: number }[] }>(['usage', '--since', '1d', '--by', 'upstream'], env())
    expect(r.code).toBe(0)
    const by = Object.fromEntries(r.json.groups.map((g) => [g.upstream, g.chat_requests]))
    expect(by.b).toBe(1) // the first try fell back from a's 503
    expect(by.a).toBe(1)
    expect(by.null).toBe(1) // the refused key: no upstream was called
  })
})
