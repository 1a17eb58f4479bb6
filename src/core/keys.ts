import { hash, randomBytes, timingSafeEqual } from 'node:crypto'
import type { Clock } from './clock.js'
import { badRequest, GatewayError } from './errors.js'
import { newId } from './ids.js'
import type { Store } from '../storage/store.js'
import type { ApiKey, KeySecret, LimitOverrides } from './types.js'

export const KEY_PREFIX = 'gw-'
/** `gw-` + 43 base64url characters = 256 random bits. */
const KEY_PATTERN = /^gw-[A-Za-z0-9_-]{43}$/
/**
 * The stored, displayable prefix: `gw-` and 4 characters of the secret. Kept under eight
 * characters in all so that nothing stored or shown holds an 8-character piece of a key.
 */
const DISPLAY_PREFIX_LENGTH = 7

export function hashKey(key: string): string {
  return hash('sha256', key, 'hex')
}

export function displayPrefix(key: string): string {
  return key.slice(0, DISPLAY_PREFIX_LENGTH)
}

export function isWellFormedKey(key: string): boolean {
  return KEY_PATTERN.test(key)
}

function generateSecret(keyId: string, createdAt: number): { key: string; secret: KeySecret } {
  const key = KEY_PREFIX + randomBytes(32).toString('base64url')
  return {
    key,
    secret: { id: newId('sec'), keyId, prefix: displayPrefix(key), hash: hashKey(key), createdAt, expiresAt: null },
  }
}

interface RingEntry {
  hash: Buffer
  expiresAt: number | null
  key: ApiKey
}

/**
 * The server's in-memory view of keys, rebuilt from the store when it changes. Lookup goes
 * by the public prefix, then compares SHA-256 digests in constant time.
 */
export class KeyRing {
  private byPrefix = new Map<string, RingEntry[]>()

  load(store: Store, now: number): void {
    const keys = new Map(store.listKeys().map((k) => [k.id, k]))
    const byPrefix = new Map<string, RingEntry[]>()
    for (const s of store.listLiveSecrets(now)) {
      const key = keys.get(s.keyId)
      if (!key) continue
      const entries = byPrefix.get(s.prefix) ?? []
      entries.push({ hash: Buffer.from(s.hash, 'hex'), expiresAt: s.expiresAt, key })
      byPrefix.set(s.prefix, entries)
    }
    this.byPrefix = byPrefix
  }

  /** The key a presented secret belongs to, if it may be used now; otherwise null. */
  authenticate(presented: string, now: number): ApiKey | null {
    if (!isWellFormedKey(presented)) return null
    const entries = this.byPrefix.get(displayPrefix(presented))
    if (!entries) return null
    const digest = hash('sha256', presented, 'buffer') as unknown as Buffer // one-shot: no Hash object per request
    let found: RingEntry | null = null
    for (const entry of entries) {
      if (timingSafeEqual(entry.hash, digest)) found = entry
    }
    if (!found) return null
    if (found.expiresAt !== null && found.expiresAt <= now) return null
    return isUsable(found.key, now) ? found.key : null
  }
}

export function isUsable(key: ApiKey, now: number): boolean {
  return key.revokedAt === null && (key.expiresAt === null || key.expiresAt > now)
}

export function keyStatus(key: ApiKey, now: number): 'active' | 'revoked' | 'expired' {
  if (key.revokedAt !== null) return 'revoked'
  if (key.expiresAt !== null && key.expiresAt <= now) return 'expired'
  return 'active'
}

export interface CreateKeyInput {
  name: string
  admin?: boolean
  expiresInMs?: number | null
  limits?: LimitOverrides
  models?: string[] | null
}

export interface CreatedKey {
  key: ApiKey
  /** The whole secret; shown once, never stored. */
  secret: string
  prefix: string
}

const NAME_MAX = 200

function checkName(name: string): void {
  if (name.trim().length === 0 || name.length > NAME_MAX) {
    throw badRequest(`Key name must be 1 to ${NAME_MAX} characters`, 'name')
  }
  if (name.startsWith('key_')) throw badRequest('Key name must not start with "key_" (reserved for ids)', 'name')
}

/** Key management as the CLI (or an admin API) uses it. */
export class KeyManager {
  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
  ) {}

  create(input: CreateKeyInput): CreatedKey {
    checkName(input.name)
    if (this.store.findKey(input.name)) {
      throw new GatewayError(409, 'invalid_request_error', 'key_exists', `A key named "${input.name}" exists already`)
    }
    const now = this.clock.now()
    const id = newId('key')
    const { key, secret } = generateSecret(id, now)
    this.store.createKey(
      {
        id,
        name: input.name,
        admin: input.admin ?? false,
        createdAt: now,
        expiresAt: input.expiresInMs != null ? now + input.expiresInMs : null,
        limits: input.limits ?? {},
        models: input.models ?? null,
      },
      secret,
    )
    return { key: this.get(id), secret: key, prefix: secret.prefix }
  }

  get(idOrName: string): ApiKey {
    const key = this.store.findKey(idOrName)
    if (!key) throw new GatewayError(404, 'not_found_error', 'key_not_found', `No key with id or name "${idOrName}"`)
    return key
  }

  list(): ApiKey[] {
    return this.store.listKeys()
  }

  /** Display prefixes of the key's secrets that still work, newest first. */
  prefixes(keyId: string): string[] {
    return this.prefixesByKey().get(keyId) ?? []
  }

  /** Every key's live display prefixes, newest first, from one read of the secrets. */
  prefixesByKey(): Map<string, string[]> {
    const byKey = new Map<string, string[]>()
    const live = this.store.listLiveSecrets(this.clock.now()).sort((a, b) => b.createdAt - a.createdAt)
    for (const s of live) {
      const list = byKey.get(s.keyId)
      if (list) list.push(s.prefix)
      else byKey.set(s.keyId, [s.prefix])
    }
    return byKey
  }

  revoke(idOrName: string): ApiKey {
    const key = this.get(idOrName)
    if (key.revokedAt === null) this.store.revokeKey(key.id, this.clock.now())
    return this.get(key.id)
  }

  /** New secret, same key (limits, usage, name); the old secret stops after `graceMs`. */
  rotate(idOrName: string, graceMs = 0): CreatedKey & { oldSecretExpiresAt: number } {
    const key = this.get(idOrName)
    if (key.revokedAt !== null) throw badRequest(`Key "${key.name}" is revoked; create a new one`, 'key')
    const now = this.clock.now()
    const { key: secretText, secret } = generateSecret(key.id, now)
    this.store.rotateSecret(key.id, secret, now + graceMs)
    return { key, secret: secretText, prefix: secret.prefix, oldSecretExpiresAt: now + graceMs }
  }

  update(idOrName: string, patch: { limits?: LimitOverrides; models?: string[] | null; expiresInMs?: number | null }): ApiKey {
    const key = this.get(idOrName)
    this.store.updateKey(key.id, {
      limits: patch.limits,
      models: patch.models,
      expiresAt: patch.expiresInMs === undefined ? undefined : patch.expiresInMs === null ? null : this.clock.now() + patch.expiresInMs,
    })
    return this.get(key.id)
  }
}
