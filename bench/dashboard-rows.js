// Synthetic request-log rows for the dashboard's benchmark and screenshots: written straight
// into request_log, usage_rollup, usage_hourly and latency_hourly (one transaction per 50,000 rows), as the gateway's own
// batch write would leave them, only much faster than sending that many requests.
import Database from 'better-sqlite3'
import { latencyBucket } from '../dist/core/latency-histogram.js'

const MODELS = [
  ['gpt-4o-mini', 0.15, 0.6],
  ['gpt-4o', 2.5, 10],
  ['claude-3-5-haiku', 0.8, 4],
  ['llama-3.1-70b', 0.9, 0.9],
]
const ERRORS = [
  [429, 'rate_limit_exceeded', 0.02],
  [429, 'daily_limit_exceeded', 0.005],
  [400, 'max_tokens_exceeded', 0.006],
  [401, 'invalid_api_key', 0.003],
  [502, 'upstream_error', 0.004],
  [504, 'upstream_timeout', 0.002],
]

/** A small deterministic generator, so two runs fill the same log. */
function random(seed) {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6d2b79f5) >>> 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/**
 * Fills `rows` log rows over the `days` before `now` for `keys` ({ id, name, weight }), the
 * later ones denser. UTC budget days (the gateway's default time zone).
 */
export function fillLog(dbPath, { rows, days, now, keys, seed = 7 }) {
  const db = new Database(dbPath)
  db.pragma('journal_mode = WAL')
  db.pragma('synchronous = OFF')
  const insert = db.prepare(`insert into request_log (timestamp, request_id, key_id, key_name, ip, method, route, model, status, error_code,
    prompt_tokens, completion_tokens, total_tokens, estimated, latency_ms, upstream_ms, queued_ms, streamed, user_agent, cost_micros, day)
    values (?, ?, ?, ?, '10.0.0.7', 'POST', '/v1/chat/completions', ?, ?, ?, ?, ?, ?, 0, ?, ?, 0, ?, 'openai-node/6', ?, ?)`)
  const upsert = db.prepare(`insert into usage_rollup (day, key_id, model, requests, chat_requests, errors, rate_limited, prompt_tokens, completion_tokens, total_tokens, cost_micros)
    values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) on conflict (day, key_id, model) do update set requests = requests + excluded.requests,
    chat_requests = chat_requests + excluded.chat_requests, errors = errors + excluded.errors, rate_limited = rate_limited + excluded.rate_limited,
    prompt_tokens = prompt_tokens + excluded.prompt_tokens, completion_tokens = completion_tokens + excluded.completion_tokens,
    total_tokens = total_tokens + excluded.total_tokens, cost_micros = coalesce(cost_micros, 0) + excluded.cost_micros`)
  const upsertHour = db.prepare(`insert into usage_hourly (hour, key_id, model, requests, errors, rate_limited, prompt_tokens, completion_tokens, total_tokens, cost_micros)
    values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) on conflict (hour, key_id, model) do update set requests = requests + excluded.requests,
    errors = errors + excluded.errors, rate_limited = rate_limited + excluded.rate_limited,
    prompt_tokens = prompt_tokens + excluded.prompt_tokens, completion_tokens = completion_tokens + excluded.completion_tokens,
    total_tokens = total_tokens + excluded.total_tokens, cost_micros = coalesce(cost_micros, 0) + excluded.cost_micros`)
  const upsertLatency = db.prepare(`insert into latency_hourly (hour, bucket, requests) values (?, ?, ?)
    on conflict (hour, bucket) do update set requests = requests + excluded.requests`)
  const rnd = random(seed)
  const weights = keys.map((k) => k.weight ?? 1)
  const weightSum = weights.reduce((a, b) => a + b, 0)
  const pickKey = () => {
    let r = rnd() * weightSum
    for (let i = 0; i < keys.length; i++) if ((r -= weights[i]) < 0) return keys[i]
    return keys[keys.length - 1]
  }
  const span = days * 86_400_000
  // Timestamps in order (as the gateway writes them): n sorted offsets, denser towards now.
  const offsets = Float64Array.from({ length: rows }, () => Math.sqrt(rnd()) * span).sort()
  const batch = db.transaction((from, to) => {
    const sums = new Map()
    const hours = new Map()
    const latencies = new Map()
    for (let i = from; i < to; i++) {
      const t = now - span + offsets[i]
      const timestamp = new Date(t).toISOString()
      const day = timestamp.slice(0, 10)
      const key = pickKey()
      const [model, pin, pout] = MODELS[Math.floor(rnd() * rnd() * MODELS.length)]
      let status = 200
      let code = null
      let r = rnd()
      for (const [s, c, p] of ERRORS) if ((r -= p) < 0) ((status = s), (code = c), (r = 1))
      const ok = status === 200
      const prompt = ok || status >= 500 ? 50 + Math.floor(rnd() * 900) : 0
      const completion = ok ? 20 + Math.floor(rnd() * 400) : 0
      const total = prompt + completion
      const latency = ok ? Math.round(200 + rnd() * rnd() * 4000) : 3 + rnd() * 20
      const cost = Math.round(prompt * pin + completion * pout)
      insert.run(timestamp, `req_${i}`, key.id, key.name, model, status, code, prompt, completion, total, latency, ok ? latency - 2 : null, rnd() < 0.3 ? 1 : 0, cost, day)
      const id = `${day}\0${key.id}\0${model}`
      const s = sums.get(id) ?? sums.set(id, [day, key.id, model, 0, 0, 0, 0, 0, 0, 0, 0]).get(id)
      s[3]++
      s[4]++
      if (status >= 400) s[5]++
      if (status === 429) s[6]++
      s[7] += prompt
      s[8] += completion
      s[9] += total
      s[10] += cost
      const hour = timestamp.slice(0, 13)
      const hid = `${hour}\0${key.id}\0${model}`
      const h = hours.get(hid) ?? hours.set(hid, [hour, key.id, model, 0, 0, 0, 0, 0, 0, 0]).get(hid)
      h[3]++
      if (status >= 400) h[4]++
      if (status === 429) h[5]++
      h[6] += prompt
      h[7] += completion
      h[8] += total
      h[9] += cost
      const lid = `${hour}\0${latencyBucket(latency)}`
      const l = latencies.get(lid) ?? latencies.set(lid, [hour, latencyBucket(latency), 0]).get(lid)
      l[2]++
    }
    for (const s of sums.values()) upsert.run(...s)
    for (const h of hours.values()) upsertHour.run(...h)
    for (const l of latencies.values()) upsertLatency.run(...l)
  })
  for (let from = 0; from < rows; from += 50_000) batch(from, Math.min(rows, from + 50_000))
  db.close()
}
