import { rateLimited, type GatewayError } from './errors.js'
import { SlidingWindow } from './sliding-window.js'

/** Address groups each table tracks at most; past it the least recently seen group is dropped. */
export const IP_TABLE_CAPACITY = 10_000

/**
 * The group a client address is limited as: an IPv4 address is itself (also when written
 * IPv4-mapped, `::ffff:1.2.3.4`), an IPv6 address its /64, since one host is usually given a
 * whole /64 and could otherwise rotate through it. Anything unparsable is its own group.
 */
export function addressGroup(ip: string): string {
  if (!ip.includes(':')) return ip
  const h = hextets(ip)
  if (h === null) return ip
  if (h[0] === 0 && h[1] === 0 && h[2] === 0 && h[3] === 0 && h[4] === 0 && h[5] === 0xffff) {
    return `${h[6] >> 8}.${h[6] & 255}.${h[7] >> 8}.${h[7] & 255}`
  }
  return `${h[0].toString(16)}:${h[1].toString(16)}:${h[2].toString(16)}:${h[3].toString(16)}::/64`
}

/** The eight 16-bit groups of an IPv6 address (zone dropped, a trailing IPv4 read as two), or null. */
function hextets(ip: string): number[] | null {
  let text = ip.toLowerCase().replace(/%.*$/, '')
  if (text.includes('.')) {
    const at = text.lastIndexOf(':') + 1
    const octets = text.slice(at).split('.')
    if (octets.length !== 4 || !octets.every((o) => /^\d{1,3}$/.test(o) && Number(o) <= 255)) return null
    const [a, b, c, d] = octets.map(Number)
    text = `${text.slice(0, at)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const halves = text.split('::')
  if (halves.length > 2) return null
  const head = halves[0] === '' ? [] : halves[0].split(':')
  const tail = halves.length === 2 && halves[1] !== '' ? halves[1].split(':') : []
  const gap = halves.length === 2 ? 8 - head.length - tail.length : 0
  if (halves.length === 2 && gap < 1) return null
  const parts = [...head, ...Array<string>(gap).fill('0'), ...tail]
  if (parts.length !== 8 || !parts.every((p) => /^[0-9a-f]{1,4}$/.test(p))) return null
  return parts.map((p) => parseInt(p, 16))
}

/**
 * Sliding windows per address group, at most `capacity` of them. Map order is recency (a
 * group is moved to the end each time it is seen), so making room drops the least recently
 * seen group in O(1). A group not seen for a minute has an empty window, so nothing is lost
 * while fewer than `capacity` groups were seen in the last minute; past that, the dropped
 * group starts afresh (see docs/guarantees.md for what that gives an attacker).
 */
export class AddressWindows {
  private readonly table = new Map<string, SlidingWindow>()

  constructor(private readonly capacity = IP_TABLE_CAPACITY) {}

  get size(): number {
    return this.table.size
  }

  of(group: string): SlidingWindow {
    let w = this.table.get(group)
    if (w) {
      this.table.delete(group)
    } else {
      if (this.table.size >= this.capacity) this.table.delete(this.table.keys().next().value!)
      w = new SlidingWindow()
    }
    this.table.set(group, w)
    return w
  }
}

export function addressRefusal(limit: number, waitMs: number): GatewayError {
  return rateLimited(`Too many requests from this address (limit ${limit} per minute)`, 'ip_rate_limit_exceeded', waitMs)
}

export function authFailureRefusal(waitMs: number): GatewayError {
  return rateLimited('Too many failed authentication attempts from this address', 'auth_rate_limit_exceeded', waitMs)
}

/** The per-address limits: requests per minute (optional) and failed authentications per minute. */
export class IpLimiter {
  readonly requests: AddressWindows
  readonly failures: AddressWindows

  constructor(capacity = IP_TABLE_CAPACITY) {
    this.requests = new AddressWindows(capacity)
    this.failures = new AddressWindows(capacity)
  }

  /** Counts a request from `ip`; throws 429 past `limit` a minute (null: no limit). */
  admitRequest(ip: string, limit: number | null, now: number): void {
    if (limit === null) return
    const window = this.requests.of(addressGroup(ip))
    if (window.admit(now, 1, limit) < 0) {
      throw addressRefusal(limit, window.waitFor(now, 1, limit))
    }
  }

  /** Counts a failed authentication from `ip`; throws 429 past `limit` a minute (null: no limit). */
  countFailure(ip: string, limit: number | null, now: number): void {
    if (limit === null) return
    const window = this.failures.of(addressGroup(ip))
    if (window.admit(now, 1, limit) < 0) {
      throw authFailureRefusal(window.waitFor(now, 1, limit))
    }
  }
}
