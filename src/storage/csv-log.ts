import { stringify } from 'csv-stringify/sync'
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readdirSync, writeSync } from 'node:fs'
import { basename, dirname, extname, join } from 'node:path'
import { DAY_MS } from '../core/calendar.js'
import { CSV_FORMAT, LOG_COLUMNS, toCsvRecord } from '../core/log-columns.js'
import type { RowSink } from '../core/request-log.js'
import type { RequestRow } from '../core/types.js'
import { isPostgresUrl } from './db-url.js'

/** `./data/requests.csv` → `./data/requests-2026-11-26.csv`: one file per UTC day. */
export function csvPathFor(base: string, utcDay: string): string {
  const ext = extname(base) || '.csv'
  const stem = base.endsWith(ext) ? base.slice(0, -ext.length) : base
  return `${stem}-${utcDay}${ext}`
}

/** Where serve writes the CSV log when --csv-log is not given: beside the database (under ./data for PostgreSQL). */
export function defaultCsvBase(db: string): string {
  return join(isPostgresUrl(db) ? 'data' : dirname(db), 'requests.csv')
}

/** A cell that csv-stringify, with CSV_FORMAT, would have to quote. */
const NEEDS_QUOTES = /[",\r\n]/

/**
 * Records as csv-stringify writes them with CSV_FORMAT. A record whose cells all go out as
 * they are (the usual request row) is joined directly: csv-stringify's per-cell checks cost
 * ~10 µs a row on the request path. Any other record goes through csv-stringify, which stays
 * the one authority on quoting; a test holds both paths to the same output.
 */
export function csvText(records: (string | number)[][]): string {
  let out = ''
  for (const record of records) {
    const plain = record.every((cell) => typeof cell === 'number' || !NEEDS_QUOTES.test(cell))
    out += plain ? `${record.join(',')}\r\n` : stringify([record], CSV_FORMAT)
  }
  return out
}

/** The day files of a CSV log whose whole UTC day is before `before` (ISO), oldest first. */
export function csvFilesBefore(base: string, before: string): string[] {
  const dir = dirname(base)
  if (!existsSync(dir)) return []
  const [stem, ext] = basename(csvPathFor(base, '\0')).split('\0')
  const cut = Date.parse(before)
  return readdirSync(dir)
    .filter((name) => {
      if (!name.startsWith(stem) || !name.endsWith(ext)) return false
      const day = name.slice(stem.length, name.length - ext.length)
      return /^\d{4}-\d{2}-\d{2}$/.test(day) && Date.parse(`${day}T00:00:00Z`) + DAY_MS <= cut
    })
    .sort()
    .map((name) => join(dir, name))
}

/**
 * The CSV request log: rows appended with synchronous writes from the one event loop (so
 * writers never interleave), a header at the top of each day's file, files created 0600.
 */
export class CsvLog implements RowSink {
  private fd: number | null = null
  private day = ''

  constructor(private readonly base: string) {
    mkdirSync(dirname(base), { recursive: true, mode: 0o700 })
  }

  append(rows: RequestRow[]): void {
    let start = 0
    while (start < rows.length) {
      const day = rows[start].timestamp.slice(0, 10)
      let end = start + 1
      while (end < rows.length && rows[end].timestamp.slice(0, 10) === day) end++
      const fd = this.fileFor(day)
      writeSync(fd, csvText(rows.slice(start, end).map(toCsvRecord)))
      start = end
    }
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd)
    this.fd = null
  }

  private fileFor(day: string): number {
    if (this.fd !== null && day === this.day) return this.fd
    this.close()
    const fd = openSync(csvPathFor(this.base, day), 'a', 0o600)
    if (fstatSync(fd).size === 0) writeSync(fd, stringify([[...LOG_COLUMNS]], CSV_FORMAT))
    this.fd = fd
    this.day = day
    return fd
  }
}
