import type { Context, Next } from 'hono'
import { limiterUnavailable } from '../../core/errors.js'
import type { AppEnv, AppServices } from '../env.js'

/**
 * `GET /health`: unauthenticated and cheap (one store read), for load balancers; 503
 * `limiter_unavailable` while the limits' Redis is out of reach. With
 * `?deep=1` it passes on to `deepHealth`, which sits behind the key check and needs an admin.
 */
export function shallowHealth({ gateway }: AppServices) {
  return function health(c: Context<AppEnv>, next: Next) {
    if (c.req.query('deep') !== undefined) return next()
    c.get('record').awaitRow = false // answers while another process holds the write lock
    gateway.refresh() // touches the store: a broken database makes this fail
    if (!gateway.limiter.state().ok) throw limiterUnavailable() // every chat request would get the same 503: take this one out of rotation
    return c.json({ status: 'ok' })
  }
}

/** The store's, the upstreams' and the limiter's state: `degraded` while the (first) upstream's last call failed, an upstream is in cooldown, or Redis is out of reach. */
export function deepHealth({ gateway, upstreamState }: AppServices) {
  return function health(c: Context<AppEnv>) {
    const started = performance.now()
    gateway.refresh() // a store read; throws (500) when the database is broken
    const store = { ok: true, ms: Math.round((performance.now() - started) * 100) / 100 }
    const upstream = upstreamState()
    const failing = upstream.lastFailure !== null && (upstream.lastSuccessAt === null || upstream.lastFailure.at > upstream.lastSuccessAt)
    const cooling = upstream.upstreams.some((u) => u.state !== 'closed')
    const limiter = gateway.limiter.state()
    return c.json({ status: failing || cooling || !limiter.ok ? 'degraded' : 'ok', store, upstream, limiter })
  }
}
