import { Args, Flags } from '@oclif/core'
import { BaseCommand } from '../../cli/base-command.js'
import { parseDuration } from '../../cli/durations.js'
import { describeKey, keyView } from '../../cli/key-view.js'
import { keyLimitFlags, limitsFromFlags } from '../../cli/limit-flags.js'

export default class KeysUpdate extends BaseCommand<typeof KeysUpdate> {
  static override summary = 'Change a key\'s models, expiry or limits'
  static override args = { key: Args.string({ description: 'key id or name', required: true }) }
  static override flags = {
    models: Flags.string({ description: 'comma-separated models the key may use, or "all"' }),
    'expires-in': Flags.string({ description: 'expire this long from now, or "never"' }),
    ...keyLimitFlags,
  }

  async run() {
    const f = this.flags
    const limits = limitsFromFlags(f)
    const key = this.keys.update(this.args.key, {
      limits: Object.keys(limits).length > 0 ? limits : undefined,
      models: f.models === undefined ? undefined : f.models === 'all' ? null : f.models.split(',').map((m) => m.trim()).filter(Boolean),
      expiresInMs: f['expires-in'] === undefined ? undefined : f['expires-in'] === 'never' ? null : parseDuration(f['expires-in'], '--expires-in'),
    })
    const view = keyView(key, this.keys.prefixes(key.id), this.clock.now())
    this.say(describeKey(view, (s) => this.safe(s)))
    return view
  }
}
