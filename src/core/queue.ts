import type { Clock } from './clock.js'
import { GatewayError, unavailable } from './errors.js'
import type { CancelSignal } from './cancel.js'

export interface Slot {
  /** How long the request waited for its slot. */
  readonly queuedMs: number
  release(): void
}

export interface QueueOptions {
  /** Upstream requests in flight at once, across keys; null = no cap. */
  maxInflight: number | null
  /** Requests that may wait at once; 0 = refuse instead of waiting. */
  queueSize: number
  queueTimeoutMs: number
}

interface Waiter {
  keyId: string
  cap: number | null
  enqueuedAt: number
  resolve(slot: Slot): void
  reject(err: unknown): void
  cleanup(): void
}

interface KeyLane {
  inflight: number
  waiting: Waiter[]
}

/** Thrown when the client leaves while waiting; the request log records 499. */
export function clientClosed(): GatewayError {
  return new GatewayError(499, 'invalid_request_error', 'client_closed_request', 'Client closed the request')
}

/**
 * Why a call was aborted: the gateway's own reason (shutting down) when it gave one, else
 * the client left.
 */
export function abortError(signal: CancelSignal): GatewayError {
  return signal.reason instanceof GatewayError ? signal.reason : clientClosed()
}

/**
 * Admission to the upstream: a global cap and a per-key cap on requests in flight. Requests
 * over a cap wait in one bounded queue, served round-robin across keys (one key's burst
 * cannot starve another key's single request) and first-in first-out within a key.
 */
export class FairQueue {
  private inflight = 0
  private waitingCount = 0
  private readonly lanes = new Map<string, KeyLane>()
  /** Keys with waiters, in round-robin order. */
  private ring: string[] = []
  private cursor = 0
  private closedWith: GatewayError | null = null

  constructor(
    private readonly options: QueueOptions,
    private readonly clock: Clock,
  ) {}

  get depth(): number {
    return this.waitingCount
  }

  get active(): number {
    return this.inflight
  }

  acquire(keyId: string, cap: number | null, opts: { signal?: CancelSignal; timeoutMs?: number } = {}): Slot | Promise<Slot> {
    if (this.closedWith) throw this.closedWith
    const lane = this.lane(keyId)
    if (lane.waiting.length === 0 && this.fits(lane, cap)) return this.grant(keyId, lane, 0)
    if (opts.signal?.aborted) throw clientClosed()
    if (this.waitingCount >= this.options.queueSize) {
      throw unavailable('The gateway is at capacity and its queue is full; retry shortly', 'queue_full', 1000)
    }
    const timeoutMs = Math.min(opts.timeoutMs ?? this.options.queueTimeoutMs, this.options.queueTimeoutMs)
    return new Promise<Slot>((resolve, reject) => {
      const waiter: Waiter = {
        keyId,
        cap,
        enqueuedAt: this.clock.now(),
        resolve,
        reject,
        cleanup: () => {
          clearTimeout(timer)
          opts.signal?.removeEventListener('abort', onAbort)
        },
      }
      const leave = (err: GatewayError) => {
        if (this.remove(waiter)) {
          waiter.cleanup()
          reject(err)
        }
      }
      const onAbort = () => leave(clientClosed())
      const timer = setTimeout(
        () => leave(unavailable(`Waited ${Math.round(timeoutMs / 1000)}s in the gateway queue without a free slot`, 'queue_timeout', 1000)),
        timeoutMs,
      )
      opts.signal?.addEventListener('abort', onAbort, { once: true })
      if (lane.waiting.length === 0) this.ring.push(keyId)
      lane.waiting.push(waiter)
      this.waitingCount++
    })
  }

  /** Refuses every waiter, and every later request, with `err` (the gateway is stopping). */
  close(err: GatewayError): void {
    this.closedWith = err
    for (const lane of [...this.lanes.values()]) {
      for (const waiter of [...lane.waiting]) {
        if (this.remove(waiter)) {
          waiter.cleanup()
          waiter.reject(err)
        }
      }
    }
  }

  private lane(keyId: string): KeyLane {
    let lane = this.lanes.get(keyId)
    if (!lane) {
      lane = { inflight: 0, waiting: [] }
      this.lanes.set(keyId, lane)
    }
    return lane
  }

  private fits(lane: KeyLane, cap: number | null): boolean {
    return (this.options.maxInflight === null || this.inflight < this.options.maxInflight) && (cap === null || lane.inflight < cap)
  }

  private grant(keyId: string, lane: KeyLane, queuedMs: number): Slot {
    this.inflight++
    lane.inflight++
    let released = false
    return {
      queuedMs,
      release: () => {
        if (released) return
        released = true
        this.inflight--
        lane.inflight--
        if (lane.inflight === 0 && lane.waiting.length === 0) this.lanes.delete(keyId)
        this.pump()
      },
    }
  }

  /** Hands free slots to waiters, one key at a time in ring order. */
  private pump(): void {
    while (this.ring.length > 0 && (this.options.maxInflight === null || this.inflight < this.options.maxInflight)) {
      let served = false
      for (let i = 0; i < this.ring.length; i++) {
        const index = (this.cursor + i) % this.ring.length
        const keyId = this.ring[index]
        const lane = this.lanes.get(keyId)!
        const waiter = lane.waiting[0]
        if (!this.fits(lane, waiter.cap)) continue
        lane.waiting.shift()
        this.waitingCount--
        if (lane.waiting.length === 0) {
          this.ring.splice(index, 1)
          this.cursor = this.ring.length === 0 ? 0 : index % this.ring.length
        } else {
          this.cursor = (index + 1) % this.ring.length
        }
        waiter.cleanup()
        waiter.resolve(this.grant(keyId, lane, this.clock.now() - waiter.enqueuedAt))
        served = true
        break
      }
      if (!served) return
    }
  }

  private remove(waiter: Waiter): boolean {
    const lane = this.lanes.get(waiter.keyId)
    const at = lane ? lane.waiting.indexOf(waiter) : -1
    if (!lane || at < 0) return false
    lane.waiting.splice(at, 1)
    this.waitingCount--
    if (lane.waiting.length === 0) {
      const r = this.ring.indexOf(waiter.keyId)
      if (r >= 0) {
        this.ring.splice(r, 1)
        if (this.cursor > r) this.cursor--
        if (this.cursor >= this.ring.length) this.cursor = 0
      }
      if (lane.inflight === 0) this.lanes.delete(waiter.keyId)
    }
    return true
  }
}
