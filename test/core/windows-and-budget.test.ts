import { describe, expect, it } from 'vitest'
import { BudgetLedger } from '../../src/core/budget.js'
import { Calendar } from '../../src/core/calendar.js'
import { SlidingWindow } from '../../src/core/sliding-window.js'
import { SqliteStore } from '../../src/storage/sqlite/sqlite-store.js'
import { requestRow } from '../support/log-rows.js'

describe('SlidingWindow', () => {
  it('never admits more than the limit in any window, and says when the next fits', () => {
    const w = new SlidingWindow(60_000)
    expect(w.admit(0, 1, 2)).toBe(0)
    expect(w.admit(30_000, 1, 2)).toBe(1)
    expect(w.admit(59_999, 1, 2)).toBe(-1)
    expect(w.waitFor(59_999, 1, 2)).toBe(1)
    expect(w.admit(60_000, 1, 2)).toBe(2)
    expect(w.admit(60_001, 1, 2)).toBe(-1)
    expect(w.waitFor(60_001, 1, 2)).toBe(29_999)
    expect(w.resetIn(60_001)).toBe(29_999)
  })

  it('settles an entry to its real amount while it is in the window, and ignores it after', () => {
    const w = new SlidingWindow(60_000)
    const e = w.admit(0, 1000, 1500)
    expect(w.admit(1, 1000, 1500)).toBe(-1)
    expect(w.waitFor(1, 1000, 1500)).toBe(59_999)
    w.adjust(e, 100 - 1000, 2)
    expect(w.used(2)).toBe(100)
    expect(w.admit(3, 1000, 1500)).toBeGreaterThanOrEqual(0)
    expect(w.waitFor(4, 5000, 1500)).toBe(Infinity)
    w.adjust(e, 999 - 100, 70_000) // gone from the window: no effect
    expect(w.used(70_000)).toBe(0)
  })

  it('keeps order and totals across ring growth and wrap-around', () => {
    const w = new SlidingWindow(1_000)
    let ids = 0
    for (let t = 0; t < 200_000; t++) expect(w.admit(t, 1, 10_000)).toBe(ids++)
    // at t = 200,000 the window (199,000, 200,000] holds the entries of 199,001 … 199,999
    expect(w.used(200_000)).toBe(999)
    expect(w.resetIn(200_000)).toBe(1)
    const late = w.admit(200_000, 5, 10_000)
    w.adjust(late, 7 - 5, 200_000)
    expect(w.used(200_000)).toBe(1_006)
  })

  it('admissions in one millisecond share an entry: each settles its own share, and they leave together', () => {
    const w = new SlidingWindow(1_000)
    const first = Array.from({ length: 1_000 }, () => w.admit(5, 3, 1_000_000))
    expect(new Set(first)).toEqual(new Set([first[0]])) // one entry, however many admissions
    const next = w.admit(6, 3, 1_000_000)
    expect(next).toBe(first[0] + 1)
    expect(w.used(6)).toBe(3_003)
    w.adjust(first[0], 1 - 3, 7) // one of the thousand used 1 token, not 3
    expect(w.used(7)).toBe(3_001)
    expect(w.waitFor(7, 1, 3_001)).toBe(998) // the shared entry frees all of its 2,998 at once, at 1,005
    expect(w.used(1_005)).toBe(3) // (5, 1,005] no longer holds the millisecond 5
    w.adjust(first[0], 100, 1_005) // gone from the window: no effect
    expect(w.used(1_005)).toBe(3)
  })
})

describe('BudgetLedger', () => {
  const store = () => SqliteStore.open(':memory:')
  const day = Date.parse('2026-05-05T12:00:00Z')

  it('reserves only what fits beside spent and reserved tokens, and settles idempotently', () => {
    const ledger = new BudgetLedger(store(), new Calendar('UTC'))
    const a = ledger.reserve('k', 600, 1000, day)!
    expect(ledger.reserve('k', 500, 1000, day)).toBeNull()
    const b = ledger.reserve('k', 400, 1000, day)!
    ledger.settle(a, 50, day)
    ledger.settle(a, 50, day)
    expect(ledger.state('k', day)).toMatchObject({ spent: 50, reserved: 400 })
    ledger.settle(b, 0, day)
    expect(ledger.available('k', 1000, day)).toBe(950)
    expect(ledger.reserve('k', 10 ** 9, null, day)).not.toBeNull()
  })

  it('starts each day from what the store recorded, and lets yesterday\'s reservations settle into yesterday', async () => {
    const s = store()
    const ledger = new BudgetLedger(s, new Calendar('UTC'))
    const late = ledger.reserve('k', 300, 1000, Date.parse('2026-05-05T23:59:59Z'))!
    const next = Date.parse('2026-05-06T00:00:01Z')
    expect(ledger.state('k', next)).toMatchObject({ day: '2026-05-06', spent: 0, reserved: 0 })
    ledger.settle(late, 200, next)
    expect(ledger.state('k', next)).toMatchObject({ spent: 0, reserved: 0 })
    // Yesterday's spend is the store's: the log row written for that request carries its day.
    await s.appendRequests([requestRow({ keyId: 'k', day: '2026-05-05', totalTokens: 200 })])
    const restarted = new BudgetLedger(s, new Calendar('UTC'))
    await restarted.prepare(Date.parse('2026-05-05T23:59:59Z'))
    expect(restarted.state('k', Date.parse('2026-05-05T23:59:59Z'))).toMatchObject({ day: '2026-05-05', spent: 200, reserved: 0 })
  })
})

describe('Calendar', () => {
  it('finds day boundaries in a zone, across a DST change', () => {
    const ny = new Calendar('America/New_York')
    // 2026-03-08 is 23 hours long in New York (clocks go forward at 02:00).
    const t = Date.parse('2026-03-08T12:00:00Z')
    expect(ny.dayOf(t)).toBe('2026-03-08')
    expect(new Date(ny.nextDayStart(t)).toISOString()).toBe('2026-03-09T04:00:00.000Z')
    expect(ny.dayOf(Date.parse('2026-03-09T03:59:59.999Z'))).toBe('2026-03-08')
    expect(ny.dayOf(Date.parse('2026-03-09T04:00:00Z'))).toBe('2026-03-09')
    expect(new Calendar('Asia/Kolkata').dayOf(Date.parse('2026-01-01T18:29:59Z'))).toBe('2026-01-01')
    expect(new Calendar('Asia/Kolkata').dayOf(Date.parse('2026-01-01T18:30:00Z'))).toBe('2026-01-02')
    expect(Calendar.isValidZone('Mars/Olympus')).toBe(false)
  })
})
