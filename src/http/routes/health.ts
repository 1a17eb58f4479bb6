import type { Context, Next } from 'hono'
import type { AppEnv, AppServices } from '../env.js'

/**
 * `GET /health`: unauthenticated and cheap (one store read), for load balancers. With
 * `?deep=1` it passes on to `deepHealth`, which sits behind the key check and needs an admin.
 */
export function shallowHealth({ gateway }: AppServices) {
  return async function health(c: Context<AppEnv>, next: Next) {
    if (c.req.query('deep') !== undefined) return next()
    c.get('record').awaitRow = false // answers while another process holds the write lock
    await gateway.refresh() // touches the store: a broken database makes this fail
    return c.json({ status: 'ok' })
  }
}

/** The store's and the upstream's state: `degraded` while the upstream's last call failed. */
export function deepHealth({ gateway, upstreamState }: AppServices) {
  return async function health(c: Context<AppEnv>) {
    const started = performance.now()
    await gateway.refresh() // a store read; throws (500) when the database is broken
    const store = { ok: true, ms: Math.round((performance.now() - started) * 100) / 100 }
    const upstream = upstreamState()
    const failing = upstream.lastFailure !== null && (upstream.lastSuccessAt === null || upstream.lastFailure.at > upstream.lastSuccessAt)
    return c.json({ status: failing ? 'degraded' : 'ok', store, upstream })
  }
}
