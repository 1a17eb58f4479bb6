import type { Calendar } from './calendar.js'
import type { Store } from './store.js'

export interface Reservation {
  readonly keyId: string
  readonly day: string
  amount: number
  settled: boolean
}

export interface BudgetState {
  day: string
  spent: number
  reserved: number
  resetAt: number
}

/**
 * Daily token budgets: spent tokens (loaded from the store, so they survive restarts) plus
 * tokens reserved by requests in flight. A reservation is taken only if spent + reserved +
 * amount fits, in one synchronous step, so concurrent requests can never overspend.
 */
export class BudgetLedger {
  private day = ''
  private spent = new Map<string, number>()
  private reserved = new Map<string, number>()
  /** A day's spent totals being read from the store ahead of the day's first request. */
  private next: { day: string; spent: Map<string, number> | null; loading: Promise<void> } | null = null

  constructor(
    private readonly store: Store,
    private readonly calendar: Calendar,
  ) {}

  state(keyId: string, now: number): BudgetState {
    const day = this.roll(now)
    return {
      day,
      spent: this.spent.get(keyId) ?? 0,
      reserved: this.reserved.get(keyId) ?? 0,
      resetAt: this.calendar.nextDayStart(now),
    }
  }

  /** What a key may still reserve now (null when there is no limit). */
  available(keyId: string, limit: number | null, now: number): number | null {
    if (limit === null) return null
    const s = this.state(keyId, now)
    return Math.max(0, limit - s.spent - s.reserved)
  }

  /** Reserves `amount`, or returns null when the budget cannot cover it. */
  reserve(keyId: string, amount: number, limit: number | null, now: number): Reservation | null {
    const day = this.roll(now)
    const available = this.available(keyId, limit, now)
    if (available !== null && amount > available) return null
    this.reserved.set(keyId, (this.reserved.get(keyId) ?? 0) + amount)
    return { keyId, day, amount, settled: false }
  }

  /** Changes an unsettled reservation's amount (a smaller, better estimate). */
  resize(reservation: Reservation, amount: number, now: number): void {
    this.roll(now)
    if (reservation.settled || reservation.day !== this.day) return
    this.reserved.set(reservation.keyId, (this.reserved.get(reservation.keyId) ?? 0) + amount - reservation.amount)
    reservation.amount = amount
  }

  /** Replaces the reservation by what was really used. Idempotent. */
  settle(reservation: Reservation, usedTokens: number, now: number): void {
    if (reservation.settled) return
    reservation.settled = true
    this.roll(now)
    if (reservation.day !== this.day) return // an earlier day's: its row is charged to that day, which memory no longer holds
    const { keyId } = reservation
    this.reserved.set(keyId, (this.reserved.get(keyId) ?? 0) - reservation.amount)
    this.spent.set(keyId, (this.spent.get(keyId) ?? 0) + usedTokens)
  }

  /** The budget day of `now` (the ledger moves to it in `prepare`, after reading its totals). */
  dayOf(now: number): string {
    return this.calendar.dayOf(now)
  }

  /** Whether the ledger is on `now`'s budget day already (nothing to read). */
  holds(now: number): boolean {
    return this.calendar.dayOf(now) === this.day
  }

  /**
   * Reads the day's spent totals from the store when `now` begins a day the ledger does not
   * hold yet, then moves to it; the steps above are synchronous and cannot read the store.
   * The in-memory limiter awaits it before a day's first admission, and at start.
   */
  async prepare(now: number): Promise<void> {
    const day = this.calendar.dayOf(now)
    if (day === this.day) return
    if (this.next?.day !== day) {
      const next: NonNullable<typeof this.next> = {
        day,
        spent: null,
        loading: this.store.dailyUsage(day).then((rows) => {
          next.spent = new Map(rows.map((u) => [u.keyId, u.totalTokens]))
        }),
      }
      this.next = next
      next.loading.catch(() => {
        if (this.next === next) this.next = null // the next request tries again
      })
    }
    await this.next.loading
    this.roll(now)
  }

  private roll(now: number): string {
    const day = this.calendar.dayOf(now)
    if (day !== this.day) {
      this.day = day
      // Loaded by `prepare`; a day reached without it (a request straddling midnight) starts from what this process spends.
      this.spent = this.next?.day === day && this.next.spent ? this.next.spent : new Map()
      this.next = null
      this.reserved = new Map()
    }
    return day
  }
}
