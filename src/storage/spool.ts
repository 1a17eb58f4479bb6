import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs'
import { randomUUID } from 'node:crypto'
import { dirname, join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import type { SpoolState, UsageStore } from '../core/store.js'
import type { RequestRow } from '../core/types.js'
import { ServerLock } from './sqlite/server-lock.js'

/** Rows per replayed batch: small enough for one statement's parameters and a short transaction. */
const REPLAY_BATCH = 1_000
const REPLAY_EVERY_MS = 1_000


/**
 * An error that says the database is unreachable or going away, not that the rows are bad:
 * PostgreSQL connection (08) and operator-intervention (57) classes, resource exhaustion
 * (53), and the socket's own errors, which carry no SQLSTATE.
 */
export function isUnavailable(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  if (typeof code !== 'string') return true // "Connection terminated", pool timeouts
  if (/^[0-9A-Z]{5}$/.test(code)) return /^(08|57|53)/.test(code)
  return true // ECONNREFUSED, ECONNRESET, ETIMEDOUT, EPIPE…
}

/**
 * The request log's fail-open path for a shared database: a batch the database cannot take
 * goes to a local file (JSON lines, fsync'd before the writers' answers leave), and while
 * anything is spooled every later batch goes there too, so rows reach the database in the
 * order they were spooled (a batch already on its way to the database when another failed
 * may land before it: ids, not order, make the replay safe). A timer replays the file (renamed aside first, so writes go on
 * meanwhile) in batches; the database skips rows it already has (by entry id), so a replay
 * cut short by a crash or an outage is simply run again and counts nothing twice.
 */
export class SpoolingLog implements Pick<UsageStore, 'appendRequests'> {
  private readonly file: string
  private readonly replaying: string
  private fd: number | null = null
  private spooled = 0
  private bytes = 0
  private lastError: string | null = null
  private timer: NodeJS.Timeout | null = null
  private running: Promise<void> | null = null
  /** One process per spool directory: another one renaming the file under this one's writes would lose rows. */
  private readonly lock: ServerLock

  constructor(
    private readonly store: UsageStore,
    dir: string,
    private readonly onError: (err: unknown) => void = () => {},
  ) {
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    this.file = join(dir, 'request-log.spool.jsonl')
    this.replaying = join(dir, 'request-log.replaying.jsonl')
    const owner = join(dir, 'owner')
    closeSync(openSync(owner, 'a', 0o600))
    this.lock = ServerLock.acquire(owner, { refusal: (pid, path) => `Another gateway (pid ${pid ?? 'unknown'}) uses the spool directory ${dirname(path)}: each gateway needs its own (--spool-dir).` })
    // What an earlier run left: counted now, replayed by the first tick.
    for (const f of [this.replaying, this.file]) {
      if (!existsSync(f)) continue
      const text = readFileSync(f, 'utf8')
      this.spooled += text.split('\n').filter((l) => l.length > 0).length
      this.bytes += Buffer.byteLength(text)
    }
    if (this.spooled > 0) this.schedule()
  }

  state(): SpoolState {
    return { rows: this.spooled, bytes: this.bytes, lastError: this.spooled > 0 ? this.lastError : null }
  }

  async appendRequests(rows: RequestRow[]): Promise<boolean> {
    // Given once, before the first attempt: a retried batch holds the same rows, so the same ids.
    for (const row of rows) row.entryId ??= randomUUID()
    if (this.spooled === 0) {
      try {
        return await this.store.appendRequests(rows)
      } catch (err) {
        if (!isUnavailable(err)) throw err
        this.lastError = err instanceof Error ? err.message : String(err)
        this.onError(new Error(`the database refused the request log (${this.lastError}): rows go to the spool until it is back`, { cause: err }))
      }
    }
    this.spool(rows)
    return true
  }

  /** Replays what is spooled now; resolves when the spool is empty or the database refused again. */
  replay(): Promise<void> {
    this.running ??= this.replayOnce().finally(() => (this.running = null))
    return this.running
  }

  close(): void {
    if (this.timer) clearInterval(this.timer)
    this.timer = null
    if (this.fd !== null) closeSync(this.fd)
    this.fd = null
    this.lock.release()
  }

  private spool(rows: RequestRow[]): void {
    const text = rows.map((r) => `${JSON.stringify(r)}\n`).join('')
    this.fd ??= openSync(this.file, 'a', 0o600)
    writeSync(this.fd, text)
    fsyncSync(this.fd) // durable before the writers' answers leave
    this.spooled += rows.length
    this.bytes += Buffer.byteLength(text)
    this.schedule()
  }

  private schedule(): void {
    if (this.timer) return
    this.timer = setInterval(() => void this.replay(), REPLAY_EVERY_MS)
    this.timer.unref()
  }

  private async replayOnce(): Promise<void> {
    for (;;) {
      if (!existsSync(this.replaying)) {
        if (!existsSync(this.file) || statSync(this.file).size === 0) break
        if (this.fd !== null) closeSync(this.fd)
        this.fd = null
        renameSync(this.file, this.replaying) // later rows start a new spool file, replayed after this one
      }
      const lines = readFileSync(this.replaying, 'utf8').split('\n').filter((l) => l.length > 0)
      try {
        for (let i = 0; i < lines.length; i += REPLAY_BATCH) {
          const batch = lines.slice(i, i + REPLAY_BATCH).map((l) => JSON.parse(l) as RequestRow)
          while (!(await this.store.appendRequests(batch))) await delay(10)
        }
      } catch (err) {
        this.lastError = err instanceof Error ? err.message : String(err)
        return // the next tick tries again, from the start of the file (rows in already are skipped)
      }
      unlinkSync(this.replaying)
      this.spooled -= lines.length
      this.bytes = existsSync(this.file) ? statSync(this.file).size : 0
    }
    this.spooled = 0
    this.bytes = 0
    this.lastError = null
    if (this.timer) clearInterval(this.timer)
    this.timer = null
  }
}
