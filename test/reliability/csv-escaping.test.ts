/**
 * Issue 7, scenario 7 (part): the CSV escaping function itself, table-driven. Cells that a
 * spreadsheet would read as a formula (= + - @, or tab/CR before one) get a leading quote;
 * everything else is left alone; numbers stay numbers.
 */
import { parse } from 'csv-parse/sync'
import { stringify } from 'csv-stringify/sync'
import { describe, expect, it } from 'vitest'
import { csvCell, neutraliseCell } from '../../src/core/csv.js'
import { CSV_FORMAT, LOG_COLUMNS, toCsvRecord } from '../../src/core/log-columns.js'
import { csvText } from '../../src/storage/csv-log.js'
import type { RequestRow } from '../../src/core/types.js'

describe('neutraliseCell', () => {
  const cases: [string, string][] = [
    ['=1+1', "'=1+1"],
    ['=cmd|\' /C calc\'!A0', "'=cmd|' /C calc'!A0"],
    ['=HYPERLINK("http://evil.example","click")', '\'=HYPERLINK("http://evil.example","click")'],
    ['+1', "'+1"],
    ['+SUM(A1:A9)', "'+SUM(A1:A9)"],
    ['-1', "'-1"],
    ['-2+3', "'-2+3"],
    ['-', "'-"],
    ['@SUM(A1)', "'@SUM(A1)"],
    ['@', "'@"],
    ['\t=1+1', "'\t=1+1"],
    ['\r=1+1', "'\r=1+1"],
    ['\t', "'\t"],
    // Left alone:
    ['', ''],
    ['hello', 'hello'],
    ['gpt-4o-mini', 'gpt-4o-mini'],
    ['a=b', 'a=b'],
    ['1+1', '1+1'],
    ['x-api-key', 'x-api-key'],
    ['2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z'],
    ["'=1", "'=1"],
  ]
  it.each(cases)('%j → %j', (input, expected) => {
    expect(neutraliseCell(input)).toBe(expected)
  })

  it('is idempotent on what it already neutralised', () => {
    for (const [input] of cases) expect(neutraliseCell(neutraliseCell(input))).toBe(neutraliseCell(input))
  })
})

describe('csvCell', () => {
  const cases: [unknown, string | number][] = [
    [null, ''],
    [undefined, ''],
    [0, 0],
    [42, 42],
    [-5, -5], // a negative number is no formula
    [1.25, 1.25],
    [true, 'true'],
    [false, 'false'],
    ['=1+1', "'=1+1"],
    ['-5', "'-5"], // as text it could be anything
    ['@x', "'@x"],
    ['plain', 'plain'],
  ]
  it.each(cases)('%j → %j', (input, expected) => {
    expect(csvCell(input)).toStrictEqual(expected)
  })
})

describe('a whole row written and parsed back', () => {
  it('keeps every value, neutralises every text cell, and quotes what CSV needs quoted', () => {
    const row: RequestRow = {
      timestamp: '2026-01-01T00:00:00.000Z',
      requestId: '-12',
      keyId: 'key_0123',
      keyName: '=cmd|\' /C calc\'!A0,"x"\r\nforged',
      ip: '127.0.0.1',
      method: 'POST',
      route: '/v1/chat/completions',
      model: '@SUM(A1)',
      status: 200,
      errorCode: null,
      promptTokens: 9,
      completionTokens: 3,
      totalTokens: 12,
      estimated: false,
      latencyMs: 1.5,
      upstreamMs: null,
      queuedMs: 0,
      streamed: true,
      userAgent: '+1, "quoted", \ttab',
      costMicros: 1500,
      day: '2026-01-01',
      requestBody: null,
      responseBody: null,
      upstream: null,
      servedModel: null,
      attempts: 0,
    }
    const text = stringify([[...LOG_COLUMNS], toCsvRecord(row)], { record_delimiter: 'windows' })
    const records = parse(text) as string[][]
    expect(records).toHaveLength(2)
    expect(records[0]).toEqual([...LOG_COLUMNS])
    const got = Object.fromEntries(LOG_COLUMNS.map((c, i) => [c, records[1][i]]))
    expect(got).toMatchObject({
      request_id: "'-12",
      key_name: '\'=cmd|\' /C calc\'!A0,"x"\r\nforged',
      model: "'@SUM(A1)",
      user_agent: '\'+1, "quoted", \ttab',
      status: '200',
      total_tokens: '12',
      streamed: 'true',
      error_code: '',
      upstream_ms: '',
      cost_usd: '0.0015',
    })
    for (const cell of records[1]) expect(cell).not.toMatch(/^[=+\-@\t\r]/)
  })
})

describe('the CSV log writes records as csv-stringify does', () => {
  it('joins plain records directly and gives every other one to csv-stringify, with the same text either way', () => {
    // Cells drawn from plain text, numbers, and every character CSV must quote or keep.
    const pieces = ['a', 'gpt-4o-mini', ' ', '', ',', '"', '\r', '\n', '\r\n', "'", '\t', '=', 'é', '\u2028']
    let seed = 7
    const random = (n: number) => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) >>> 16) % n
    const cell = (): string | number => {
      if (random(4) === 0) return [0, -5, 1.25, 1e21, 3e-7][random(5)]
      let s = ''
      for (let i = random(4); i > 0; i--) s += pieces[random(pieces.length)]
      return s
    }
    const records = Array.from({ length: 2_000 }, () => Array.from({ length: 1 + random(6) }, cell))
    const plain = records.filter((r) => r.every((c) => typeof c === 'number' || !/[",\r\n]/.test(c)))
    expect(plain.length).toBeGreaterThan(100) // both paths are exercised
    expect(plain.length).toBeLessThan(records.length - 100)
    expect(csvText(records)).toBe(stringify(records, CSV_FORMAT))
    expect(parse(csvText(records), { relax_column_count: true })).toEqual(records.map((r) => r.map(String)))
  })
})
