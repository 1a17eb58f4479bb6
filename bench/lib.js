// Small helpers for the benchmark: /proc readings, statistics, formatting.
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'

let clkTck = null
/** Clock ticks per second of utime/stime in /proc/PID/stat (`getconf CLK_TCK`, normally 100). */
export function clockTicks() {
  if (clkTck === null) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: 5000 }).trim()) || 100
    } catch {
      clkTck = 100
    }
  }
  return clkTck
}

/** The fields of /proc/PID/stat after the command name, from field 3 (state) on; null when it is gone. */
function statFields(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  } catch {
    return null
  }
}

/** utime and stime of a process, in clock ticks; null when it is gone. */
export function cpuTicks(pid) {
  const fields = statFields(pid)
  // fields[0] is field 3 (state); utime is field 14, stime field 15.
  return fields ? { user: Number(fields[11]), system: Number(fields[12]) } : null
}

/**
 * Every process's children, from the ppid (field 4) of each /proc/N/stat: this kernel has no
 * /proc/N/task/N/children. One scan serves any number of processTree calls.
 */
export function childrenMap() {
  const kids = new Map()
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const ppid = Number(statFields(name)?.[1])
    if (!ppid) continue
    if (!kids.has(ppid)) kids.set(ppid, [])
    kids.get(ppid).push(Number(name))
  }
  return kids
}

/** A process and all its descendants (a `serve --workers N` primary and its workers). */
export function processTree(pid, kids = childrenMap()) {
  const out = [pid]
  for (let i = 0; i < out.length; i++) out.push(...(kids.get(out[i]) ?? []))
  return out
}

/** utime and stime summed over processes, in clock ticks; null when the first (the root) is gone. */
export function sumCpuTicks(pids) {
  const all = pids.map(cpuTicks)
  if (!all[0]) return null
  return all.reduce((a, t) => (t ? { user: a.user + t.user, system: a.system + t.system } : a), { user: 0, system: 0 })
}

/** VmRSS and VmHWM (peak RSS) of a process, in bytes; null when it is gone. */
export function memory(pid) {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8')
    const kb = (name) => {
      const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)
      return m ? Number(m[1]) * 1024 : null
    }
    return { rss: kb('VmRSS'), hwm: kb('VmHWM') }
  } catch {
    return null
  }
}

/** VmRSS and VmHWM summed over processes, in bytes; null when none is left. */
export function sumMemory(pids) {
  const all = pids.map(memory).filter((m) => m !== null)
  if (all.length === 0) return null
  return { rss: all.reduce((a, m) => a + (m.rss ?? 0), 0), hwm: all.reduce((a, m) => a + (m.hwm ?? 0), 0) }
}

/** Samples the VmRSS summed over `pids` every `intervalMs` until stopped; returns the peak seen (bytes). */
export function rssSampler(pids, intervalMs = 100) {
  let peak = 0
  let count = 0
  const take = () => {
    const m = sumMemory(pids)
    if (m?.rss) {
      peak = Math.max(peak, m.rss)
      count++
    }
  }
  take()
  const timer = setInterval(take, intervalMs)
  return {
    stop() {
      clearInterval(timer)
      take()
      return { peak, count }
    },
  }
}

export function median(values) {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return null
  const mid = v.length >> 1
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2
}

/** Nearest-rank percentiles of a list of numbers. */
export function percentiles(values, ps = [50, 90, 99]) {
  const sorted = Float64Array.from(values).sort()
  const out = {}
  for (const p of ps) out[`p${p}`] = sorted.length ? sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] : null
  out.max = sorted.length ? sorted[sorted.length - 1] : null
  out.mean = sorted.length ? sorted.reduce((a, b) => a + b, 0) / sorted.length : null
  out.count = sorted.length
  return out
}

export const MB = 1024 * 1024

/** Formats a number or returns '-' for null. */
export function fmt(value, digits = 2) {
  if (value === null || value === undefined || !Number.isFinite(value)) return '-'
  return value.toFixed(digits)
}

export function signed(value, digits = 3) {
  if (value === null || value === undefined || !Number.isFinite(value)) return '-'
  return `${value >= 0 ? '+' : ''}${value.toFixed(digits)}`
}

/** A plain text table: header row, separator, rows; numbers right-aligned. */
export function table(header, rows) {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)))
  const line = (cells) => cells.map((c, i) => (i < 3 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join('  ')
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n')
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/**
 * Serves a bench helper server on 127.0.0.1 until its parent goes (stdin closes), a signal
 * comes or its lifetime runs out; prints {"port","pid"} when listening.
 */
export function serveUntilStopped(server, port, lifetimeS, onStop = () => {}) {
  server.keepAliveTimeout = 120_000
  server.headersTimeout = 125_000
  server.requestTimeout = 0
  server.maxRequestsPerSocket = 0
  server.listen(port, '127.0.0.1', () => {
    process.stdout.write(`${JSON.stringify({ port: server.address().port, pid: process.pid })}\n`)
  })
  const stop = () => {
    server.close()
    server.closeAllConnections()
    onStop()
    process.exit(0)
  }
  process.stdin.on('end', stop)
  process.stdin.on('error', stop)
  process.stdin.resume()
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  setTimeout(stop, lifetimeS * 1000).unref()
}
