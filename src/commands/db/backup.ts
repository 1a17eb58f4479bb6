import { Args, Flags } from '@oclif/core'
import { resolve } from 'node:path'
import { BaseCommand } from '../../cli/base-command.js'
import { badRequest } from '../../core/errors.js'
import { isPostgresUrl } from '../../storage/db-url.js'
import { backupDatabase } from '../../storage/sqlite/backup.js'

export default class DbBackup extends BaseCommand<typeof DbBackup> {
  static override summary = 'Copy the database to FILE, consistently, while the server runs'
  static override description =
    'Uses SQLite\'s online backup, so the copy holds everything committed so far, including what still sits in gateway.db-wal (a plain cp of gateway.db misses it). The copy is one self-contained file, mode 0600. To restore: stop the server, replace the database file with the copy, delete the old -wal and -shm files beside it, start the server.'
  static override examples = ['<%= config.bin %> db backup /var/backups/gateway-$(date +%F).db', '<%= config.bin %> db backup backup.db --force --json']
  static override args = {
    file: Args.string({ description: 'where to write the copy', required: true }),
  }
  static override flags = {
    force: Flags.boolean({ description: 'overwrite FILE if it exists', default: false }),
  }

  async run() {
    if (isPostgresUrl(this.flags.db)) {
      throw badRequest(`db backup copies a SQLite file; for PostgreSQL use pg_dump (e.g. pg_dump --format=custom --file=${this.args.file} "$GATEWAY_DB")`, 'db', 'backup_not_sqlite')
    }
    const started = performance.now()
    const result = await backupDatabase(resolve(this.flags.db), resolve(this.args.file), {
      force: this.flags.force,
      onProgress: (done, total) => {
        if (!this.jsonEnabled() && total > done) process.stderr.write(`backing up: ${Math.floor((done / total) * 100)}% (${done}/${total} pages)\n`)
      },
    })
    const ms = Math.round(performance.now() - started)
    this.say(`Backed up ${resolve(this.flags.db)} to ${result.file} (${result.bytes} bytes, ${ms} ms).`)
    return { db: resolve(this.flags.db), ...result, ms }
  }
}
