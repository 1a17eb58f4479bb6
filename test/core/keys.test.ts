import { describe, expect, it } from 'vitest'
import { manualClock } from '../../src/core/clock.js'
import { GatewayError } from '../../src/core/errors.js'
import { displayPrefix, hashKey, KeyManager, KeyRing } from '../../src/core/keys.js'
import { resolveKeyLimits } from '../../src/core/limits.js'
import { SqliteStore } from '../../src/storage/sqlite/sqlite-store.js'

describe('keys', () => {
  it('stores only a hash and a 7-character prefix; the secret has 256 random bits', async () => {
    const store = SqliteStore.open(':memory:')
    const created = await new KeyManager(store, manualClock()).create({ name: 'alice' })
    expect(created.secret).toMatch(/^gw-[A-Za-z0-9_-]{43}$/)
    const [secret] = await store.listLiveSecrets(Date.now())
    expect(secret.hash).toBe(hashKey(created.secret))
    expect(secret.prefix).toBe(displayPrefix(created.secret))
    expect(secret.prefix).toHaveLength(7)
    expect(JSON.stringify(await store.listKeys())).not.toContain(created.secret.slice(3, 11))
  })

  it('authenticates, and stops authenticating revoked, expired and rotated-away secrets', async () => {
    const store = SqliteStore.open(':memory:')
    const clock = manualClock()
    const manager = new KeyManager(store, clock)
    const ring = new KeyRing()
    const a = await manager.create({ name: 'a' })
    const b = await manager.create({ name: 'b', expiresInMs: 1_000 })
    ring.load(await store.listKeys(), await store.listLiveSecrets(clock.now()))
    expect(ring.authenticate(a.secret, clock.now())?.name).toBe('a')
    expect(ring.authenticate(b.secret, clock.now())?.name).toBe('b')
    expect(ring.authenticate(a.secret.slice(0, -1) + 'x', clock.now())).toBeNull()
    clock.advance(1_000)
    expect(ring.authenticate(b.secret, clock.now())).toBeNull()
    const rotated = await manager.rotate('a', 500)
    ring.load(await store.listKeys(), await store.listLiveSecrets(clock.now()))
    expect(ring.authenticate(a.secret, clock.now())?.name).toBe('a')
    expect(ring.authenticate(rotated.secret, clock.now())?.name).toBe('a')
    clock.advance(500)
    expect(ring.authenticate(a.secret, clock.now())).toBeNull()
    await manager.revoke('a')
    ring.load(await store.listKeys(), await store.listLiveSecrets(clock.now()))
    expect(ring.authenticate(rotated.secret, clock.now())).toBeNull()
  })

  it('refuses duplicate and reserved names', async () => {
    const manager = new KeyManager(SqliteStore.open(':memory:'), manualClock())
    await manager.create({ name: 'dup' })
    await expect(manager.create({ name: 'dup' })).rejects.toThrow(GatewayError)
    await expect(manager.create({ name: 'key_x' })).rejects.toThrow(/reserved/)
    await expect(manager.create({ name: '  ' })).rejects.toThrow(/1 to 200/)
  })
})

describe('limits', () => {
  it('resolve key over default over built-in, with their sources', () => {
    const { limits, sources } = resolveKeyLimits({ rpm: 60, tpm: null }, { rpm: 5 })
    expect(limits).toMatchObject({ rpm: 5, tpm: null, dailyTokens: 50_000 })
    expect(sources).toMatchObject({ rpm: 'key', tpm: 'default', dailyTokens: 'built-in' })
  })
})

describe('key names', () => {
  it('two writers racing past the name check: the store answers the second with 409 key_exists, not a raw SQLite error', async () => {
    const store = SqliteStore.open(':memory:')
    const key = (id: string, name: string) => ({ id, name, admin: false, createdAt: 1, expiresAt: null, limits: {}, models: null })
    const secret = (id: string, keyId: string) => ({ id, keyId, prefix: 'gw-AAAA', hash: id, createdAt: 1, expiresAt: null })
    await store.createKey(key('key_1', 'Erin'), secret('s1', 'key_1'))
    const second = (async () => {
      try {
        await store.createKey(key('key_2', 'ERIN'), secret('s2', 'key_2'))
      } catch (err) {
        return err
      }
    })()
    expect(await second).toBeInstanceOf(GatewayError)
    expect(await second).toMatchObject({ status: 409, code: 'key_exists' })
    await store.revokeKey('key_1', 2)
    await store.createKey(key('key_3', 'erin'), secret('s3', 'key_3')) // a revoked key's name is free
    expect((await store.findKey('ERIN'))?.id).toBe('key_3')
  })

  it('the ring tells a revoked or expired key from an unknown one, and still never lets either in', async () => {
    const store = SqliteStore.open(':memory:')
    const clock = manualClock()
    const manager = new KeyManager(store, clock)
    const ring = new KeyRing()
    const revoked = await manager.create({ name: 'r' })
    const expired = await manager.create({ name: 'e', expiresInMs: 1_000 })
    await manager.revoke('r')
    clock.advance(1_000)
    ring.load(await store.listKeys(), await store.listLiveSecrets(clock.now()))
    expect(ring.authenticate(revoked.secret, clock.now())).toBeNull()
    expect(ring.authenticate(expired.secret, clock.now())).toBeNull()
    expect(ring.refusal(ring.find(revoked.secret, clock.now()), clock.now())).toMatchObject({ status: 401, code: 'key_revoked' })
    expect(ring.refusal(ring.find(expired.secret, clock.now()), clock.now())).toMatchObject({ status: 401, code: 'key_expired', message: 'This key expired at 2026-01-01T00:00:01.000Z' })
    expect(ring.refusal(ring.find(`gw-${'C'.repeat(43)}`, clock.now()), clock.now())).toMatchObject({ status: 401, code: 'invalid_api_key' })
  })
})
