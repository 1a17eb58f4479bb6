import { BaseCommand } from '../../cli/base-command.js'
import { keyView } from '../../cli/key-view.js'
import { renderTable } from '../../cli/table.js'

export default class KeysList extends BaseCommand<typeof KeysList> {
  static override summary = 'List API keys (never their secrets)'

  async run() {
    const now = this.clock.now()
    const prefixes = this.keys.prefixesByKey()
    const keys = this.keys.list().map((k) => keyView(k, prefixes.get(k.id) ?? [], now))
    this.say(
      keys.length === 0
        ? 'No keys yet: create one with `gateway keys create --name NAME`.'
        : renderTable(
            ['ID', 'NAME', 'PREFIX', 'STATUS', 'ADMIN', 'CREATED', 'EXPIRES'],
            keys.map((k) => [k.id, k.name, k.prefix ? `${k.prefix}…` : '', k.status, k.admin ? 'yes' : '', k.createdAt, k.expiresAt ?? 'never']),
          ),
    )
    return keys
  }
}
