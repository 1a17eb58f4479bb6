import type { NodePgDatabase } from 'drizzle-orm/node-postgres'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import type pg from 'pg'
import * as schema from './schema.js'

const MIGRATIONS = fileURLToPath(new URL('../../../migrations/postgres', import.meta.url))
/** The advisory lock the migrations run under: two gateways starting together migrate once. */
const MIGRATION_LOCK = 7_263_541_902

export type PgDb = NodePgDatabase<typeof schema>

export interface PgOptions {
  /** Most connections this process holds (the server: group commits, reads, CLI-like reloads). */
  max?: number
}

const require = createRequire(import.meta.url)

/**
 * The driver, loaded on first connection (it is CommonJS: required synchronously, the one
 * instance its ES module wraps too), as drizzle's adapter for it is: a gateway on SQLite
 * never holds them (~2 MB of heap).
 */
export const driver = (): typeof pg => require('pg') as typeof pg

export function connectionConfig(url: string): pg.ClientConfig {
  return { connectionString: url, connectionTimeoutMillis: 5_000, application_name: 'llm-gateway' }
}

export function openPool(url: string, options: PgOptions = {}): pg.Pool {
  const pool = new (driver().Pool)({ ...connectionConfig(url), max: options.max ?? 10, idleTimeoutMillis: 30_000, statement_timeout: 60_000 })
  pool.on('error', () => {}) // an idle client's lost connection: the next query reconnects
  return pool
}

/** Applies missing migrations under a session advisory lock, on one connection of the pool; then drizzle over the pool. */
export async function openDb(pool: pg.Pool): Promise<PgDb> {
  const [{ drizzle }, { migrate }] = await Promise.all([import('drizzle-orm/node-postgres'), import('drizzle-orm/node-postgres/migrator')])
  const client = await pool.connect()
  try {
    await client.query('select pg_advisory_lock($1)', [MIGRATION_LOCK])
    try {
      await migrate(drizzle({ client, schema }), { migrationsFolder: MIGRATIONS })
    } finally {
      await client.query('select pg_advisory_unlock($1)', [MIGRATION_LOCK])
    }
  } finally {
    client.release()
  }
  return drizzle({ client: pool, schema })
}
