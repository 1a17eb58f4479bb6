#!/usr/bin/env node
// The gateway's benchmark. In one run it starts a mock OpenAI upstream, a bare node:http proxy
// (the floor) and the gateway as a user runs it (`gateway serve`, real key, request log and CSV
// log on), then loads each with autocannon at c=1 and c=50, non-streamed and streamed, in
// interleaved rounds, and prints medians, ratios and PASS/FAIL against the targets.
// Everything binds to and targets 127.0.0.1; every load is bounded in time; all child
// processes are stopped at the end, on error and on Ctrl-C.
//
//   npm run bench -- [--rounds 5] [--duration 5] [--soak 60] [--peer portkey] [--workers 1,2] [--profile]
//   node bench/run.js --help
import autocannon from 'autocannon'
import { execFileSync, spawn } from 'node:child_process'
import fs from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { childrenMap, clockTicks, fmt, MB, median, memory, percentiles, processTree, rssSampler, signed, sleep, sumCpuTicks, sumMemory, table } from './lib.js'
import { formatSummary, summarise } from './profile-summary.js'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const ROOT = path.resolve(HERE, '..')
const BIN = path.join(ROOT, 'bin', 'run.js')
const HOST = '127.0.0.1'

const HELP = `usage: node bench/run.js [options]

  --rounds N           interleaved rounds; the table shows medians over rounds (default 5)
  --duration S         seconds per load (default 5)
  --warmup S           seconds of warm-up load per target and mode before round 1 (default 2)
  --connections LIST   concurrency levels (default 1,50)
  --modes LIST         json,stream (default both)
  --ttfb-requests N    sequential streamed requests per target per round for TTFB (default 200)
  --soak S             after the rounds, load the gateway at c=50 for S seconds (max 600)
                       sampling its RSS every --soak-sample seconds (default 5)
  --peer NAME          also load a peer gateway; only "portkey" (needs @portkey-ai/gateway
                       installed: npm i --no-save @portkey-ai/gateway); skipped when absent
  --workers LIST       also load, for each N, a gateway run as \`serve --workers N --redis URL\`
                       (rows gw-redis-wN), non-streamed at c=50 only; its CPU and RSS are summed
                       over the primary and its workers. Limits in the --redis URL, or else in a
                       private redis-server on a free port that the bench starts and stops
  --profile            instead of the comparison: run the gateway under node --cpu-prof, load it
                       non-streamed at c=50 (or --connections) for --duration seconds per
                       round, and print where its CPU goes during those loads (the
                       .cpuprofile is kept in bench/results/)
  --timeout S          hard limit for the whole run (default: computed from the plan)
  --redis URL          the gateway keeps its limits in this Redis (\`serve --redis\`); the key's state
                       is under its own id, so a shared Redis is not disturbed
  --db URL             the gateway's store: a postgres:// URL (its database must exist; rows are
                       added to it), instead of a temporary SQLite file
  --keep               keep the temporary database and CSV log
  --out FILE           results JSON (default bench/results/bench-<time>.json)
  --help`

const { values: argv } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    duration: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '2' },
    connections: { type: 'string' },
    modes: { type: 'string', default: 'json,stream' },
    'ttfb-requests': { type: 'string', default: '200' },
    soak: { type: 'string', default: '0' },
    'soak-sample': { type: 'string', default: '5' },
    peer: { type: 'string', multiple: true, default: [] },
    workers: { type: 'string' },
    profile: { type: 'boolean', default: false },
    timeout: { type: 'string' },
    keep: { type: 'boolean', default: false },
    redis: { type: 'string' },
    db: { type: 'string' },
    out: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
})
if (argv.help) {
  console.log(HELP)
  process.exit(0)
}

const positiveInt = (name, max) => {
  const n = Number(argv[name])
  if (!Number.isInteger(n) || n < 0 || n > max) {
    console.error(`--${name} must be an integer from 0 to ${max}`)
    process.exit(2)
  }
  return n
}
const cfg = {
  rounds: Math.max(1, positiveInt('rounds', 50)),
  duration: Math.max(1, positiveInt('duration', 120)),
  warmup: positiveInt('warmup', 60),
  connections: (argv.connections ?? (argv.profile ? '50' : '1,50')).split(',').map(Number),
  modes: argv.modes.split(',').map((m) => m.trim()),
  ttfbRequests: positiveInt('ttfb-requests', 5000),
  soak: positiveInt('soak', 600),
  soakSample: Math.max(1, positiveInt('soak-sample', 60)),
  peers: argv.peer,
  workers: argv.workers === undefined ? [] : argv.workers.split(',').map(Number),
  profile: argv.profile,
}
if (cfg.connections.some((c) => !Number.isInteger(c) || c < 1 || c > 1000)) {
  console.error('--connections must list integers from 1 to 1000')
  process.exit(2)
}
if (cfg.modes.some((m) => m !== 'json' && m !== 'stream')) {
  console.error('--modes must list json and/or stream')
  process.exit(2)
}
for (const p of cfg.peers) {
  if (p !== 'portkey') {
    console.error(`unknown peer "${p}" (only portkey)`)
    process.exit(2)
  }
}
if (cfg.workers.some((n) => !Number.isInteger(n) || n < 1 || n > 16) || new Set(cfg.workers).size !== cfg.workers.length) {
  console.error('--workers must list distinct integers from 1 to 16')
  process.exit(2)
}
if (cfg.workers.length > 0 && !cfg.profile && !(cfg.modes.includes('json') && cfg.connections.includes(50))) {
  console.error('--workers loads non-streamed at c=50: keep json in --modes and 50 in --connections')
  process.exit(2)
}
if (cfg.profile) {
  cfg.modes = ['json']
  cfg.soak = 0
  cfg.peers = []
  cfg.workers = []
}

