import { describeDb, isPostgresUrl, redactUrl } from '../storage/db-url.js'
import { Flags } from '@oclif/core'
import { resolve } from 'node:path'
import { setFlagsFromString } from 'node:v8'
import { BaseCommand, EXIT } from '../cli/base-command.js'
import { renderBanner } from '../cli/banner.js'
import { parseDuration } from '../cli/durations.js'
import { meansOff, parseSwitch } from '../cli/switches.js'
import { buildGateway, DEFAULT_SETTINGS, type GatewaySettings } from '../compose.js'
import { Calendar } from '../core/calendar.js'
import { badRequest, unavailable } from '../core/errors.js'
import { parseLimitValue } from '../core/limits.js'
import { firstEvent } from '../first-event.js'
import { isWorker, leavePrimary, runWorkers, tellPrimary } from '../cli/workers.js'
import { ACCESS_LOG_FORMATS } from '../http/access-log.js'
import { checkBaseUrl, probeUpstream, type UpstreamCheck } from '../upstream/check.js'
import { startServer } from '../server.js'
import { csvPathFor, defaultCsvBase } from '../storage/csv-log.js'

const seconds = (ms: number) => `${ms / 1000}s`

/**
 * V8 lets the old generation grow to several times its live size before a full collection:
 * under steady load the gateway's heap sat near 100 MB around a live set of about 35 MB.
 * Collecting once it is 25% over keeps resident memory about 50 MB lower (bench/, at c=50)
 * for no measurable CPU. Read by V8 at every collection, so setting it here takes effect.
 */
const HEAP_GROWING_PERCENT = 25

export default class Serve extends BaseCommand<typeof Serve> {
  static override summary = 'Start the gateway'
  static override description =
    'Serves the OpenAI-compatible API and the /chat route on 127.0.0.1:8080 by default. The upstream is configured by OPENAI_API_KEY and OPENAI_BASE_URL, or several by --upstreams FILE (models, aliases, fallbacks; keys from the environment); without either (or with --mock) a built-in mock provider answers.'
  static override examples = ['<%= config.bin %> serve', 'OPENAI_API_KEY=sk-... <%= config.bin %> serve --host 0.0.0.0 --port 8080', 'OPENAI_API_KEY=sk-... AZURE_KEY=... <%= config.bin %> serve --upstreams upstreams.yaml']
  static override createsDatabase = true
  static override flags = {
    host: Flags.string({ description: 'address to bind (0.0.0.0 exposes it: put TLS in front)', env: 'GATEWAY_HOST', default: '127.0.0.1' }),
    port: Flags.integer({ description: 'port to listen on (0: any free port)', env: 'GATEWAY_PORT', default: 8080, min: 0, max: 65535 }),
    mock: Flags.boolean({ description: 'answer with the built-in mock provider even if OPENAI_API_KEY is set', env: 'GATEWAY_MOCK', default: false }),
    model: Flags.string({ description: 'model for the /chat route', env: 'GATEWAY_MODEL', default: DEFAULT_SETTINGS.model }),
    'upstream-timeout': Flags.string({ description: 'longest a whole upstream request may take', env: 'GATEWAY_UPSTREAM_TIMEOUT', default: seconds(DEFAULT_SETTINGS.totalTimeoutMs) }),
    'upstream-ttfb-timeout': Flags.string({ description: 'longest wait for the upstream\'s response headers (and for a whole error answer)', env: 'GATEWAY_UPSTREAM_TTFB_TIMEOUT', default: seconds(DEFAULT_SETTINGS.firstByteTimeoutMs) }),
    timezone: Flags.string({ description: 'time zone of the daily budget\'s calendar day', env: 'GATEWAY_TIMEZONE', default: DEFAULT_SETTINGS.timezone }),
    'max-inflight': Flags.string({ description: 'upstream requests in flight at once, all keys (or "off")', env: 'GATEWAY_MAX_INFLIGHT', default: String(DEFAULT_SETTINGS.maxInflight) }),
    'queue-size': Flags.integer({ description: 'requests that may wait for a slot (0: refuse instead)', env: 'GATEWAY_QUEUE_SIZE', default: DEFAULT_SETTINGS.queueSize, min: 0 }),
    'queue-timeout': Flags.string({ description: 'longest wait for a slot before 503', env: 'GATEWAY_QUEUE_TIMEOUT', default: seconds(DEFAULT_SETTINGS.queueTimeoutMs) }),
    'trust-proxy': Flags.boolean({ description: 'take the client IP from X-Forwarded-For (only behind your own proxy)', env: 'GATEWAY_TRUST_PROXY', default: false }),
    'csv-log': Flags.string({ description: 'CSV request log base path, one file per UTC day (default: requests.csv beside the database), or "off"', env: 'GATEWAY_CSV_LOG' }),
    'no-csv-log': Flags.boolean({ description: 'write no CSV request log', default: false }),
    'log-bodies': Flags.boolean({ description: 'store prompt and response text in the request log', env: 'GATEWAY_LOG_BODIES', default: false }),
    'spool-dir': Flags.string({ description: 'PostgreSQL only: where log rows wait while the database is unreachable (one directory per gateway)', env: 'GATEWAY_SPOOL_DIR', default: DEFAULT_SETTINGS.spoolDir }),
    'metrics-public': Flags.boolean({ description: 'serve /metrics without an admin key', env: 'GATEWAY_METRICS_PUBLIC', default: false }),
    prices: Flags.string({ description: 'JSON file of model prices (USD per 1M tokens) laid over the bundled table', env: 'GATEWAY_PRICES' }),
    'body-limit': Flags.integer({ description: 'largest request body in bytes', env: 'GATEWAY_BODY_LIMIT', default: DEFAULT_SETTINGS.bodyLimit, min: 1024 }),
    'access-log': Flags.option({ options: ACCESS_LOG_FORMATS, description: 'one line per request on stdout (default: text, json with --json)', env: 'GATEWAY_ACCESS_LOG' })(),
    'check-upstream': Flags.boolean({ description: 'list each upstream\'s models once before listening and report it; exit 2 if that fails', env: 'GATEWAY_CHECK_UPSTREAM', default: false }),
    upstreams: Flags.string({ description: 'YAML (or JSON) file of upstreams, their models and aliases; keys come from the environment (see docs/operations.md)', env: 'GATEWAY_UPSTREAMS' }),
    redis: Flags.string({ description: 'Redis URL holding every rate limit, budget and concurrency slot, shared by all gateways on it (e.g. redis://127.0.0.1:6379/0)', env: 'GATEWAY_REDIS_URL' }),
    'redis-lease': Flags.string({ description: 'with --redis: how long a stopped gateway\'s reservations and slots stay held', env: 'GATEWAY_REDIS_LEASE', default: seconds(DEFAULT_SETTINGS.redisLeaseMs) }),
    'redis-timeout': Flags.string({ description: 'with --redis: how long Redis may answer nothing before requests get 503 limiter_unavailable', env: 'GATEWAY_REDIS_TIMEOUT', default: `${DEFAULT_SETTINGS.redisTimeoutMs}ms` }),
    workers: Flags.integer({ description: 'processes serving the one port (above 1 needs --redis)', env: 'GATEWAY_WORKERS', default: 1, min: 1 }),
    'no-dashboard': Flags.boolean({ description: 'serve no browser dashboard at /dashboard (GATEWAY_DASHBOARD=off does the same)', default: false }),
    'shutdown-timeout': Flags.string({ description: 'on SIGINT/SIGTERM, how long in-flight requests may finish', env: 'GATEWAY_SHUTDOWN_TIMEOUT', default: '10s' }),
  }

