import { Args } from '@oclif/core'
import { BaseCommand } from '../../cli/base-command.js'
import { escapeControl } from '../../core/escape.js'
import { KEY_REF_HELP } from '../../cli/key-view.js'

export default class KeysDelete extends BaseCommand<typeof KeysDelete> {
  static override summary = 'Delete an API key for good; its request-log rows keep its id and name'
  static override description =
    'The key and its secrets are removed; a running server refuses it within a second. Request-log rows and daily usage totals stay, so `usage` and `logs export` still show what it did. To stop a key but keep it listed, use `keys revoke`.'
  static override examples = ['<%= config.bin %> keys delete alice', '<%= config.bin %> keys delete key_01JD3... --json']
  static override args = { key: Args.string({ description: KEY_REF_HELP, required: true }) }

  async run() {
    const key = await this.keys.delete(this.args.key)
    this.say(`Deleted key "${escapeControl(key.name)}" (${key.id}). Its request-log rows keep its id and name.`)
    return { id: key.id, name: key.name, deleted: true }
  }
}
