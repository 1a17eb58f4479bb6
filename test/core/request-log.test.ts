import Database from 'better-sqlite3'
import { join } from 'node:path'
import { expect, it } from 'vitest'
import { RequestLog } from '../../src/core/request-log.js'
import { SqliteStore } from '../../src/storage/sqlite/sqlite-store.js'
import { tempDir } from '../support/gateway.js'
import { requestRow } from '../support/log-rows.js'

it('a batch that finds the write lock taken waits, in order, with the rows written meanwhile, and is committed once when the lock goes', async () => {
  const db = join(tempDir(), 'g.db')
  const store = SqliteStore.open(db, { busyTimeoutMs: 0 }) // as the server opens it
  const log = new RequestLog(store)
  const holder = new Database(db)
  holder.exec('BEGIN IMMEDIATE')
  const committed: string[] = []
  const write = (id: string) => log.write(requestRow({ requestId: id, keyId: 'k', totalTokens: 10 })).then(() => void committed.push(id))
  const first = [write('r1'), write('r2')]
  await new Promise((r) => setTimeout(r, 30)) // several retries find the lock taken
  const later = write('r3')
  await new Promise((r) => setTimeout(r, 30))
  expect(committed).toEqual([])
  holder.exec('COMMIT')
  holder.close()
  await Promise.all([...first, later])
  await log.drain()
  expect(committed).toEqual(['r1', 'r2', 'r3'])
  const conn = new Database(db, { readonly: true })
  expect(conn.prepare('select request_id from request_log order by id').all()).toEqual([{ request_id: 'r1' }, { request_id: 'r2' }, { request_id: 'r3' }])
  expect(conn.prepare('select requests, total_tokens from daily_usage where key_id = ?').all('k')).toEqual([{ requests: 3, total_tokens: 30 }])
  conn.close()
  store.close()
})
