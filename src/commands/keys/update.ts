import { Args, Flags } from '@oclif/core'
import { BaseCommand } from '../../cli/base-command.js'
import { parseExpiry } from '../../cli/durations.js'
import { describeKey, KEY_REF_HELP, keyView, parseModels } from '../../cli/key-view.js'
import { keyLimitFlags, limitsFromFlags } from '../../cli/limit-flags.js'
import { badRequest } from '../../core/errors.js'

export default class KeysUpdate extends BaseCommand<typeof KeysUpdate> {
  static override summary = 'Change a key\'s name, admin right, models, expiry or limits'
  static override examples = [
    '<%= config.bin %> keys update alice --name alice-laptop',
    '<%= config.bin %> keys update ci --no-admin --expires-in 90d',
    '<%= config.bin %> keys update ci --rpm default --models gpt-4o-mini,gpt-4o',
  ]
  static override args = { key: Args.string({ description: KEY_REF_HELP, required: true }) }
  static override flags = {
    name: Flags.string({ description: 'new name (unique among live keys, without regard to case)' }),
    admin: Flags.boolean({ description: 'give (--admin) or take away (--no-admin) admin rights', allowNo: true }),
    models: Flags.string({ description: 'comma-separated models the key may use, or "all"' }),
    'expires-in': Flags.string({ description: 'expire this long from now (30d, 12h30m, 1y), at an ISO date/time (UTC unless it names a zone), or "never"' }),
    ...keyLimitFlags,
  }

  async run() {
    const f = this.flags
    const limits = limitsFromFlags(f)
    const patch = {
      name: f.name,
      admin: f.admin,
      limits: Object.keys(limits).length > 0 ? limits : undefined,
      models: f.models === undefined ? undefined : parseModels(f.models),
      ...(f['expires-in'] === undefined ? {} : parseExpiry(f['expires-in'], this.clock.now())),
    }
    if (Object.values(patch).every((v) => v === undefined)) {
      const flags = Object.keys(KeysUpdate.flags).map((name) => (name === 'admin' ? '--admin/--no-admin' : `--${name}`))
      throw badRequest(`Nothing to change: give at least one of ${flags.join(', ')}`, null)
    }
    const key = await this.keys.update(this.args.key, patch)
    const view = keyView(key, await this.keys.liveSecrets(key.id), this.clock.now())
    this.say(describeKey(view))
    return view
  }
}
