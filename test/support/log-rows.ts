import { randomUUID } from 'node:crypto'
import type { RequestRow } from '../../src/core/types.js'

/**
 * The request log's contracts as tests state them, independently of src/: a row as SQLite
 * holds it, and how each CSV cell must read from it.
 */
export interface LogRow {
  id: number
  timestamp: string
  request_id: string
  key_id: string | null
  key_name: string | null
  ip: string
  method: string
  route: string
  model: string | null
  status: number
  error_code: string | null
  prompt_tokens: number
  completion_tokens: number
  total_tokens: number
  estimated: number
  latency_ms: number
  upstream_ms: number | null
  queued_ms: number | null
  streamed: number
  user_agent: string | null
  cost_micros: number | null
  day: string
  request_body: string | null
  response_body: string | null
  upstream: string | null
  served_model: string | null
  attempts: number
}

/** The neutralisation a spreadsheet needs: a leading quote before = + - @ tab CR. */
export const neutralised = (s: string) => (/^[=+\-@\t\r]/.test(s) ? `'${s}` : s)
const text = (v: string | null) => (v === null ? '' : neutralised(v))
const num = (v: number | null) => (v === null ? '' : String(v))

/** CSV column → how its cell must read, from the SQLite row: every text cell neutralised. */
export const CSV_COLUMNS: Record<string, (r: LogRow) => string> = {
  timestamp: (r) => r.timestamp,
  request_id: (r) => text(r.request_id),
  key_id: (r) => text(r.key_id),
  key_name: (r) => text(r.key_name),
  ip: (r) => text(r.ip),
  method: (r) => r.method,
  route: (r) => text(r.route),
  model: (r) => text(r.model),
  status: (r) => String(r.status),
  error_code: (r) => text(r.error_code),
  prompt_tokens: (r) => String(r.prompt_tokens),
  completion_tokens: (r) => String(r.completion_tokens),
  total_tokens: (r) => String(r.total_tokens),
  tokens_estimated: (r) => (r.estimated ? 'true' : 'false'),
  latency_ms: (r) => String(r.latency_ms),
  upstream_ms: (r) => num(r.upstream_ms),
  queued_ms: (r) => num(r.queued_ms),
  streamed: (r) => (r.streamed ? 'true' : 'false'),
  user_agent: (r) => text(r.user_agent),
  cost_usd: (r) => (r.cost_micros === null ? '' : String(r.cost_micros / 1e6)),
  upstream: (r) => text(r.upstream),
  served_model: (r) => text(r.served_model),
  attempts: (r) => String(r.attempts),
}

/** Runs tasks at most `width` at a time (CLI children on a two-core machine), results in order. */
export async function runAll<T>(tasks: (() => Promise<T>)[], width = 2): Promise<T[]> {
  const out: T[] = new Array(tasks.length)
  let next = 0
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < tasks.length) {
        const i = next++
        out[i] = await tasks[i]()
      }
    }),
  )
  return out
}

/** A plausible /chat 200 row for inserting straight through a store, with `over` laid on top. */
export function requestRow(over: Partial<RequestRow> = {}): RequestRow {
  const timestamp = over.timestamp ?? new Date().toISOString()
  return {
    timestamp,
    requestId: `direct-${Math.random().toString(36).slice(2)}`,
    entryId: randomUUID(),
    keyId: null,
    keyName: null,
    ip: '127.0.0.1',
    method: 'POST',
    route: '/chat',
    model: 'gpt-4o-mini',
    status: 200,
    errorCode: null,
    promptTokens: 0,
    completionTokens: 0,
    totalTokens: 0,
    estimated: false,
    latencyMs: 10,
    upstreamMs: 8,
    queuedMs: 0,
    streamed: false,
    userAgent: 'test',
    costMicros: null,
    day: timestamp.slice(0, 10),
    requestBody: null,
    responseBody: null,
    upstream: null,
    servedModel: null,
    attempts: 0,
    ...over,
  }
}

/** Every item of an async iterable (the store's paged log reads), in order. */
export async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const item of items) out.push(item)
  return out
}
