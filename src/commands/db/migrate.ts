import { BaseCommand } from '../../cli/base-command.js'
import { describeDb } from '../../storage/db-url.js'

export default class DbMigrate extends BaseCommand<typeof DbMigrate> {
  static override summary = 'Create the database or bring its schema up to date (serve does this too)'
  static override examples = ['<%= config.bin %> db migrate', '<%= config.bin %> db migrate --db /var/lib/gateway/gateway.db --json']
  static override createsDatabase = true

  async run() {
    const migrations = await this.store.appliedMigrations() // opening the store applied any missing ones
    this.say(`Database ${describeDb(this.flags.db)} is up to date (${migrations} migrations applied).`)
    return { db: describeDb(this.flags.db), migrations }
  }
}
