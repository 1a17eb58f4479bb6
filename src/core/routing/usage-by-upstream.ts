import type { UsageGroup } from '../store.js'
import type { RequestRow } from '../types.js'
import { addRow, isChatRoute, noSums } from '../usage.js'

/**
 * Usage per upstream over budget days `fromDay`..`toDay`, from the log rows (the kept totals
 * are per day, key and model; who served is in the rows). Rows already pruned are not
 * counted: the caller compares with the kept totals and says so. Percentiles are nearest-rank,
 * as the store's (the smallest latency with at least half, or 95 %, of the group at or below it).
 */
export async function usageByUpstream(rows: Iterable<RequestRow> | AsyncIterable<RequestRow>, fromDay: string, toDay: string): Promise<UsageGroup[]> {
  const groups = new Map<string, UsageGroup & { latencies: number[] }>()
  for await (const row of rows) {
    if (row.day < fromDay || row.day > toDay) continue
    const name = row.upstream ?? ''
    let g = groups.get(name)
    if (!g) {
      g = { group: name, chatRequests: 0, ...noSums(), p50Ms: null, p95Ms: null, latencies: [] }
      groups.set(name, g)
    }
    addRow(g, row)
    if (isChatRoute(row.route)) g.chatRequests++
    g.latencies.push(row.latencyMs)
  }
  return [...groups.values()]
    .sort((a, b) => (a.group < b.group ? -1 : a.group > b.group ? 1 : 0))
    .map(({ latencies, ...g }) => {
      latencies.sort((a, b) => a - b)
      const rank = (q: number) => latencies[Math.max(0, Math.ceil(q * latencies.length) - 1)]
      return { ...g, p50Ms: rank(0.5), p95Ms: rank(0.95) }
    })
}
