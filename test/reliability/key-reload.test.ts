/**
 * Issue 11, item 6: a failed reload of keys and limits is retried. While the database cannot
 * be read the server keeps its last view, answers every request, and logs the failure once;
 * the first request after it can be read again sees the revocation.
 */
import Database from 'better-sqlite3'
import { afterEach, describe, expect, it } from 'vitest'
import { KeyManager } from '../../src/core/keys.js'
import { startGateway, NO_LIMITS, type TestGateway } from '../support/gateway.js'
import { sleep } from './helpers.js'

let gw: TestGateway | undefined
afterEach(async () => {
  await gw?.stop()
  gw = undefined
})

const usage = (key: string) => fetch(`${gw!.url}/usage`, { headers: { authorization: `Bearer ${key}` } }).then(async (r) => (await r.arrayBuffer(), r.status))

async function started(): Promise<{ gw: TestGateway; errors: string[]; key: string; otherId: string }> {
  const errors: string[] = []
  gw = await startGateway({ onError: (err) => errors.push(err instanceof Error ? err.message : String(err)) })
  const key = await gw.createKey({ name: 'to-revoke', limits: NO_LIMITS })
  await gw.createKey({ name: 'other', limits: NO_LIMITS })
  const otherId = (await new KeyManager(gw.admin, { now: Date.now }).get('other')).id
  expect(await usage(key)).toBe(200)
  return { gw, errors, key, otherId }
}

describe('a failed reload is retried', () => {
  it('a table another connection moved away: old view kept, failure logged once, revocation applies once the table is back', async () => {
    const { gw, errors, key } = await started()
    const other = new Database(gw.db)
    try {
      other.exec('ALTER TABLE key_secrets RENAME TO key_secrets_away')
      await new KeyManager(gw.admin, { now: Date.now }).revoke('to-revoke')
      const during: number[] = []
      for (let i = 0; i < 5; i++) {
        during.push(await usage(key))
        await sleep(120) // the idle watcher tries too
      }
      expect(during).toEqual(Array(5).fill(200))
      expect(errors).toHaveLength(1)
      expect(errors[0]).toMatch(/reloading keys and limits failed.*key_secrets/)
      other.exec('ALTER TABLE key_secrets_away RENAME TO key_secrets')
      expect(await usage(key)).toBe(401)
    } finally {
      other.close()
    }
  })

  it('a failure that clears with no other connection committing: the load is still retried', async () => {
    const { gw, errors, key, otherId } = await started()
    const other = new Database(gw.db)
    try {
      // A row the server cannot read, then the revocation: the reload after them fails.
      other.prepare("UPDATE api_keys SET models = '[unreadable' WHERE id = ?").run(otherId)
      await new KeyManager(gw.admin, { now: Date.now }).revoke('to-revoke')
      expect(await usage(key)).toBe(200)
      await sleep(400) // the idle watcher tries too
      expect(await usage(key)).toBe(200)
      // Repaired through the server's own connection: the store's change marker does not move,
      // as after a busy or I/O error that simply passed.
      await gw.built.store.updateKey(otherId, { models: null })
      expect(await usage(key)).toBe(401)
      expect(errors).toHaveLength(1)
    } finally {
      other.close()
    }
  })
})
