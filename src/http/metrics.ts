import { Counter, Gauge, Histogram, Registry } from 'prom-client'
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
  private readonly children = new Map<string, unknown>()
  private readonly requests: Counter<'route' | 'status' | 'model'>
  private readonly tokens: Counter<'kind'>
  private readonly refusals: Counter<'reason'>
  private readonly latency: Histogram<'route'>
  private readonly upstream: Histogram<'route'>
  private readonly queued: Histogram<'route'>

  constructor(queue: () => FairQueue) {
    const registers = [this.registry]
    this.requests = new Counter({ name: 'gateway_requests_total', help: 'Requests by route, status and model', labelNames: ['route', 'status', 'model'], registers })
    this.tokens = new Counter({ name: 'gateway_tokens_total', help: 'Tokens metered, by kind', labelNames: ['kind'], registers })
    this.refusals = new Counter({ name: 'gateway_refusals_total', help: 'Requests refused or failed, by error code', labelNames: ['reason'], registers })
    this.latency = new Histogram({ name: 'gateway_request_duration_seconds', help: 'Whole request', labelNames: ['route'], buckets: SECONDS, registers })
    this.upstream = new Histogram({ name: 'gateway_upstream_duration_seconds', help: 'Time in the upstream call', labelNames: ['route'], buckets: SECONDS, registers })
    this.queued = new Histogram({ name: 'gateway_queue_wait_seconds', help: 'Time waiting for a slot', labelNames: ['route'], buckets: SECONDS, registers })
    new Gauge({ name: 'gateway_queue_depth', help: 'Requests waiting for a slot', registers, collect() { this.set(queue().depth) } })
    new Gauge({ name: 'gateway_upstream_inflight', help: 'Upstream requests in flight', registers, collect() { this.set(queue().active) } })
  }

  observe(row: RequestRow): void {
    const route = ROUTES.has(row.route) ? row.route : 'other'
    const model = this.modelLabel(row.model)
    this.child(`r\0${route}\0${row.status}\0${model}`, () => this.requests.labels({ route, status: String(row.status), model })).inc()
    if (row.totalTokens > 0) {
      this.child('t\0prompt', () => this.tokens.labels({ kind: 'prompt' })).inc(row.promptTokens)
      this.child('t\0completion', () => this.tokens.labels({ kind: 'completion' })).inc(row.completionTokens)
    }
    if (row.errorCode !== null) {
      const reason = row.errorCode
      this.child(`e\0${reason}`, () => this.refusals.labels({ reason })).inc()
    }
    this.child(`l\0${route}`, () => this.latency.labels({ route })).observe(row.latencyMs / 1000)
    if (row.upstreamMs !== null) this.child(`u\0${route}`, () => this.upstream.labels({ route })).observe(row.upstreamMs / 1000)
    if (row.queuedMs !== null) this.child(`q\0${route}`, () => this.queued.labels({ route })).observe(row.queuedMs / 1000)
  }

  /**
   * A labelled series, looked up once: prom-client hashes the label object on every call
   * otherwise. Label values are bounded (routes, models, statuses, error codes), so is this.
   */
  private child<T>(id: string, make: () => T): T {
    let found = this.children.get(id) as T | undefined
    if (found === undefined) {
      found = make()
      this.children.set(id, found)
    }
    return found
  }

  private modelLabel(model: string | null): string {
    if (model === null) return ''
    if (this.models.has(model)) return model
    if (this.models.size >= MAX_MODELS) return 'other'
    this.models.add(model)
    return model
  }
}
