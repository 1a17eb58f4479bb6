import { Flags } from '@oclif/core'
import { BaseCommand } from '../../cli/base-command.js'
import { escapeControl } from '../../core/escape.js'
import { parseExpiry } from '../../cli/durations.js'
import { createdView, parseModels, secretShownOnce } from '../../cli/key-view.js'
import { keyLimitFlags, limitsFromFlags } from '../../cli/limit-flags.js'

export default class KeysCreate extends BaseCommand<typeof KeysCreate> {
  static override summary = 'Create an API key; the key is shown once'
  static override description =
    'Names are unique among keys that are not revoked, without regard to case (ASCII letters); a revoked key\'s name may be used again. Creates the database if there is none yet.'
  static override examples = [
    '<%= config.bin %> keys create --name alice',
    '<%= config.bin %> keys create --name ci --expires-in 30d --rpm 60 --json',
    '<%= config.bin %> keys create --name contractor --expires-in 2027-03-31',
  ]
  static override createsDatabase = true
  static override flags = {
    name: Flags.string({ description: 'unique name of the key (a person or a program)', required: true }),
    'expires-in': Flags.string({ description: 'the key stops working after this long (30d, 12h30m, 1y), at an ISO date/time (UTC unless it names a zone), or "never"' }),
    admin: Flags.boolean({ description: 'may read everyone\'s usage and /metrics', default: false }),
    models: Flags.string({ description: 'comma-separated models the key may use, or "all" (the default)' }),
    ...keyLimitFlags,
  }

  async run() {
    const f = this.flags
    const created = await this.keys.create({
      name: f.name,
      admin: f.admin,
      ...(f['expires-in'] ? parseExpiry(f['expires-in'], this.clock.now()) : {}),
      models: f.models ? parseModels(f.models) : null,
      limits: limitsFromFlags(f),
    })
    const view = createdView(created)
    this.say(`Created key "${escapeControl(view.name)}" (${view.id})${view.admin ? ' with admin rights' : ''}${view.expiresAt ? `, expires ${view.expiresAt}` : ''}.`)
    this.say(secretShownOnce(view.key))
    return view
  }
}
