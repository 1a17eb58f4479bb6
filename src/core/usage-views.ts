import type { ErrorPoint, LatencyFigures, SeriesPoint, Store, UsageSpan } from './store.js'
import { histogramQuantile } from './latency-histogram.js'
import { DAY_MS, type Calendar } from './calendar.js'
import { badRequest } from './errors.js'
import { resolveKeyLimits, type ResolvedLimits } from './limits.js'
import { costUsd } from './log-columns.js'
import { isUsable } from './keys.js'
import { isDay } from './usage.js'
import type { ApiKey } from './types.js'

/**
 * The dashboard's ranges. Whole budget days (today, 7 d, 30 d, custom) read the kept daily
 * totals, so they equal `gateway usage` and GET /usage; the last 24 hours (from the start of
 * the hour 23 hours ago) read the hourly sums; the last hour reads the log rows through the
 * timestamp index, in 5-minute buckets.
 */
export const RANGE_NAMES = ['1h', '24h', 'today', '7d', '30d', 'custom'] as const
export type RangeName = (typeof RANGE_NAMES)[number]

export interface UsageRangeView {
  name: RangeName
  /** What the page says the range is. */
  label: string
  span: UsageSpan
  /** The same range as instants (ISO, since inclusive, until exclusive): the log view's filter. */
  window: { since: string; until: string }
  bucketMinutes: number
  /** The `gateway usage` command that reports the same totals (whole days only). */
  usageCommand: string | null
  /** Every bucket of the range in order, so a quiet stretch shows as zero, not as a gap. */
  buckets: string[]
}

const HOUR_MS = 3_600_000
const MAX_CUSTOM_DAYS = 366

function nextDay(day: string): string {
  return new Date(Date.parse(`${day}T00:00:00Z`) + DAY_MS).toISOString().slice(0, 10)
}

function daysFrom(fromDay: string, toDay: string): string[] {
  const days: string[] = []
  for (let d = fromDay; d <= toDay && days.length <= MAX_CUSTOM_DAYS; d = nextDay(d)) days.push(d)
  return days
}

/** A window's bucket names, as the store writes them (`YYYY-MM-DDTHH:MM`, UTC). */
function windowBuckets(since: number, until: number, minutes: number): string[] {
  const step = minutes * 60_000
  const out: string[] = []
  for (let t = Math.floor(since / step) * step; t < until; t += step) out.push(new Date(t).toISOString().slice(0, 16))
  return out
}

export function resolveRange(query: { range?: string; from?: string; to?: string }, now: number, calendar: Calendar): UsageRangeView {
  const name = (query.range ?? '24h') as RangeName
  if (!RANGE_NAMES.includes(name)) throw badRequest(`range must be one of ${RANGE_NAMES.join(', ')}`, 'range')
  if (name === '1h' || name === '24h') {
    const minutes = name === '1h' ? 5 : 60
    // 24 h: whole UTC hours, as the hourly sums hold them (this hour and the 23 before it).
    const since = name === '1h' ? now - HOUR_MS : Math.floor((now - 23 * HOUR_MS) / HOUR_MS) * HOUR_MS
    const until = now + 1_000 // rows of this very second count
    const window = { since: new Date(since).toISOString(), until: new Date(until).toISOString() }
    return {
      name,
      label: name === '1h' ? 'the last hour' : `the last 24 hours (from ${window.since.slice(11, 16)} UTC)`,
      span: window,
      window,
      bucketMinutes: minutes,
      usageCommand: null,
      buckets: windowBuckets(since, now, minutes),
    }
  }
  const today = calendar.dayOf(now)
  let fromDay = today
  let toDay = today
  if (name === '7d' || name === '30d') fromDay = calendar.dayOf(now - ((name === '7d' ? 7 : 30) - 1) * DAY_MS)
  if (name === 'custom') {
    fromDay = query.from ?? ''
    toDay = query.to ?? today
    if (!isDay(fromDay) || !isDay(toDay)) throw badRequest('A custom range needs from and to as calendar dates, YYYY-MM-DD', 'from')
    if (toDay < fromDay) throw badRequest('to must not be before from', 'to')
    if (daysFrom(fromDay, toDay).length > MAX_CUSTOM_DAYS) throw badRequest(`A custom range spans at most ${MAX_CUSTOM_DAYS} days`, 'from')
  }
  const label = fromDay === toDay ? fromDay : `${fromDay} to ${toDay}`
  const window = { since: new Date(calendar.dayStart(fromDay)).toISOString(), until: new Date(calendar.dayStart(nextDay(toDay))).toISOString() }
  const usageCommand = [
    `gateway usage --since ${fromDay}`,
    toDay === today ? '' : ` --until ${nextDay(toDay)}`,
    calendar.timeZone === 'UTC' ? '' : ` --timezone ${calendar.timeZone}`,
  ].join('')
  return { name, label: `${label} (whole days, ${calendar.timeZone})`, span: { fromDay, toDay }, window, bucketMinutes: 24 * 60, usageCommand, buckets: daysFrom(fromDay, toDay) }
}

