import { hash, randomBytes, timingSafeEqual } from 'node:crypto'
import type { Clock } from './clock.js'
import { badRequest, GatewayError, unauthorized } from './errors.js'
import { newId } from './ids.js'
import type { Store } from './store.js'
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

  /** Replaces the view by these keys and their live secrets (read together from the store). */
  load(keyList: ApiKey[], liveSecrets: KeySecret[]): void {
    const keys = new Map(keyList.map((k) => [k.id, k]))
    const byPrefix = new Map<string, RingEntry[]>()
    for (const s of liveSecrets) {
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
    const key = this.find(presented, now)
    return key && isUsable(key, now) ? key : null
  }

  /**
   * Why a key that `find` gave (or null) is refused: the ring still holds the live secrets of
   * revoked and expired keys for this message alone; anything else is an unknown key.
   */
  refusal(key: ApiKey | null, now: number): GatewayError {
    if (key?.revokedAt != null) return unauthorized(`This key was revoked at ${new Date(key.revokedAt).toISOString()}`, 'key_revoked')
    if (key?.expiresAt != null && key.expiresAt <= now) return unauthorized(`This key expired at ${new Date(key.expiresAt).toISOString()}`, 'key_expired')
    return unauthorized('Invalid API key')
  }

  /** The key of a secret that is itself still valid (not rotated away), usable or not. */
  find(presented: string, now: number): ApiKey | null {
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
    return found.key
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
  /** When it stops working, from now or as epoch ms; both absent or null: never. */
  expiresInMs?: number | null
  expiresAt?: number | null
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
  if (name.startsWith(KEY_PREFIX)) throw badRequest(`Key name must not start with "${KEY_PREFIX}" (reserved for secrets and their prefixes)`, 'name')
}

const DISPLAY_PREFIX_PATTERN = /^gw-[A-Za-z0-9_-]{4}$/

function keyNotFound(message: string): GatewayError {
  return new GatewayError(404, 'not_found_error', 'key_not_found', message)
}

/** 409 for a name a live key has (the store raises it too when two writers race past the check). */
export function nameTaken(name: string): GatewayError {
  return new GatewayError(409, 'invalid_request_error', 'key_exists', `A key named "${name}" exists already (names are compared without regard to case)`, { param: 'name' })
}

/** A secret that still works for a while after a rotation. */
export interface LiveSecret {
  prefix: string
  /** Null for the current secret; the time a retiring one stops working. */
  expiresAt: number | null
}

/** Key management as the CLI (or an admin API) uses it. */
export class KeyManager {
  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
  ) {}

  async create(input: CreateKeyInput): Promise<CreatedKey> {
    checkName(input.name)
    await this.checkNameFree(input.name, null)
    const now = this.clock.now()
    const id = newId('key')
    const { key, secret } = generateSecret(id, now)
    await this.store.createKey(
      {
        id,
        name: input.name,
        admin: input.admin ?? false,
        createdAt: now,
        expiresAt: input.expiresAt ?? (input.expiresInMs != null ? now + input.expiresInMs : null),
        limits: input.limits ?? {},
        models: input.models ?? null,
      },
      secret,
    )
    return { key: await this.get(id), secret: key, prefix: secret.prefix }
  }

  /**
   * A key by id, by name (whatever its case; the live key before revoked ones of that name),
   * by display prefix (`gw-AbC1`) or by its whole secret (found by hash, never echoed).
   */
  async get(ref: string): Promise<ApiKey> {
    const key = await this.store.findKey(ref)
    if (key) return key
    if (isWellFormedKey(ref)) {
      const [secret] = await this.store.findSecrets({ hash: hashKey(ref) })
      const owner = secret && (await this.store.findKey(secret.keyId))
      if (!owner) throw keyNotFound(`No key has this secret (${displayPrefix(ref)}…)`)
      return owner
    }
    if (DISPLAY_PREFIX_PATTERN.test(ref)) {
      const ids = [...new Set((await this.store.findSecrets({ prefix: ref })).map((s) => s.keyId))]
      if (ids.length > 1) {
        throw new GatewayError(409, 'invalid_request_error', 'ambiguous_prefix', `Prefix ${ref} belongs to ${ids.length} keys (${ids.join(', ')}): name one by id`)
      }
      const owner = ids.length === 1 ? await this.store.findKey(ids[0]) : undefined
      if (owner) return owner
    }
    throw keyNotFound(`No key with id, name or prefix "${ref}"`)
  }

  private async checkNameFree(name: string, keyId: string | null): Promise<void> {
    const holder = await this.store.findKey(name)
    if (holder && holder.revokedAt === null && holder.id !== keyId) throw nameTaken(holder.name)
  }

  list(): Promise<ApiKey[]> {
    return this.store.listKeys()
  }

  /** The key's secrets that still work, newest first, with when a retiring one stops. */
  async liveSecrets(keyId: string): Promise<LiveSecret[]> {
    return (await this.liveSecretsByKey()).get(keyId) ?? []
  }

  /** Every key's working secrets (display prefix, and when a retiring one stops), newest first, from one read. */
  async liveSecretsByKey(): Promise<Map<string, LiveSecret[]>> {
    const byKey = new Map<string, LiveSecret[]>()
    const live = (await this.store.listLiveSecrets(this.clock.now())).sort((a, b) => b.createdAt - a.createdAt)
    for (const s of live) {
      const secret = { prefix: s.prefix, expiresAt: s.expiresAt }
      const list = byKey.get(s.keyId)
      if (list) list.push(secret)
      else byKey.set(s.keyId, [secret])
    }
    return byKey
  }

  async revoke(idOrName: string): Promise<ApiKey> {
    const key = await this.get(idOrName)
    if (key.revokedAt === null) await this.store.revokeKey(key.id, this.clock.now())
    return this.get(key.id)
  }

  /** Removes a key for good; its request-log rows keep its id and name. */
  async delete(ref: string): Promise<ApiKey> {
    const key = await this.get(ref)
    await this.store.deleteKey(key.id)
    return key
  }

  /**
   * New secret, same key (limits, usage, name); the old secret stops after `graceMs`. With no
   * grace given while an earlier rotation's secret still works, it refuses rather than end
   * that grace period unasked.
   */
  async rotate(ref: string, graceMs?: number): Promise<CreatedKey & { oldSecretExpiresAt: number }> {
    const key = await this.get(ref)
    if (key.revokedAt !== null) {
      throw badRequest(`Key "${key.name}" is revoked and cannot get a new secret; its name is free: create a new key with it (gateway keys create --name NAME)`, 'key')
    }
    const retiring = (await this.liveSecrets(key.id)).find((s) => s.expiresAt !== null)
    if (graceMs === undefined && retiring) {
      throw new GatewayError(
        409,
        'invalid_request_error',
        'rotation_in_grace',
        `Key "${key.name}" has a secret from an earlier rotation (${retiring.prefix}…) that works until ${new Date(retiring.expiresAt!).toISOString()}; pass --grace: 0s ends it now, a duration (e.g. 1h) keeps both old secrets that long at most`,
        { param: 'grace' },
      )
    }
    graceMs ??= 0
    const now = this.clock.now()
    const { key: secretText, secret } = generateSecret(key.id, now)
    await this.store.rotateSecret(key.id, secret, now + graceMs)
    return { key, secret: secretText, prefix: secret.prefix, oldSecretExpiresAt: now + graceMs }
  }

  /** Fields left undefined stay as they are; an expiry of null means never. */
  async update(
    ref: string,
    patch: { name?: string; admin?: boolean; limits?: LimitOverrides; models?: string[] | null; expiresAt?: number | null; expiresInMs?: number | null },
  ): Promise<ApiKey> {
    const key = await this.get(ref)
    if (patch.name !== undefined) {
      checkName(patch.name)
      await this.checkNameFree(patch.name, key.id)
    }
    const { expiresInMs, ...rest } = patch
    await this.store.updateKey(key.id, { ...rest, expiresAt: expiresInMs == null ? (expiresInMs === null ? null : patch.expiresAt) : this.clock.now() + expiresInMs })
    return this.get(key.id)
  }
}
