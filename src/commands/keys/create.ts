import { Flags } from '@oclif/core'
import { BaseCommand } from '../../cli/base-command.js'
import { parseDuration } from '../../cli/durations.js'
import { createdView } from '../../cli/key-view.js'
import { keyLimitFlags, limitsFromFlags } from '../../cli/limit-flags.js'

export default class KeysCreate extends BaseCommand<typeof KeysCreate> {
  static override summary = 'Create an API key; the key is shown once'
  static override examples = ['<%= config.bin %> keys create --name alice', '<%= config.bin %> keys create --name ci --expires-in 30d --rpm 60 --json']
  static override flags = {
    name: Flags.string({ description: 'unique name of the key (a person or a program)', required: true }),
    'expires-in': Flags.string({ description: 'the key stops working after this long (e.g. 30d)' }),
    admin: Flags.boolean({ description: 'may read everyone\'s usage and /metrics', default: false }),
    models: Flags.string({ description: 'comma-separated models the key may use (default: all)' }),
    ...keyLimitFlags,
  }

  async run() {
    const f = this.flags
    const created = this.keys.create({
      name: f.name,
      admin: f.admin,
      expiresInMs: f['expires-in'] ? parseDuration(f['expires-in'], '--expires-in') : null,
      models: f.models ? f.models.split(',').map((m) => m.trim()).filter(Boolean) : null,
      limits: limitsFromFlags(f),
    })
    const view = createdView(created)
    this.say(`Created key "${this.safe(view.name)}" (${view.id})${view.admin ? ' with admin rights' : ''}${view.expiresAt ? `, expires ${view.expiresAt}` : ''}.`)
    this.say(`\n  ${view.key}\n`)
    this.say('Store it now: it is shown this once and cannot be recovered.')
    return view
  }
}
