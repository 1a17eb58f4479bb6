import { Hono, type Context } from 'hono'
import { getCookie, setCookie, deleteCookie } from 'hono/cookie'
import { bodyLimit } from 'hono/body-limit'
import { html } from 'hono/html'
import type { Child } from 'hono/jsx'
import { stringify } from 'csv-stringify/sync'
import type { Calendar } from '../../core/calendar.js'
import type { Clock } from '../../core/clock.js'
import { badRequest, forbidden, GatewayError, notFound, payloadTooLarge } from '../../core/errors.js'
import type { Gateway } from '../../core/gateway.js'
import { isUsable, type KeyManager } from '../../core/keys.js'
import { parseLimitValue } from '../../core/limits.js'
import { CSV_FORMAT, LOG_COLUMNS, toCsvRecord } from '../../core/log-columns.js'
import type { LimitOverrides } from '../../core/types.js'
import { resolveRange, type UsageRangeView, type UsageViews } from '../../core/usage-views.js'
import type { RequestFilter, Store } from '../../core/store.js'
import type { AppEnv } from '../env.js'
import { clientIp } from '../middleware/request-context.js'
import { presentedKey } from '../middleware/auth.js'
import { ICON_ASSET, STYLESHEET } from './assets.js'
import { Document, Page, type NavId } from './layout.js'
import { sameToken, SESSION_ABSOLUTE_MS, SESSION_COOKIE, Sessions, type Session } from './session.js'
import { BudgetsView, ErrorsView, KeysView, LoginView, LogView, OverviewView, UsageView, type KeysMessage } from './views.js'

export interface DashboardServices {
  gateway: Gateway
  store: Store
  keys: KeyManager
  views: UsageViews
  clock: Clock
  calendar: Calendar
  logBodies: boolean
  trustProxy: boolean
  onUnexpected: (err: unknown) => void
}

type DashEnv = AppEnv & { Variables: { session: Session; sessionId: string; who: string } }
type Ctx = Context<DashEnv>

/**
 * No inline script or style anywhere: the stylesheet is the page's one asset, charts are SVG.
 * Referrer same-origin, not no-referrer: under no-referrer a browser posts forms with
 * `Origin: null`, and the Origin check would refuse every form.
 */
const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'same-origin',
  'cross-origin-opener-policy': 'same-origin',
} as const

const LOG_PAGE = 50
/** The largest dashboard form body, in bytes. */
const FORM_LIMIT = 16 * 1024

/** https when the request came over TLS, as the proxy says (only believed with --trust-proxy). */
function isHttps(c: Ctx, trustProxy: boolean): boolean {
  const proto = trustProxy ? c.req.header('x-forwarded-proto')?.split(',')[0]?.trim().toLowerCase() : undefined
  return (proto ?? new URL(c.req.url).protocol.slice(0, -1)) === 'https'
}

function render(c: Ctx, body: Child, status = 200) {
  return c.html(html`<!doctype html>${body}`, status as 200)
}

/** The query's own values, for links that keep the filters. */
function queryOf(c: Ctx): Record<string, string | undefined> {
  return Object.fromEntries(Object.entries(c.req.query()).map(([k, v]) => [k, v.slice(0, 200)]))
}

/** A limit field: empty leaves it alone (undefined), "default" removes the override, else a number or off. */
function limitField(form: Record<string, unknown>, field: string, label: string): { set: boolean; value: number | null | undefined } {
  const text = typeof form[field] === 'string' ? (form[field] as string).trim() : ''
  if (text === '') return { set: false, value: undefined }
  if (text.toLowerCase() === 'default') return { set: true, value: undefined }
  return { set: true, value: parseLimitValue(text, label) }
}

function limitsOf(form: Record<string, unknown>): LimitOverrides {
  const out: Record<string, number | null | undefined> = {}
  for (const [field, label] of [
    ['dailyTokens', 'daily tokens'],
    ['rpm', 'requests per minute'],
    ['tpm', 'tokens per minute'],
  ] as const) {
    const f = limitField(form, field, label)
    if (f.set) out[field] = f.value
  }
  return out as LimitOverrides
}

