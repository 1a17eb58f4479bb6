import { Hono, type Context } from 'hono'
import { GatewayError, notFound } from '../core/errors.js'
import type { Clock } from '../core/clock.js'
import type { AppEnv, AppServices } from './env.js'
import { requestContext } from './middleware/request-context.js'
import { requireAdmin, requireKey } from './middleware/auth.js'
import { chatRoutes } from './routes/chat.js'
import { completionRoutes } from './routes/completions.js'
import { modelRoutes } from './routes/models.js'
import { usageRoutes } from './routes/usage.js'

export interface CreateAppOptions extends AppServices {
  clock: Clock
  /** Model of the seed's /chat route. */
  model: string
}

/**
 * The whole HTTP surface over the core. Every route but /health needs a key, unknown paths
 * included (so no path variant reaches a handler unauthenticated); errors become OpenAI's
 * error shape in `onError` only.
 */
export function createApp(services: CreateAppOptions): Hono<AppEnv> {
  const { gateway, metrics, options } = services
  const app = new Hono<AppEnv>()
  app.use('*', requestContext(services))
  app.get('/health', (c) => {
    c.get('record').awaitRow = false
    gateway.refresh() // touches the store: a broken database makes this fail
    return c.json({ status: 'ok' })
  })
  const serveMetrics = async (c: Context<AppEnv>) => c.text(await metrics.registry.metrics(), 200, { 'content-type': metrics.registry.contentType })
  if (options.metricsPublic) app.get('/metrics', serveMetrics)
  app.use('*', requireKey(gateway))
  app.get('/metrics', requireAdmin(), serveMetrics)
  app.route('/', chatRoutes(services, services.model))
  app.route('/', completionRoutes(services))
  app.route('/', modelRoutes(services))
  app.route('/', usageRoutes(services, () => services.clock.now()))
  const respond = (c: Context<AppEnv>, e: GatewayError) => {
    c.get('record').errorCode = e.code
    return c.json(e.toJSON(), e.status as 400, e.headers)
  }
  app.notFound((c) => respond(c, notFound('No route for this method and path')))
  app.onError((err, c) => {
    if (err instanceof GatewayError) return respond(c, err)
    services.onUnexpected(err)
    return respond(c, new GatewayError(500, 'server_error', 'internal_error', 'The gateway failed to handle the request'))
  })
  return app
}
