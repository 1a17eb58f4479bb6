import { badRequest } from '../core/errors.js'

const UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000, y: 365 * 86_400_000 }
const PART = /(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w|y)/giy
const ISO_TIME = /^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/i

/** The milliseconds of `90s`, `15m`, `12h30m`, `30d`, `2w`, `1y` (365 days), or null when it is not one. */
function durationMs(text: string): number | null {
  const t = text.trim()
  if (/^\d+(?:\.\d+)?$/.test(t)) return Math.round(Number(t) * 1_000) // a bare number is seconds
  PART.lastIndex = 0
  let total = 0
  let end = 0
  for (let m = PART.exec(t); m; m = PART.exec(t)) {
    total += Number(m[1]) * UNITS[m[2].toLowerCase()]
    end = PART.lastIndex
    while (t[PART.lastIndex] === ' ') PART.lastIndex++
  }
  return end > 0 && end === t.length ? Math.round(total) : null
}

/** `500ms`, `90s`, `15m`, `12h30m`, `30d`, `2w`, `1y`, or a bare number of seconds. */
export function parseDuration(text: string, name = 'duration'): number {
  const ms = durationMs(text)
  if (ms === null) throw badRequest(`${name} must be a duration like 90s, 15m, 12h30m, 1h or 30d; got "${text}"`, name)
  return ms
}

/** An ISO date or date-time as epoch ms; a bare date is midnight UTC and a time without a zone is UTC. */
function isoMs(text: string): number | null {
  const t = text.trim()
  const m = ISO_TIME.exec(t)
  if (!m) return null
  const [y, mo, d] = t.slice(0, 10).split('-').map(Number)
  if (new Date(Date.UTC(y, mo - 1, d)).getUTCDate() !== d) return null // 2026-02-30 is no date
  const ms = Date.parse(m[1] === undefined ? `${t}T00:00:00Z` : m[4] === undefined ? `${t.replace(' ', 'T')}Z` : t.replace(' ', 'T'))
  return Number.isFinite(ms) ? ms : null
}

/**
 * A point in time: an ISO date or date-time, or a duration meaning "that long ago" (`7d`).
 * A bare date is midnight UTC; a date-time without a zone (`2026-11-01T12:00`) is UTC too.
 */
export function parseTime(text: string, now: number, name = 'time'): string {
  const ago = /^\s*\d+(\.\d+)?\s*$/.test(text) || ISO_TIME.test(text.trim()) ? null : durationMs(text) // a bare number is no time
  const ms = ago !== null ? now - ago : isoMs(text)
  if (ms === null) throw badRequest(`${name} must be an ISO date or time (2026-11-01, 2026-11-01T12:00:00Z; without a zone it is UTC) or a duration ago (7d); got "${text}"`, name)
  return new Date(ms).toISOString()
}

/** The help text of --since / --until flags. */
export const SINCE_HELP = 'start: ISO date/time (UTC unless it names a zone), or a duration ago (7d)'
export const UNTIL_HELP = 'end (exclusive): ISO date/time (UTC unless it names a zone), or a duration ago'

/**
 * A checked time range as ISO strings: --since may not be in the future, and --until must
 * come after --since. Either may be absent.
 */
export function parseTimeRange(since: string | undefined, until: string | undefined, now: number): { since?: string; until?: string } {
  const from = since === undefined ? undefined : parseTime(since, now, '--since')
  const to = until === undefined ? undefined : parseTime(until, now, '--until')
  if (from !== undefined && Date.parse(from) > now) throw badRequest(`--since ${from} is in the future: nothing can have happened yet`, '--since')
  if (from !== undefined && to !== undefined && to <= from) throw badRequest(`--until ${to} is not after --since ${from}: the range is empty`, '--until')
  return { since: from, until: to }
}

/**
 * When a key stops working: a duration from now (`30d`, `12h30m`, `1y`), an ISO date or
 * date-time (UTC unless it names a zone), or `never`. Zero and past times are refused. A
 * duration stays relative so the key's expiry is exactly that long after its creation.
 */
export function parseExpiry(text: string, now: number, name = '--expires-in'): { expiresInMs: number } | { expiresAt: number | null } {
  if (text.trim().toLowerCase() === 'never') return { expiresAt: null }
  const ms = durationMs(text)
  const at = ms !== null ? now + ms : isoMs(text)
  if (at === null) throw badRequest(`${name} must be a duration (30d, 12h30m, 1y), an ISO date (2027-01-31) or "never"; got "${text}"`, name)
  if (at <= now) throw badRequest(`${name} ${text} is not in the future: a key would be expired at once`, name)
  return ms !== null ? { expiresInMs: ms } : { expiresAt: at }
}