// ---- requests and the expected answers ---------------------------------------------------

const MODEL = 'gpt-4o-mini'
const CONTENT = Array.from({ length: 20 }, (_, i) => `word${i + 1} `).join('')
const BODIES = {
  json: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'Say hello' }], max_tokens: 50 }),
  stream: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'Say hello' }], max_tokens: 50, stream: true }),
}

/** Checks one answer in full: JSON content, or every SSE content chunk and the closing [DONE]. */
function validate(mode, status, text) {
  if (status !== 200) return `status ${status}: ${text.slice(0, 200)}`
  if (mode === 'json') {
    try {
      const content = JSON.parse(text).choices?.[0]?.message?.content
      return content === CONTENT ? null : `unexpected content ${JSON.stringify(content)}`
    } catch {
      return `not JSON: ${text.slice(0, 200)}`
    }
  }
  const events = text.split(/\r?\n\r?\n/).filter((e) => e.trim().length > 0)
  const data = events.map((e) => e.split(/\r?\n/).filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('\n'))
  if (data[data.length - 1] !== '[DONE]') return `stream does not end with [DONE]: ${text.slice(-200)}`
  let content = ''
  let chunks = 0
  for (const d of data.slice(0, -1)) {
    let chunk
    try {
      chunk = JSON.parse(d)
    } catch {
      return `malformed event ${d.slice(0, 200)}`
    }
    const delta = chunk.choices?.[0]?.delta?.content
    if (typeof delta === 'string' && delta.length > 0) {
      content += delta
      chunks++
    }
  }
  if (content !== CONTENT || chunks !== 20) return `stream content ${JSON.stringify(content)} in ${chunks} chunks`
  return null
}

// ---- child processes ----------------------------------------------------------------------

const children = new Set()
let cleaningUp = null

function track(child, name) {
  child.benchName = name
  child.stderrTail = ''
  child.stderr?.on('data', (d) => {
    child.stderrTail = (child.stderrTail + d.toString()).slice(-8000)
  })
  child.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })))
  child.once('exit', () => children.delete(child))
  children.add(child)
  return child
}

/** Waits for a child's first complete JSON object on stdout (the "listening" line). */
function readyJson(child, timeoutMs = 30_000) {
  return new Promise((resolve, reject) => {
    let buf = ''
    const timer = setTimeout(() => finish(new Error(`${child.benchName} did not start within ${timeoutMs} ms\n${child.stderrTail}`)), timeoutMs)
    const onData = (d) => {
      buf += d.toString()
      const start = buf.indexOf('{')
      if (start < 0) return
      for (let end = buf.indexOf('}', start); end >= 0; end = buf.indexOf('}', end + 1)) {
        try {
          finish(null, JSON.parse(buf.slice(start, end + 1)))
          return
        } catch {
          // not complete yet
        }
      }
    }
    const onExit = (code) => finish(new Error(`${child.benchName} exited (${code}) before it listened\n${child.stderrTail}`))
    const finish = (err, value) => {
      clearTimeout(timer)
      child.stdout.off('data', onData)
      child.off('exit', onExit)
      child.stdout.resume() // keep draining whatever it prints later
      if (err) reject(err)
      else resolve(value)
    }
    child.stdout.on('data', onData)
    child.once('exit', onExit)
  })
}

async function stopChild(child, graceMs = 8000) {
  if (child.exitCode !== null || child.signalCode !== null) return
  child.kill('SIGTERM')
  const done = await Promise.race([child.exited.then(() => true), sleep(graceMs).then(() => false)])
  if (!done) {
    child.kill('SIGKILL')
    await Promise.race([child.exited, sleep(2000)])
  }
}

let tmpDir = null
function cleanup() {
  // The private Redis goes last: gateways still talk to it while they drain.
  const stopAll = (pick) => Promise.all([...children].filter(pick).map((c) => stopChild(c)))
  cleaningUp ??= stopAll((c) => c.benchName !== 'redis')
    .then(() => stopAll(() => true))
    .then(() => {
      if (tmpDir && !argv.keep) fs.rmSync(tmpDir, { recursive: true, force: true })
    })
  return cleaningUp
}

