import { describe, expect, it } from 'vitest'
import { AdmissionControl } from '../../src/core/admission.js'
import type { Admission } from '../../src/core/limits/limiter.js'
import { BudgetLedger } from '../../src/core/budget.js'
import { Calendar } from '../../src/core/calendar.js'
import { countPrompt, prepareCompletion, type PreparedChat } from '../../src/core/chat-request.js'
import { manualClock } from '../../src/core/clock.js'
import { GatewayError } from '../../src/core/errors.js'
import { FairQueue } from '../../src/core/queue.js'
import type { ApiKey, Limits } from '../../src/core/types.js'
import { SqliteStore } from '../../src/storage/sqlite/sqlite-store.js'

const KEY: ApiKey = { id: 'key_1', name: 'k', admin: false, createdAt: 0, expiresAt: null, revokedAt: null, limits: {}, models: null }
const BASE: Limits = { rpm: null, tpm: null, concurrency: null, dailyTokens: null, maxTokens: null, maxInputChars: null, onBudgetShort: 'refuse' }
/** Ordinary English: about four UTF-8 bytes per token, so its byte bound is about four times its count. */
const PROMPT = 'The quick brown fox jumps over the lazy dog while the committee reviews the budget. '.repeat(40)

function build(limits: Limits) {
  const clock = manualClock(Date.parse('2026-05-05T12:00:00Z'))
  const ledger = new BudgetLedger(SqliteStore.open(':memory:'), new Calendar('UTC'))
  const queue = new FairQueue({ maxInflight: null, queueSize: 0, queueTimeoutMs: 1_000 }, clock)
  return { clock, ledger, admission: new AdmissionControl(clock, ledger, queue) }
}

function request(limits: Limits, maxTokens = 100): PreparedChat {
  const body = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: PROMPT }], max_tokens: maxTokens }
  return prepareCompletion(body, Buffer.from(JSON.stringify(body)), KEY, limits)
}

/**
 * Admits requests one after another without settling any, until one is refused; returns how
 * many got in, the refusal's code, and the key's budget and window state then. `counted`
 * counts every prompt before admission (the reference: what the gateway did before bounds).
 */
async function fill(limits: Limits, counted: boolean) {
  const { clock, ledger, admission } = build(limits)
  const held: Admission[] = []
  const maxTokens: number[] = []
  for (let i = 0; i < 50; i++) {
    const prepared = request(limits)
    if (counted) countPrompt(prepared)
    try {
      held.push(await admission.admit(KEY, limits, prepared, {}))
      maxTokens.push(prepared.maxTokens)
    } catch (err) {
      if (!(err instanceof GatewayError)) throw err
      return { admitted: held.length, refusal: err.code, message: err.message, maxTokens, reserved: ledger.state(KEY.id, clock.now()).reserved, headers: admission.headers(KEY.id, limits, clock.now()) }
    }
  }
  throw new Error('never refused')
}

describe('admission on byte bounds', () => {
  it('reserves a prompt at its byte bound while the limits are far, without counting it', () => {
    const limits = { ...BASE, tpm: 10_000_000, dailyTokens: 10_000_000 }
    const prepared = request(limits)
    expect(prepared.promptCounted).toBe(false)
    expect(prepared.promptTokens).toBeGreaterThan(Buffer.byteLength(PROMPT))
    const { admission } = build(limits)
    return admission.admit(KEY, limits, prepared, {}).then(() => expect(prepared.promptCounted).toBe(false))
  })

  it.each([
    ['tokens per minute', { ...BASE, tpm: 6_000 }, 'tokens_rate_limit_exceeded'],
    ['daily budget', { ...BASE, dailyTokens: 6_000 }, 'daily_limit_exceeded'],
  ] as const)('near the %s, decides exactly as if every prompt had been counted up front', async (_name, limits, code) => {
    const bounded = await fill(limits, false)
    const reference = await fill(limits, true)
    // With bounds alone only one request (about 3,700 tokens reserved) would fit in 6,000.
    expect(reference.admitted).toBeGreaterThan(3)
    expect(bounded).toEqual(reference)
    expect(bounded.refusal).toBe(code)
  })

  it('clamps max_tokens to the same value as with counted prompts', async () => {
    const limits: Limits = { ...BASE, dailyTokens: 3_000, onBudgetShort: 'clamp' }
    const run = async (counted: boolean) => {
      const { admission } = build(limits)
      const first = request(limits, 1_000)
      const second = request(limits, 1_000)
      if (counted) [first, second].forEach((p) => countPrompt(p))
      await admission.admit(KEY, limits, first, {})
      await admission.admit(KEY, limits, second, {})
      return [first.maxTokens, second.maxTokens, first.promptTokens, second.promptTokens]
    }
    const reference = await run(true)
    expect(reference[1]).toBeLessThan(1_000) // the second was clamped
    expect(await run(false)).toEqual(reference)
  })
})
