// Summarises a V8 .cpuprofile (from `node --cpu-prof`): self time by function and by module,
// and inclusive (total) time of the gateway's own functions.
//
//   node bench/profile-summary.js FILE.cpuprofile [--top 25]
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

/** Which module a call frame belongs to: an npm package, a gateway file, or node internals. */
function moduleOf(url) {
  if (!url) return '(native/V8)'
  const nm = url.lastIndexOf('/node_modules/')
  if (nm >= 0) {
    const rest = url.slice(nm + '/node_modules/'.length).split('/')
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]
  }
  if (url.startsWith('node:')) {
    const parts = url.slice(5).split('/')
    return parts[0] === 'internal' ? `node:internal/${parts[1] ?? ''}`.replace(/\.js$/, '') : `node:${parts[0]}`
  }
  const dist = url.indexOf('/dist/')
  if (dist >= 0) return `gateway dist/${url.slice(dist + 6)}`
  if (url.includes('/bin/run.js')) return 'gateway bin/run.js'
  return url.replace(/^file:\/\//, '')
}

/** `window`: only samples taken within [fromUs, toUs] of the monotonic clock (process.hrtime). */
export function summarise(profile, top = 25, window = null) {
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]))
  const parent = new Map()
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  // Self time per node from the samples and their time deltas (µs).
  const selfUs = new Map()
  let totalUs = 0
  let at = profile.startTime
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = profile.timeDeltas[i] ?? 0
    at += dt
    if (window && (at < window.fromUs || at > window.toUs)) continue
    const id = profile.samples[i]
    selfUs.set(id, (selfUs.get(id) ?? 0) + dt)
    totalUs += dt
  }
  const idleUs = [...selfUs].filter(([id]) => nodes.get(id)?.callFrame.functionName === '(idle)').reduce((a, [, v]) => a + v, 0)
  const busyUs = totalUs - idleUs
  const byFunction = new Map()
  const byModule = new Map()
  const inclusive = new Map()
  const moduleInclusive = new Map()
  for (const [id, us] of selfUs) {
    const cf = nodes.get(id).callFrame
    if (cf.functionName === '(idle)') continue
    const mod = moduleOf(cf.url)
    const fn = `${cf.functionName || '(anonymous)'} ${mod}${cf.url ? `:${cf.lineNumber + 1}` : ''}`
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + us)
    byModule.set(mod, (byModule.get(mod) ?? 0) + us)
    // Inclusive time: count each distinct function (and module) once per stack.
    const mods = new Set()
    for (let cur = id; cur !== undefined; cur = parent.get(cur)) mods.add(moduleOf(nodes.get(cur).callFrame.url))
    for (const m of mods) moduleInclusive.set(m, (moduleInclusive.get(m) ?? 0) + us)
    const seen = new Set()
    for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
      const f = nodes.get(cur).callFrame
      const key = `${f.functionName || '(anonymous)'} ${moduleOf(f.url)}${f.url ? `:${f.lineNumber + 1}` : ''}`
      if (seen.has(key)) continue
      seen.add(key)
      inclusive.set(key, (inclusive.get(key) ?? 0) + us)
    }
  }
  const rank = (map, filter = () => true) =>
    [...map]
      .filter(([k]) => filter(k))
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => ({ name, ms: Math.round(us / 1000), pctBusy: Math.round((1000 * us) / busyUs) / 10 }))
  return {
    window: window ? { fromUs: window.fromUs, toUs: window.toUs } : null,
    wallMs: Math.round(totalUs / 1000),
    busyMs: Math.round(busyUs / 1000),
    idlePct: Math.round((1000 * idleUs) / totalUs) / 10,
    selfByModule: rank(byModule),
    selfByFunction: rank(byFunction),
    inclusiveByModule: rank(moduleInclusive, (k) => k !== '(native/V8)'),
    inclusiveGateway: rank(inclusive, (k) => k.includes(' gateway dist/')),
    inclusiveAll: rank(inclusive, (k) => !k.startsWith('(root)') && !k.startsWith('(program)')),
  }
}

export function formatSummary(s) {
  const block = (title, rows) => [title, ...rows.map((r) => `  ${String(r.pctBusy).padStart(5)}%  ${String(r.ms).padStart(6)} ms  ${r.name}`)].join('\n')
  return [
    `profile: ${s.wallMs} ms sampled${s.window ? ' (measured loads only)' : ''}, ${s.busyMs} ms busy (${s.idlePct}% idle); percentages are of busy time`,
    block('self time by module:', s.selfByModule),
    block('self time by function:', s.selfByFunction),
    block('inclusive time by module (synchronous stacks only; a module counted once per sample):', s.inclusiveByModule),
    block('inclusive time, gateway functions:', s.inclusiveGateway),
    block('inclusive time, all functions:', s.inclusiveAll),
  ].join('\n\n')
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const file = process.argv[2]
  if (!file) {
    console.error('usage: node bench/profile-summary.js FILE.cpuprofile [--top N]')
    process.exit(2)
  }
  const topAt = process.argv.indexOf('--top')
  const top = topAt > 0 ? Number(process.argv[topAt + 1]) : 25
  console.log(formatSummary(summarise(JSON.parse(fs.readFileSync(file, 'utf8')), top)))
}