process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL')
})
// A closed stdout (`| head`) must not kill the run before it has stopped its children.
process.stdout.on('error', (err) => {
  if (err.code !== 'EPIPE') throw err
})
for (const event of ['uncaughtException', 'unhandledRejection']) {
  process.on(event, (err) => {
    console.error(`bench: ${event}: ${err?.stack ?? err}`)
    cleanup().finally(() => process.exit(1))
  })
}
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    console.error(`\nbench: ${sig}, stopping children…`)
    cleanup().finally(() => process.exit(130))
  })
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once('error', reject)
    s.listen(0, HOST, () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

function cleanEnv(extra) {
  const env = { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0', ...extra }
  for (const k of Object.keys(env)) if (k.startsWith('GATEWAY_')) delete env[k]
  return env
}

async function startScript(name, script, args, lifetimeS) {
  const child = track(
    spawn(process.execPath, [path.join(HERE, script), '--port', '0', '--max-lifetime', String(lifetimeS), ...args], { stdio: ['pipe', 'pipe', 'pipe'], cwd: ROOT }),
    name,
  )
  const info = await readyJson(child)
  return { name, child, pid: child.pid, port: info.port, url: `http://${HOST}:${info.port}` }
}

/** Resolves once something listens on HOST:port; rejects when the child exits first or after 30 s. */
async function waitForPort(child, port) {
  const deadline = Date.now() + 30_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${child.benchName} exited (${child.exitCode})\n${child.stderrTail}`)
    const up = await new Promise((resolve) => {
      const s = net.connect(port, HOST, () => {
        s.destroy()
        resolve(true)
      })
      s.on('error', () => resolve(false))
    })
    if (up) return
    if (Date.now() > deadline) throw new Error(`${child.benchName} did not listen on ${port} within 30 s\n${child.stderrTail}`)
    await sleep(200)
  }
}

/** A private, memory-only Redis for the --workers gateways when no --redis URL is given. */
async function startRedis() {
  const port = await freePort()
  const child = track(spawn('redis-server', ['--port', String(port), '--bind', HOST, '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] }), 'redis')
  const failed = new Promise((_resolve, reject) => child.once('error', (err) => reject(new Error(`cannot start redis-server (${err.message}); give --redis URL instead`))))
  child.stdout.resume()
  await Promise.race([waitForPort(child, port), failed])
  return { name: 'redis', child, pid: child.pid, port, url: `redis://${HOST}:${port}` }
}

/**
 * `gateway serve` with every check on. `workers` (with `redis`) runs it as `serve --workers N`:
 * then it is named gw-redis-wN, keeps its database and logs in its own folder under tmp and is
 * loaded non-streamed at c=50 only.
 */
async function startGateway(tmp, upstreamPort, { nodeFlags = [], workers = null, redis = argv.redis } = {}) {
  const name = workers === null ? 'gateway' : workersName(workers)
  const dir = workers === null ? tmp : path.join(tmp, name)
  fs.mkdirSync(dir, { recursive: true })
  const db = argv.db ?? path.join(dir, 'gateway.db')
  // Every check on, as an operator runs it, with limits too high to refuse: the bench
  // measures what the checks cost, not what they refuse.
  const high = '1000000000000'
  const created = execFileSync(
    process.execPath,
    [BIN, 'keys', 'create', '--name', `bench-${Date.now()}`, '--rpm', high, '--tpm', high, '--daily-tokens', high, '--concurrency', '100000', '--max-tokens', '4096', '--max-input-chars', '100000', '--json', '--db', db],
    { cwd: ROOT, env: cleanEnv({}), encoding: 'utf8', timeout: 60_000 },
  )
  const key = JSON.parse(created.slice(created.indexOf('{'))).key
  if (typeof key !== 'string') throw new Error(`keys create printed no key: ${created}`)
  const args = [
    ...nodeFlags,
    BIN,
    'serve',
    '--host', HOST,
    '--port', '0',
    '--db', db,
    '--max-inflight', '100000',
    '--queue-size', '100000',
    '--csv-log', path.join(dir, 'requests.csv'),
    ...(redis ? ['--redis', redis] : []),
    ...(workers === null ? [] : ['--workers', String(workers)]),
    '--spool-dir', path.join(dir, 'spool'),
    '--json',
  ]
  const env = cleanEnv({ OPENAI_API_KEY: 'sk-bench', OPENAI_BASE_URL: `http://${HOST}:${upstreamPort}/v1` })
  const child = track(spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'pipe'], cwd: ROOT, env }), name)
  // With --workers N the primary prints this line once all N workers listen; it serves nothing itself.
  const info = await readyJson(child, 60_000)
  if (info.mode !== undefined && info.mode !== 'upstream') throw new Error(`${name} started in ${info.mode} mode, not against the mock upstream`)
  return {
    name,
    child,
    pid: child.pid,
    port: info.port,
    url: `http://${HOST}:${info.port}`,
    headers: { authorization: `Bearer ${key}` },
    db,
    tmp,
    ...(workers === null ? {} : { only: { mode: 'json', connections: 50 } }),
  }
}

/** Portkey's open-source gateway, if installed; forced onto 127.0.0.1 by a preload. */
async function startPortkey(upstreamPort, lifetimeS) {
  const dirs = [process.env.PORTKEY_GATEWAY_DIR, path.join(ROOT, 'node_modules', '@portkey-ai', 'gateway')].filter(Boolean)
  const dir = dirs.find((d) => fs.existsSync(path.join(d, 'package.json')))
  if (!dir) return { skipped: '@portkey-ai/gateway is not installed (npm i --no-save @portkey-ai/gateway)' }
  const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'))
  const binRel = typeof pkg.bin === 'string' ? pkg.bin : Object.values(pkg.bin ?? {})[0]
  if (!binRel) return { skipped: `@portkey-ai/gateway ${pkg.version} has no bin to start` }
  const port = await freePort()
  const child = track(
    spawn(process.execPath, ['--require', path.join(HERE, 'loopback-only.cjs'), path.join(dir, binRel), `--port=${port}`, '--headless'], {
      stdio: ['pipe', 'pipe', 'pipe'],
      cwd: ROOT,
      env: cleanEnv({ TRUSTED_CUSTOM_HOSTS: HOST, NODE_ENV: 'production' }),
    }),
    'portkey',
  )
  child.stdout.resume()
  const killTimer = setTimeout(() => child.kill('SIGKILL'), lifetimeS * 1000)
  killTimer.unref()
  await waitForPort(child, port)
  return {
    name: 'portkey',
    child,
    pid: child.pid,
    port,
    url: `http://${HOST}:${port}`,
    version: pkg.version,
    headers: { authorization: 'Bearer sk-bench', 'x-portkey-provider': 'openai', 'x-portkey-custom-host': `http://${HOST}:${upstreamPort}/v1` },
    peer: true,
  }
}

// ---- clients -------------------------------------------------------------------------------

