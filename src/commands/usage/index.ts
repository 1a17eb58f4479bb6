import { Flags } from '@oclif/core'
import { BaseCommand } from '../../cli/base-command.js'
import { parseTime } from '../../cli/durations.js'
import { renderTable } from '../../cli/table.js'
import { groupView, ms, sumGroups, usd } from '../../cli/usage-view.js'
import { KeyManager } from '../../core/keys.js'

export default class Usage extends BaseCommand<typeof Usage> {
  static override summary = 'Usage over a time range, grouped by day, key or model'
  static override examples = ['<%= config.bin %> usage --since 7d', '<%= config.bin %> usage --since 2026-11-01 --until 2026-12-01 --by model --json']
  static override flags = {
    since: Flags.string({ description: 'start: ISO date/time, or a duration ago (7d)', default: '7d' }),
    until: Flags.string({ description: 'end (exclusive): ISO date/time, or a duration ago' }),
    by: Flags.string({ description: 'group rows by', options: ['day', 'key', 'model'], default: 'day' }),
    key: Flags.string({ description: 'only this key (id or name)' }),
  }

  async run() {
    const now = this.clock.now()
    const since = parseTime(this.flags.since, now, '--since')
    const until = this.flags.until ? parseTime(this.flags.until, now, '--until') : undefined
    const manager = new KeyManager(this.store, this.clock)
    const keyId = this.flags.key ? manager.get(this.flags.key).id : undefined
    const by = this.flags.by as 'day' | 'key' | 'model'
    const groups = this.store.usageBy(by, { since, until, keyId })
    const names = by === 'key' ? new Map(manager.list().map((k) => [k.id, k.name])) : null
    const rows = groups.map((g) => ({ [by]: g.group === '' ? null : g.group, ...(names ? { key_name: names.get(g.group) ?? null } : {}), ...groupView(g) }))
    const total = sumGroups(groups)
    this.say(`Usage from ${since} to ${until ?? 'now'}, by ${by}`)
    this.say(
      renderTable(
        [by.toUpperCase(), 'REQUESTS', 'ERRORS', '429S', 'PROMPT', 'COMPLETION', 'TOKENS', 'COST', 'P50 MS', 'P95 MS'],
        groups.map((g) => [
          names ? (names.get(g.group) ?? (g.group || '(no key)')) : g.group || '-',
          g.requests,
          g.errors,
          g.rateLimited,
          g.promptTokens,
          g.completionTokens,
          g.totalTokens,
          usd(groupView(g).estimated_cost_usd),
          ms(g.p50Ms),
          ms(g.p95Ms),
        ]),
        ['TOTAL', total.requests, total.errors, total.rate_limited, total.prompt_tokens, total.completion_tokens, total.total_tokens, usd(total.estimated_cost_usd), '', ''],
      ),
    )
    return { since, until: until ?? null, by, groups: rows, total }
  }
}
