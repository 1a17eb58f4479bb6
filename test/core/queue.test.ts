import { describe, expect, it } from 'vitest'
import { systemClock } from '../../src/core/clock.js'
import { GatewayError } from '../../src/core/errors.js'
import { FairQueue, type Slot } from '../../src/core/queue.js'

const resolved = async (p: Slot | Promise<Slot>) => p

describe('FairQueue', () => {
  it('serves keys round-robin and each key first-in first-out', async () => {
    const q = new FairQueue({ maxInflight: 1, queueSize: 100, queueTimeoutMs: 10_000 }, systemClock)
    const order: string[] = []
    const first = await resolved(q.acquire('a', null))
    // Each waiter, once served, records itself and hands its slot on.
    const wait = (key: string, name: string) =>
      resolved(q.acquire(key, null)).then((slot) => {
        order.push(name)
        setImmediate(() => slot.release())
      })
    const all = [wait('a', 'a1'), wait('a', 'a2'), wait('a', 'a3'), wait('b', 'b1'), wait('c', 'c1')]
    expect(q.depth).toBe(5)
    first.release()
    await Promise.all(all)
    expect(order).toEqual(['a1', 'b1', 'c1', 'a2', 'a3'])
    await new Promise((r) => setImmediate(r))
    expect(q.active).toBe(0)
  })

  it('honours the per-key cap while other keys still run', async () => {
    const q = new FairQueue({ maxInflight: null, queueSize: 10, queueTimeoutMs: 10_000 }, systemClock)
    const a1 = await resolved(q.acquire('a', 1))
    const a2 = q.acquire('a', 1)
    expect(a2).toBeInstanceOf(Promise)
    const b1 = q.acquire('b', 1)
    expect(b1).not.toBeInstanceOf(Promise)
    a1.release()
    expect((await a2).queuedMs).toBeGreaterThanOrEqual(0)
    expect(q.active).toBe(2)
  })

  it('refuses when full, times out, and lets an aborted waiter go', async () => {
    const q = new FairQueue({ maxInflight: 1, queueSize: 1, queueTimeoutMs: 50 }, systemClock)
    const held = await resolved(q.acquire('a', null))
    const controller = new AbortController()
    const waiting = resolved(q.acquire('b', null, { signal: controller.signal }))
    expect(() => q.acquire('c', null)).toThrow(GatewayError)
    controller.abort()
    await expect(waiting).rejects.toMatchObject({ status: 499, code: 'client_closed_request' })
    expect(q.depth).toBe(0)
    await expect(resolved(q.acquire('d', null))).rejects.toMatchObject({ status: 503, code: 'queue_timeout' })
    held.release()
    held.release() // idempotent
    expect(q.active).toBe(0)
  })
})
