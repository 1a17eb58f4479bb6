import { randomBytes } from 'node:crypto'
import pg from 'pg'

/** The machine's PostgreSQL (CI and development run one); tests make their own databases in it. */
export const PG_ADMIN_URL = process.env.GATEWAY_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'

export interface ScratchDatabase {
  url: string
  drop(): Promise<void>
}

async function admin<T>(url: string, run: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 })
  try {
    await client.connect()
  } catch (err) {
    throw new Error(`PostgreSQL is not reachable at ${url}: the PostgreSQL tests need it (set GATEWAY_TEST_PG_URL): ${(err as Error).message}`, { cause: err })
  }
  try {
    return await run(client)
  } finally {
    await client.end()
  }
}

/** A fresh database `gw_test_<random>` in the server at `adminUrl`, dropped by `drop()`. */
export async function scratchDatabase(adminUrl = PG_ADMIN_URL): Promise<ScratchDatabase> {
  const name = `gw_test_${randomBytes(6).toString('hex')}`
  await admin(adminUrl, (c) => c.query(`create database ${name}`))
  const url = new URL(adminUrl)
  url.pathname = `/${name}`
  return {
    url: url.toString(),
    drop: () => admin(adminUrl, (c) => c.query(`drop database if exists ${name} with (force)`)).then(() => {}),
  }
}
