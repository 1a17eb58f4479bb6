/**
 * Latencies kept per hour as counts in logarithmic buckets 5 % wide, so the dashboard's p50
 * and p95 over a day or a month add up a few thousand counts instead of sorting every log
 * row. A percentile read back is the bucket's middle: within 2.5 % of the exact figure.
 */
const GROWTH = 1.05
const LOG_GROWTH = Math.log(GROWTH)

/** The bucket of a latency in milliseconds. */
export function latencyBucket(ms: number): number {
  return Math.max(0, Math.round(Math.log1p(Math.max(0, ms)) / LOG_GROWTH))
}

/** The latency a bucket stands for, in milliseconds. */
export function bucketLatency(bucket: number): number {
  return Math.expm1(bucket * LOG_GROWTH)
}

/** The latency at quantile `q` (0 to 1) of bucket counts, as `rank >= q * n` picks it; null for none. */
export function histogramQuantile(counts: { bucket: number; requests: number }[], q: number): number | null {
  const sorted = [...counts].sort((a, b) => a.bucket - b.bucket)
  const n = sorted.reduce((a, c) => a + c.requests, 0)
  if (n === 0) return null
  let seen = 0
  for (const c of sorted) {
    seen += c.requests
    if (seen >= q * n) return bucketLatency(c.bucket)
  }
  return bucketLatency(sorted[sorted.length - 1].bucket)
}
