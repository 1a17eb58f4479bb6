import type { CooldownOptions } from './config.js'

export type BreakerState = 'closed' | 'open' | 'half-open'

/**
 * One upstream's circuit: `failures` retryable failures in a row open it for `ms`; after that
 * one request (the probe) may try it; the probe's success closes it, its failure reopens it.
 */
export class Cooldown {
  private inRow = 0
  private openUntil = 0
  private probing = false

  constructor(private readonly options: CooldownOptions) {}

  /** May a request try the upstream now? A true answer past the cooldown makes this request the probe. */
  take(now: number): boolean {
    if (this.inRow < this.options.failures) return true
    if (now < this.openUntil || this.probing) return false
    this.probing = true
    return true
  }

  success(): void {
    this.inRow = 0
    this.probing = false
  }

  failure(now: number): void {
    this.inRow++
    if (this.probing || this.inRow === this.options.failures) this.openUntil = now + this.options.ms
    this.probing = false
  }

  /** A call that ended neither way (the client left): a probe gives its turn back. */
  release(): void {
    this.probing = false
  }

  state(now: number): { state: BreakerState; failuresInRow: number; coolingUntil: number | null } {
    const open = this.inRow >= this.options.failures
    const state: BreakerState = !open ? 'closed' : !this.probing && now < this.openUntil ? 'open' : 'half-open'
    return { state, failuresInRow: this.inRow, coolingUntil: open ? this.openUntil : null }
  }
}
