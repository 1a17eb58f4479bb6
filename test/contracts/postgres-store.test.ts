import { describe, expect, it } from 'vitest'
import { PgStore } from '../../src/storage/postgres/pg-store.js'
import { collect, requestRow } from '../support/log-rows.js'
import { scratchDatabase } from '../support/postgres.js'
import { storeContract } from './store.contract.js'

/** Each test in its own database, created here and dropped at its end. */
async function fresh() {
  const db = await scratchDatabase()
  const store = new PgStore(db.url)
  return {
    db,
    store,
    another: () => new PgStore(db.url),
    done: async () => {
      await store.close()
      await db.drop()
    },
  }
}

storeContract('PostgreSQL', fresh)

describe('PostgreSQL store: what only a shared store needs', () => {
  it('a batch written again (a retry after a lost acknowledgement, a spool replay) adds nothing to the log or the totals', async () => {
    const f = await fresh()
    try {
      const rows = Array.from({ length: 10 }, (_, i) => requestRow({ keyId: 'k', day: '2026-11-26', totalTokens: i + 1, requestId: 'same-client-id' }))
      await f.store.appendRequests(rows.slice(0, 6))
      await f.store.appendRequests(rows) // the first six again, and four new ones
      expect(await collect(f.store.iterateRequests({}))).toHaveLength(10) // the client's repeated request id is not the key
      expect((await f.store.dailyUsage('2026-11-26'))[0]).toMatchObject({ requests: 10, totalTokens: 55 })
    } finally {
      await f.done()
    }
  })

  it('two gateways starting together on an empty database migrate it once', async () => {
    const db = await scratchDatabase()
    const stores = [new PgStore(db.url), new PgStore(db.url), new PgStore(db.url)]
    try {
      await Promise.all(stores.map((s) => s.whenReady()))
      expect(await Promise.all(stores.map((s) => s.appliedMigrations()))).toEqual([3, 3, 3])
    } finally {
      for (const s of stores) await s.close()
      await db.drop()
    }
  })
})
