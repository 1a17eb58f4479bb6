import type { Context, Next } from 'hono'
import { limiterUnavailable } from '../../core/errors.js'
import type { AppEnv, AppServices } from '../env.js'

/**
 * `GET /health`: unauthenticated and cheap (one store read), for load balancers; 503
 * `limiter_unavailable` while the limits' Redis is out of reach. With
 * `?deep=1` it passes on to `deepHealth`, which sits behind the key check and needs an admin.
 */
export function shallowHealth({ gateway, spoolState }: AppServices) {
  return async function health(c: Context<AppEnv>, next: Next) {
    if (c.req.query('deep') !== undefined) return next()
    c.get('record').awaitRow = false // answers while another process holds the write lock
    const spool = spoolState()
    // Rows waiting in the spool: the database is (or was just) unreachable; requests are still served.
    if (spool && spool.rows > 0) return c.json({ status: 'degraded', spool })
    await gateway.refresh() // touches the store: a broken database makes this fail
    if (!gateway.limiter.state().ok) throw limiterUnavailable() // every chat request would get the same 503: take this one out of rotation
    return c.json({ status: 'ok' })
  }
}

/** The store's, the upstreams' and the limiter's state: `degraded` while the (first) upstream's last call failed, an upstream is in cooldown, log rows wait in the spool, or Redis is out of reach. */
export function deepHealth({ gateway, upstreamState, spoolState }: AppServices) {
  return async function health(c: Context<AppEnv>) {
    const started = performance.now()
    await gateway.refresh() // a store read; throws (500) when the database is broken
    const spool = spoolState()
    const spooling = spool !== null && spool.rows > 0
    const store = { ok: !spooling, ms: Math.round((performance.now() - started) * 100) / 100, ...(spool ? { spool } : {}) }
    const upstream = upstreamState()
    const failing = upstream.lastFailure !== null && (upstream.lastSuccessAt === null || upstream.lastFailure.at > upstream.lastSuccessAt)
    const cooling = upstream.upstreams.some((u) => u.state !== 'closed')
    const limiter = gateway.limiter.state()
    return c.json({ status: failing || cooling || spooling || !limiter.ok ? 'degraded' : 'ok', store, upstream, limiter })
  }
}
