import { countTokens } from 'gpt-tokenizer/encoding/o200k_base'
import { expect, it } from 'vitest'
import { countTextTokens } from '../../src/core/tokens.js'

it('counts exactly as gpt-tokenizer\'s own o200k_base module, from the .tiktoken data file', () => {
  const samples = [
    'hello world',
    'The quick brown fox jumps over the lazy dog; ünïcode 漢字 🎉 and\ttabs\r\n',
    '\u0000\u00ff\u2028 bytes that are not UTF-8 on their own: ',
    'x'.repeat(5000),
    JSON.stringify({ tools: [{ type: 'function', function: { name: 'weather', parameters: { type: 'object' } } }] }),
  ]
  for (const s of samples) expect(countTextTokens(s)).toBe(countTokens(s))
  expect(countTextTokens('')).toBe(0)
})
