import { BaseCommand } from '../../cli/base-command.js'
import { bar, renderTable } from '../../cli/table.js'
import { calendarOf, groupView, LATENCY_NOTE, ms, REQUESTS_NOTE, sumGroups, timezoneFlag, usd } from '../../cli/usage-view.js'
import { resolveKeyLimits } from '../../core/limits.js'

export default class UsageToday extends BaseCommand<typeof UsageToday> {
  static override summary = 'Usage per key today: requests, errors, tokens, share of budget, cost, latency'
  static override examples = ['<%= config.bin %> usage today', '<%= config.bin %> usage today --timezone Europe/Berlin --json']
  static override description = `From the kept daily totals, which \`logs prune\` leaves alone, so it agrees with GET /usage.
REQUESTS counts every request (any route, any status); CHAT counts the requests to /chat and /v1/chat/completions.
Latency percentiles come from the log rows: "-" (null in --json) where some of a key's requests were pruned.`
  static override flags = {
    timezone: timezoneFlag,
  }

  async run() {
    const day = calendarOf(this.flags.timezone).dayOf(this.clock.now())
    const groups = await this.store.usageBy('key', { fromDay: day, toDay: day })
    const defaults = await this.store.getDefaults()
    const keys = new Map((await this.keys.list()).map((k) => [k.id, k]))
    const secrets = await this.keys.liveSecretsByKey()
    const rows = groups.map((g) => {
      const key = keys.get(g.group)
      const budget = key ? resolveKeyLimits(defaults, key.limits).limits.dailyTokens : null
      return {
        key_id: g.group === '' ? null : g.group,
        key_name: key?.name ?? null,
        prefix: key ? (secrets.get(key.id)?.[0]?.prefix ?? null) : null,
        ...groupView(g),
        daily_budget: budget,
        budget_used: budget === null ? null : g.totalTokens / budget,
      }
    })
    const total = sumGroups(groups)
    if (rows.length === 0) this.say(`No requests on ${day} (${this.flags.timezone}) yet.`)
    else {
      this.say(`Usage on ${day} (${this.flags.timezone})`)
      this.say(
        renderTable(
          ['KEY', 'PREFIX', 'REQUESTS', 'CHAT', 'ERRORS', '429S', 'TOKENS', 'BUDGET', 'COST', 'P50 MS', 'P95 MS'],
          rows.map((r) => [
            r.key_name ?? (r.key_id ? r.key_id : '(no key)'),
            r.prefix ? `${r.prefix}…` : '',
            r.requests,
            r.chat_requests,
            r.errors,
            r.rate_limited,
            r.total_tokens,
            bar(r.budget_used),
            usd(r.estimated_cost_usd),
            ms(r.p50_ms),
            ms(r.p95_ms),
          ]),
          ['TOTAL', '', total.requests, total.chat_requests, total.errors, total.rate_limited, total.total_tokens, '', usd(total.estimated_cost_usd), '', ''],
        ),
      )
      this.say(REQUESTS_NOTE)
      if (rows.some((r) => r.p50_ms === null)) this.say(LATENCY_NOTE)
    }
    return { date: day, timezone: this.flags.timezone, keys: rows, total }
  }
}
