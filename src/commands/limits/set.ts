import { Flags } from '@oclif/core'
import { BaseCommand } from '../../cli/base-command.js'
import { escapeControl } from '../../core/escape.js'
import { byFlag, FLAG_OF, ipLimitFlags, keyLimitFlags, limitsFromFlags } from '../../cli/limit-flags.js'
import { badRequest } from '../../core/errors.js'
import { formatLimit } from '../../core/limits.js'

export default class LimitsSet extends BaseCommand<typeof LimitsSet> {
  static override summary = 'Set limits for every key (--default) or one key (--key); a running server applies them within a second'
  static override description =
    'A value is a number, "off" (or its synonym "none") for no limit, or "default": with --key the key drops its own value and follows the defaults again; with --default the built-in value applies again. With --default it creates the database if there is none yet, so defaults can be set before the first key.'
  static override examples = [
    '<%= config.bin %> limits set --default --rpm 60 --daily-tokens 200000',
    '<%= config.bin %> limits set --key alice --tpm 20000 --concurrency 2',
    '<%= config.bin %> limits set --key ci --daily-tokens off',
    '<%= config.bin %> limits set --key alice --rpm default',
  ]
  static override flags = {
    default: Flags.boolean({ description: 'change the defaults', exclusive: ['key'] }),
    key: Flags.string({ description: 'change one key (id, name or display prefix)', exclusive: ['default'] }),
    ...keyLimitFlags,
    ...ipLimitFlags,
  }

  /** Only defaults can be set before there is a database: --key needs a key, so a database. */
  protected override mayCreateDatabase(): boolean {
    return this.flags.default === true
  }

  async run() {
    const f = this.flags
    if (!f.default && !f.key) throw badRequest('Say which limits to change: --default or --key ID|NAME', 'default')
    const changes = limitsFromFlags(f)
    if (Object.keys(changes).length === 0) throw badRequest('Name at least one limit to set, e.g. --rpm 60', null)
    if (f.key && ('authFailuresPerMinute' in changes || 'ipRpm' in changes)) {
      throw badRequest('Per-IP limits are server-wide: set them with --default', 'key')
    }
    const shown = Object.entries(changes)
      .map(([k, v]) => `${FLAG_OF[k as keyof typeof FLAG_OF]}=${v === undefined ? 'default' : formatLimit(v as number | string | null)}`)
      .join(' ')
    if (f.key) {
      const key = await this.keys.update(f.key, { limits: changes })
      this.say(`Key "${escapeControl(key.name)}": ${shown}`)
      return { key: { id: key.id, name: key.name }, limits: byFlag(key.limits) }
    }
    const limits = await this.store.mergeDefaults(changes)
    this.say(`Defaults: ${shown}`)
    return { key: null, limits: byFlag(limits) }
  }
}