/** One request over node:http; resolves with status, body text, time to first body byte and total (ms). */
function request(target, mode, agent, timeoutMs = 10_000) {
  return new Promise((resolve, reject) => {
    const body = BODIES[mode]
    const req = http.request(
      {
        host: HOST,
        port: target.port,
        method: 'POST',
        path: '/v1/chat/completions',
        agent,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...target.headers },
      },
      (res) => {
        const chunks = []
        let first = null
        res.on('data', (c) => {
          first ??= process.hrtime.bigint()
          chunks.push(c)
        })
        res.on('end', () => {
          const end = process.hrtime.bigint()
          clearTimeout(timer)
          resolve({ status: res.statusCode, text: Buffer.concat(chunks).toString('utf8'), ttfbMs: Number((first ?? end) - t0) / 1e6, totalMs: Number(end - t0) / 1e6 })
        })
        res.on('error', reject)
      },
    )
    const timer = setTimeout(() => req.destroy(new Error(`request to ${target.name} timed out`)), timeoutMs)
    req.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    const t0 = process.hrtime.bigint()
    req.end(body)
  })
}

/** 50 concurrent clients × 4 requests, every answer checked in full. */
async function preflight(target, mode) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 50 })
  const failures = []
  try {
    await Promise.all(
      Array.from({ length: 50 }, async () => {
        for (let i = 0; i < 4; i++) {
          const r = await request(target, mode, agent)
          const problem = validate(mode, r.status, r.text)
          if (problem) failures.push(problem)
        }
      }),
    )
  } finally {
    agent.destroy()
  }
  return { requests: 200, failures: failures.length, example: failures[0] ?? null }
}

/** N sequential streamed requests on one keep-alive connection; time to first body byte. */
async function ttfbSeries(target, n) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  const ttfb = []
  let failures = 0
  try {
    for (let i = 0; i < n; i++) {
      const r = await request(target, 'stream', agent)
      if (validate('stream', r.status, r.text)) failures++
      else ttfb.push(r.ttfbMs)
    }
  } finally {
    agent.destroy()
  }
  return { medianMs: median(ttfb), ...percentiles(ttfb, [90, 99]), failures }
}

/** Pids whose CPU is read around every load: all children plus the loader itself. */
let watched = []

/** CPU ticks of each watched child, summed over its process tree (a --workers primary and its workers). */
function cpuSnapshot() {
  const snap = { loader: process.cpuUsage() }
  const kids = childrenMap()
  for (const t of watched) snap[t.name] = sumCpuTicks(processTree(t.pid, kids))
  return snap
}

function cpuDelta(before, after, elapsedS, completed) {
  const tck = clockTicks()
  const out = {}
  for (const t of watched) {
    const b = before[t.name]
    const a = after[t.name]
    if (!b || !a) continue
    const userS = (a.user - b.user) / tck
    const systemS = (a.system - b.system) / tck
    const seconds = userS + systemS
    out[t.name] = { cpuSeconds: seconds, userS, systemS, utilPct: (100 * seconds) / elapsedS, usPerReq: completed > 0 ? (1e6 * seconds) / completed : null }
  }
  const l = after.loader
  const loaderS = (l.user - before.loader.user + l.system - before.loader.system) / 1e6
  out.loader = { cpuSeconds: loaderS, userS: (l.user - before.loader.user) / 1e6, systemS: (l.system - before.loader.system) / 1e6, utilPct: (100 * loaderS) / elapsedS }
  return out
}

/** One bounded autocannon load; latencies are taken from its per-response timings (sub-ms). */
async function load(target, mode, connections, durationS, { rssIntervalMs = 100 } = {}) {
  const latencies = []
  let bytes = 0
  // RSS is summed over the target's process tree, as it stands when the load starts.
  const pids = processTree(target.pid)
  const sampler = rssSampler(pids, rssIntervalMs)
  const hwmBefore = sumMemory(pids)?.hwm ?? null
  const cpuBefore = cpuSnapshot()
  const t0 = process.hrtime.bigint()
  const result = await new Promise((resolve, reject) => {
    const inst = autocannon(
      {
        url: `${target.url}/v1/chat/completions`,
        method: 'POST',
        headers: { 'content-type': 'application/json', ...target.headers },
        body: BODIES[mode],
        connections,
        duration: durationS,
        timeout: 10,
        pipelining: 1,
      },
      (err, res) => {
        clearTimeout(guard)
        if (err) reject(err)
        else resolve(res)
      },
    )
    inst.on('response', (_client, statusCode, resBytes, responseTime) => {
      if (statusCode >= 200 && statusCode < 300) latencies.push(responseTime)
      bytes += resBytes
    })
    const guard = setTimeout(() => inst.stop(), (durationS + 30) * 1000)
  })
  const elapsedS = Number(process.hrtime.bigint() - t0) / 1e9
  const cpuAfter = cpuSnapshot()
  const rss = sampler.stop()
  const completed = latencies.length
  const cpu = cpuDelta(cpuBefore, cpuAfter, elapsedS, completed)
  return {
    target: target.name,
    mode,
    connections,
    durationS,
    elapsedS,
    completed,
    rps: completed / elapsedS,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    resets: result.resets ?? 0,
    bytes,
    latencyMs: percentiles(latencies, [50, 90, 99]),
    cpu,
    targetCpuUsPerReq: cpu[target.name]?.usPerReq ?? null,
    loadavg1: Math.round(os.loadavg()[0] * 100) / 100,
    rss: { peakSampledMB: rss.peak / MB, hwmBeforeMB: hwmBefore === null ? null : hwmBefore / MB, hwmAfterMB: (sumMemory(pids)?.hwm ?? 0) / MB },
  }
}

// ---- the plan ------------------------------------------------------------------------------

function machine() {
  const cpus = os.cpus()
  return {
    cpuModel: cpus[0]?.model ?? 'unknown',
    cpus: cpus.length,
    cpuMHz: cpus[0]?.speed ?? null,
    totalMemGB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    clockTicks: clockTicks(),
    loadavgAtStart: os.loadavg().map((x) => Math.round(x * 100) / 100),
  }
}

