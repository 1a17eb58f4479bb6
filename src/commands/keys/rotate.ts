import { Args, Flags } from '@oclif/core'
import { BaseCommand } from '../../cli/base-command.js'
import { escapeControl } from '../../core/escape.js'
import { parseDuration } from '../../cli/durations.js'
import { createdView, KEY_REF_HELP, secretShownOnce } from '../../cli/key-view.js'

export default class KeysRotate extends BaseCommand<typeof KeysRotate> {
  static override summary = 'Give a key a new secret (same name, limits and usage); the new secret is shown once'
  static override description =
    'Without --grace the old secret stops at once. While a secret from an earlier rotation still works, a rotation needs --grace: 0s ends the earlier grace period now, a duration keeps the old secrets that long at most.'
  static override examples = ['<%= config.bin %> keys rotate alice', '<%= config.bin %> keys rotate alice --grace 1h']
  static override args = { key: Args.string({ description: KEY_REF_HELP, required: true }) }
  static override flags = {
    grace: Flags.string({ description: 'the old secret keeps working this long (e.g. 1h); default: it stops at once' }),
  }

  async run() {
    const grace = this.flags.grace === undefined ? undefined : parseDuration(this.flags.grace, '--grace')
    const rotated = await this.keys.rotate(this.args.key, grace)
    const view = { ...createdView(rotated), oldSecretExpiresAt: new Date(rotated.oldSecretExpiresAt).toISOString() }
    this.say(`Rotated key "${escapeControl(view.name)}" (${view.id}). The old secret stops working ${grace ? `at ${view.oldSecretExpiresAt}` : 'now'}.`)
    this.say(secretShownOnce(view.key))
    return view
  }
}
