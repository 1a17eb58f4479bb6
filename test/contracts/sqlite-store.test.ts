import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SqliteStore } from '../../src/storage/sqlite/sqlite-store.js'
import { storeContract } from './store.contract.js'

storeContract('SQLite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'gw-contract-'))
  const file = join(dir, 'gateway.db')
  const store = SqliteStore.open(file)
  return {
    store,
    another: () => SqliteStore.open(file),
    done: async () => {
      await store.close()
      rmSync(dir, { recursive: true, force: true })
    },
  }
})
