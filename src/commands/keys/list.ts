import { BaseCommand } from '../../cli/base-command.js'
import { keyView } from '../../cli/key-view.js'
import { renderTable, toSecond } from '../../cli/table.js'

export default class KeysList extends BaseCommand<typeof KeysList> {
  static override summary = 'List API keys (never their secrets)'
  static override examples = ['<%= config.bin %> keys list', '<%= config.bin %> keys list --json']

  async run() {
    const now = this.clock.now()
    const secrets = await this.keys.liveSecretsByKey()
    const keys = (await this.keys.list()).map((k) => keyView(k, secrets.get(k.id) ?? [], now))
    this.say(
      renderTable(
        ['ID', 'NAME', 'PREFIX', 'STATUS', 'ADMIN', 'CREATED', 'EXPIRES'],
        keys.map((k) => [k.id, k.name, k.prefix ? `${k.prefix}…` : '', k.status, k.admin ? 'yes' : '', toSecond(k.createdAt), toSecond(k.expiresAt) ?? 'never']),
        undefined,
        'No keys yet: create one with `gateway keys create --name NAME`.',
      ),
    )
    return keys
  }
}
