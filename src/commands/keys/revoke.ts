import { Args } from '@oclif/core'
import { BaseCommand } from '../../cli/base-command.js'
import { escapeControl } from '../../core/escape.js'
import { KEY_REF_HELP, keyView } from '../../cli/key-view.js'

export default class KeysRevoke extends BaseCommand<typeof KeysRevoke> {
  static override summary = 'Revoke an API key; a running server refuses it within a second'
  static override description = 'A revoked key stays listed (its usage keeps its name) and answers 401 key_revoked; its name is free for a new key.'
  static override examples = ['<%= config.bin %> keys revoke alice', '<%= config.bin %> keys revoke gw-AbC1']
  static override args = { key: Args.string({ description: KEY_REF_HELP, required: true }) }

  async run() {
    const key = await this.keys.revoke(this.args.key)
    this.say(`Revoked key "${escapeControl(key.name)}" (${key.id}).`)
    return keyView(key, [], this.clock.now())
  }
}
