import { Hono, type Context } from 'hono'
import { GatewayError, methodNotAllowed, notFound } from '../core/errors.js'
import type { Clock } from '../core/clock.js'
import type { AppEnv, AppServices } from './env.js'
import { requestContext } from './middleware/request-context.js'
import { requireAdmin, requireKey } from './middleware/auth.js'
import { routeTable, type RouteTable } from './route-table.js'
import { chatRoutes } from './routes/chat.js'
import { deepHealth, shallowHealth } from './routes/health.js'
import { completionRoutes } from './routes/completions.js'
import { modelRoutes } from './routes/models.js'
import { usageRoutes } from './routes/usage.js'
import type { DashboardServices } from './dashboard/routes.js'

export interface CreateAppOptions extends AppServices {
  clock: Clock
  /** Model of the seed's /chat route. */
  model: string
  /** The browser dashboard's parts, or null when it is off. */
  dashboard: DashboardServices | null
}

/**
 * The whole HTTP surface over the core. Every route but /health needs a key, unknown paths
 * and wrong methods included (so no path variant reaches a handler unauthenticated, and a
 * 405 or a 404 listing the routes is for key holders only); errors become OpenAI's error
 * shape in `onError` only. OPTIONS is answered without a key, with `Allow` and no CORS
 * headers: CORS is off, browsers cannot call the gateway directly.
 */
export function createApp(services: CreateAppOptions): Hono<AppEnv> {
  const { gateway, metrics, options } = services
  const app = new Hono<AppEnv>()
  const respond = (c: Context<AppEnv>, e: GatewayError) => {
    c.get('record').errorCode = e.code
    return c.json(e.toJSON(), e.status as 400, e.headers)
  }
  const dashboardServices = services.dashboard
  if (dashboardServices) {
    // Before the request context and the key check: the dashboard has its own session login,
    // and its page views are not API traffic (not logged, not counted in usage). Its code is
    // loaded on the first visit: a gateway nobody browses does not hold it in memory.
    let dashboard: ReturnType<typeof loadDashboard> | null = null
    const toDashboard = async (c: Context<AppEnv>) => {
      dashboard ??= loadDashboard(dashboardServices)
      return (await dashboard).fetch(c.req.raw, c.env)
    }
    app.all('/dashboard', toDashboard)
    app.all('/dashboard/*', toDashboard)
  }
  app.use('*', requestContext(services))
  let table: RouteTable | null = null // read from app.routes once every route is in
  const routes = () => (table ??= routeTable(app.routes))
  app.options('*', (c) => {
    const allowed = routes().allowed(c.req.path)
    if (allowed.length === 0) return respond(c, notFound(`No route ${c.req.path.slice(0, 256)}`))
    return c.body(null, 204, { allow: [...allowed, 'OPTIONS'].join(', ') })
  })
  app.get('/health', shallowHealth(services))
  const serveMetrics = async (c: Context<AppEnv>) => c.text(await metrics.registry.metrics(), 200, { 'content-type': metrics.registry.contentType })
  if (options.metricsPublic) app.get('/metrics', serveMetrics)
  app.use('*', requireKey(gateway))
  app.get('/metrics', requireAdmin(), serveMetrics)
  app.get('/health', requireAdmin(), deepHealth(services))
  app.route('/', chatRoutes(services, services.model))
  app.route('/', completionRoutes(services))
  app.route('/', modelRoutes(services))
  app.route('/', usageRoutes(services, () => services.clock.now()))
  app.notFound((c) => {
    const path = c.req.path.slice(0, 256)
    const allowed = routes().allowed(c.req.path)
    if (allowed.length > 0) return respond(c, methodNotAllowed(c.req.method, path, allowed))
    return respond(c, notFound(`No route ${c.req.method} ${path}. The gateway serves ${routes().summary}`))
  })
  app.onError((err, c) => {
    if (err instanceof GatewayError) return respond(c, err)
    services.onUnexpected(err)
    return respond(c, new GatewayError(500, 'server_error', 'internal_error', 'The gateway failed to handle the request'))
  })
  return app
}

const loadDashboard = async (services: DashboardServices) => (await import('./dashboard/routes.js')).dashboardRoutes(services)
