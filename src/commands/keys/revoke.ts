import { Args } from '@oclif/core'
import { BaseCommand } from '../../cli/base-command.js'
import { keyView } from '../../cli/key-view.js'

export default class KeysRevoke extends BaseCommand<typeof KeysRevoke> {
  static override summary = 'Revoke an API key; a running server refuses it within a second'
  static override args = { key: Args.string({ description: 'key id or name', required: true }) }

  async run() {
    const key = this.keys.revoke(this.args.key)
    this.say(`Revoked key "${this.safe(key.name)}" (${key.id}).`)
    return keyView(key, [], this.clock.now())
  }
}
