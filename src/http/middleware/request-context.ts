import type { MiddlewareHandler } from 'hono'
import { H } from '../../core/headers.js'
import { newRequestId } from '../../core/ids.js'
import type { AppEnv, AppServices } from '../env.js'

const CLIENT_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

export function clientIp(c: Parameters<MiddlewareHandler<AppEnv>>[0], trustProxy: boolean): string {
  if (trustProxy) {
    // The proxy appends the address it saw; the last entry is the one a client cannot forge.
    const forwarded = c.req.header(H.forwardedFor)?.split(',').pop()?.trim()
    if (forwarded && /^[0-9A-Fa-f:.]{2,45}$/.test(forwarded)) return forwarded
  }
  return c.env?.incoming?.socket?.remoteAddress ?? 'unknown'
}

/**
 * Gives each request its id (the client's, if well-formed), its record, and its one log row.
 * A streamed response writes its row itself before its last byte; everything else is written
 * here before the response leaves, so a client never sees an answer that was not logged.
 */
export function requestContext(services: AppServices): MiddlewareHandler<AppEnv> {
  const { gateway, options } = services
  return async function requestContextMiddleware(c, next) {
    const sent = c.req.header(H.requestId)
    const requestId = sent !== undefined && CLIENT_REQUEST_ID.test(sent) ? sent : newRequestId()
    const userAgent = c.req.header(H.userAgent)?.slice(0, 512) ?? null
    const record = gateway.newRecord(requestId, clientIp(c, options.trustProxy), c.req.method, c.req.path.slice(0, 256), userAgent)
    c.set('record', record)
    // Set before the response exists (c.json and onError take it from here; routes that
    // build a Response add it themselves): changing headers afterwards costs a slow path.
    c.header(H.requestId, requestId)
    await next()
    if (record.deferred) return
    const logged = gateway.log(record, c.res.status)
    if (record.awaitRow) await logged
    else logged.catch(services.onUnexpected)
  }
}
