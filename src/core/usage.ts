import type { Store, UsageGroup, UsageSums } from './store.js'
import { costUsd } from './log-columns.js'
import { resolveKeyLimits } from './limits.js'
import type { ApiKey, DailyUsage, DefaultOverrides, RequestRow } from './types.js'

export interface UsageFigures {
  /** Every request: any route, any status (what `requests` always counted). */
  requests: number
  /** Requests to `/chat` and `/v1/chat/completions`. */
  chat_requests: number
  prompt_tokens: number
  completion_tokens: number
  total_tokens: number
  estimated_cost_usd: number | null
}

export interface KeyUsage extends UsageFigures {
  key_id: string
  key_name: string | null
  daily_budget: number | null
  remaining: number | null
}

/** The routes whose requests `chat_requests` counts (a request's logged route is its path). */
export const CHAT_ROUTES: ReadonlySet<string> = new Set(['/chat', '/v1/chat/completions'])

export function isChatRoute(route: string): boolean {
  return CHAT_ROUTES.has(route)
}

/** Sums of no rows yet. */
export function noSums(): UsageSums {
  return { requests: 0, errors: 0, rateLimited: 0, promptTokens: 0, completionTokens: 0, totalTokens: 0, costMicros: null }
}

/** Adds one log row to `sum`: the one definition of what an error, a 429 and a cost count as. */
export function addRow(sum: UsageSums, row: RequestRow): void {
  sum.requests++
  if (row.status >= 400) sum.errors++
  if (row.status === 429) sum.rateLimited++
  sum.promptTokens += row.promptTokens
  sum.completionTokens += row.completionTokens
  sum.totalTokens += row.totalTokens
  if (row.costMicros !== null) sum.costMicros = (sum.costMicros ?? 0) + row.costMicros
}

const DAY = /^\d{4}-\d{2}-\d{2}$/

export function isDay(text: string): boolean {
  return DAY.test(text) && !Number.isNaN(Date.parse(`${text}T00:00:00Z`)) && new Date(`${text}T00:00:00Z`).toISOString().startsWith(text)
}

function figures(g: Pick<UsageGroup, 'requests' | 'chatRequests' | 'promptTokens' | 'completionTokens' | 'totalTokens' | 'costMicros'>): UsageFigures {
  return {
    requests: g.requests,
    chat_requests: g.chatRequests,
    prompt_tokens: g.promptTokens,
    completion_tokens: g.completionTokens,
    total_tokens: g.totalTokens,
    estimated_cost_usd: costUsd(g.costMicros),
  }
}

function keyUsage(key: ApiKey, row: DailyUsage | undefined, defaults: DefaultOverrides): KeyUsage {
  const budget = resolveKeyLimits(defaults, key.limits).limits.dailyTokens
  const spent = row?.totalTokens ?? 0
  return {
    key_id: key.id,
    key_name: key.name,
    ...figures(row ?? { requests: 0, chatRequests: 0, promptTokens: 0, completionTokens: 0, totalTokens: 0, costMicros: null }),
    daily_budget: budget,
    remaining: budget === null ? null : Math.max(0, budget - spent),
  }
}

/** Usage as the /usage route reports it, from the kept daily totals (untouched by `logs prune`). */
export class UsageReports {
  constructor(private readonly store: Store) {}

  /** One key's usage on a day; the budget and what remains of it. */
  async forKey(key: ApiKey, day: string): Promise<KeyUsage> {
    const [rows, defaults] = await Promise.all([this.store.dailyUsage(day), this.store.getDefaults()])
    return keyUsage(key, rows.find((u) => u.keyId === key.id), defaults)
  }

  /** Every key's usage on a day, and the total: one read of keys, defaults and the day's rows. */
  async forDay(day: string): Promise<{ total: UsageFigures; keys: KeyUsage[] }> {
    const [keys, defaults, rows] = await Promise.all([this.store.listKeys(), this.store.getDefaults(), this.store.dailyUsage(day)])
    const byId = new Map(keys.map((k) => [k.id, k]))
    const perKey = rows.map((u) => {
      const key = byId.get(u.keyId)
      return key ? keyUsage(key, u, defaults) : { key_id: u.keyId, key_name: null, ...figures(u), daily_budget: null, remaining: null }
    })
    const sum = (f: (u: KeyUsage) => number) => perKey.reduce((a, u) => a + f(u), 0)
    const costs = perKey.map((u) => u.estimated_cost_usd).filter((c): c is number => c !== null)
    return {
      total: {
        requests: sum((u) => u.requests),
        chat_requests: sum((u) => u.chat_requests),
        prompt_tokens: sum((u) => u.prompt_tokens),
        completion_tokens: sum((u) => u.completion_tokens),
        total_tokens: sum((u) => u.total_tokens),
        estimated_cost_usd: costs.length > 0 ? Math.round(costs.reduce((a, c) => a + c, 0) * 1e6) / 1e6 : null,
      },
      keys: perKey.sort((a, b) => b.total_tokens - a.total_tokens),
    }
  }
}