/** Which gateway is measured: the commit, whether src/ differs from it, and how fresh dist/ is. */
function buildInfo() {
  const newest = (dir) => {
    let t = 0
    for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
      if (e.isFile()) t = Math.max(t, fs.statSync(path.join(e.parentPath ?? e.path, e.name)).mtimeMs)
    }
    return t
  }
  const git = (...args) => {
    try {
      return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'ignore'] }).trim()
    } catch {
      return null
    }
  }
  const distMs = newest(path.join(ROOT, 'dist'))
  const srcMs = newest(path.join(ROOT, 'src'))
  const status = git('status', '--porcelain', '--', 'src')
  return {
    commit: git('rev-parse', '--short', 'HEAD'),
    srcDirty: status === null ? null : status.length > 0,
    distBuiltAt: new Date(distMs).toISOString(),
    distOlderThanSrc: distMs < srcMs,
  }
}

/** nTargets are loaded in every scenario; each --workers gateway in one per round (and starts in ~5 s). */
function estimateSeconds(nTargets) {
  const nWorkers = cfg.workers.length
  const loads = cfg.rounds * (cfg.modes.length * cfg.connections.length * nTargets + nWorkers)
  return 40 + nWorkers * 5 + (nTargets * cfg.modes.length + nWorkers) * (cfg.warmup + 2) + loads * (cfg.duration + 1.5) + (cfg.modes.includes('stream') && !cfg.profile ? cfg.rounds * nTargets * cfg.ttfbRequests * 0.02 : 0) + cfg.soak + 20
}

/**
 * Whether a target is loaded in a mode (and at c connections, when given): a peer not in a mode
 * it answers wrongly, a --workers gateway only in its one scenario.
 */
const loadsIn = (t, mode, c) => !t.brokenModes?.has(mode) && (!t.only || (t.only.mode === mode && (c === undefined || t.only.connections === c)))

const workersName = (n) => `gw-redis-w${n}`
const scenarios = () => cfg.modes.flatMap((mode) => cfg.connections.map((c) => ({ mode, connections: c })))
const keyOf = (target, mode, c) => `${target}|${mode}|c${c}`

function summariseRounds(loads, ttfbs, targetNames) {
  const rows = []
  const byKey = new Map()
  for (const l of loads) {
    const k = keyOf(l.target, l.mode, l.connections)
    if (!byKey.has(k)) byKey.set(k, [])
    byKey.get(k).push(l)
  }
  const at = (name, mode, c, round) => loads.find((l) => l.target === name && l.mode === mode && l.connections === c && l.round === round)
  for (const { mode, connections: c } of scenarios()) {
    for (const name of targetNames) {
      const list = byKey.get(keyOf(name, mode, c)) ?? []
      if (list.length === 0) continue
      const num = (x) => typeof x === 'number' && Number.isFinite(x)
      // A paired figure of one round: this target against direct (d) or the bare proxy (p) in
      // the same round and scenario; nothing when either side completed no request.
      const paired = (fn) => median(list.map((l) => {
        const d = at('direct', mode, c, l.round)
        const p = at('proxy', mode, c, l.round)
        if (l.completed === 0) return null
        const v = fn(l, d?.completed ? d : null, p?.completed ? p : null)
        return num(v) ? v : null
      }))
      rows.push({
        target: name,
        mode,
        connections: c,
        rounds: list.length,
        rps: median(list.map((l) => l.rps)),
        p50: median(list.map((l) => l.latencyMs.p50)),
        p99: median(list.map((l) => l.latencyMs.p99)),
        addedP50: name === 'direct' ? null : paired((l, d) => (d ? l.latencyMs.p50 - d.latencyMs.p50 : null)),
        addedP99: name === 'direct' ? null : paired((l, d) => (d ? l.latencyMs.p99 - d.latencyMs.p99 : null)),
        throughputVsProxy: name === 'direct' || name === 'proxy' ? null : paired((l, _d, p) => (p ? l.rps / p.rps : null)),
        cpuUsPerReq: median(list.map((l) => l.targetCpuUsPerReq)),
        cpuVsProxy: name === 'direct' || name === 'proxy' ? null : paired((l, _d, p) => (p && num(p.targetCpuUsPerReq) && num(l.targetCpuUsPerReq) ? l.targetCpuUsPerReq / p.targetCpuUsPerReq : null)),
        peakRssMB: Math.max(...list.map((l) => l.rss.peakSampledMB)),
        loaderUtilPct: median(list.map((l) => l.cpu.loader.utilPct)),
        failed: list.reduce((a, l) => a + l.non2xx + l.errors + l.timeouts, 0),
      })
    }
  }
  const ttfb = []
  for (const name of targetNames) {
    const list = ttfbs.filter((t) => t.target === name)
    if (list.length === 0) continue
    ttfb.push({
      target: name,
      medianMs: median(list.map((t) => t.medianMs)),
      p99Ms: median(list.map((t) => t.p99)),
      addedMs: name === 'direct' ? null : median(list.map((t) => {
        const d = ttfbs.find((x) => x.target === 'direct' && x.round === t.round)
        return d && d.medianMs !== null && t.medianMs !== null ? t.medianMs - d.medianMs : null
      })),
      failures: list.reduce((a, t) => a + t.failures, 0),
    })
  }
  // --workers: each N against the first N listed, paired by round (the machine's load drifts).
  const [base, ...more] = cfg.workers.map(workersName)
  const scaling = more.map((name) => {
    const ratio = (fn) => median(loads.filter((l) => l.target === name && l.completed > 0).map((l) => {
      const b = at(base, 'json', 50, l.round)
      return b?.completed ? fn(l, b) : null
    }))
    return { target: name, base, rps: ratio((l, b) => l.rps / b.rps), cpuUsPerReq: ratio((l, b) => l.targetCpuUsPerReq / b.targetCpuUsPerReq) }
  })
  // The private Redis's CPU per request of each --workers gateway's loads (not in its row).
  const redisCpu = cfg.workers.map(workersName).map((name) => ({
    target: name,
    usPerReq: median(loads.filter((l) => l.target === name).map((l) => l.cpu.redis?.usPerReq)),
  })).filter((r) => r.usPerReq !== null)
  return { rows, ttfb, scaling, redisCpu }
}

