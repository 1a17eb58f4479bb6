import { escapeControl } from '../core/escape.js'
import type { RequestRow } from '../core/types.js'

export const ACCESS_LOG_FORMATS = ['text', 'json', 'off'] as const
export type AccessLogFormat = (typeof ACCESS_LOG_FORMATS)[number]

/** Past this much unwritten text (stdout not keeping up), lines are dropped and counted. */
const MAX_PENDING_CHARS = 1024 * 1024
/**
 * Lines wait this long to go out together: every write wakes the reader (journald, a pipe),
 * and one wake-up per request was a context switch per request the bare proxy does not make.
 */
const FLUSH_MS = 100

/** A text field: bare when it is plain printable ASCII, else quoted with control characters made visible. */
function field(value: string | null): string {
  if (value === null || value === '') return '-'
  if (/^[\x21-\x7e]+$/.test(value) && !value.includes('"')) return value
  return `"${escapeControl(value.replace(/["\\]/g, '\\$&'))}"`
}

function textLine(row: RequestRow): string {
  const error = row.errorCode ? ` error=${field(row.errorCode)}` : ''
  return `${row.timestamp} ${row.requestId} ${field(row.keyName)} ${row.method} ${field(row.route)} ${field(row.model)} ${row.status} tokens=${row.totalTokens} ${row.latencyMs}ms${error}\n`
}

function jsonLine(row: RequestRow): string {
  const entry = {
    time: row.timestamp,
    requestId: row.requestId,
    key: row.keyName,
    method: row.method,
    route: row.route,
    model: row.model,
    status: row.status,
    tokens: row.totalTokens,
    ms: row.latencyMs,
    error: row.errorCode,
  }
  // JSON escapes C0 controls itself; DEL and C1 controls could still drive a terminal.
  return `${JSON.stringify(entry).replace(/[\u007f-\u009f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)}\n`
}

/**
 * One line per request on stdout (for journalctl), fed with the rows the request log writes.
 * Lines go out together at most every FLUSH_MS, and at close; when stdout does not keep up,
 * lines are dropped and counted instead of piling up in memory.
 */
export class AccessLog {
  private pending = ''
  private dropped = 0
  private timer: NodeJS.Timeout | null = null
  private readonly format: (row: RequestRow) => string

  constructor(
    kind: Exclude<AccessLogFormat, 'off'>,
    private readonly out: NodeJS.WritableStream & { writableNeedDrain?: boolean } = process.stdout,
  ) {
    this.format = kind === 'json' ? jsonLine : textLine
  }

  write(row: RequestRow): void {
    if (this.pending.length > MAX_PENDING_CHARS || this.out.writableNeedDrain) {
      this.dropped++
      return
    }
    this.pending += this.format(row)
    this.timer ??= setTimeout(() => this.flush(), FLUSH_MS).unref() // close() flushes what is left
  }

  flush(): void {
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    if (this.dropped > 0 && !this.out.writableNeedDrain) {
      this.pending += `gateway: access log: ${this.dropped} lines dropped (stdout was not keeping up)\n`
      this.dropped = 0
    }
    if (this.pending.length === 0) return
    const text = this.pending
    this.pending = ''
    this.out.write(text)
  }
}