const str = (v: unknown) => (typeof v === 'string' ? v : '')

/**
 * The browser dashboard under /dashboard. Logging in trades an admin key (checked by the
 * gateway's own authentication, so failures count against the client's address) for a random
 * session id in an HttpOnly, SameSite=Strict cookie; every POST carries the session's CSRF
 * token and a same-origin Origin. Its requests are not API traffic: they are not logged.
 */
export function dashboardRoutes(s: DashboardServices): Hono<DashEnv> {
  const sessions = new Sessions(s.clock)
  const app = new Hono<DashEnv>().basePath('/dashboard')

  app.use('*', async (c, next) => {
    await next()
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) c.res.headers.set(k, v)
    if (!c.res.headers.has('cache-control')) c.res.headers.set('cache-control', 'no-store')
  })

  // Assets are named by their digest: a browser may keep them for a year.
  for (const [asset, type] of [
    [STYLESHEET, 'text/css; charset=utf-8'],
    [ICON_ASSET, 'image/svg+xml'],
  ] as const) {
    app.get(asset.path.slice('/dashboard'.length), (c) => c.body(asset.body, 200, { 'content-type': type, 'cache-control': 'public, max-age=31536000, immutable' }))
  }

  // Forms are small: a larger body is refused as it streams in, not buffered (the API's own limit does not reach here).
  app.use('*', bodyLimit({ maxSize: FORM_LIMIT, onError: () => { throw payloadTooLarge(FORM_LIMIT) } }))

  // Every POST: same origin (a browser always sends Origin on a form POST) before anything else.
  app.use('*', async (c, next) => {
    if (c.req.method === 'POST') {
      const origin = c.req.header('origin')
      const url = new URL(c.req.url)
      const expected = `${isHttps(c, s.trustProxy) ? 'https' : 'http'}://${url.host}`
      if (origin !== expected) throw forbidden('Cross-origin form posts are refused (Origin does not match this gateway)', 'csrf_failed')
    }
    await next()
  })

  const loginPage = (c: Ctx, error: string | null, status = 200) => render(c, <Document title="Log in"><LoginView error={error} /></Document>, status)

  app.get('/login', (c) => loginPage(c, null))

  app.post('/login', async (c) => {
    const form = await c.req.parseBody()
    const ip = clientIp(c as unknown as Context<AppEnv>, s.trustProxy)
    let key
    try {
      await s.gateway.checkIp(ip)
      const presented = presentedKey(undefined, str(form.key))
      key = await s.gateway.authenticate(presented === '' || presented === null ? null : presented, ip)
    } catch (err) {
      if (!(err instanceof GatewayError)) throw err
      const message = err.status === 429 ? 'Too many failed attempts from your address: wait a minute and try again.' : err.status === 401 && err.code !== 'invalid_api_key' ? err.message : 'That key is not valid.'
      return loginPage(c, message, err.status)
    }
    if (!key.admin) return loginPage(c, `The key "${key.name}" is not an admin key: the dashboard needs one (gateway keys create --name NAME --admin).`, 403)
    const { id } = sessions.create(key.id)
    setCookie(c, SESSION_COOKIE, id, { path: '/dashboard', httpOnly: true, sameSite: 'Strict', secure: isHttps(c, s.trustProxy), maxAge: SESSION_ABSOLUTE_MS / 1000 })
    return c.redirect('/dashboard', 303)
  })

  // Everything below needs a live session of a key that is still a usable admin key.
  app.use('*', async (c, next) => {
    const id = getCookie(c, SESSION_COOKIE)
    const session = sessions.get(id)
    const key = session && (await s.store.findKey(session.keyId))
    if (!session || !key || !key.admin || !isUsable(key, s.clock.now())) {
      sessions.end(id)
      if (c.req.method === 'GET' || c.req.method === 'HEAD') return c.redirect('/dashboard/login', 303)
      throw forbidden('Your dashboard session has ended: log in again', 'session_expired')
    }
    if (c.req.method === 'POST') {
      const form = await c.req.parseBody()
      if (!sameToken(str(form.csrf), session.csrf)) throw forbidden('The form is missing its CSRF token or it is stale: reload the page', 'csrf_failed')
    }
    c.set('session', session)
    c.set('sessionId', id!)
    c.set('who', key.name)
    await next()
  })

  const page = (c: Ctx, nav: NavId, title: string, body: Child, status = 200) =>
    render(c, <Page title={title} nav={nav} csrf={c.get('session').csrf} who={c.get('who')}>{body}</Page>, status)
  const rangeOf = (c: Ctx): UsageRangeView => resolveRange(c.req.query(), s.clock.now(), s.calendar)

  app.post('/logout', (c) => {
    sessions.end(c.get('sessionId'))
    deleteCookie(c, SESSION_COOKIE, { path: '/dashboard', httpOnly: true, sameSite: 'Strict', secure: isHttps(c, s.trustProxy) })
    return c.redirect('/dashboard/login', 303)
  })

  app.get('/', async (c) => {
    const range = rangeOf(c)
    return page(c, 'overview', 'Overview', <OverviewView range={range} query={queryOf(c)} o={await s.views.overview(range)} />)
  })

  app.get('/usage', async (c) => {
    const range = rangeOf(c)
    const by = c.req.query('by') === 'model' ? 'model' : 'key'
    const [groups, keys] = await Promise.all([s.views.breakdown(range, by), s.store.listKeys()])
    return page(c, 'usage', 'Usage', <UsageView range={range} query={queryOf(c)} by={by} groups={groups} names={new Map(keys.map((k) => [k.id, k.name]))} />)
  })

  app.get('/budgets', async (c) => {
    const b = await s.views.budgets(s.clock.now())
    return page(c, 'budgets', 'Budgets', <BudgetsView day={b.day} resetsAt={b.resetsAt} keys={b.keys} />)
  })

  app.get('/errors', async (c) => {
    const range = rangeOf(c)
    return page(c, 'errors', 'Errors', <ErrorsView range={range} query={queryOf(c)} e={await s.views.errors(range)} />)
  })

  /** The log view's filter from the query: the range and the key, model, status and route fields. */
  const logFilter = (c: Ctx): { range: UsageRangeView; filter: RequestFilter } => {
    const range = rangeOf(c)
    const q = c.req.query()
    const status = q.status?.trim()
    if (status && !/^\d{3}$/.test(status)) throw badRequest('status must be a 3-digit HTTP status', 'status')
    const filter: RequestFilter = { ...range.window, keyId: q.key || undefined, model: q.model?.trim() || undefined, route: q.route?.trim() || undefined, status: status ? Number(status) : undefined }
    return { range, filter }
  }

  app.get('/log', async (c) => {
    const { range, filter } = logFilter(c)
    const cursor = /^(\d{4}-\d\d-\d\dT[\d:.]+Z)_(\d+)$/.exec(c.req.query('before') ?? '')
    const detailId = c.req.query('id')
    const [rows, keys, detailRow] = await Promise.all([
      s.store.listRequests(filter, cursor ? { timestamp: cursor[1], id: Number(cursor[2]) } : null, LOG_PAGE + 1),
      s.store.listKeys(),
      detailId && /^\d+$/.test(detailId) ? s.store.getRequest(Number(detailId)) : undefined,
    ])
    const last = rows[LOG_PAGE - 1]
    const next = rows.length > LOG_PAGE ? `${last.row.timestamp}_${last.id}` : null
    const detail = detailRow ? { id: Number(detailId), row: detailRow } : null
    return page(c, 'log', 'Request log', <LogView range={range} query={queryOf(c)} rows={rows.slice(0, LOG_PAGE)} next={next} keys={keys} detail={detail} logBodies={s.logBodies} />)
  })

  // The same rows as the log view's filters, every page of them, as `logs export` writes them.
  app.get('/log.csv', async (c) => {
    const { filter } = logFilter(c)
    const name = `requests-${new Date(s.clock.now()).toISOString().slice(0, 10)}.csv`
    c.header('content-type', 'text/csv; charset=utf-8')
    c.header('content-disposition', `attachment; filename="${name}"`)
    const rows = s.store.iterateRequests(filter)[Symbol.asyncIterator]()
    const body = new ReadableStream<string>({
      start(controller) {
        controller.enqueue(stringify([[...LOG_COLUMNS]], CSV_FORMAT))
      },
      async pull(controller) {
        const batch: (string | number)[][] = []
        for (let r = await rows.next(); ; r = await rows.next()) {
          if (r.done) {
            if (batch.length > 0) controller.enqueue(stringify(batch, CSV_FORMAT))
            controller.close()
            return
          }
          batch.push(toCsvRecord(r.value))
          if (batch.length === 500) break
        }
        controller.enqueue(stringify(batch, CSV_FORMAT))
      },
    })
    return c.body(body.pipeThrough(new TextEncoderStream()))
  })

  const keysPage = async (c: Ctx, message: KeysMessage | null, status = 200) => {
    const [keys, secrets] = await Promise.all([s.keys.list(), s.keys.liveSecretsByKey()])
    return page(c, 'keys', 'Keys', <KeysView keys={keys} secrets={secrets} csrf={c.get('session').csrf} now={s.clock.now()} message={message} />, status)
  }
  /** Runs a key change; a refusal (the CLI's rules) is shown on the keys page, not as a bare error. */
  const keyAction = async (c: Ctx, act: (form: Record<string, unknown>) => Promise<KeysMessage>) => {
    try {
      const message = await act(await c.req.parseBody())
      // Forced: the change marker moves only for other connections' commits, and this write was the server's own.
      await s.gateway.refresh(true)
      return keysPage(c, message)
    } catch (err) {
      if (err instanceof GatewayError) return keysPage(c, { kind: 'error', text: err.message }, err.status)
      throw err
    }
  }

  app.get('/keys', (c) => keysPage(c, null))
  app.post('/keys', (c) =>
    keyAction(c, async (form) => {
      const created = await s.keys.create({ name: str(form.name).trim(), admin: form.admin === '1', limits: limitsOf(form) })
      return { kind: 'ok', text: `Created key "${created.key.name}" (${created.key.id}).`, secret: created.secret }
    }),
  )
  app.post('/keys/:id/revoke', (c) =>
    keyAction(c, async () => {
      const key = await s.keys.revoke(c.req.param('id'))
      return { kind: 'ok', text: `Revoked key "${key.name}": it stops working at once.` }
    }),
  )
  app.post('/keys/:id/rotate', (c) =>
    keyAction(c, async (form) => {
      const grace = str(form.grace)
      const rotated = await s.keys.rotate(c.req.param('id'), /^\d+$/.test(grace) ? Number(grace) : undefined)
      return { kind: 'ok', text: `New secret for "${rotated.key.name}"; the old one stops at ${new Date(rotated.oldSecretExpiresAt).toISOString()}.`, secret: rotated.secret }
    }),
  )
  app.post('/keys/:id/limits', (c) =>
    keyAction(c, async (form) => {
      const limits = limitsOf(form)
      if (Object.keys(limits).length === 0) throw badRequest('Fill in at least one limit', 'limits')
      const key = await s.keys.update(c.req.param('id'), { limits })
      return { kind: 'ok', text: `Limits of "${key.name}" set.` }
    }),
  )

  app.all('*', () => {
    throw notFound('No such dashboard page')
  })

  app.onError((err, c) => {
    const e = err instanceof GatewayError ? err : null
    if (!e) s.onUnexpected(err)
    const status = e?.status ?? 500
    const text = e?.message ?? 'The gateway failed to show this page'
    return render(
      c,
      <Document title="Error">
        <main>
          <div class="msg error" role="alert">
            {text}
          </div>
          <a href="/dashboard">Back to the dashboard</a>
        </main>
      </Document>,
      status,
    )
  })
  return app
}