function render(summary) {
  const header = ['target', 'mode', 'c', 'req/s', 'p50 ms', 'p99 ms', '+p50 ms', '+p99 ms', 'thr/proxy', 'cpu us/req', 'cpu/proxy', 'peak RSS MB', 'failed']
  const rows = summary.rows.map((r) => [
    r.target,
    r.mode,
    r.connections,
    fmt(r.rps, 0),
    fmt(r.p50, 3),
    fmt(r.p99, 3),
    signed(r.addedP50),
    signed(r.addedP99),
    r.throughputVsProxy === null ? '-' : `${fmt(r.throughputVsProxy, 2)}x`,
    fmt(r.cpuUsPerReq, 0),
    r.cpuVsProxy === null ? '-' : `${fmt(r.cpuVsProxy, 2)}x`,
    fmt(r.peakRssMB, 1),
    r.failed,
  ])
  let out = table(header, rows)
  if (summary.ttfb.length > 0) {
    out += '\n\nstreamed time to first body byte, c=1 (median of per-round medians):\n'
    out += table(
      ['target', 'mode', 'c', 'TTFB p50 ms', 'TTFB p99 ms', 'added ms', 'failed'],
      summary.ttfb.map((t) => [t.target, 'stream', 1, fmt(t.medianMs, 3), fmt(t.p99Ms, 3), signed(t.addedMs), t.failures]),
    )
  }
  if (summary.scaling.length > 0 || summary.redisCpu.length > 0) out += '\n'
  for (const s of summary.scaling) out += `\nscaling: ${s.target} vs ${s.base}, json c=50 (median of per-round ratios): req/s ${fmt(s.rps, 2)}x, cpu us/req ${fmt(s.cpuUsPerReq, 2)}x`
  if (summary.redisCpu.length > 0) out += `\nprivate redis-server cpu us/req (not in the rows): ${summary.redisCpu.map((r) => `${r.target} ${fmt(r.usPerReq, 0)}`).join(', ')}`
  return out
}

function verdicts(summary, soak) {
  const row = (target, mode, c) => summary.rows.find((r) => r.target === target && r.mode === mode && r.connections === c)
  const gwJson50 = row('gateway', 'json', 50)
  const gwJson1 = row('gateway', 'json', 1)
  const gwTtfb = summary.ttfb.find((t) => t.target === 'gateway')
  // The soak is a c=50 load too: its samples count toward the peak.
  const rss50 = [
    ...summary.rows.filter((r) => r.target === 'gateway' && r.connections === 50).map((r) => r.peakRssMB),
    ...(soak ? soak.samples.map((s) => s.rssMB) : []),
  ]
  const check = (name, value, op, limit, unit) => ({
    name,
    value,
    op,
    limit,
    unit,
    result: value === null || value === undefined ? 'N/A' : (op === '>=' ? value >= limit : value <= limit) ? 'PASS' : 'FAIL',
  })
  return [
    check('non-streamed c=50 throughput vs bare proxy', gwJson50?.throughputVsProxy ?? null, '>=', 0.5, 'x'),
    check('non-streamed c=50 CPU per request vs bare proxy', gwJson50?.cpuVsProxy ?? null, '<=', 2, 'x'),
    check('non-streamed c=1 added p50 vs direct', gwJson1?.addedP50 ?? null, '<=', 0.3, ' ms'),
    check('streamed c=1 added TTFB (median) vs direct', gwTtfb?.addedMs ?? null, '<=', 1, ' ms'),
    check(soak ? 'gateway peak RSS under c=50 (loads and soak)' : 'gateway peak RSS under c=50', rss50.length ? Math.max(...rss50) : null, '<=', 150, ' MB'),
    soak
      ? check(`no RSS growth over ${soak.seconds} s soak (late - early mean)`, soak.growthMB, '<=', Math.round(soak.allowedMB * 10) / 10, ' MB')
      : { name: 'no RSS growth over soak', value: null, op: '', limit: null, unit: '', result: 'N/A', note: 'run with --soak 60' },
  ]
}

function renderVerdicts(list) {
  return list
    .map((v) => {
      const value = v.value === null ? '-' : `${fmt(v.value, v.unit === 'x' ? 2 : v.unit === ' MB' ? 1 : 3)}${v.unit}`
      const target = v.limit === null ? (v.note ?? '') : `target ${v.op} ${v.limit}${v.unit}`
      return `${v.result.padEnd(4)}  ${v.name}: ${value}  (${target})`
    })
    .join('\n')
}

