import { Args } from '@oclif/core'
import { BaseCommand } from '../../cli/base-command.js'
import { describeKey, keyView } from '../../cli/key-view.js'

export default class KeysShow extends BaseCommand<typeof KeysShow> {
  static override summary = 'Show one API key'
  static override args = { key: Args.string({ description: 'key id or name', required: true }) }

  async run() {
    const key = this.keys.get(this.args.key)
    const view = keyView(key, this.keys.prefixes(key.id), this.clock.now())
    this.say(describeKey(view, (s) => this.safe(s)))
    return view
  }
}
