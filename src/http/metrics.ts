import { Counter, Gauge, Histogram, Registry } from 'prom-client'
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
  /**
   * Labelled series, each looked up by prom-client once (it hashes the label object on every
   * call otherwise) and made on first use, as before. Label values are bounded, so are these.
   */
  private readonly requestSeries = new Map<string, Counter.Internal>()
  private readonly tokenSeries = new Map<string, Counter.Internal>()
  private readonly refusalSeries = new Map<string, Counter.Internal>()
  private readonly latencySeries = new Map<string, Histogram.Internal<'route'>>()
  private readonly upstreamSeries = new Map<string, Histogram.Internal<'route' | 'upstream'>>()
  private readonly queuedSeries = new Map<string, Histogram.Internal<'route'>>()
  private readonly requests: Counter<'route' | 'status' | 'model' | 'upstream'>
  private readonly tokens: Counter<'kind'>
  private readonly refusals: Counter<'reason'>
  private readonly latency: Histogram<'route'>
  private readonly upstream: Histogram<'route' | 'upstream'>
  /** The upstream label's values: the configured names (bounded), '' for none. */
  private readonly upstreamNames: ReadonlySet<string>
  private readonly queued: Histogram<'route'>

  constructor(queue: () => FairQueue, upstreams: string[] = []) {
    this.upstreamNames = new Set(upstreams)
    const registers = [this.registry]
    this.requests = new Counter({ name: 'gateway_requests_total', help: 'Requests by route, status, model and the upstream that served', labelNames: ['route', 'status', 'model', 'upstream'], registers })
    this.tokens = new Counter({ name: 'gateway_tokens_total', help: 'Tokens metered, by kind', labelNames: ['kind'], registers })
    this.refusals = new Counter({ name: 'gateway_refusals_total', help: 'Requests refused or failed, by error code', labelNames: ['reason'], registers })
    this.latency = new Histogram({ name: 'gateway_request_duration_seconds', help: 'Whole request', labelNames: ['route'], buckets: SECONDS, registers })
    this.upstream = new Histogram({ name: 'gateway_upstream_duration_seconds', help: 'Time in the upstream calls (all attempts), by the upstream that served', labelNames: ['route', 'upstream'], buckets: SECONDS, registers })
    this.queued = new Histogram({ name: 'gateway_queue_wait_seconds', help: 'Time waiting for a slot', labelNames: ['route'], buckets: SECONDS, registers })
    new Gauge({ name: 'gateway_queue_depth', help: 'Requests waiting for a slot', registers, collect() { this.set(queue().depth) } })
    new Gauge({ name: 'gateway_upstream_inflight', help: 'Upstream requests in flight', registers, collect() { this.set(queue().active) } })
  }

  observe(row: RequestRow): void {
    const route = ROUTES.has(row.route) ? row.route : 'other'
    const model = this.modelLabel(row.model)
    const status = Number.isInteger(row.status) && row.status >= 100 && row.status <= 599 ? String(row.status) : 'other'
    const upstream = row.upstream !== null && this.upstreamNames.has(row.upstream) ? row.upstream : ''
    const id = `${route}\0${status}\0${model}\0${upstream}`
    const requests = this.requestSeries.get(id) ?? remember(this.requestSeries, id, this.requests.labels({ route, status, model, upstream }))
    requests.inc()
    if (row.totalTokens > 0) {
      const prompt = this.tokenSeries.get('prompt') ?? remember(this.tokenSeries, 'prompt', this.tokens.labels({ kind: 'prompt' }))
      const completion = this.tokenSeries.get('completion') ?? remember(this.tokenSeries, 'completion', this.tokens.labels({ kind: 'completion' }))
      prompt.inc(row.promptTokens)
      completion.inc(row.completionTokens)
    }
    if (row.errorCode !== null) {
      // An upstream may choose its code (see ERROR_CODES): the gateway's own codes are a fixed set.
      const reason = isGatewayCode(row.errorCode) ? row.errorCode : 'other'
      const refusals = this.refusalSeries.get(reason) ?? remember(this.refusalSeries, reason, this.refusals.labels({ reason }))
      refusals.inc()
    }
    this.timing(this.latencySeries, this.latency, route, row.latencyMs)
    if (row.upstreamMs !== null) {
      const id = `${route}\0${upstream}`
      const found = this.upstreamSeries.get(id) ?? remember(this.upstreamSeries, id, this.upstream.labels({ route, upstream }))
      found.observe(row.upstreamMs / 1000)
    }
    if (row.queuedMs !== null) this.timing(this.queuedSeries, this.queued, route, row.queuedMs)
  }

  private timing(series: Map<string, Histogram.Internal<'route'>>, histogram: Histogram<'route'>, route: string, ms: number): void {
    const found = series.get(route) ?? remember(series, route, histogram.labels({ route }))
    found.observe(ms / 1000)
  }

  private modelLabel(model: string | null): string {
    if (model === null) return ''
    if (this.models.has(model)) return model
    if (this.models.size >= MAX_MODELS) return 'other'
    this.models.add(model)
    return model
  }
}

function remember<T>(map: Map<string, T>, id: string, series: T): T {
  map.set(id, series)
  return series
}