async function soakRun(gateway, seconds, sampleS) {
  const samples = []
  const t0 = Date.now()
  const take = () => {
    const m = memory(gateway.pid)
    if (m?.rss) samples.push({ t: Math.round((Date.now() - t0) / 100) / 10, rssMB: Math.round((m.rss / MB) * 10) / 10 })
  }
  take()
  const timer = setInterval(take, sampleS * 1000)
  let result
  try {
    result = await load(gateway, 'json', 50, seconds)
  } finally {
    clearInterval(timer)
  }
  take()
  // Growth: mean RSS of the last third of the samples against the first third, leaving out the
  // first 10 s (heap sizing). Allowed: the larger of 10 MB and 10% of the early level.
  const steady = samples.filter((s) => s.t >= Math.min(10, seconds / 3))
  const third = Math.max(1, Math.floor(steady.length / 3))
  const mean = (xs) => xs.reduce((a, s) => a + s.rssMB, 0) / xs.length
  const early = mean(steady.slice(0, third))
  const late = mean(steady.slice(-third))
  const growthMB = late - early
  const allowedMB = Math.max(10, early * 0.1)
  return { seconds, sampleS, samples, earlyMB: early, lateMB: late, growthMB, allowedMB, grows: growthMB > allowedMB, load: result }
}

// ---- main ----------------------------------------------------------------------------------

