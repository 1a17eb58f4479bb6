import type { PreparedChat } from '../chat-request.js'
import type { BudgetState } from '../budget.js'
import type { ApiKey, Limits, Usage } from '../types.js'
import type { CancelSignal } from '../cancel.js'

/** A request let through: its slot, its reservations, and the rate-limit headers to send. */
export interface Admission {
  readonly queuedMs: number
  /** The budget day its reservation was taken in, which its tokens are charged to. */
  readonly day: string
  readonly headers: Record<string, string>
  /** Settles budget and token window to the real usage and frees the slot. Idempotent. */
  settle(usage: Usage): void
}

export interface AdmitOptions {
  signal?: CancelSignal
  timeoutMs?: number
}

/** A key's budget today: spent, held by requests in flight, and when it resets (epoch ms). */
export type { BudgetState } from '../budget.js'

/**
 * Every per-key and per-address limit the gateway enforces, behind one seam: the in-memory
 * limiter (one process, the default) or the Redis one (`--redis`, shared by every gateway).
 * Refusals are GatewayErrors (429 with Retry-After; 503 `limiter_unavailable` when the
 * limit state cannot be reached: fail closed). Sync results are allowed where the
 * in-memory limiter has them; callers `await` either way.
 */
export interface Limiter {
  /**
   * Admits a chat request against its key's limits (requests and tokens per minute, the daily
   * budget, concurrency), all or nothing, then waits for a slot of this process's own in-flight
   * cap. May shrink `prepared` (counted prompt, clamped max_tokens).
   */
  admit(key: ApiKey, limits: Limits, prepared: PreparedChat, opts: AdmitOptions): Promise<Admission>
  /** Counts a request from an address (grouped per /64 for IPv6); 429 past `limit` a minute, null: no limit. */
  admitAddress(ip: string, limit: number | null): void | Promise<void>
  /** Counts a failed authentication from an address; 429 past `limit` a minute. */
  countAuthFailure(ip: string, limit: number | null): void | Promise<void>
  /**
   * Reads from the store what admitting on `now`'s budget day needs (the in-memory limiter:
   * the day's spent totals), so the first request need not wait; `admit` does it itself
   * when a new day begins.
   */
  prepare(now: number): Promise<void>
  /** The key's budget today (reports and tests). */
  budget(keyId: string): BudgetState | Promise<BudgetState>
  /** The budget day `now` falls in, and when it ends. */
  dayOf(now: number): string
  resetAt(now: number): number
  /** Where limits live and whether that state can be reached now (for /health). */
  state(): { kind: 'memory' | 'redis'; ok: boolean }
  /** Connects (the in-memory one has nothing to do); rejects when the state cannot be reached at all. */
  ready(): Promise<void>
  /** Sends what is still owed (settles) within a short bound and lets go. */
  close(): Promise<void>
}
