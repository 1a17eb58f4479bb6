import { collect } from '../support/log-rows.js'
import { describe, expect, it } from 'vitest'
import { SqliteStore } from '../../src/storage/sqlite/sqlite-store.js'
import { requestRow } from '../support/log-rows.js'

describe('daily usage written with a batch of log rows', () => {
  it('is the rows summed per key and day, a missing cost leaving the sum as it is, keyless rows left out', async () => {
    const store = SqliteStore.open(':memory:')
    const rows = [
      requestRow({ keyId: 'k1', day: '2026-11-25', promptTokens: 10, completionTokens: 5, totalTokens: 15, costMicros: 100 }),
      requestRow({ keyId: 'k1', day: '2026-11-26', promptTokens: 1, completionTokens: 2, totalTokens: 3, costMicros: null }),
      requestRow({ keyId: 'k1', day: '2026-11-26', promptTokens: 4, completionTokens: 4, totalTokens: 8, costMicros: 40 }),
      requestRow({ keyId: 'k2', day: '2026-11-26', promptTokens: 7, completionTokens: 0, totalTokens: 7, costMicros: null }),
      requestRow({ keyId: null, day: '2026-11-26', promptTokens: 0, completionTokens: 0, totalTokens: 0, costMicros: null }),
    ]
    await store.appendRequests(rows.slice(0, 3))
    await store.appendRequests(rows.slice(3))
    await store.appendRequests([requestRow({ keyId: 'k1', day: '2026-11-26', promptTokens: 1, completionTokens: 1, totalTokens: 2, costMicros: 5 })])
    const day = async (d: string) => Object.fromEntries((await store.dailyUsage(d)).map((u) => [u.keyId, u]))
    expect(await day('2026-11-25')).toMatchObject({ k1: { requests: 1, promptTokens: 10, completionTokens: 5, totalTokens: 15, costMicros: 100 } })
    expect(await day('2026-11-26')).toMatchObject({
      k1: { requests: 3, promptTokens: 6, completionTokens: 7, totalTokens: 13, costMicros: 45 },
      k2: { requests: 1, promptTokens: 7, completionTokens: 0, totalTokens: 7, costMicros: null },
    })
    expect(Object.keys(await day('2026-11-26')).sort()).toEqual(['k1', 'k2'])
    expect((await collect(store.iterateRequests({})))).toHaveLength(6)
  })
})
