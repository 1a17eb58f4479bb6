import { Flags } from '@oclif/core'
import { BaseCommand } from '../../cli/base-command.js'
import { escapeControl } from '../../core/escape.js'
import { FLAG_OF } from '../../cli/limit-flags.js'
import { renderTable } from '../../cli/table.js'
import { formatLimit, resolveIpLimits, resolveKeyLimits, type LimitSource } from '../../core/limits.js'

/** Where a value comes from, in words. */
const FROM: Record<LimitSource, string> = { key: "the key's own", default: 'default (limits set --default)', 'built-in': 'built-in default' }

export default class LimitsShow extends BaseCommand<typeof LimitsShow> {
  static override summary = 'Show the effective limits and where each comes from'
  static override description =
    'Limits are named by their flags. FROM (source in --json) says whether a value is the key\'s own ("key"), the defaults\' ("default") or the built-in value ("built-in").'
  static override examples = ['<%= config.bin %> limits show', '<%= config.bin %> limits show --key alice --json']
  static override flags = {
    key: Flags.string({ description: 'a key (id, name or display prefix); default: the defaults every key inherits' }),
  }

  async run() {
    const defaults = await this.store.getDefaults()
    const key = this.flags.key ? await this.keys.get(this.flags.key) : null
    const resolved = resolveKeyLimits(defaults, key?.limits)
    const limits: Record<string, { value: number | string | null; source: LimitSource }> = {}
    for (const [name, value] of Object.entries(resolved.limits)) {
      limits[FLAG_OF[name as keyof typeof FLAG_OF]] = { value, source: resolved.sources[name as keyof typeof resolved.sources] }
    }
    if (!key) {
      const ip = resolveIpLimits(defaults)
      // The rule resolveIpLimits applies: a default that is set (not undefined) wins.
      for (const [name, value] of Object.entries(ip)) {
        limits[FLAG_OF[name as keyof typeof ip]] = { value, source: defaults[name as keyof typeof ip] !== undefined ? 'default' : 'built-in' }
      }
    }
    this.say(key ? `Limits of key "${escapeControl(key.name)}" (${key.id}):` : 'Default limits (every key inherits these unless it overrides them):')
    this.say(renderTable(['LIMIT', 'VALUE', 'FROM'], Object.entries(limits).map(([name, l]) => [name, formatLimit(l.value), FROM[l.source]])))
    return { key: key ? { id: key.id, name: key.name } : null, limits }
  }
}
