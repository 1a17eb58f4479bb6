import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { manualClock } from '../../src/core/clock.js'
import { KeyManager } from '../../src/core/keys.js'
import { compareVersions, MIN_SQLITE_VERSION, openDatabase } from '../../src/storage/sqlite/open.js'
import { SqliteStore } from '../../src/storage/sqlite/sqlite-store.js'

describe('opening the database', () => {
  it('requires SQLite 3.51.3 or newer (the WAL fix for two connections), which the bundled one is', () => {
    expect(MIN_SQLITE_VERSION).toBe('3.51.3')
    expect(compareVersions('3.51.2', MIN_SQLITE_VERSION)).toBe(-1)
    expect(compareVersions('3.51.3', MIN_SQLITE_VERSION)).toBe(0)
    expect(compareVersions('3.9.0', '3.10.0')).toBe(-1)
    expect(compareVersions('3.53.2', MIN_SQLITE_VERSION)).toBe(1)
    const { sqlite } = openDatabase(':memory:')
    const version = (sqlite.prepare('select sqlite_version() as v').get() as { v: string }).v
    expect(compareVersions(version, MIN_SQLITE_VERSION)).toBeGreaterThanOrEqual(0)
    expect(sqlite.pragma('foreign_keys', { simple: true })).toBe(1)
    sqlite.close()
  })

  it('opens a file in WAL mode with a busy timeout', () => {
    const { sqlite } = openDatabase(join(mkdtempSync(join(tmpdir(), 'gw-open-')), 'g.db'))
    expect(sqlite.pragma('journal_mode', { simple: true })).toBe('wal')
    expect(sqlite.pragma('busy_timeout', { simple: true })).toBe(5000)
    sqlite.close()
  })
})

describe('read-modify-write paths', () => {
  it('merge limits in the store, so two writers on two connections keep both changes', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'gw-rmw-')), 'g.db')
    const a = SqliteStore.open(file)
    const b = SqliteStore.open(file)
    const clock = manualClock()
    await new KeyManager(a, clock).create({ name: 'k', limits: { rpm: 5 } })
    // Each writer holds a stale view of the key; the merge happens inside the transaction.
    const staleA = new KeyManager(a, clock)
    const staleB = new KeyManager(b, clock)
    await staleA.update('k', { limits: { tpm: 100 } })
    await staleB.update('k', { limits: { concurrency: 2 } })
    expect((await a.findKey('k'))!.limits).toEqual({ rpm: 5, tpm: 100, concurrency: 2 })
    await a.mergeDefaults({ rpm: 60 })
    await b.mergeDefaults({ dailyTokens: null })
    expect(await a.getDefaults()).toEqual({ rpm: 60, dailyTokens: null })
    a.close()
    b.close()
  })
})
