import type { Calendar } from './calendar.js'
import type { Store } from '../storage/store.js'

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

  dayOf(now: number): string {
    return this.roll(now)
  }

  private roll(now: number): string {
    const day = this.calendar.dayOf(now)
    if (day !== this.day) {
      this.day = day
      this.spent = new Map(this.store.dailyUsage(day).map((u) => [u.keyId, u.totalTokens]))
      this.reserved = new Map()
    }
    return day
  }
}
