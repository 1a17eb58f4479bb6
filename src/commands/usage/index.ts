import { Flags } from '@oclif/core'
import { BaseCommand } from '../../cli/base-command.js'
import { escapeControl } from '../../core/escape.js'
import { parseTimeRange, SINCE_HELP, UNTIL_HELP } from '../../cli/durations.js'
import { renderTable } from '../../cli/table.js'
import { DAY_MS } from '../../core/calendar.js'
import { usageByUpstream } from '../../core/routing/usage-by-upstream.js'
import type { UsageGroup } from '../../core/store.js'
import { calendarOf, groupView, LATENCY_NOTE, ms, REQUESTS_NOTE, sumGroups, timezoneFlag, usd } from '../../cli/usage-view.js'

export default class Usage extends BaseCommand<typeof Usage> {
  static override summary = 'Usage over whole days, grouped by day, key, model or upstream'
  static override description = `Sums the kept daily totals, which \`logs prune\` leaves alone, over every calendar day (in --timezone) that the range touches.
REQUESTS counts every request (any route, any status); CHAT counts the requests to /chat and /v1/chat/completions.
Latency percentiles come from the log rows: "-" (null in --json) where some of a group's requests were pruned.
--by upstream groups the log rows by the upstream that served (or was tried last); requests already pruned from the log are not in it, and a note says how many.`
  static override examples = [
    '<%= config.bin %> usage --since 7d',
    '<%= config.bin %> usage --key alice --by model',
    '<%= config.bin %> usage --since 1d --by upstream',
    '<%= config.bin %> usage --since 2026-11-01 --until 2026-12-01 --by model --json',
  ]
  static override flags = {
    since: Flags.string({ description: `${SINCE_HELP}; its whole day counts`, default: '7d' }),
    until: Flags.string({ description: `${UNTIL_HELP}; the day it falls in counts unless it is that day's first instant` }),
    by: Flags.string({ description: 'group rows by', options: ['day', 'key', 'model', 'upstream'], default: 'day' }),
    key: Flags.string({ description: 'only this key (id or name)' }),
    timezone: timezoneFlag,
  }

  async run() {
    const now = this.clock.now()
    const calendar = calendarOf(this.flags.timezone)
    const range = parseTimeRange(this.flags.since, this.flags.until, now)
    const since = range.since!
    const until = range.until
    // The totals are kept per day: the range covers every day it touches.
    const fromDay = calendar.dayOf(Date.parse(since))
    const toDay = calendar.dayOf((until === undefined ? now : Date.parse(until)) - 1)
    const key = this.flags.key ? await this.keys.get(this.flags.key) : undefined
    const by = this.flags.by as 'day' | 'key' | 'model' | 'upstream'
    const usageRange = { fromDay, toDay, keyId: key?.id }
    let groups: UsageGroup[]
    let unlogged = 0
    if (toDay < fromDay) groups = []
    else if (by === 'upstream') {
      // Budget days are calendar days in --timezone: a day around the range catches every row of them.
      const rows = this.store.iterateRequests({ since: new Date(Date.parse(since) - DAY_MS).toISOString(), until: new Date((until === undefined ? now : Date.parse(until)) + DAY_MS).toISOString(), keyId: key?.id })
      groups = await usageByUpstream(rows, fromDay, toDay)
      const kept = sumGroups(await this.store.usageBy('day', usageRange)).requests
      unlogged = kept - sumGroups(groups).requests
    } else groups = await this.store.usageBy(by, usageRange)
    const names = by === 'key' ? new Map((await this.keys.list()).map((k) => [k.id, k.name])) : null
    const views = groups.map((g) => ({ group: g.group, view: groupView(g) }))
    const rows = views.map(({ group, view }) => ({ [by]: group === '' ? null : group, ...(names ? { key_name: names.get(group) ?? null } : {}), ...view }))
    const total = sumGroups(groups)
    const of = key ? ` of key ${escapeControl(key.name)} (${key.id})` : ''
    this.say(`Usage${of} from ${fromDay} to ${toDay} (whole days, ${this.flags.timezone}), by ${by}`)
    this.say(
      renderTable(
        [by.toUpperCase(), 'REQUESTS', 'CHAT', 'ERRORS', '429S', 'PROMPT', 'COMPLETION', 'TOKENS', 'COST', 'P50 MS', 'P95 MS'],
        views.map(({ group, view: v }) => [
          names ? (names.get(group) ?? (group || '(no key)')) : group || '-',
          v.requests,
          v.chat_requests,
          v.errors,
          v.rate_limited,
          v.prompt_tokens,
          v.completion_tokens,
          v.total_tokens,
          usd(v.estimated_cost_usd),
          ms(v.p50_ms),
          ms(v.p95_ms),
        ]),
        ['TOTAL', total.requests, total.chat_requests, total.errors, total.rate_limited, total.prompt_tokens, total.completion_tokens, total.total_tokens, usd(total.estimated_cost_usd), '', ''],
      ),
    )
    this.say(REQUESTS_NOTE)
    if (views.some(({ view }) => view.p50_ms === null)) this.say(LATENCY_NOTE)
    if (unlogged > 0) this.say(`${unlogged} request${unlogged === 1 ? ' was' : 's were'} of the range pruned from the log: the kept totals know them, but not who served them.`)
    return {
      since,
      until: until ?? null,
      from_day: fromDay,
      to_day: toDay,
      timezone: this.flags.timezone,
      by,
      key: key ? { id: key.id, name: key.name } : null,
      groups: rows,
      total,
      ...(by === 'upstream' ? { pruned_requests: unlogged } : {}),
    }
  }
}
