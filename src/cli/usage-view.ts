import { Flags } from '@oclif/core'
import { Calendar } from '../core/calendar.js'
import { badRequest } from '../core/errors.js'
import { costUsd } from '../core/log-columns.js'
import type { UsageGroup } from '../core/store.js'

/** The calendar the kept totals are summed by: the server's --timezone. */
export const timezoneFlag = Flags.string({ description: 'time zone of the calendar day (as the server\'s --timezone)', env: 'GATEWAY_TIMEZONE', default: 'UTC' })

export function calendarOf(timeZone: string): Calendar {
  if (!Calendar.isValidZone(timeZone)) throw badRequest(`Unknown time zone "${timeZone}"`, 'timezone')
  return new Calendar(timeZone)
}

/** What the request columns count, for the line under a usage table. */
export const REQUESTS_NOTE = 'REQUESTS counts every request; CHAT the requests to /chat and /v1/chat/completions.'
export const LATENCY_NOTE = 'P50/P95 "-": some of those requests were pruned from the log (the totals are kept, latencies are not).'

/** A usage group as `--json` shows it. */
export function groupView(g: UsageGroup) {
  return {
    requests: g.requests,
    chat_requests: g.chatRequests,
    errors: g.errors,
    rate_limited: g.rateLimited,
    prompt_tokens: g.promptTokens,
    completion_tokens: g.completionTokens,
    total_tokens: g.totalTokens,
    estimated_cost_usd: costUsd(g.costMicros),
    p50_ms: g.p50Ms,
    p95_ms: g.p95Ms,
  }
}

export function sumGroups(groups: UsageGroup[]): Omit<ReturnType<typeof groupView>, 'p50_ms' | 'p95_ms'> {
  const sum = (f: (g: UsageGroup) => number) => groups.reduce((a, g) => a + f(g), 0)
  const costs = groups.filter((g) => g.costMicros !== null)
  return {
    requests: sum((g) => g.requests),
    chat_requests: sum((g) => g.chatRequests),
    errors: sum((g) => g.errors),
    rate_limited: sum((g) => g.rateLimited),
    prompt_tokens: sum((g) => g.promptTokens),
    completion_tokens: sum((g) => g.completionTokens),
    total_tokens: sum((g) => g.totalTokens),
    estimated_cost_usd: costs.length > 0 ? costUsd(costs.reduce((a, g) => a + (g.costMicros ?? 0), 0)) : null,
  }
}

/** Dollars for a table; a cost too small for four decimals says so rather than showing $0.0000. */
export function usd(v: number | null): string | null {
  if (v === null) return null
  if (v > 0 && v < 0.00005) return '<$0.0001' // would round to $0.0000
  return `$${v.toFixed(v < 1 ? 4 : 2)}`
}
export const ms = (v: number | null) => (v === null ? null : Math.round(v * 10) / 10)
