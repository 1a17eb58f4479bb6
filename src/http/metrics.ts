import { Gauge, Registry, type Metric } from 'prom-client'
import { isGatewayCode } from '../core/errors.js'
import type { FairQueue } from '../core/queue.js'
import type { RequestRow } from '../core/types.js'

const ROUTES = new Set(['/chat', '/v1/chat/completions', '/v1/models', '/usage', '/metrics', '/health'])
/** Model names come from clients: past this many distinct ones, the rest count as `other`. */
const MAX_MODELS = 100
const SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]

/** Prometheus metrics, fed with every logged row; label values bounded against cardinality attacks. */
export class Metrics {
  readonly registry = new Registry()
  private readonly models = new Set<string>()
  private readonly requests: Family<'route' | 'status' | 'model' | 'upstream'>
  private readonly tokens: Family<'kind'>
  private readonly refusals: Family<'reason'>
  private readonly latency: Family<'route'>
  private readonly upstream: Family<'route' | 'upstream'>
  /** The upstream label's values: the configured names (bounded), '' for none. */
  private readonly upstreamNames: ReadonlySet<string>
  private readonly queued: Family<'route'>

  constructor(queue: () => FairQueue, upstreams: string[] = []) {
    this.upstreamNames = new Set(upstreams)
    const registers = [this.registry]
    this.requests = new Family(this.registry, 'gateway_requests_total', 'Requests by route, status, model and the upstream that served', null)
    this.tokens = new Family(this.registry, 'gateway_tokens_total', 'Tokens metered, by kind', null)
    this.refusals = new Family(this.registry, 'gateway_refusals_total', 'Requests refused or failed, by error code', null)
    this.latency = new Family(this.registry, 'gateway_request_duration_seconds', 'Whole request', SECONDS)
    this.upstream = new Family(this.registry, 'gateway_upstream_duration_seconds', 'Time in the upstream calls (all attempts), by the upstream that served', SECONDS)
    this.queued = new Family(this.registry, 'gateway_queue_wait_seconds', 'Time waiting for a slot', SECONDS)
    new Gauge({ name: 'gateway_queue_depth', help: 'Requests waiting for a slot', registers, collect() { this.set(queue().depth) } })
    new Gauge({ name: 'gateway_upstream_inflight', help: 'Upstream requests in flight', registers, collect() { this.set(queue().active) } })
  }

  observe(row: RequestRow): void {
    const route = ROUTES.has(row.route) ? row.route : 'other'
    const model = this.modelLabel(row.model)
    const status = Number.isInteger(row.status) && row.status >= 100 && row.status <= 599 ? String(row.status) : 'other'
    const upstream = row.upstream !== null && this.upstreamNames.has(row.upstream) ? row.upstream : ''
    this.requests.add(`${route}\0${status}\0${model}\0${upstream}`, { route, status, model, upstream }, 1)
    if (row.totalTokens > 0) {
      this.tokens.add('prompt', PROMPT, row.promptTokens)
      this.tokens.add('completion', COMPLETION, row.completionTokens)
    }
    if (row.errorCode !== null) {
      // An upstream may choose its code (see ERROR_CODES): the gateway's own codes are a fixed set.
      const reason = isGatewayCode(row.errorCode) ? row.errorCode : 'other'
      this.refusals.add(reason, { reason }, 1)
    }
    this.latency.add(route, { route }, row.latencyMs / 1000)
    if (row.upstreamMs !== null) this.upstream.add(`${route}\0${upstream}`, { route, upstream }, row.upstreamMs / 1000)
    if (row.queuedMs !== null) this.queued.add(route, { route }, row.queuedMs / 1000)
  }

  private modelLabel(model: string | null): string {
    if (model === null) return ''
    if (this.models.has(model)) return model
    if (this.models.size >= MAX_MODELS) return 'other'
    this.models.add(model)
    return model
  }
}

const PROMPT = { kind: 'prompt' } as const
const COMPLETION = { kind: 'completion' } as const

interface Series<L extends string> {
  labels: Record<L, string>
  /** A counter's value, a histogram's sum. */
  sum: number
  /** A histogram's observations per bucket (not cumulative; the last is past every bound). */
  counts: number[]
}

/**
 * A counter (no buckets) or a histogram family kept in plain numbers per label set, each set
 * found by an id its caller builds, and put in prom-client's shape only when scraped:
 * prom-client's own `inc`/`observe` validate and hash the label object on every call, which
 * cost ~7 µs per request for the series a request feeds. The registry still formats it.
 */
class Family<L extends string> {
  readonly type: 'counter' | 'histogram'
  private readonly series = new Map<string, Series<L>>()

  constructor(
    registry: Registry,
    readonly name: string,
    readonly help: string,
    private readonly bounds: number[] | null,
  ) {
    this.type = bounds === null ? 'counter' : 'histogram'
    registry.registerMetric(this as unknown as Metric)
  }

  /** Adds `value` to the counter, or observes it in the histogram. */
  add(id: string, labels: Record<L, string>, value: number): void {
    let series = this.series.get(id)
    if (!series) {
      series = { labels, sum: 0, counts: this.bounds === null ? [] : new Array<number>(this.bounds.length + 1).fill(0) }
      this.series.set(id, series)
    }
    series.sum += value
    if (this.bounds === null) return
    let i = 0
    while (i < this.bounds.length && value > this.bounds[i]) i++
    series.counts[i]++
  }

  /** The shape prom-client's own Counter and Histogram give the registry (its typings say otherwise of `type`). */
  get(): { name: string; help: string; type: string; aggregator: 'sum'; values: { metricName?: string; labels: Record<string, string | number>; value: number }[] } {
    const values: ReturnType<Family<L>['get']>['values'] = []
    for (const { labels, sum, counts } of this.series.values()) {
      if (this.bounds === null) {
        values.push({ labels, value: sum })
        continue
      }
      let count = 0
      this.bounds.forEach((le, i) => values.push({ metricName: `${this.name}_bucket`, labels: { le, ...labels }, value: (count += counts[i]) }))
      count += counts[this.bounds.length]
      values.push({ metricName: `${this.name}_bucket`, labels: { le: '+Inf', ...labels }, value: count })
      values.push({ metricName: `${this.name}_sum`, labels, value: sum })
      values.push({ metricName: `${this.name}_count`, labels, value: count })
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: 'sum', values }
  }
}
