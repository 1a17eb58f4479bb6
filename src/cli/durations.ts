import { badRequest } from '../core/errors.js'

const UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }

/** `500ms`, `90s`, `15m`, `1h`, `30d`, `2w`, or a bare number of seconds. */
export function parseDuration(text: string, name = 'duration'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$/i.exec(text)
  if (!m) throw badRequest(`${name} must be a duration like 90s, 15m, 1h or 30d; got "${text}"`, name)
  return Math.round(Number(m[1]) * UNITS[(m[2] ?? 's').toLowerCase()])
}

/**
 * A point in time: an ISO date or date-time, or a duration meaning "that long ago" (`7d`).
 * A bare date is midnight UTC.
 */
export function parseTime(text: string, now: number, name = 'time'): string {
  if (/^\s*\d+(?:\.\d+)?\s*(ms|s|m|h|d|w)\s*$/i.test(text)) return new Date(now - parseDuration(text, name)).toISOString()
  if (/^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(text.trim())) {
    const ms = Date.parse(text.trim().length === 10 ? `${text.trim()}T00:00:00Z` : text.trim())
    if (Number.isFinite(ms)) return new Date(ms).toISOString()
  }
  throw badRequest(`${name} must be an ISO date or time (2026-11-01, 2026-11-01T12:00:00Z) or a duration ago (7d); got "${text}"`, name)
}
