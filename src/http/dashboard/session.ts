import { hash, randomBytes, timingSafeEqual } from 'node:crypto'
import type { Clock } from '../../core/clock.js'

export const SESSION_COOKIE = 'gw_dashboard'
/** A session ends after this long unused, and after this long whatever happens. */
export const SESSION_IDLE_MS = 30 * 60_000
export const SESSION_ABSOLUTE_MS = 12 * 3_600_000

export interface Session {
  keyId: string
  /** The per-session token every POST form carries. */
  csrf: string
  createdAt: number
  seenAt: number
}

const digest = (text: string) => hash('sha256', text, 'buffer') as unknown as Buffer

/** Equal strings, compared in constant time (over their digests, so lengths may differ). */
export function sameToken(a: string, b: string): boolean {
  return timingSafeEqual(digest(a), digest(b))
}

/**
 * Dashboard sessions, in memory: a restart logs everyone out. The map is keyed by the id's
 * digest, so not even the server's heap holds a usable cookie value.
 */
export class Sessions {
  private readonly byDigest = new Map<string, Session>()

  constructor(private readonly clock: Clock) {}

  create(keyId: string): { id: string; session: Session } {
    this.sweep()
    const id = randomBytes(32).toString('base64url')
    const now = this.clock.now()
    const session = { keyId, csrf: randomBytes(32).toString('base64url'), createdAt: now, seenAt: now }
    this.byDigest.set(digest(id).toString('hex'), session)
    return { id, session }
  }

  /** The live session of a cookie value, touched; null (and forgotten) once expired. */
  get(id: string | undefined): Session | null {
    if (!id) return null
    const k = digest(id).toString('hex')
    const s = this.byDigest.get(k)
    if (!s) return null
    const now = this.clock.now()
    if (now - s.seenAt > SESSION_IDLE_MS || now - s.createdAt > SESSION_ABSOLUTE_MS) {
      this.byDigest.delete(k)
      return null
    }
    s.seenAt = now
    return s
  }

  end(id: string | undefined): void {
    if (id) this.byDigest.delete(digest(id).toString('hex'))
  }

  /** Drops expired sessions, so abandoned logins do not pile up. */
  private sweep(): void {
    const now = this.clock.now()
    for (const [k, s] of this.byDigest) if (now - s.seenAt > SESSION_IDLE_MS || now - s.createdAt > SESSION_ABSOLUTE_MS) this.byDigest.delete(k)
  }
}
