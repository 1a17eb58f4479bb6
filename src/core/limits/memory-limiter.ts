import { AdmissionControl } from '../admission.js'
import { BudgetLedger, type BudgetState } from '../budget.js'
import type { Calendar } from '../calendar.js'
import type { PreparedChat } from '../chat-request.js'
import type { Clock } from '../clock.js'
import { IpLimiter } from '../ip-limiter.js'
import type { FairQueue } from '../queue.js'
import type { ApiKey, Limits } from '../types.js'
import type { Store } from '../store.js'
import type { Admission, AdmitOptions, Limiter } from './limiter.js'

/**
 * The default limiter: every limit in this process's memory, each check one synchronous step
 * (exact within the process, and the reason one SQLite database takes one server without
 * `--redis`). Per-key concurrency is the fair queue's per-key cap.
 */
export class MemoryLimiter implements Limiter {
  readonly ledger: BudgetLedger
  private readonly admission: AdmissionControl
  private readonly ips = new IpLimiter()

  constructor(
    store: Store,
    private readonly calendar: Calendar,
    private readonly clock: Clock,
    queue: FairQueue,
  ) {
    this.ledger = new BudgetLedger(store, calendar)
    this.admission = new AdmissionControl(clock, this.ledger, queue)
  }

  admit(key: ApiKey, limits: Limits, prepared: PreparedChat, opts: AdmitOptions): Promise<Admission> {
    // A new budget day's spent totals are read before its first admission; within a day, no wait.
    const now = this.clock.now()
    if (this.ledger.holds(now)) return this.admission.admit(key, limits, prepared, opts)
    return this.ledger.prepare(now).then(() => this.admission.admit(key, limits, prepared, opts))
  }

  admitAddress(ip: string, limit: number | null): void {
    this.ips.admitRequest(ip, limit, this.clock.now())
  }

  countAuthFailure(ip: string, limit: number | null): void {
    this.ips.countFailure(ip, limit, this.clock.now())
  }

  prepare(now: number): Promise<void> {
    return this.ledger.prepare(now)
  }

  budget(keyId: string): BudgetState {
    return this.ledger.state(keyId, this.clock.now())
  }

  dayOf(now: number): string {
    return this.ledger.dayOf(now)
  }

  resetAt(now: number): number {
    return this.calendar.nextDayStart(now)
  }

  state(): { kind: 'memory'; ok: true } {
    return { kind: 'memory', ok: true }
  }

  async ready(): Promise<void> {}

  async close(): Promise<void> {}
}
