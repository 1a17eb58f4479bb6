import { Args } from '@oclif/core'
import { BaseCommand } from '../../cli/base-command.js'
import { describeKey, KEY_REF_HELP, keyView } from '../../cli/key-view.js'

export default class KeysShow extends BaseCommand<typeof KeysShow> {
  static override summary = 'Show one API key: by id, name, display prefix or its whole secret'
  static override description = 'Given a whole secret (a leaked key, say), it is looked up by its hash and never printed.'
  static override examples = ['<%= config.bin %> keys show alice', '<%= config.bin %> keys show gw-AbC1', '<%= config.bin %> keys show "$LEAKED_KEY" --json']
  static override args = { key: Args.string({ description: KEY_REF_HELP, required: true }) }

  async run() {
    const key = await this.keys.get(this.args.key)
    const view = keyView(key, await this.keys.liveSecrets(key.id), this.clock.now())
    this.say(describeKey(view))
    return view
  }
}
