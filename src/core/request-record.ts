import type { ApiKey, RequestRow, Usage } from './types.js'

export const NO_USAGE: Usage = Object.freeze({ promptTokens: 0, completionTokens: 0, totalTokens: 0, estimated: false })

/**
 * What one request did, filled in as it goes (by the HTTP layer and the chat flow) and turned
 * into exactly one request-log row at the end.
 */
export class RequestRecord {
  readonly startedAt = performance.now()
  readonly timestamp: string
  key: ApiKey | null = null
  model: string | null = null
  usage: Usage = NO_USAGE
  upstreamMs: number | null = null
  queuedMs: number | null = null
  streamed = false
  errorCode: string | null = null
  /** Who served (or last tried), under which model name, after how many attempts (RouteTrace). */
  upstream: string | null = null
  servedModel: string | null = null
  attempts = 0
  costMicros: number | null = null
  requestBody: string | null = null
  responseBody: string | null = null
  /**
   * The budget day the row is charged to: the day it arrived, until admission makes it the
   * day of its reservation. So a request admitted before midnight and finished after it is
   * one day's, in memory, in daily usage and in its row.
   */
  day: string
  /** Set when the chat flow writes the row itself (a stream, before its last byte). */
  deferred = false
  /**
   * Whether the answer waits for the row's commit. Off for /health: nothing to bill, and it
   * must answer while another connection holds the database's write lock.
   */
  awaitRow = true
  written = false

  constructor(
    readonly requestId: string,
    readonly ip: string,
    readonly method: string,
    readonly route: string,
    readonly userAgent: string | null,
    now: number,
    day: string,
  ) {
    this.timestamp = new Date(now).toISOString()
    this.day = day
  }

  toRow(status: number): RequestRow {
    return {
      timestamp: this.timestamp,
      requestId: this.requestId,
      keyId: this.key?.id ?? null,
      keyName: this.key?.name ?? null,
      ip: this.ip,
      method: this.method,
      route: this.route,
      model: this.model,
      status,
      errorCode: this.errorCode,
      promptTokens: this.usage.promptTokens,
      completionTokens: this.usage.completionTokens,
      totalTokens: this.usage.totalTokens,
      estimated: this.usage.estimated,
      latencyMs: round2(performance.now() - this.startedAt),
      upstreamMs: this.upstreamMs === null ? null : round2(this.upstreamMs),
      queuedMs: this.queuedMs === null ? null : round2(this.queuedMs),
      streamed: this.streamed,
      userAgent: this.userAgent,
      costMicros: this.costMicros,
      upstream: this.upstream,
      servedModel: this.servedModel,
      attempts: this.attempts,
      day: this.day,
      requestBody: this.requestBody,
      responseBody: this.responseBody,
    }
  }
}

function round2(ms: number): number {
  return Math.round(ms * 100) / 100
}
