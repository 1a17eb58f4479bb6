import { Args, Flags } from '@oclif/core'
import { BaseCommand } from '../../cli/base-command.js'
import { parseDuration } from '../../cli/durations.js'
import { createdView } from '../../cli/key-view.js'

export default class KeysRotate extends BaseCommand<typeof KeysRotate> {
  static override summary = 'Give a key a new secret (same name, limits and usage); the new secret is shown once'
  static override args = { key: Args.string({ description: 'key id or name', required: true }) }
  static override flags = {
    grace: Flags.string({ description: 'the old secret keeps working this long (e.g. 1h); default: it stops at once', default: '0s' }),
  }

  async run() {
    const rotated = this.keys.rotate(this.args.key, parseDuration(this.flags.grace, '--grace'))
    const view = { ...createdView(rotated), oldSecretExpiresAt: new Date(rotated.oldSecretExpiresAt).toISOString() }
    this.say(`Rotated key "${this.safe(view.name)}" (${view.id}). The old secret stops working ${this.flags.grace === '0s' ? 'now' : `at ${view.oldSecretExpiresAt}`}.`)
    this.say(`\n  ${view.key}\n`)
    this.say('Store it now: it is shown this once and cannot be recovered.')
    return view
  }
}