async function main() {
  const started = new Date()
  const stamp = started.toISOString().replace(/[-:]/g, '').replace(/\..*/, '').replace('T', '-')
  const resultsDir = path.join(HERE, 'results')
  fs.mkdirSync(resultsDir, { recursive: true })
  const tmp = fs.mkdtempSync(path.join(resultsDir, `tmp-${stamp}-`))
  tmpDir = tmp
  const nTargets = cfg.profile ? 1 : 3 + cfg.peers.length // the --workers gateways are counted apart
  const hardS = argv.timeout !== undefined ? Number(argv.timeout) : Math.ceil(estimateSeconds(nTargets) * 1.5 + 60)
  if (!Number.isFinite(hardS) || hardS < 10 || hardS > 86_400) throw new Error('--timeout must be a number of seconds from 10 to 86400')
  const lifetimeS = hardS + 60
  const hard = setTimeout(() => {
    console.error(`bench: hard timeout of ${hardS} s reached, stopping`)
    cleanup().finally(() => process.exit(2))
  }, hardS * 1000)
  hard.unref()

  const info = machine()
  console.log(`bench: ${info.cpus} x ${info.cpuModel}, ${info.totalMemGB} GB, node ${info.node}, load ${info.loadavgAtStart.join(' ')}`)
  if (info.loadavgAtStart[0] > info.cpus / 2) console.log(`bench: warning: load average ${info.loadavgAtStart[0]} on ${info.cpus} CPUs before starting; other work on this machine will skew the figures`)
  console.log(`bench: ${cfg.rounds} round(s) x ${cfg.duration} s per load, modes ${cfg.modes.join('+')}, c=${cfg.connections.join(',')}; hard limit ${hardS} s (est. ${Math.round(estimateSeconds(nTargets))} s)`)

  if (!fs.existsSync(path.join(ROOT, 'dist', 'commands', 'serve.js'))) throw new Error('dist/ is missing: run `npm run build` first')
  const build = buildInfo()
  console.log(`bench: gateway at commit ${build.commit ?? '?'}${build.srcDirty ? ' (src/ has uncommitted changes)' : ''}, dist/ built ${build.distBuiltAt}`)
  if (build.distOlderThanSrc) console.log('bench: warning: dist/ is older than src/: run `npm run build` to measure the current source')

  const upstream = await startScript('direct', 'mock-upstream.js', [], lifetimeS)
  const targets = [upstream]
  // Watched like a target (its CPU per request goes in the results), never loaded itself.
  const redis = cfg.workers.length > 0 && !argv.redis ? await startRedis() : null
  let profileDir = null
  if (!cfg.profile) targets.push(await startScript('proxy', 'bare-proxy.js', ['--upstream', upstream.url], lifetimeS))
  const nodeFlags = []
  if (cfg.profile) {
    profileDir = path.join(resultsDir, `profile-${stamp}`)
    fs.mkdirSync(profileDir, { recursive: true })
    nodeFlags.push('--cpu-prof', '--cpu-prof-dir', profileDir)
  }
  const gateway = await startGateway(tmp, upstream.port, { nodeFlags })
  targets.push(gateway)
  for (const n of cfg.workers) targets.push(await startGateway(tmp, upstream.port, { workers: n, redis: argv.redis ?? redis.url }))
  const skipped = []
  for (const peer of cfg.peers) {
    const p = await startPortkey(upstream.port, lifetimeS)
    if (p.skipped) {
      skipped.push({ peer, reason: p.skipped })
      console.log(`bench: peer ${peer} skipped: ${p.skipped}`)
    } else targets.push(p)
  }
  watched = [...targets, ...(redis ? [redis] : [])]
  // In --profile mode only the gateway is loaded; the mock upstream is just its upstream.
  const loadTargets = cfg.profile ? [gateway] : targets
  const targetNames = loadTargets.map((t) => t.name)
  console.log(`bench: targets ${targets.map((t) => `${t.name}=${t.url} (pid ${t.pid})`).join(', ')}${redis ? `; private ${redis.url} (pid ${redis.pid})` : ''}`)

  // Every target must answer every request correctly, also at c=50.
  const checks = {}
  for (const t of loadTargets) {
    for (const mode of cfg.modes) {
      if (!loadsIn(t, mode)) continue
      const r = await preflight(t, mode)
      checks[`${t.name}|${mode}`] = r
      if (r.failures > 0) {
        const msg = `${t.name} ${mode}: ${r.failures}/${r.requests} answers wrong, e.g. ${r.example}`
        if (t.peer) {
          // A peer that cannot answer a mode correctly is not loaded in that mode.
          t.brokenModes = new Set([...(t.brokenModes ?? []), mode])
          skipped.push({ peer: t.name, mode, reason: msg })
          console.log(`bench: peer ${msg}; not loaded in ${mode} mode`)
        }
        else throw new Error(`preflight failed: ${msg}`)
      }
    }
  }
  console.log(`bench: preflight ok (50 concurrent clients x 4 requests per target and mode, every answer checked)`)

  if (cfg.warmup > 0) {
    for (const t of loadTargets) for (const mode of cfg.modes) if (loadsIn(t, mode, 50)) await load(t, mode, 50, cfg.warmup)
    console.log(`bench: warmed up (${cfg.warmup} s per target and mode at c=50)`)
  }

  const loads = []
  const ttfbs = []
  const measuredFromUs = Number(process.hrtime.bigint() / 1000n)
  for (let round = 1; round <= cfg.rounds; round++) {
    const roundStart = Date.now()
    for (const { mode, connections } of scenarios()) {
      // Round-robin over targets, starting one further each round so none is always first.
      for (let i = 0; i < loadTargets.length; i++) {
        const t = loadTargets[(i + round - 1) % loadTargets.length]
        if (!loadsIn(t, mode, connections)) continue
        const r = await load(t, mode, connections, cfg.duration)
        r.round = round
        loads.push(r)
        if (r.non2xx + r.errors + r.timeouts > 0) console.log(`bench: warning: ${t.name} ${mode} c=${connections}: ${r.non2xx} non-2xx, ${r.errors} errors, ${r.timeouts} timeouts`)
      }
    }
    if (cfg.modes.includes('stream') && cfg.ttfbRequests > 0 && !cfg.profile) {
      for (let i = 0; i < loadTargets.length; i++) {
        const t = loadTargets[(i + round - 1) % loadTargets.length]
        if (!loadsIn(t, 'stream', 1)) continue
        const r = await ttfbSeries(t, cfg.ttfbRequests)
        ttfbs.push({ target: t.name, round, ...r })
      }
    }
    console.log(`bench: round ${round}/${cfg.rounds} done in ${Math.round((Date.now() - roundStart) / 1000)} s (load average ${os.loadavg()[0].toFixed(2)})`)
  }

  const measuredToUs = Number(process.hrtime.bigint() / 1000n)
  let soak = null
  if (cfg.soak > 0) {
    console.log(`bench: soak: gateway, non-streamed, c=50 for ${cfg.soak} s, RSS every ${cfg.soakSample} s`)
    soak = await soakRun(gateway, cfg.soak, cfg.soakSample)
    console.log(`bench: soak RSS samples (MB): ${soak.samples.map((s) => s.rssMB).join(' ')}`)
  }

  const summary = summariseRounds(loads, ttfbs, targetNames)
  const printed = render(summary)
  console.log(`\n${printed}\n`)
  const vs = cfg.profile ? [] : verdicts(summary, soak)
  if (!cfg.profile) console.log(`targets:\n${renderVerdicts(vs)}\n`)
  const loaderBusy = summary.rows.filter((r) => r.connections > 1 && r.loaderUtilPct > 90)
  if (loaderBusy.length) console.log(`note: the load generator was >90% busy in: ${loaderBusy.map((r) => `${r.target} ${r.mode} c=${r.connections}`).join(', ')} (its numbers are a lower bound)`)

  // Stop the gateway before counting its log rows (group commit, CSV flush) and for the profile.
  await stopChild(gateway.child, 15_000)
  const csvFiles = fs.readdirSync(tmp).filter((f) => f.startsWith('requests') && f.endsWith('.csv'))
  let csvRows = 0
  for (const f of csvFiles) csvRows += Math.max(0, fs.readFileSync(path.join(tmp, f), 'utf8').split('\n').filter((l) => l.length > 0).length - 1)
  const gatewayRequests = loads.filter((l) => l.target === 'gateway').reduce((a, l) => a + l.completed, 0) + (soak?.load.completed ?? 0)
  console.log(`bench: gateway CSV log holds ${csvRows} rows (${gatewayRequests} measured 2xx answers + preflight, warm-up and TTFB requests)`)

  let profile = null
  if (cfg.profile) {
    const files = fs.readdirSync(profileDir).filter((f) => f.endsWith('.cpuprofile'))
    if (files.length === 0) throw new Error(`no .cpuprofile written in ${profileDir}`)
    const file = path.join(profileDir, files[0])
    profile = { file: path.relative(ROOT, file), ...summarise(JSON.parse(fs.readFileSync(file, 'utf8')), 25, { fromUs: measuredFromUs, toUs: measuredToUs }) }
    console.log(formatSummary(profile))
    console.log(`\nbench: profile kept in ${path.relative(ROOT, file)} (open it in Chrome DevTools > Performance)`)
  }

  const out = argv.out ?? path.join(resultsDir, `${cfg.profile ? 'profile' : 'bench'}-${stamp}.json`)
  const report = {
    startedAt: started.toISOString(),
    finishedAt: new Date().toISOString(),
    command: `node bench/run.js ${process.argv.slice(2).join(' ')}`.trim(),
    config: cfg,
    machine: { ...info, loadavgAtEnd: os.loadavg().map((x) => Math.round(x * 100) / 100) },
    gatewayBuild: build,
    targets: targets.map((t) => ({ name: t.name, pid: t.pid, url: t.url, version: t.version })),
    skipped,
    preflight: checks,
    summary,
    verdicts: vs,
    table: printed,
    ttfbRaw: ttfbs,
    loads,
    soak,
    csvRows,
    profile,
  }
  fs.writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`)
  console.log(`bench: results written to ${path.relative(process.cwd(), out)}`)
  clearTimeout(hard)
  await cleanup()
  if (argv.keep) console.log(`bench: kept ${path.relative(process.cwd(), tmp)}`)
}

main().then(
  () => process.exit(0),
  async (err) => {
    console.error(`bench: ${err?.stack ?? err}`)
    await cleanup()
    process.exit(1)
  },
)
