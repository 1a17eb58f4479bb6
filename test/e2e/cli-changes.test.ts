/**
 * Issue 11, item 1: what the CLI commits applies to the server's very next request, with no
 * wait for the store watcher: a key just created works, a revoked or rotated-out secret is
 * refused, a changed limit holds. The real binary against a running gateway on the same file.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { runJson } from '../support/cli.js'
import { startGateway, type TestGateway } from '../support/gateway.js'

// Every CLI run is a fresh Node process (about a second of CPU): give a loaded machine time.
vi.setConfig({ testTimeout: 240_000, hookTimeout: 60_000 })

let gw: TestGateway
const cli = <T = Record<string, unknown>>(args: string[]) => runJson<T>([...args, '--db', gw.db])
const usage = (key: string) => fetch(`${gw.url}/usage`, { headers: { authorization: `Bearer ${key}` } })
const chat = (key: string, extra: Record<string, unknown> = {}) => gw.post('/v1/chat/completions', key, { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: 20, ...extra })

async function createKey(name: string): Promise<string> {
  const r = await cli<{ key: string }>(['keys', 'create', '--name', name])
  expect(r.code).toBe(0)
  return r.json.key
}

beforeAll(async () => {
  gw = await startGateway()
  // One failed authentication a minute: a single 401 from onboarding would lock the address out.
  expect((await cli(['limits', 'set', '--default', '--auth-failures-per-minute', '1'])).code).toBe(0)
})

afterAll(async () => {
  await gw?.stop()
})

describe('a CLI change applies to the very next request', () => {
  it('keys create, then at once a call: it succeeds, ten times over, and no failed authentication is counted', async () => {
    const statuses: number[] = []
    for (let i = 0; i < 10; i++) {
      const key = await createKey(`onboard-${i}`)
      const res = await usage(key)
      statuses.push(res.status)
      await res.arrayBuffer()
    }
    expect(statuses).toEqual(Array(10).fill(200))
    // The one failure the address may have is still unused: a bad key gets 401, not 429.
    const bad = await usage(`gw-${'A'.repeat(43)}`)
    expect(bad.status).toBe(401)
    expect((await usage(`gw-${'B'.repeat(43)}`)).status).toBe(429)
  })

  it('limits set --default --auth-failures-per-minute off: the very next failure is a 401 again', async () => {
    // The tests below expect 401s of their own, so this also frees them of the limit.
    expect((await cli(['limits', 'set', '--default', '--auth-failures-per-minute', 'off'])).code).toBe(0)
    for (let i = 0; i < 3; i++) expect((await usage(`gw-${'C'.repeat(43)}`)).status).toBe(401)
  })

  it('keys revoke: the very next call is 401', async () => {
    const key = await createKey('to-revoke')
    expect((await usage(key)).status).toBe(200)
    expect((await cli(['keys', 'revoke', 'to-revoke'])).code).toBe(0)
    expect((await chat(key)).status).toBe(401)
  })

  it('keys rotate without grace: the old secret is 401 at once, the new one works at once', async () => {
    const old = await createKey('to-rotate')
    expect((await usage(old)).status).toBe(200)
    const rotated = await cli<{ key: string }>(['keys', 'rotate', 'to-rotate'])
    expect(rotated.code).toBe(0)
    expect((await usage(old)).status).toBe(401)
    expect((await usage(rotated.json.key)).status).toBe(200)
  })

  it('limits set --key X --rpm 1: the very next request is held to it', async () => {
    const key = await createKey('limited')
    expect((await usage(key)).status).toBe(200) // /usage takes no slot in the requests window
    expect((await cli(['limits', 'set', '--key', 'limited', '--rpm', '1'])).code).toBe(0)
    const first = await chat(key)
    expect(first.status).toBe(200)
    expect(first.headers.get('x-ratelimit-limit-requests')).toBe('1')
    expect((await chat(key)).status).toBe(429)
  })

  it('keys update --models and limits set (a default): the very next request is held to them', async () => {
    const key = await createKey('updated')
    expect((await chat(key)).status).toBe(200)
    expect((await cli(['keys', 'update', 'updated', '--models', 'gpt-4o'])).code).toBe(0)
    expect((await chat(key)).status).toBe(403)
    expect((await chat(key, { model: 'gpt-4o' })).status).toBe(200)
    expect((await cli(['limits', 'set', '--default', '--max-tokens', '10'])).code).toBe(0)
    const res = await chat(key, { model: 'gpt-4o' })
    expect(res.status).toBe(400)
    expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/^max_tokens exceeds limit of 10\. /)
  })
})