  async run() {
    const f = this.flags
    setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`)
    if (!Calendar.isValidZone(f.timezone)) throw badRequest(`Unknown time zone "${f.timezone}"`, 'timezone')
    const redis = f.redis?.trim() || null
    if (redis !== null && !/^rediss?:\/\//.test(redis)) throw badRequest(`--redis takes a redis:// or rediss:// URL, got "${redis}"`, 'redis')
    if (f.workers > 1 && redis === null) {
      throw badRequest(`--workers ${f.workers} needs --redis: each process would keep its own limits, so every limit would count ${f.workers} times. Give them a shared Redis (--redis URL), or serve with one process.`, 'workers')
    }
    const redisLeaseMs = parseDuration(f['redis-lease'], '--redis-lease')
    const redisTimeoutMs = parseDuration(f['redis-timeout'], '--redis-timeout')
    const shutdownTimeoutMs = parseDuration(f['shutdown-timeout'], '--shutdown-timeout')
    if (f.workers > 1 && !isWorker()) return this.primary(f.workers)
    const apiKey = process.env.OPENAI_API_KEY?.trim() || undefined
    // The YAML parser is loaded only for an upstreams file.
    const upstreams = f.upstreams ? (await import('../cli/upstreams-file.js')).loadUpstreamsFile(f.upstreams, process.env, { needKeys: !f.mock }) : undefined
    const mock = f.mock || (!apiKey && !upstreams)
    const settings: GatewaySettings = {
      db: f.db,
      mock,
      apiKey,
      baseURL: mock || upstreams ? undefined : checkBaseUrl(process.env.OPENAI_BASE_URL),
      upstreams,
      model: f.model,
      firstByteTimeoutMs: parseDuration(f['upstream-ttfb-timeout'], '--upstream-ttfb-timeout'),
      totalTimeoutMs: parseDuration(f['upstream-timeout'], '--upstream-timeout'),
      timezone: f.timezone,
      maxInflight: parseLimitValue(f['max-inflight'], '--max-inflight'),
      queueSize: f['queue-size'],
      queueTimeoutMs: parseDuration(f['queue-timeout'], '--queue-timeout'),
      trustProxy: f['trust-proxy'],
      csvLog: f['no-csv-log'] || meansOff(f['csv-log']) ? null : (f['csv-log'] ?? defaultCsvBase(f.db)),
      logBodies: f['log-bodies'],
      metricsPublic: f['metrics-public'],
      prices: f.prices,
      bodyLimit: f['body-limit'],
      accessLog: f['access-log'] ?? (this.jsonEnabled() ? 'json' : 'text'),
      redis,
      redisLeaseMs,
      redisTimeoutMs,
      spoolDir: f['spool-dir'],
      dashboard: !f['no-dashboard'] && (process.env.GATEWAY_DASHBOARD === undefined || parseSwitch(process.env.GATEWAY_DASHBOARD, 'GATEWAY_DASHBOARD')),
    }
    // Straight to stderr: oclif's logToStderr is silent under --json, and these are for the operator.
    const warn = (line: string) => process.stderr.write(`${line}\n`)
    const built = await buildGateway(settings, this.clock, (err) => warn(`gateway: unexpected error: ${err instanceof Error ? err.message : String(err)}`), warn)
    try {
      await built.ready()
    } catch (err) {
      await built.close()
      throw unavailable(`--redis: cannot reach ${redactUrl(redis!)}: ${err instanceof Error ? err.message : String(err)}`, 'limiter_unavailable', 1000)
    }
    let check: UpstreamCheck | undefined
    if (f['check-upstream']) {
      for (const upstream of built.upstreams) {
        check = await probeUpstream(upstream)
        if (!check.ok) {
          await built.close()
          throw badRequest(`--check-upstream: ${upstream.description} failed: ${check.message}`, 'check-upstream', 'upstream_check_failed')
        }
      }
    }
    const server = await startServer(built, f.host, f.port).catch(async (err: unknown) => {
      await built.close()
      throw err
    })
    const info = {
      url: server.url,
      port: server.port,
      mode: mock ? 'mock' : 'upstream',
      upstream: upstreams ? built.upstreams.map((u) => `${u.name} (${u.description})`).join(', ') : built.upstream.description,
      model: settings.model,
      db: settings.db,
      csvLog: settings.csvLog ? csvPathFor(settings.csvLog, 'YYYY-MM-DD') : null,
      timezone: settings.timezone,
      limits: redis === null ? 'memory' : redactUrl(redis),
      ...(check ? { upstreamCheck: check } : {}),
    }
    // Listening for the stop signal before saying we listen: a supervisor may send it at once.
    const stopSignal = firstEvent(process, ['SIGINT', 'SIGTERM'])
    if (isWorker()) {
      tellPrimary({ type: 'listening', info })
      await stopSignal
      // The primary passes the signal on; a terminal's Ctrl-C reaches this process too: one is enough.
      process.on('SIGINT', () => {}).on('SIGTERM', () => {})
      const { cut } = await server.close(shutdownTimeoutMs)
      tellPrimary({ type: 'stopped', cut })
      leavePrimary()
      if (cut > 0) process.exitCode = EXIT.requestsCut
      return
    }
    // One compact line: serve runs on, so its JSON is an event stream, not a final document.
    if (this.jsonEnabled()) process.stdout.write(`${JSON.stringify(info)}\n`)
    else {
      this.log(
        renderBanner({
          ...info,
          host: f.host,
          db: isPostgresUrl(settings.db) ? describeDb(settings.db) : resolve(settings.db),
          csvLog: info.csvLog === null ? null : resolve(info.csvLog),
          mockReason: !mock ? null : f.mock ? 'flag' : 'no-key',
          hasKeys: (await built.store.listKeys()).length > 0,
          dbIsDefault: f.db === Serve.baseFlags.db.default,
        }),
      )
      if (check?.ok) this.log(`upstream check: ok, ${check.models} models listed in ${check.ms} ms`)
    }
    await stopSignal
    this.say('gateway: shutting down, letting requests in flight finish…')
    const { cut } = await server.close(shutdownTimeoutMs)
    this.stopped(cut)
  }

  /** `--workers N`: the database migrated once here, then N workers on one port; this process only relays signals and reports. */
  private async primary(n: number): Promise<void> {
    void this.store // creates and migrates the database before the workers open it
    const { cut, code } = await runWorkers(n, (info) => {
      const shown = { ...info, workers: n }
      if (this.jsonEnabled()) process.stdout.write(`${JSON.stringify(shown)}\n`)
      else this.log(`gateway: ${n} workers listening on ${String(info.url)} (limits in Redis)`)
    })
    this.say('gateway: workers stopped.')
    this.stopped(cut)
    if (code !== 0 && code !== EXIT.requestsCut) process.exitCode = code
  }

  private stopped(cut: number): void {
    if (this.jsonEnabled()) process.stdout.write(`${JSON.stringify({ stopped: true, cut })}\n`)
    else this.say(cut === 0 ? 'gateway: stopped.' : `gateway: stopped; ${cut} request${cut === 1 ? ' was' : 's were'} cut at the shutdown deadline (answered 503 shutting_down, logged and charged).`)
    if (cut > 0) process.exitCode = EXIT.requestsCut
  }
}
