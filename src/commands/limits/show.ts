import { Flags } from '@oclif/core'
import { BaseCommand } from '../../cli/base-command.js'
import { renderTable } from '../../cli/table.js'
import { formatLimit, resolveIpLimits, resolveKeyLimits, type LimitSource } from '../../core/limits.js'

export default class LimitsShow extends BaseCommand<typeof LimitsShow> {
  static override summary = 'Show the effective limits and where each comes from'
  static override flags = {
    key: Flags.string({ description: 'a key (id or name); default: the defaults every key inherits' }),
  }

  async run() {
    const defaults = this.store.getDefaults()
    const key = this.flags.key ? this.keys.get(this.flags.key) : null
    const resolved = resolveKeyLimits(defaults, key?.limits)
    const limits: Record<string, { value: number | string | null; source: LimitSource }> = {}
    for (const [name, value] of Object.entries(resolved.limits)) limits[name] = { value, source: resolved.sources[name as keyof typeof resolved.sources] }
    if (!key) {
      const ip = resolveIpLimits(defaults)
      // The rule resolveIpLimits applies: a default that is set (not undefined) wins.
      for (const [name, value] of Object.entries(ip)) limits[name] = { value, source: defaults[name as keyof typeof ip] !== undefined ? 'default' : 'built-in' }
    }
    this.say(key ? `Limits of key "${this.safe(key.name)}" (${key.id}):` : 'Default limits (every key inherits these unless it overrides them):')
    this.say(renderTable(['LIMIT', 'VALUE', 'FROM'], Object.entries(limits).map(([name, l]) => [name, formatLimit(l.value), l.source])))
    return { key: key ? { id: key.id, name: key.name } : null, limits }
  }
}
