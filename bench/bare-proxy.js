// The floor: a bare node:http reverse proxy that pipes each request to the upstream and the
// answer back over a keep-alive agent. No auth, no parsing, no logging. 127.0.0.1 only.
// Prints {"port":N} when listening.
//
//   node bench/bare-proxy.js --upstream http://127.0.0.1:PORT [--port 0] [--max-lifetime SECONDS]
import http from 'node:http'
import { parseArgs } from 'node:util'
import { serveUntilStopped } from './lib.js'

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    upstream: { type: 'string' },
    'max-lifetime': { type: 'string', default: '3600' },
  },
})
const target = new URL(values.upstream)
if (target.hostname !== '127.0.0.1') throw new Error('bare-proxy: the upstream must be on 127.0.0.1')

const agent = new http.Agent({ keepAlive: true, maxSockets: 256, keepAliveMsecs: 30_000 })
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer'])

function forwardHeaders(headers) {
  const out = {}
  for (const [k, v] of Object.entries(headers)) if (!HOP.has(k)) out[k] = v
  return out
}

const server = http.createServer((req, res) => {
  const headers = forwardHeaders(req.headers)
  headers.host = target.host
  const up = http.request(
    { host: target.hostname, port: target.port, method: req.method, path: req.url, headers, agent },
    (ur) => {
      res.writeHead(ur.statusCode, forwardHeaders(ur.headers))
      ur.pipe(res)
    },
  )
  up.on('error', () => {
    if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' })
    res.end('bad gateway')
  })
  req.pipe(up)
})
serveUntilStopped(server, Number(values.port), Number(values['max-lifetime']), () => agent.destroy())
