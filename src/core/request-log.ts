import type { UsageStore } from './store.js'
import type { RequestRow } from './types.js'

/** Where else rows go after the database (the CSV request log). */
export interface RowSink {
  append(rows: RequestRow[]): void
  close(): void
}

interface Pending {
  row: RequestRow
  resolve(): void
  reject(err: unknown): void
}

/** A batch the store found busy is tried again after 1 ms, doubling up to this. */
const MAX_RETRY_MS = 10

/**
 * Group commit: rows written in the same turn of the event loop go to the store in one
 * transaction, and each writer's promise settles when its row is committed. The HTTP layer
 * awaits that before a response's last byte, so what a client received is never lost.
 *
 * At most `maxInFlight` batches are in flight (1 for SQLite: one writer anyway, and a busy
 * batch must keep its place); rows written while they commit form the next one.
 * While another connection holds the write lock the store refuses at once (it never waits
 * on the serving thread); the batch stays pending, in order, rows written meanwhile join
 * it, and it is tried again on a short timer until the lock is free.
 */
export class RequestLog {
  private pending: Pending[] = []
  /** Rows pending or batches in flight: `drain()` waits. */
  private busy = false
  /** A flush is due (next turn, or a retry timer). */
  private due = false
  private inFlight = 0
  private retryMs = 0
  private idle: Promise<void> = Promise.resolve()
  private markIdle: () => void = () => {}

  constructor(
    private readonly store: Pick<UsageStore, 'appendRequests'>,
    private readonly sinks: RowSink[] = [],
    private readonly onSinkError: (err: unknown) => void = () => {},
    private readonly maxInFlight = 1,
  ) {}

  write(row: RequestRow): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ row, resolve, reject })
      if (!this.busy) {
        this.busy = true
        this.idle = new Promise<void>((r) => (this.markIdle = r))
      }
      this.schedule()
    })
  }

  /** Resolves when every row written so far is committed. */
  drain(): Promise<void> {
    return this.idle
  }

  private schedule(delayMs?: number): void {
    if (this.due) return
    this.due = true
    const run = () => {
      this.due = false
      while (this.pending.length > 0 && this.inFlight < this.maxInFlight) void this.flush()
      this.settleIdle()
    }
    if (delayMs === undefined) setImmediate(run)
    else setTimeout(run, delayMs)
  }

  private async flush(): Promise<void> {
    const batch = this.pending
    this.pending = []
    this.inFlight++
    const rows = batch.map((p) => p.row)
    let written: boolean
    try {
      written = await this.store.appendRequests(rows)
    } catch (err) {
      this.inFlight--
      for (const p of batch) p.reject(err)
      this.next()
      return
    }
    this.inFlight--
    if (!written) {
      this.pending = batch.concat(this.pending)
      this.retryMs = Math.min(MAX_RETRY_MS, this.retryMs * 2 || 1)
      this.schedule(this.retryMs)
      return
    }
    for (const sink of this.sinks) {
      try {
        sink.append(rows)
      } catch (err) {
        this.onSinkError(err)
      }
    }
    for (const p of batch) p.resolve()
    this.next()
  }

  /** After a batch: the rows written meanwhile go next, or the log is idle. */
  private next(): void {
    this.retryMs = 0
    if (this.pending.length > 0) this.schedule()
    else this.settleIdle()
  }

  private settleIdle(): void {
    if (this.busy && this.pending.length === 0 && this.inFlight === 0 && !this.due) {
      this.busy = false
      this.markIdle()
    }
  }
}
