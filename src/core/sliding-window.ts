/**
 * An exact sliding window: the sum of amounts admitted in the last `windowMs` never exceeds
 * the limit, at any instant (no fixed-window 2N burst across a boundary). An amount may be
 * settled later to its real value (reserve-then-settle).
 *
 * Entries live in a ring of two typed arrays (time, amount): a busy key admits tens of
 * thousands of requests a minute, and an object per request was most of the gateway's heap
 * growth under load. Admissions in the same millisecond share one entry (they leave the
 * window together), so a window holds at most one entry per millisecond whatever the rate:
 * at 2,500 requests a second that was 150,000 entries a minute, 4 MB a window. An entry is
 * named by its id, a counter that never repeats; `adjust` moves its amount by a difference,
 * since several admissions may share it.
 */
export class SlidingWindow {
  private times = new Float64Array(16)
  private amounts = new Float64Array(16)
  private head = 0
  private size = 0
  /** Id of the entry at `head`. */
  private headId = 0
  private total = 0

  constructor(readonly windowMs = 60_000) {}

  used(now: number): number {
    this.prune(now)
    return this.total
  }

  /** Admits `amount` if the window then stays within `limit`: the id of its entry, or -1. */
  admit(now: number, amount: number, limit: number): number {
    this.prune(now)
    if (this.total + amount > limit) return -1
    this.total += amount
    const mask = this.times.length - 1
    if (this.size > 0 && this.times[(this.head + this.size - 1) & mask] === now) {
      this.amounts[(this.head + this.size - 1) & mask] += amount
      return this.headId + this.size - 1
    }
    if (this.size === this.times.length) this.grow()
    const at = (this.head + this.size) & (this.times.length - 1)
    this.times[at] = now
    this.amounts[at] = amount
    return this.headId + this.size++
  }

  /** How long until `amount` would fit under `limit` (Infinity: never, it exceeds the limit alone). */
  waitFor(now: number, amount: number, limit: number): number {
    this.prune(now)
    if (amount > limit) return Infinity
    if (this.total + amount <= limit) return 0
    const mask = this.times.length - 1
    let freed = 0
    for (let i = 0; i < this.size; i++) {
      const at = (this.head + i) & mask
      freed += this.amounts[at]
      if (this.total - freed + amount <= limit) return this.times[at] + this.windowMs - now
    }
    return this.windowMs
  }

  /** Moves an entry's amount by `delta` (an admission settled to its real amount), if it is still inside the window. */
  adjust(id: number, delta: number, now: number): void {
    this.prune(now)
    if (id < this.headId || id >= this.headId + this.size) return
    const at = (this.head + (id - this.headId)) & (this.times.length - 1)
    this.total += delta
    this.amounts[at] += delta
  }

  /** When the oldest entry leaves the window, or 0 if empty. */
  resetIn(now: number): number {
    this.prune(now)
    return this.size > 0 ? this.times[this.head] + this.windowMs - now : 0
  }

  private prune(now: number): void {
    const edge = now - this.windowMs
    const mask = this.times.length - 1
    while (this.size > 0 && this.times[this.head] <= edge) {
      this.total -= this.amounts[this.head]
      this.head = (this.head + 1) & mask
      this.headId++
      this.size--
    }
  }

  /** Doubles the ring (its length stays a power of two), oldest entry first. */
  private grow(): void {
    const n = this.times.length
    const times = new Float64Array(n * 2)
    const amounts = new Float64Array(n * 2)
    for (let i = 0; i < this.size; i++) {
      times[i] = this.times[(this.head + i) & (n - 1)]
      amounts[i] = this.amounts[(this.head + i) & (n - 1)]
    }
    this.times = times
    this.amounts = amounts
    this.head = 0
  }
}
