import { countTokens } from 'gpt-tokenizer/encoding/o200k_base'
import { expect, it } from 'vitest'
import { countTextTokens } from '../../src/core/tokens.js'

it('counts exactly as gpt-tokenizer\'s own o200k_base module, from the .tiktoken data file', () => {
  const samples = [
    'hello world',
    'The quick brown fox jumps over the lazy dog; ünïcode 漢字 🎉 and\ttabs\r\n',
    '\u0000\u00ff\u2028 bytes that are not UTF-8 on their own: ',
    'word '.repeat(3000),
    'Lorem ipsum dolor sit amet, consectetur adipiscing elit. '.repeat(200),
    JSON.stringify({ tools: [{ type: 'function', function: { name: 'weather', parameters: { type: 'object' } } }] }),
  ]
  for (const s of samples) expect(countTextTokens(s)).toBe(countTokens(s))
  expect(countTextTokens('')).toBe(0)
})

it('counts an unbroken run of any length in linear time, within a token per piece', () => {
  const run = 'x'.repeat(5_000)
  expect(Math.abs(countTextTokens(run) - countTokens(run))).toBeLessThanOrEqual(5)
  const huge = '漢'.repeat(200_000) // was 2.4 s per 20,000 characters before pieces
  const n = countTextTokens(huge)
  expect(n).toBeGreaterThan(10_000)
  expect(countTextTokens('🎉'.repeat(1_500))).toBe(countTokens('🎉'.repeat(500)) * 3)
})
