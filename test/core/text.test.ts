import { describe, expect, it } from 'vitest'
import { parseDuration, parseTime } from '../../src/cli/durations.js'
import { escapeControl } from '../../src/core/escape.js'
import { csvCell, neutraliseCell } from '../../src/core/csv.js'
import { formatReset } from '../../src/core/headers.js'
import { Pricing } from '../../src/core/pricing.js'
import { eventData, SseSplitter } from '../../src/core/sse.js'
import { countPromptTokens, promptTokenBound } from '../../src/core/tokens.js'

describe('formula neutralising', () => {
  it.each([
    ['=SUM(A1:A2)', "'=SUM(A1:A2)"],
    ['+1+1', "'+1+1"],
    ['-2+3', "'-2+3"],
    ['@cmd', "'@cmd"],
    ['\t=1', "'\t=1"],
    ['\r=1', "'\r=1"],
    ['plain', 'plain'],
    ['a=b', 'a=b'],
    ['', ''],
  ])('%j → %j', (input, output) => {
    expect(neutraliseCell(input)).toBe(output)
  })

  it('leaves numbers as numbers, even negative ones', () => {
    expect(csvCell(-3)).toBe(-3)
    expect(csvCell(null)).toBe('')
    expect(csvCell(true)).toBe('true')
  })
})

describe('SSE framing', () => {
  it('reassembles events and multibyte characters split across chunks, LF or CRLF', () => {
    const s = new SseSplitter()
    const bytes = Buffer.from('data: {"x":"é"}\n\n: comment\r\n\r\ndata: [DONE]\n\n')
    const out: string[] = []
    for (let i = 0; i < bytes.length; i += 3) out.push(...s.push(bytes.subarray(i, i + 3)))
    expect(out).toEqual(['data: {"x":"é"}\n\n', ': comment\r\n\r\n', 'data: [DONE]\n\n'])
    expect(out.map(eventData)).toEqual(['{"x":"é"}', null, '[DONE]'])
    expect(s.end()).toBe('')
  })

  it('refuses an event that never ends instead of buffering it without bound', () => {
    const s = new SseSplitter()
    const piece = Buffer.alloc(64 * 1024, 0x61)
    expect(() => {
      for (let i = 0; i < 32; i++) s.push(piece)
    }).toThrow(/over 1048576 characters/)
  })
})

describe('durations and times', () => {
  it('parses durations and refuses nonsense', () => {
    expect(parseDuration('90s')).toBe(90_000)
    expect(parseDuration('1h')).toBe(3_600_000)
    expect(parseDuration('30d')).toBe(2_592_000_000)
    expect(parseDuration('250ms')).toBe(250)
    expect(parseDuration('5')).toBe(5_000)
    expect(() => parseDuration("1' OR 1=1")).toThrow(/duration/)
  })

  it('parses a time as ISO or as a duration ago', () => {
    const now = Date.parse('2026-11-26T12:00:00Z')
    expect(parseTime('7d', now)).toBe('2026-11-19T12:00:00.000Z')
    expect(parseTime('2026-11-01', now)).toBe('2026-11-01T00:00:00.000Z')
    expect(parseTime('2026-11-01T10:00:00+02:00', now)).toBe('2026-11-01T08:00:00.000Z')
    expect(() => parseTime("2026-11-01'; drop table api_keys; --", now)).toThrow()
  })

  it('formats resets like OpenAI', () => {
    expect(formatReset(20)).toBe('20ms')
    expect(formatReset(1_000)).toBe('1s')
    expect(formatReset(60_000)).toBe('1m0s')
    expect(formatReset(361_000)).toBe('6m1s')
  })
})

describe('terminal escaping', () => {
  it('makes control characters and ANSI escapes visible', () => {
    expect(escapeControl('a\u001b[31mred\r\n\u0000')).toBe('a\\x1b[31mred\\r\\n\\x00')
  })
})

describe('pricing', () => {
  it('prices exact and dated model names, and leaves unknown ones empty', () => {
    const p = Pricing.load()
    expect(p.costMicros('gpt-4o-mini', 1_000_000, 0)).toBe(150_000)
    expect(p.costMicros('gpt-4o-mini-2024-07-18', 0, 1_000)).toBe(600)
    expect(p.costMicros('gpt-4o-2024-08-06', 1_000, 0)).toBe(2_500)
    expect(p.costMicros('llama3:8b', 1_000, 1_000)).toBeNull()
    expect(p.costMicros(null, 1, 1)).toBeNull()
  })
})

describe('prompt token estimate', () => {
  it('counts message text, framing and images', () => {
    const text = countPromptTokens([{ role: 'user', content: 'hello world' }])
    expect(text).toBeGreaterThan(2 + 4)
    const image = countPromptTokens([{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:' } }] }])
    expect(image).toBeGreaterThan(1_000)
  })

  it('bounds the tokenizer\'s count from above by UTF-8 size, for any script, emoji, code or tool call', () => {
    const texts = [
      'hello world',
      'Ünïcödé façade — naïve café, 東京の天気は晴れです。Привет, как дела? مرحبا',
      '👩‍👩‍👧‍👦🏳️‍🌈🤖💡 '.repeat(50),
      'function f(x) { return x.map((y) => y * 2).filter(Boolean) }\n'.repeat(20),
      'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'.repeat(40),
      '\ud800 lone surrogate \udfff',
      '0123456789'.repeat(300),
    ]
    for (const content of texts) {
      const messages = [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content, name: 'ann' },
        { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: JSON.stringify({ q: content.slice(0, 80) }) } }] },
        { role: 'user', content: [{ type: 'text', text: content }, { type: 'image_url', image_url: { url: 'data:' } }] },
      ]
      const tools = [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { q: { type: 'string' } } } } }]
      const counted = countPromptTokens(messages, [tools])
      const bound = promptTokenBound(messages, [tools])
      expect(bound, content.slice(0, 20)).toBeGreaterThanOrEqual(counted)
    }
  })
})

describe('usd', () => {
  it('shows tiny costs as below the smallest shown unit, never as $0.0000', async () => {
    const { usd } = await import('../../src/cli/usage-view.js')
    expect(usd(0.000004)).toBe('<$0.0001')
    expect(usd(0.00006)).toBe('$0.0001')
    expect(usd(0)).toBe('$0.0000')
    expect(usd(0.01234)).toBe('$0.0123')
    expect(usd(12.5)).toBe('$12.50')
    expect(usd(null)).toBeNull()
  })
})
