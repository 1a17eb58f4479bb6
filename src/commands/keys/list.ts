import { BaseCommand } from '../../cli/base-command.js'
import { keyView } from '../../cli/key-view.js'
import { renderTable } from '../../cli/table.js'
import { KeyManager } from '../../core/keys.js'

export default class KeysList extends BaseCommand<typeof KeysList> {
  static override summary = 'List API keys (never their secrets)'

  async run() {
    const manager = new KeyManager(this.store, this.clock)
    const now = this.clock.now()
    const keys = manager.list().map((k) => keyView(k, manager.prefixes(k.id), now))
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
