import { Flags } from '@oclif/core'
import { BaseCommand } from '../../cli/base-command.js'
import { parseDuration } from '../../cli/durations.js'

export default class LogsPrune extends BaseCommand<typeof LogsPrune> {
  static override summary = 'Delete request-log rows older than a given age (daily usage totals are kept)'
  static override examples = ['<%= config.bin %> logs prune --older-than 90d']
  static override flags = {
    'older-than': Flags.string({ description: 'delete rows older than this (e.g. 90d)', required: true }),
  }

  async run() {
    const before = new Date(this.clock.now() - parseDuration(this.flags['older-than'], '--older-than')).toISOString()
    const deleted = this.store.pruneRequests(before)
    this.say(`Deleted ${deleted} request-log rows from before ${before}.`)
    return { deleted, before }
  }
}
