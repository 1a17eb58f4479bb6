import { Flags } from '@oclif/core'
import { stringify } from 'csv-stringify'
import { createWriteStream } from 'node:fs'
import { Readable, Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { BaseCommand } from '../../cli/base-command.js'
import { parseTimeRange, SINCE_HELP, UNTIL_HELP } from '../../cli/durations.js'
import { CSV_FORMAT, LOG_COLUMNS, toCsvRecord, toJsonRecord } from '../../core/log-columns.js'
import { escapeControl } from '../../core/escape.js'
import type { RequestRow } from '../../core/types.js'
import type { RequestFilter } from '../../core/store.js'

/** JSON escapes C0 controls itself; C1 controls (CSI, NEL…) get \\u escapes too: still the same JSON value. */
function jsonLine(record: unknown): string {
  return JSON.stringify(record).replace(/[\u007f-\u009f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

export default class LogsExport extends BaseCommand<typeof LogsExport> {
  static override summary = 'Export the request log as CSV (default) or JSON lines, streamed with constant memory'
  static override examples = [
    '<%= config.bin %> logs export --since 7d --output last-week.csv',
    '<%= config.bin %> logs export --key alice --status 429 --format jsonl',
  ]
  static override flags = {
    since: Flags.string({ description: SINCE_HELP }),
    until: Flags.string({ description: UNTIL_HELP }),
    key: Flags.string({ description: 'only this key (id or name)' }),
    status: Flags.integer({ description: 'only this HTTP status', min: 100, max: 599 }),
    format: Flags.string({ description: 'output format', options: ['csv', 'jsonl'], default: 'csv' }),
    output: Flags.string({ char: 'o', description: 'write to this file (created 0600) instead of stdout' }),
    bom: Flags.boolean({ description: 'start CSV with a UTF-8 byte order mark so spreadsheets detect UTF-8', default: true, allowNo: true }),
    escape: Flags.string({
      description: 'show control characters as \\xNN instead of writing them; auto: when the output is a terminal',
      options: ['auto', 'always', 'never'],
      default: 'auto',
    }),
  }

  async run() {
    const f = this.flags
    const now = this.clock.now()
    const filter: RequestFilter = {
      ...parseTimeRange(f.since, f.until, now),
      keyId: f.key ? (await this.keys.get(f.key)).id : undefined,
      status: f.status,
    }
    // The count (a scan of the matching rows) only feeds the progress line a file export shows.
    const total = f.output ? await this.store.countRequests(filter) : 0
    let written = 0
    const rows = this.store.iterateRequests(filter)
    const encode =
      f.format === 'csv'
        ? stringify({ ...CSV_FORMAT, header: true, columns: [...LOG_COLUMNS], bom: f.bom })
        : new Transform({ objectMode: true, transform: (record, _enc, done) => done(null, `${jsonLine(record)}\n`) })
    // A file or pipe gets the data as stored (quoted CSV keeps newlines in a name); a terminal
    // must not receive the escape sequences a hostile User-Agent or key name may carry.
    const escape = f.escape === 'always' || (f.escape === 'auto' && !f.output && process.stdout.isTTY === true)
    const toRecord =
      f.format === 'csv'
        ? (row: RequestRow) => (escape ? toCsvRecord(row).map((c) => (typeof c === 'string' ? escapeControl(c) : c)) : toCsvRecord(row))
        : toJsonRecord
    const source = Readable.from(
      (async function* records() {
        for await (const row of rows) {
          written++
          yield toRecord(row)
        }
      })(),
    )
    const progress = f.output ? setInterval(() => this.progress(written, total), 500) : null
    try {
      if (f.output) await pipeline(source, encode, createWriteStream(f.output, { mode: 0o600 }))
      else await pipeline(source, encode, process.stdout, { end: false }) // stdout stays open for oclif
    } finally {
      if (progress) clearInterval(progress)
    }
    if (f.output) {
      this.progress(written, total)
      process.stderr.write('\n')
    }
    const summary = { rows: written, format: f.format, output: f.output ?? null, ...filter }
    if (f.output) this.say(`Exported ${written} rows to ${f.output}.`)
    return f.output ? summary : undefined
  }

  private progress(done: number, total: number): void {
    const pct = total > 0 ? Math.floor((done / total) * 100) : 100
    process.stderr.write(`\rexported ${done}/${total} rows (${pct}%)`)
  }
}
