import Database from 'better-sqlite3'
import { closeSync, openSync, realpathSync } from 'node:fs'
import { databaseInUse } from '../../core/errors.js'
import { isBusy } from './open.js'

/**
 * One server per SQLite database: its limits live in its memory, so a second server on the
 * same file would silently double every limit. The claim is a write lock SQLite holds on a
 * small file beside the database (`<db>.server-lock`) for the server's lifetime: the
 * operating system drops it when the process ends, however it ends (SIGKILL, crash), so no
 * stale claim outlives its server and no pid is trusted to still mean the same process.
 * The holder's pid is committed in that file, for the refusal's message. The CLI never
 * takes the claim, so its commands run beside a server.
 */
export class ServerLock {
  private constructor(private readonly conn: Database.Database) {}

  /**
   * Claims the database at `dbPath` (which exists), or throws `database_in_use` naming the
   * holder. `shared`: servers whose limits live in Redis, any number of which may share the
   * database; each holds a read lock on the claim file, which a lone server's claim (it
   * commits its pid, which needs every read lock gone) cannot get past, and a shared claim
   * first checks, with a brief write lock, that no lone server holds the file. `refusal`
   * words a lone claim's refusal (the spool directory claims its own folder this way).
   */
  static acquire(dbPath: string, options: { shared?: boolean; refusal?: (holder: number | null, path: string) => string } = {}): ServerLock {
    const { shared = false, refusal = sqliteRefusal } = options
    const real = realpathSync(dbPath)
    const file = `${real}.server-lock`
    closeSync(openSync(file, 'a', 0o600)) // like the database: 0600 (SQLite gives its journal the same mode)
    const conn = new Database(file)
    let committing = false
    try {
      // Long enough for a rival's brief read of the pid, short enough to refuse promptly.
      conn.pragma('busy_timeout = 1000')
      conn.exec('create table if not exists server (pid integer not null, started_at text not null)')
      if (shared) {
        conn.exec('BEGIN')
        conn.prepare('select count(*) from server').get() // the read lock, held for the server's lifetime
        const probe = new Database(file)
        try {
          probe.pragma('busy_timeout = 1000')
          probe.exec('BEGIN IMMEDIATE')
          probe.exec('ROLLBACK')
        } finally {
          probe.close()
        }
        return new ServerLock(conn)
      }
      // Take the lock, commit who holds it, and take it again at once. A rival that slips
      // into that moment wins, and this one refuses, naming it.
      conn.exec('BEGIN IMMEDIATE')
      conn.exec('delete from server')
      conn.prepare('insert into server (pid, started_at) values (?, ?)').run(process.pid, new Date().toISOString())
      committing = true // only servers sharing the database through Redis (read locks) make the commit wait
      conn.exec('COMMIT')
      committing = false
      conn.exec('BEGIN IMMEDIATE')
      return new ServerLock(conn)
    } catch (err) {
      const holder = isBusy(err) && !committing ? holderOf(conn) : null
      conn.close()
      if (!isBusy(err)) throw err
      if (committing) throw databaseInUse(`Gateway servers with --redis are serving ${real}; a server without --redis would keep limits of its own beside theirs: give it the same --redis, or use another --db.`)
      if (shared) throw databaseInUse(`A gateway server without --redis (pid ${holder ?? 'unknown'}) is serving ${real}: servers share one database only when they all keep their limits in Redis.`)
      throw databaseInUse(refusal(holder, real))
    }
  }

  release(): void {
    if (this.conn.open) this.conn.close()
  }
}

function sqliteRefusal(holder: number | null, real: string): string {
  return `Another gateway server (pid ${holder ?? 'unknown'}) is serving ${real}. One SQLite database takes one server, or every limit would count twice: stop that one, use another --db, or give every server the same --redis.`
}

function holderOf(conn: Database.Database): number | null {
  try {
    return (conn.prepare('select pid from server').get() as { pid: number } | undefined)?.pid ?? null
  } catch {
    return null // the first server is still creating the file
  }
}
