import { describe, expect, it } from 'vitest'
import { manualClock } from '../../src/core/clock.js'
import { GatewayError } from '../../src/core/errors.js'
import { KeyManager } from '../../src/core/keys.js'
import type { Store } from '../../src/core/store.js'
import { collect, requestRow } from '../support/log-rows.js'

/** How a contract test gets stores: `open()` gives a connection to a fresh database, `another()` a second one to the same. */
export interface StoreFixture {
  store: Store
  another(): Store
  done(): Promise<void>
}

const key = (id: string, name: string) => ({ id, name, admin: false, createdAt: 1, expiresAt: null, limits: {}, models: null })
const secret = (id: string, keyId: string, prefix = 'gw-AAAA', expiresAt: number | null = null) => ({ id, keyId, prefix, hash: `h-${id}`, createdAt: 1, expiresAt })

/** Waits (bounded) for the other connection's write to show in the change marker. */
async function markerMoves(store: Store, from: number): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    if (store.changeVersion() !== from) return true
    await new Promise((r) => setTimeout(r, 20))
  }
  return false
}

/** The one store contract, run against every backend. */
export function storeContract(backend: string, fresh: () => Promise<StoreFixture>): void {
  const withStore = (name: string, test: (f: StoreFixture) => Promise<void>) =>
    it(name, async () => {
      const f = await fresh()
      try {
        await test(f)
      } finally {
        await f.done()
      }
    })

  describe(`store contract: ${backend}`, () => {
    withStore('keys and secrets: found by id, by name whatever its case, by prefix and hash; rotation retires, revoke frees the name, delete takes the secrets', async ({ store }) => {
      await store.createKey(key('key_1', 'Erin'), secret('s1', 'key_1'))
      await store.createKey(key('key_2', 'bob'), secret('s2', 'key_2', 'gw-BBBB'))
      expect((await store.findKey('key_1'))?.name).toBe('Erin')
      expect((await store.findKey('ERIN'))?.id).toBe('key_1')
      expect((await store.listKeys()).map((k) => k.id)).toEqual(['key_1', 'key_2'])
      expect((await store.findSecrets({ prefix: 'gw-BBBB' })).map((s) => s.id)).toEqual(['s2'])
      expect((await store.findSecrets({ hash: 'h-s1' })).map((s) => s.keyId)).toEqual(['key_1'])
      await store.rotateSecret('key_1', secret('s3', 'key_1', 'gw-CCCC'), 100)
      expect((await store.listLiveSecrets(50)).map((s) => s.id).sort()).toEqual(['s1', 's2', 's3'])
      expect((await store.listLiveSecrets(100)).map((s) => s.id).sort()).toEqual(['s2', 's3'])
      await store.revokeKey('key_1', 2)
      await store.createKey(key('key_3', 'erin'), secret('s4', 'key_3', 'gw-DDDD'))
      expect((await store.findKey('ERIN'))?.id).toBe('key_3') // the live key first
      await store.updateKey('key_3', { limits: { rpm: 5 }, admin: true, models: ['m'], expiresAt: 9 })
      expect(await store.findKey('key_3')).toMatchObject({ admin: true, limits: { rpm: 5 }, models: ['m'], expiresAt: 9 })
      await store.deleteKey('key_2')
      expect(await store.findKey('key_2')).toBeUndefined()
      expect(await store.findSecrets({ prefix: 'gw-BBBB' })).toEqual([])
    })

    withStore('two writers racing past the name check: the second gets 409 key_exists', async ({ store, another }) => {
      const other = another()
      try {
        const results = await Promise.allSettled([store.createKey(key('key_1', 'Erin'), secret('s1', 'key_1')), other.createKey(key('key_2', 'ERIN'), secret('s2', 'key_2'))])
        const refused = results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason)
        expect(refused).toHaveLength(1)
        expect(refused[0]).toBeInstanceOf(GatewayError)
        expect(refused[0]).toMatchObject({ status: 409, code: 'key_exists' })
      } finally {
        await other.close()
      }
    })

    withStore('limits and defaults merge inside the store: two connections with stale views keep both changes', async ({ store, another }) => {
      const other = another()
      try {
        const clock = manualClock()
        await new KeyManager(store, clock).create({ name: 'k', limits: { rpm: 5 } })
        await Promise.all([new KeyManager(store, clock).update('k', { limits: { tpm: 100 } }), new KeyManager(other, clock).update('k', { limits: { concurrency: 2 } })])
        expect((await store.findKey('k'))!.limits).toEqual({ rpm: 5, tpm: 100, concurrency: 2 })
        await Promise.all([store.mergeDefaults({ rpm: 60 }), other.mergeDefaults({ dailyTokens: null })])
        expect(await store.getDefaults()).toEqual({ rpm: 60, dailyTokens: null })
        expect(await other.mergeDefaults({ rpm: undefined })).toEqual({ dailyTokens: null })
      } finally {
        await other.close()
      }
    })

    withStore("another connection's configuration write moves the change marker", async ({ store, another }) => {
      const other = another()
      try {
        await store.listKeys()
        const before = store.changeVersion()
        await markerMoves(store, before) // PostgreSQL: the listener's first connection counts as a change
        const settled = store.changeVersion()
        await other.mergeDefaults({ rpm: 7 })
        expect(await markerMoves(store, settled)).toBe(true)
      } finally {
        await other.close()
      }
    })

    withStore('log rows and their totals: one batch, per key/day/model sums, percentiles, export in order, prune keeps totals', async ({ store }) => {
      const rows = [
        requestRow({ timestamp: '2026-11-25T10:00:00.000Z', keyId: 'k1', day: '2026-11-25', promptTokens: 10, completionTokens: 5, totalTokens: 15, costMicros: 100, latencyMs: 10 }),
        requestRow({ timestamp: '2026-11-26T10:00:00.000Z', keyId: 'k1', day: '2026-11-26', promptTokens: 1, completionTokens: 2, totalTokens: 3, latencyMs: 20 }),
        requestRow({ timestamp: '2026-11-26T10:00:01.000Z', keyId: 'k1', day: '2026-11-26', promptTokens: 4, completionTokens: 4, totalTokens: 8, costMicros: 40, latencyMs: 30, status: 429, route: '/v1/chat/completions' }),
        requestRow({ timestamp: '2026-11-26T10:00:02.000Z', keyId: 'k2', day: '2026-11-26', model: 'other', promptTokens: 7, totalTokens: 7, latencyMs: 40, route: '/usage' }),
        requestRow({ timestamp: '2026-11-26T10:00:03.000Z', keyId: null, day: '2026-11-26', model: null, status: 401, latencyMs: 50 }),
      ]
      expect(await store.appendRequests(rows.slice(0, 3))).toBe(true)
      expect(await store.appendRequests(rows.slice(3))).toBe(true)
      const day = async (d: string) => Object.fromEntries((await store.dailyUsage(d)).map((u) => [u.keyId, u]))
      expect(await day('2026-11-25')).toEqual({ k1: { keyId: 'k1', day: '2026-11-25', requests: 1, chatRequests: 1, promptTokens: 10, completionTokens: 5, totalTokens: 15, costMicros: 100 } })
      expect(await day('2026-11-26')).toEqual({
        k1: { keyId: 'k1', day: '2026-11-26', requests: 2, chatRequests: 2, promptTokens: 5, completionTokens: 6, totalTokens: 11, costMicros: 40 },
        k2: { keyId: 'k2', day: '2026-11-26', requests: 1, chatRequests: 0, promptTokens: 7, completionTokens: 0, totalTokens: 7, costMicros: null },
      })
      const byKey = await store.usageBy('key', { fromDay: '2026-11-25', toDay: '2026-11-26' })
      expect(byKey.map((g) => [g.group, g.requests, g.errors, g.rateLimited, g.totalTokens, g.costMicros, g.p50Ms, g.p95Ms])).toEqual([
        ['', 1, 1, 0, 0, null, 50, 50],
        ['k1', 3, 1, 1, 26, 140, 20, 30],
        ['k2', 1, 0, 0, 7, null, 40, 40],
      ])
      expect((await store.usageBy('model', { fromDay: '2026-11-26', toDay: '2026-11-26', keyId: 'k1' })).map((g) => [g.group, g.requests])).toEqual([['gpt-4o-mini', 2]])
      expect((await collect(store.iterateRequests({}))).map((r) => r.timestamp)).toEqual(rows.map((r) => r.timestamp))
      const filter = { since: '2026-11-26T00:00:00.000Z', until: '2026-11-26T10:00:02.000Z', keyId: 'k1', status: 429 }
      expect((await collect(store.iterateRequests(filter))).map((r) => r.latencyMs)).toEqual([30])
      expect(await store.countRequests(filter)).toBe(1)
      const exported = (await collect(store.iterateRequests({ keyId: 'k1', status: 429 })))[0]
      expect({ ...exported, entryId: undefined }).toEqual({ ...rows[2], entryId: undefined })
      expect(await store.logSpan('2026-11-26T10:00:01.000Z')).toEqual({ rows: 2, first: rows[0].timestamp, last: rows[1].timestamp })
      expect(await store.pruneRequests('2026-11-26T10:00:01.000Z')).toBe(2)
      expect(await store.countRequests({})).toBe(3)
      expect((await day('2026-11-26')).k1.totalTokens).toBe(11) // the totals stay
      expect((await store.usageBy('key', { fromDay: '2026-11-26', toDay: '2026-11-26', keyId: 'k1' }))[0]).toMatchObject({ requests: 2, p50Ms: null })
    })

    withStore('a batch of 3,000 rows (past one statement of parameters) is written whole, in one transaction', async ({ store }) => {
      const rows = Array.from({ length: 3_000 }, (_, i) => requestRow({ keyId: `k${i % 7}`, model: `m${i % 3}`, day: '2026-11-26', totalTokens: 2 }))
      expect(await store.appendRequests(rows)).toBe(true)
      expect(await store.countRequests({})).toBe(3_000)
      expect((await store.dailyUsage('2026-11-26')).reduce((a, u) => a + u.totalTokens, 0)).toBe(6_000)
    })
  })
}
