import { Flags } from '@oclif/core'
import { rmSync } from 'node:fs'
import { BaseCommand } from '../../cli/base-command.js'
import { escapeControl } from '../../core/escape.js'
import { parseDuration } from '../../cli/durations.js'
import { csvFilesBefore, defaultCsvBase } from '../../storage/csv-log.js'

export default class LogsPrune extends BaseCommand<typeof LogsPrune> {
  static override summary = 'Delete request-log rows and CSV log files older than a given age (usage totals are kept)'
  static override description = `Usage reports (\`gateway usage\`, \`usage today\`, GET /usage) read totals kept per day, key and model, which prune leaves alone: they report the same before and after. Latency percentiles need the rows, so for pruned requests they show "-".
CSV log files (requests-YYYY-MM-DD.csv beside --csv-log) go when their whole UTC day is older than the cut.`
  static override examples = ['<%= config.bin %> logs prune --older-than 90d --dry-run', '<%= config.bin %> logs prune --older-than 90d']
  static override flags = {
    'older-than': Flags.string({ description: 'delete rows older than this (e.g. 90d)', required: true }),
    'dry-run': Flags.boolean({ description: 'show what would be deleted, delete nothing', default: false }),
    'csv-log': Flags.string({ description: 'CSV request log base path, as given to serve (default: requests.csv beside the database)', env: 'GATEWAY_CSV_LOG' }),
  }

  async run() {
    const f = this.flags
    const before = new Date(this.clock.now() - parseDuration(f['older-than'], '--older-than')).toISOString()
    const span = await this.store.logSpan(before)
    const csvFiles = csvFilesBefore(f['csv-log'] ?? defaultCsvBase(f.db), before)
    const range = span.rows > 0 ? ` (${span.first} to ${span.last})` : ''
    const files = csvFiles.map((file) => `\n  ${escapeControl(file)}`).join('')
    if (f['dry-run']) {
      this.say(`Dry run: would delete ${span.rows} request-log rows from before ${before}${range} and ${csvFiles.length} CSV log files${files}`)
      return { dry_run: true, before, deleted: 0, would_delete: span.rows, first: span.first, last: span.last, csv_files: csvFiles }
    }
    const deleted = await this.store.pruneRequests(before)
    for (const file of csvFiles) rmSync(file, { force: true })
    this.say(`Deleted ${deleted} request-log rows from before ${before}${range} and ${csvFiles.length} CSV log files${files}`)
    this.say('Usage totals are kept; latency percentiles of the pruned requests are gone.')
    return { dry_run: false, before, deleted, first: span.first, last: span.last, csv_files: csvFiles }
  }
}
