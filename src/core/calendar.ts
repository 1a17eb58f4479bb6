const HOUR = 3_600_000
/** A UTC day (86,400,000 ms); a calendar day in a zone with summer time may be an hour off. */
export const DAY_MS = 24 * HOUR

/**
 * Calendar days in one time zone. `dayOf` is called on every request, so the current day's
 * bounds are cached and the formatter runs only when time leaves them.
 */
export class Calendar {
  readonly timeZone: string
  private readonly format: Intl.DateTimeFormat
  private start = 0
  private end = 0
  private day = ''

  constructor(timeZone = 'UTC') {
    // Throws RangeError for a zone the runtime does not know.
    this.format = new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' })
    this.timeZone = timeZone
  }

  static isValidZone(timeZone: string): boolean {
    try {
      new Intl.DateTimeFormat('en-CA', { timeZone })
      return true
    } catch {
      return false
    }
  }

  /** YYYY-MM-DD of the instant in this zone. */
  dayOf(ms: number): string {
    if (ms >= this.start && ms < this.end) return this.day
    const day = this.format.format(ms)
    this.start = this.boundary(ms, day, -1)
    this.end = this.boundary(ms, day, 1)
    this.day = day
    return day
  }

  /** First instant of the next day (the budget's reset time). */
  nextDayStart(ms: number): number {
    this.dayOf(ms)
    return this.end
  }

  /** First instant of a day (YYYY-MM-DD) in this zone. */
  dayStart(day: string): number {
    // Noon UTC is that day in most zones; up to two half-day steps find it in the others (UTC±12 to +14).
    let t = Date.parse(`${day}T12:00:00Z`)
    for (let i = 0; i < 3 && this.format.format(t) !== day; i++) t += (this.format.format(t) < day ? 12 : -12) * HOUR
    return this.boundary(t, day, -1)
  }

  /** Where the day containing `ms` starts (dir -1) or ends (dir 1): step by hours, then bisect. */
  private boundary(ms: number, day: string, dir: -1 | 1): number {
    let inside = ms
    let outside = ms + dir * HOUR
    while (this.format.format(outside) === day) {
      inside = outside
      outside += dir * HOUR
    }
    while (Math.abs(outside - inside) > 1) {
      const mid = Math.floor((inside + outside) / 2)
      if (this.format.format(mid) === day) inside = mid
      else outside = mid
    }
    return dir === 1 ? outside : inside
  }
}
