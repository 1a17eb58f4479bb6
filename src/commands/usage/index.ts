import { Flags } from '@oclif/core'
import { BaseCommand } from '../../cli/base-command.js'
import { parseTimeRange, SINCE_HELP, UNTIL_HELP } from '../../cli/durations.js'
import { renderTable } from '../../cli/table.js'
import { groupView, ms, sumGroups, usd } from '../../cli/usage-view.js'

export default class Usage extends BaseCommand<typeof Usage> {
  static override summary = 'Usage over a time range, grouped by day, key or model'
  static override examples = ['<%= config.bin %> usage --since 7d', '<%= config.bin %> usage --since 2026-11-01 --until 2026-12-01 --by model --json']
  static override flags = {
    since: Flags.string({ description: SINCE_HELP, default: '7d' }),
    until: Flags.string({ description: UNTIL_HELP }),
    by: Flags.string({ description: 'group rows by', options: ['day', 'key', 'model'], default: 'day' }),
    key: Flags.string({ description: 'only this key (id or name)' }),
  }

  async run() {
    const now = this.clock.now()
    const { since, until } = parseTimeRange(this.flags.since, this.flags.until, now)
    const keyId = this.flags.key ? this.keys.get(this.flags.key).id : undefined
    const by = this.flags.by as 'day' | 'key' | 'model'
    const groups = this.store.usageBy(by, { since, until, keyId })
    const names = by === 'key' ? new Map(this.keys.list().map((k) => [k.id, k.name])) : null
    const views = groups.map((g) => ({ group: g.group, view: groupView(g) }))
    const rows = views.map(({ group, view }) => ({ [by]: group === '' ? null : group, ...(names ? { key_name: names.get(group) ?? null } : {}), ...view }))
    const total = sumGroups(groups)
    this.say(`Usage from ${since} to ${until ?? 'now'}, by ${by}`)
    this.say(
      renderTable(
        [by.toUpperCase(), 'REQUESTS', 'ERRORS', '429S', 'PROMPT', 'COMPLETION', 'TOKENS', 'COST', 'P50 MS', 'P95 MS'],
        views.map(({ group, view: v }) => [
          names ? (names.get(group) ?? (group || '(no key)')) : group || '-',
          v.requests,
          v.errors,
          v.rate_limited,
          v.prompt_tokens,
          v.completion_tokens,
          v.total_tokens,
          usd(v.estimated_cost_usd),
          ms(v.p50_ms),
          ms(v.p95_ms),
        ]),
        ['TOTAL', total.requests, total.errors, total.rate_limited, total.prompt_tokens, total.completion_tokens, total.total_tokens, usd(total.estimated_cost_usd), '', ''],
      ),
    )
    return { since, until: until ?? null, by, groups: rows, total }
  }
}