export interface Totals {
  requests: number
  errors: number
  rateLimited: number
  promptTokens: number
  completionTokens: number
  totalTokens: number
  /** USD; null while no request had a priced model. */
  costUsd: number | null
  /** Errors per request, 0 to 1; null with no requests. */
  errorRate: number | null
}

function totalsOf(points: SeriesPoint[]): Totals {
  const sum = (f: (p: SeriesPoint) => number) => points.reduce((a, p) => a + f(p), 0)
  const costs = points.filter((p) => p.costMicros !== null)
  const requests = sum((p) => p.requests)
  const errors = sum((p) => p.errors)
  return {
    requests,
    errors,
    rateLimited: sum((p) => p.rateLimited),
    promptTokens: sum((p) => p.promptTokens),
    completionTokens: sum((p) => p.completionTokens),
    totalTokens: sum((p) => p.totalTokens),
    costUsd: costs.length > 0 ? costUsd(sum((p) => p.costMicros ?? 0)) : null,
    errorRate: requests > 0 ? errors / requests : null,
  }
}

export interface GroupTotals extends Totals {
  group: string
  /** One total per bucket of the range, in order. */
  perBucket: number[]
}

export interface Overview {
  totals: Totals
  /** Per bucket, in the range's order (zeros where nothing happened). */
  series: Totals[]
  /**
   * Exact over the last hour (the log rows); beyond, from the hourly latency counts (within
   * 2.5 %). Null when the counts do not cover the range's requests: hours pruned before the
   * counts existed, or a time zone whose days do not start on the hour.
   */
  p50Ms: number | null
  p95Ms: number | null
}

export interface KeyBudget {
  key: ApiKey
  used: number
  limit: number | null
  left: number | null
  /** Used per limit, as a percentage; null without a limit. */
  percent: number | null
  /** The highest of 75, 90, 100 reached, else 0. */
  level: 0 | 75 | 90 | 100
  resolved: ResolvedLimits
}

export interface ErrorView {
  /** Each (status, code) with its count per bucket and in all. */
  codes: { status: number; errorCode: string | null; total: number; perBucket: number[] }[]
  /** 4xx, 5xx and 429 answers per bucket. */
  series: { clientErrors: number; serverErrors: number; rateLimited: number }[]
}

/** The dashboard's figures, read through the store's indexed and rolled-up reads. */
export class UsageViews {
  constructor(
    private readonly store: Store,
    private readonly calendar: Calendar,
  ) {}

  async overview(range: UsageRangeView): Promise<Overview> {
    const points = await this.store.usageSeries(range.span, 'all', range.bucketMinutes)
    const totals = totalsOf(points)
    const byBucket = new Map(points.map((p) => [p.bucket, p]))
    const latency = await this.latency(range)
    const whole = latency.rows === totals.requests
    return {
      totals,
      series: range.buckets.map((b) => totalsOf(byBucket.has(b) ? [byBucket.get(b)!] : [])),
      p50Ms: whole ? latency.p50Ms : null,
      p95Ms: whole ? latency.p95Ms : null,
    }
  }

