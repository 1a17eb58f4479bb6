import Database from 'better-sqlite3'
import { drizzle, type BetterSQLite3Database } from 'drizzle-orm/better-sqlite3'
import { migrate } from 'drizzle-orm/better-sqlite3/migrator'
import { closeSync, existsSync, mkdirSync, openSync } from 'node:fs'
import { dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import * as schema from './schema.js'

/** SQLite 3.51.3 fixes a WAL corruption race between two connections (the CLI and the server). */
export const MIN_SQLITE_VERSION = '3.51.3'
const MIGRATIONS = fileURLToPath(new URL('../../../migrations/sqlite', import.meta.url))

export type Db = BetterSQLite3Database<typeof schema>

export interface OpenedDatabase {
  sqlite: Database.Database
  db: Db
}

/** Another connection holds the write lock (or SQLite is recovering the WAL): try again later. */
export function isBusy(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' && code.startsWith('SQLITE_BUSY')
}

export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number)
  const pb = b.split('.').map(Number)
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0)
    if (d !== 0) return Math.sign(d)
  }
  return 0
}

/**
 * The one place a database is opened: file created 0600, version check, pragmas, then the
 * migrations (synchronous on this driver), so a caller never sees an unmigrated schema.
 * `busyTimeoutMs` is how long a statement then waits for another connection's write lock
 * (the server's connection uses 0: its serving thread must never sleep in SQLite).
 */
export function openDatabase(path: string, options: { busyTimeoutMs?: number } = {}): OpenedDatabase {
  if (path !== ':memory:') {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
    // SQLite gives the -wal and -shm files the database file's mode.
    if (!existsSync(path)) closeSync(openSync(path, 'a', 0o600))
  }
  const sqlite = new Database(path)
  try {
    const version = (sqlite.prepare('select sqlite_version() as v').get() as { v: string }).v
    if (compareVersions(version, MIN_SQLITE_VERSION) < 0) {
      throw new Error(`SQLite ${version} is too old: ${MIN_SQLITE_VERSION} or newer is required (better-sqlite3 >= 12.8.0)`)
    }
    sqlite.pragma('journal_mode = WAL')
    sqlite.pragma('synchronous = NORMAL')
    sqlite.pragma('foreign_keys = ON')
    // better-sqlite3 builds SQLite with a 16 MB page cache per connection; the server's filled as
    // the log grew (RSS +11 MB over a 60 s soak at c=50). SQLite's own default of 2 MB holds
    // what a log append touches; other pages come from the OS's file cache.
    sqlite.pragma('cache_size = -2000')
    sqlite.pragma('busy_timeout = 5000') // migrations wait for a CLI write like any CLI command
    const db = drizzle({ client: sqlite, schema })
    migrateOnce(db)
    sqlite.pragma(`busy_timeout = ${options.busyTimeoutMs ?? 5000}`)
    return { sqlite, db }
  } catch (err) {
    sqlite.close()
    throw err
  }
}

/** Two processes opening a new file at once may race on the first migration; the loser retries. */
function migrateOnce(db: Db): void {
  try {
    migrate(db, { migrationsFolder: MIGRATIONS })
  } catch (err) {
    if (!/already exists/.test(String(err))) throw err
    migrate(db, { migrationsFolder: MIGRATIONS })
  }
}
