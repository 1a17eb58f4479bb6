/** Issue 12, items 10 and 11: the budget 429, clamping, the remaining-budget header and gateway-limit refusals, over real HTTP. */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { runCli } from '../support/cli.js'
import { settle, startGateway, type TestGateway } from '../support/gateway.js'
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js'

vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 })

let upstream: MockUpstream
let gw: TestGateway
beforeAll(async () => {
  upstream = await startMockUpstream()
  gw = await startGateway({ upstreamUrl: upstream.url })
})
afterAll(async () => {
  await gw.stop()
  await upstream.close()
})

const completion = (key: string, extra: Record<string, unknown>, content = 'hello there') =>
  gw.post('/v1/chat/completions', key, { model: 'gpt-4o-mini', messages: [{ role: 'user', content }], ...extra })
const errorOf = async (res: Response) => ((await res.json()) as { error: { message: string; code: string; param: string | null } }).error

describe('the daily budget', () => {
  it('a 429 keeps the seed\'s first sentence, then says what is left, what the request may use, to lower max_tokens and when it resets', async () => {
    const key = await gw.createKey({ name: 'budget', limits: { rpm: null, dailyTokens: 300 } })
    expect((await completion(key, { max_tokens: 20 })).status).toBe(200)
    const res = await completion(key, { max_tokens: 900 })
    expect(res.status).toBe(429)
    const e = await errorOf(res)
    expect(e.code).toBe('daily_limit_exceeded')
    const left = Number(res.headers.get('x-budget-remaining-tokens'))
    expect(left).toBeGreaterThan(0)
    expect(e.message).toMatch(/^Daily token limit exceeded\. Used: \d+\/300\. /)
    expect(e.message).toContain(`${left} tokens are left today`)
    expect(e.message).toMatch(/this request may use up to \d+ \(prompt estimate \d+ \+ max_tokens 900\)/)
    expect(e.message).toMatch(/lower max_tokens to about \d+/)
    expect(e.message).toContain(`The budget resets at ${res.headers.get('x-budget-reset')}`)
    expect(e.message).toContain('`gateway limits set --key budget --daily-tokens N`')
  })

  it('`limits set --default --on-budget-short clamp` lowers a large max_tokens to what is left instead of refusing, and says so in a header', async () => {
    const before = await runCli(['limits', 'set', '--default', '--on-budget-short', 'clamp', '--daily-tokens', '300', '--db', gw.db])
    expect(before.code).toBe(0)
    await settle()
    try {
      const key = await gw.createKey({ name: 'clamped', limits: { rpm: null } })
      const res = await completion(key, { max_tokens: 1000 })
      expect(res.status).toBe(200)
      const sent = upstream.requests.at(-1)!.body!.max_tokens as number
      expect(sent).toBeLessThan(1000)
      expect(sent).toBeGreaterThan(200)
      expect(res.headers.get('x-gateway-max-tokens-applied')).toBe(String(sent))
    } finally {
      expect((await runCli(['limits', 'set', '--default', '--on-budget-short', 'refuse', '--daily-tokens', '50000', '--db', gw.db])).code).toBe(0)
      await settle()
    }
  })

  it('a max_tokens the client left out is fitted to the budget even in refuse mode, and the client is told the value', async () => {
    const key = await gw.createKey({ name: 'omitted', limits: { rpm: null, dailyTokens: 300 } })
    const res = await completion(key, {})
    expect(res.status).toBe(200)
    const sent = upstream.requests.at(-1)!.body!.max_tokens as number
    expect(sent).toBeLessThan(300)
    expect(res.headers.get('x-gateway-max-tokens-applied')).toBe(String(sent))
    const roomy = await gw.createKey({ name: 'roomy', limits: { rpm: null } })
    expect((await completion(roomy, {})).headers.get('x-gateway-max-tokens-applied')).toBe('1000')
    expect((await completion(roomy, { max_tokens: 7 })).headers.get('x-gateway-max-tokens-applied')).toBeNull()
  })

  it('x-budget-remaining-tokens only goes down for requests one after another, and is the limit less what earlier requests used', async () => {
    const key = await gw.createKey({ name: 'steady', limits: { rpm: null, dailyTokens: 5_000 } })
    const seen: number[] = []
    let used = 0
    const cases: [Record<string, unknown>, string][] = [
      [{ max_tokens: 30 }, 'short'],
      [{ max_tokens: 400 }, 'a somewhat longer prompt '.repeat(20)],
      [{ max_tokens: 5 }, 'x'],
      [{ max_tokens: 300, stream: true, stream_options: { include_usage: true } }, 'streamed '.repeat(30)],
      [{ max_tokens: 10 }, 'again'],
      [{}, 'no max_tokens'],
    ]
    for (const [extra, content] of cases) {
      const res = await completion(key, extra, content)
      expect(res.status).toBe(200)
      seen.push(Number(res.headers.get('x-budget-remaining-tokens')))
      expect(seen.at(-1)).toBe(5_000 - used)
      const text = await res.text()
      const usage = extra.stream ? JSON.parse(text.split('\n').filter((l) => l.includes('"usage":{')).at(-1)!.slice(6)).usage : JSON.parse(text).usage
      used += usage.total_tokens as number
    }
    for (let i = 1; i < seen.length; i++) expect(seen[i], `answer ${i}: ${seen}`).toBeLessThanOrEqual(seen[i - 1])
  })
})

describe('gateway limits say they are the gateway\'s', () => {
  it('input too long and max_tokens over the cap keep their first sentence and name the limit, the key and the flag', async () => {
    const key = await gw.createKey({ name: 'capped', limits: { rpm: null, maxInputChars: 10, maxTokens: 50 } })
    const long = await completion(key, { max_tokens: 5 }, 'more than ten characters')
    expect(long.status).toBe(400)
    expect((await errorOf(long)).message).toBe(
      'Input too long (max 10 characters). This is the gateway\'s limit for key "capped": 10 characters of input (max-input-chars); shorten the messages, or an admin can raise it with `gateway limits set --key capped --max-input-chars N`',
    )
    const seed = await gw.post('/chat', key, { message: 'more than ten characters' })
    expect((await errorOf(seed)).message).toMatch(/^Message too long \(max 10 characters\)\. This is the gateway's limit for key "capped": .*--max-input-chars N`$/)
    const big = await completion(key, { max_tokens: 51 }, 'hi')
    expect(big.status).toBe(400)
    expect(await errorOf(big)).toMatchObject({
      code: 'max_tokens_exceeded',
      param: 'max_tokens',
      message: 'max_tokens exceeds limit of 50. This is the gateway\'s limit for key "capped": 50 tokens per answer (max-tokens); lower max_tokens, or an admin can raise it with `gateway limits set --key capped --max-tokens N`',
    })
  })

  it('the per-minute 429 names the key\'s rpm limit and its flag', async () => {
    const key = await gw.createKey({ name: 'two per minute', limits: { rpm: 2 } })
    for (let i = 0; i < 2; i++) expect((await completion(key, { max_tokens: 5 })).status).toBe(200)
    const res = await completion(key, { max_tokens: 5 })
    expect(res.status).toBe(429)
    expect((await errorOf(res)).message).toMatch(/^Rate limit reached: 2 requests per minute\. This is the gateway's limit for key "two per minute".*`gateway limits set --key "two per minute" --rpm N`$/)
  })
})
