/**
 * Issue 11, item 7: per-address bookkeeping is bounded and O(1) per request. Addresses group
 * by IPv6 /64 (IPv4-mapped ones as IPv4); past the table's capacity the least recently seen
 * group is dropped, and a group that keeps trying is never the one dropped.
 */
import { describe, expect, it } from 'vitest'
import { addressGroup, IP_TABLE_CAPACITY, IpLimiter } from '../../src/core/ip-limiter.js'

const T = Date.parse('2026-03-01T12:00:00Z')
/** A distinct /64 per number. */
const net = (i: number) => `2001:db8:${((i >> 16) & 0xffff).toString(16)}:${(i & 0xffff).toString(16)}::1`

/** Whether a failed authentication from `ip` is refused (429) rather than counted. */
function refused(limiter: IpLimiter, ip: string, limit: number, now = T): boolean {
  try {
    limiter.countFailure(ip, limit, now)
    return false
  } catch (err) {
    expect(err).toMatchObject({ status: 429, code: 'auth_rate_limit_exceeded' })
    return true
  }
}

describe('addressGroup', () => {
  it.each([
    ['203.0.113.7', '203.0.113.7'],
    ['::ffff:203.0.113.7', '203.0.113.7'],
    ['::FFFF:cb00:7107', '203.0.113.7'],
    ['2001:db8:1:2::1', '2001:db8:1:2::/64'],
    ['2001:0DB8:0001:0002:aaaa:bbbb:cccc:dddd', '2001:db8:1:2::/64'],
    ['2001:db8::1', '2001:db8:0:0::/64'],
    ['fe80::1%eth0', 'fe80:0:0:0::/64'],
    ['::1', '0:0:0:0::/64'],
    ['64:ff9b::192.0.2.1', '64:ff9b:0:0::/64'],
    ['unknown', 'unknown'],
    ['2001:db8::1::2', '2001:db8::1::2'],
    ['1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7:8:9'],
    ['::ffff:300.1.1.1', '::ffff:300.1.1.1'],
  ])('%s → %s', (ip, group) => {
    expect(addressGroup(ip)).toBe(group)
  })
})

describe('the table stays at its bound', () => {
  it('25,000 distinct /64s failing within one minute: every failure counted, the table never past its capacity', () => {
    const limiter = new IpLimiter()
    let most = 0
    for (let i = 0; i < 25_000; i++) {
      expect(refused(limiter, net(i), 10)).toBe(false)
      most = Math.max(most, limiter.failures.size)
    }
    expect(most).toBe(IP_TABLE_CAPACITY)
  })

  it('a client that keeps failing stays refused however many other addresses fail meanwhile', () => {
    const limiter = new IpLimiter(1_000)
    const attacker = '198.51.100.9'
    for (let i = 0; i < 3; i++) expect(refused(limiter, attacker, 3)).toBe(false)
    for (let i = 0; i < 5_000; i++) {
      refused(limiter, net(i), 3)
      if (i % 100 === 0) expect(refused(limiter, attacker, 3)).toBe(true)
    }
    expect(refused(limiter, attacker, 3)).toBe(true)
  })

  it('a client silent while `capacity` other groups fail is dropped and starts afresh (the documented cost of the bound)', () => {
    const limiter = new IpLimiter(1_000)
    const quiet = '198.51.100.10'
    for (let i = 0; i < 3; i++) refused(limiter, quiet, 3)
    expect(refused(limiter, quiet, 3)).toBe(true)
    for (let i = 0; i < 999; i++) refused(limiter, net(i), 3)
    expect(refused(limiter, quiet, 3)).toBe(true) // 999 others: still tracked
    for (let i = 0; i < 1_000; i++) refused(limiter, net(10_000 + i), 3)
    expect(refused(limiter, quiet, 3)).toBe(false)
  })

  it('a group whose window emptied is dropped before a live one', () => {
    const limiter = new IpLimiter(1_000)
    const later = T + 61_000
    refused(limiter, '198.51.100.11', 3) // its window is empty a minute on
    for (let i = 0; i < 3; i++) refused(limiter, '198.51.100.12', 3, later)
    for (let i = 0; i < 998; i++) refused(limiter, net(i), 3, later)
    expect(limiter.failures.size).toBe(1_000)
    refused(limiter, net(5_000), 3, later) // the table is full: one group must go
    expect(limiter.failures.size).toBe(1_000)
    expect(refused(limiter, '198.51.100.12', 3, later)).toBe(true)
  })
})
