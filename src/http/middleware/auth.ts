import type { MiddlewareHandler } from 'hono'
import { badRequest, forbidden } from '../../core/errors.js'
import { H } from '../../core/headers.js'
import type { Gateway } from '../../core/gateway.js'
import type { AppEnv } from '../env.js'

/** The key a request presents: `Authorization: Bearer KEY` or `X-API-Key: KEY`; null if none. */
export function presentedKey(authorization: string | undefined, apiKey: string | undefined): string | null {
  let bearer: string | null = null
  if (authorization !== undefined) {
    const m = /^\s*bearer\s+(\S*)\s*$/i.exec(authorization)
    bearer = m && m[1].length > 0 ? m[1] : ''
  }
  const header = apiKey === undefined ? null : apiKey.trim()
  if (bearer !== null && header !== null && bearer !== header) {
    throw badRequest('Authorization and X-API-Key carry different keys; send one', null, 'conflicting_credentials')
  }
  return bearer ?? header
}

/** Every route behind it needs a valid key; the record learns whose request it is. */
export function requireKey(gateway: Gateway): MiddlewareHandler<AppEnv> {
  return async function authMiddleware(c, next) {
    const record = c.get('record')
    await gateway.checkIp(record.ip)
    const presented = presentedKey(c.req.header(H.authorization), c.req.header(H.apiKey))
    const key = await gateway.authenticate(presented === '' ? null : presented, record.ip)
    record.key = key
    c.set('key', key)
    await next()
  }
}

export function requireAdmin(): MiddlewareHandler<AppEnv> {
  return async function adminMiddleware(c, next) {
    if (!c.get('key').admin) throw forbidden('This route needs an admin key', 'admin_required')
    await next()
  }
}
