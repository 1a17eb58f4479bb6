import { csvCell } from './csv.js'
import type { RequestRow } from './types.js'

/**
 * csv-stringify options for every CSV the gateway writes: RFC 4180 (CRLF rows) and quotes
 * around any field holding a bare CR or LF, which csv-stringify would otherwise leave bare
 * under a CRLF delimiter (and spreadsheets would split the row there).
 */
export const CSV_FORMAT = { record_delimiter: 'windows', quoted_match: /[\r\n]/ } as const

/** Columns of the CSV request log and of `gateway logs export`, in order. */
export const LOG_COLUMNS = [
  'timestamp',
  'request_id',
  'key_id',
  'key_name',
  'ip',
  'method',
  'route',
  'model',
  'status',
  'error_code',
  'prompt_tokens',
  'completion_tokens',
  'total_tokens',
  'tokens_estimated',
  'latency_ms',
  'upstream_ms',
  'queued_ms',
  'streamed',
  'user_agent',
  'cost_usd',
  'upstream',
  'served_model',
  'attempts',
] as const

export function costUsd(micros: number | null): number | null {
  return micros === null ? null : micros / 1_000_000
}

/** A row's values in column order. */
function rowValues(row: RequestRow): unknown[] {
  return [
    row.timestamp,
    row.requestId,
    row.keyId,
    row.keyName,
    row.ip,
    row.method,
    row.route,
    row.model,
    row.status,
    row.errorCode,
    row.promptTokens,
    row.completionTokens,
    row.totalTokens,
    row.estimated,
    row.latencyMs,
    row.upstreamMs,
    row.queuedMs,
    row.streamed,
    row.userAgent,
    costUsd(row.costMicros),
    row.upstream,
    row.servedModel,
    row.attempts,
  ]
}

/** One request row as CSV cells, neutralised against formula injection. */
export function toCsvRecord(row: RequestRow): (string | number)[] {
  return rowValues(row).map(csvCell)
}

/** One request row as a JSON object with the same column names (for JSON lines). */
export function toJsonRecord(row: RequestRow): Record<string, unknown> {
  const values = rowValues(row)
  return Object.fromEntries(LOG_COLUMNS.map((c, i) => [c, values[i] ?? null]))
}
