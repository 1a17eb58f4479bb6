import type { Store } from '../core/store.js'
import { isPostgresUrl } from './db-url.js'
import { PgStore } from './postgres/pg-store.js'
import { SqliteStore } from './sqlite/sqlite-store.js'

/** A store as the CLI and the composition root use it: the seam, plus what `db migrate` reports. */
export interface OpenedStore extends Store {
  readonly kind: 'sqlite' | 'postgres'
  appliedMigrations(): Promise<number>
}

export interface OpenOptions {
  /** SQLite: how long a statement waits for another connection's write lock (the server: 0). */
  busyTimeoutMs?: number
  /** PostgreSQL: most pooled connections. */
  maxConnections?: number
}

/**
 * `db` is a SQLite file path (or :memory:) or a postgres:// URL. SQLite opens and migrates
 * here; PostgreSQL connects and migrates on first use (every method awaits it).
 */
export function openStore(db: string, options: OpenOptions = {}): OpenedStore {
  if (isPostgresUrl(db)) return new PgStore(db, { max: options.maxConnections })
  return SqliteStore.open(db, { busyTimeoutMs: options.busyTimeoutMs })
}
