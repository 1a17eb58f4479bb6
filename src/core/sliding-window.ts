/** One admitted amount at a time; `amount` may be settled later (reserve-then-settle). */
export interface WindowEntry {
  readonly t: number
  amount: number
}

/**
 * An exact sliding window: the sum of amounts admitted in the last `windowMs` never exceeds
 * the limit, at any instant (no fixed-window 2N burst across a boundary).
 */
export class SlidingWindow {
  private entries: WindowEntry[] = []
  private head = 0
  private total = 0

  constructor(readonly windowMs = 60_000) {}

  used(now: number): number {
    this.prune(now)
    return this.total
  }

  /** Admits `amount` and returns its entry, or returns the ms until it would fit (Infinity: never). */
  tryAdd(now: number, amount: number, limit: number): WindowEntry | number {
    this.prune(now)
    if (this.total + amount <= limit) {
      const entry = { t: now, amount }
      this.entries.push(entry)
      this.total += amount
      return entry
    }
    return this.waitFor(now, amount, limit)
  }

  /** Settles an entry to its real amount (if it is still inside the window). */
  settle(entry: WindowEntry, amount: number, now: number): void {
    this.prune(now)
    if (entry.t > now - this.windowMs) this.total += amount - entry.amount
    entry.amount = amount
  }

  /** When the oldest entry leaves the window, or 0 if empty. */
  resetIn(now: number): number {
    this.prune(now)
    return this.head < this.entries.length ? this.entries[this.head].t + this.windowMs - now : 0
  }

  private waitFor(now: number, amount: number, limit: number): number {
    if (amount > limit) return Infinity
    let freed = 0
    for (let i = this.head; i < this.entries.length; i++) {
      freed += this.entries[i].amount
      if (this.total - freed + amount <= limit) return this.entries[i].t + this.windowMs - now
    }
    // Only unsettled-upward reservations could leave us here; the window empties by then.
    return this.windowMs
  }

  private prune(now: number): void {
    const edge = now - this.windowMs
    const entries = this.entries
    while (this.head < entries.length && entries[this.head].t <= edge) {
      this.total -= entries[this.head].amount
      this.head++
    }
    if (this.head > 1024 && this.head * 2 > entries.length) {
      this.entries = entries.slice(this.head)
      this.head = 0
    }
  }
}
