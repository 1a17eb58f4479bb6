// A mock OpenAI upstream for the benchmark: node:http, 127.0.0.1 only, answers at once with
// precomputed bytes. POST …/chat/completions answers JSON, or SSE when the body has
// "stream":true (20 content chunks, then a usage chunk when stream_options.include_usage is
// true, then [DONE]). GET …/models lists one model. Prints {"port":N} when listening.
//
//   node bench/mock-upstream.js [--port 0] [--max-lifetime SECONDS]
//
// It exits when its stdin closes (the benchmark went away) or after --max-lifetime seconds.
import http from 'node:http'
import { parseArgs } from 'node:util'
import { serveUntilStopped } from './lib.js'

const { values } = parseArgs({
  options: { port: { type: 'string', default: '0' }, 'max-lifetime': { type: 'string', default: '3600' } },
})

const MODEL = 'gpt-4o-mini'
const CREATED = 1_700_000_000
const WORDS = Array.from({ length: 20 }, (_, i) => `word${i + 1} `)
const CONTENT = WORDS.join('')
const USAGE = { prompt_tokens: 10, completion_tokens: WORDS.length, total_tokens: 10 + WORDS.length }

const completion = Buffer.from(
  JSON.stringify({
    id: 'chatcmpl-bench',
    object: 'chat.completion',
    created: CREATED,
    model: MODEL,
    choices: [{ index: 0, message: { role: 'assistant', content: CONTENT, refusal: null }, logprobs: null, finish_reason: 'stop' }],
    usage: USAGE,
    system_fingerprint: 'fp_bench',
  }),
)

const base = { id: 'chatcmpl-bench', object: 'chat.completion.chunk', created: CREATED, model: MODEL, system_fingerprint: 'fp_bench' }
/** One buffer per SSE event, each written on its own, as a real upstream streams them. */
function sseEvents(withUsage) {
  const extra = withUsage ? { usage: null } : {}
  const events = WORDS.map((w, i) => ({
    ...base,
    choices: [{ index: 0, delta: i === 0 ? { role: 'assistant', content: w } : { content: w }, logprobs: null, finish_reason: i === WORDS.length - 1 ? 'stop' : null }],
    ...extra,
  }))
  if (withUsage) events.push({ ...base, choices: [], usage: USAGE })
  return [...events.map((e) => Buffer.from(`data: ${JSON.stringify(e)}\n\n`)), Buffer.from('data: [DONE]\n\n')]
}
const streamWithUsage = sseEvents(true)
const streamWithoutUsage = sseEvents(false)
const models = Buffer.from(JSON.stringify({ object: 'list', data: [{ id: MODEL, object: 'model', created: CREATED, owned_by: 'bench' }] }))
const notFound = Buffer.from(JSON.stringify({ error: { message: 'Unknown route', type: 'invalid_request_error', code: 'not_found', param: null } }))

const JSON_HEADERS = (len) => ({ 'content-type': 'application/json', 'content-length': len })
const SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' }
const STREAM_RE = /"stream"\s*:\s*true/
const USAGE_RE = /"include_usage"\s*:\s*true/

let served = 0
const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url.endsWith('/models')) {
    res.writeHead(200, JSON_HEADERS(models.length)).end(models)
    return
  }
  if (req.method !== 'POST' || !req.url.endsWith('/chat/completions')) {
    req.resume()
    res.writeHead(404, JSON_HEADERS(notFound.length)).end(notFound)
    return
  }
  const chunks = []
  req.on('data', (c) => chunks.push(c))
  req.on('end', () => {
    served++
    const body = chunks.length === 1 ? chunks[0].toString('latin1') : Buffer.concat(chunks).toString('latin1')
    if (!STREAM_RE.test(body)) {
      res.writeHead(200, JSON_HEADERS(completion.length)).end(completion)
      return
    }
    const events = USAGE_RE.test(body) ? streamWithUsage : streamWithoutUsage
    res.writeHead(200, SSE_HEADERS)
    for (let i = 0; i < events.length - 1; i++) res.write(events[i])
    res.end(events[events.length - 1])
  })
})
serveUntilStopped(server, Number(values.port), Number(values['max-lifetime']))
process.on('exit', () => process.stderr.write(`mock-upstream: served ${served} completions\n`))