  private async latency(range: UsageRangeView): Promise<LatencyFigures> {
    if (range.bucketMinutes < 60) return this.store.latency(range.span)
    // The hours the range covers: its last hour is the one its final instant falls in.
    const lastHour = new Date(Date.parse(range.window.until) - 1).toISOString().slice(0, 13)
    const counts = await this.store.latencyCounts(range.window.since.slice(0, 13), lastHour)
    return { rows: counts.reduce((a, c) => a + c.requests, 0), p50Ms: histogramQuantile(counts, 0.5), p95Ms: histogramQuantile(counts, 0.95) }
  }

  /** Per key or model: totals and tokens per bucket, most tokens first. */
  async breakdown(range: UsageRangeView, by: 'key' | 'model'): Promise<GroupTotals[]> {
    const points = await this.store.usageSeries(range.span, by, range.bucketMinutes)
    const index = new Map(range.buckets.map((b, i) => [b, i]))
    const groups = new Map<string, SeriesPoint[]>()
    for (const p of points) groups.set(p.group, [...(groups.get(p.group) ?? []), p])
    return [...groups]
      .map(([group, ps]) => {
        const perBucket = range.buckets.map(() => 0)
        for (const p of ps) {
          const i = index.get(p.bucket)
          if (i !== undefined) perBucket[i] += p.totalTokens
        }
        return { group, ...totalsOf(ps), perBucket }
      })
      .sort((a, b) => b.totalTokens - a.totalTokens || b.requests - a.requests)
  }

  async errors(range: UsageRangeView): Promise<ErrorView> {
    const points: ErrorPoint[] = await this.store.errorsBy(range.window, 'fromDay' in range.span ? 'day' : range.bucketMinutes)
    const index = new Map(range.buckets.map((b, i) => [b, i]))
    const series = range.buckets.map(() => ({ clientErrors: 0, serverErrors: 0, rateLimited: 0 }))
    const codes = new Map<string, ErrorView['codes'][number]>()
    for (const p of points) {
      const i = index.get(p.bucket)
      const id = `${p.status}\0${p.errorCode ?? ''}`
      let code = codes.get(id)
      if (!code) codes.set(id, (code = { status: p.status, errorCode: p.errorCode, total: 0, perBucket: range.buckets.map(() => 0) }))
      code.total += p.requests
      if (i === undefined) continue
      code.perBucket[i] += p.requests
      if (p.status === 429) series[i].rateLimited += p.requests
      else if (p.status >= 500) series[i].serverErrors += p.requests
      else series[i].clientErrors += p.requests
    }
    return { codes: [...codes.values()].sort((a, b) => b.total - a.total), series }
  }

  /** Every usable key's budget today, fullest first, and the limits in force. */
  async budgets(now: number): Promise<{ day: string; resetsAt: number; keys: KeyBudget[] }> {
    const day = this.calendar.dayOf(now)
    const [keys, defaults, usage] = await Promise.all([this.store.listKeys(), this.store.getDefaults(), this.store.dailyUsage(day)])
    const used = new Map(usage.map((u) => [u.keyId, u.totalTokens]))
    const rows = keys
      .filter((k) => isUsable(k, now))
      .map((key): KeyBudget => {
        const resolved = resolveKeyLimits(defaults, key.limits)
        const limit = resolved.limits.dailyTokens
        const spent = used.get(key.id) ?? 0
        const percent = limit === null ? null : (spent / limit) * 100
        const level = percent === null ? 0 : percent >= 100 ? 100 : percent >= 90 ? 90 : percent >= 75 ? 75 : 0
        return { key, used: spent, limit, left: limit === null ? null : Math.max(0, limit - spent), percent, level, resolved }
      })
      .sort((a, b) => (b.percent ?? -1) - (a.percent ?? -1) || b.used - a.used)
    return { day, resetsAt: this.calendar.nextDayStart(now), keys: rows }
  }
}
