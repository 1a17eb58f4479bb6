import { serve } from '@hono/node-server'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { BuiltGateway } from './compose.js'

export interface RunningServer {
  url: string
  port: number
  /** Stops accepting, lets in-flight requests finish (up to the deadline), then closes everything. */
  close(deadlineMs?: number): Promise<void>
}

/** Slow clients must not hold sockets for long: far below Node's defaults (300 s request, 60 s headers). */
const SERVER_OPTIONS = { headersTimeout: 10_000, requestTimeout: 30_000, keepAliveTimeout: 5_000 }

/** The one place that opens a socket. */
export function startServer(built: BuiltGateway, host: string, port: number): Promise<RunningServer> {
  return new Promise((resolve, reject) => {
    const server = serve({ fetch: built.app.fetch, hostname: host, port, serverOptions: SERVER_OPTIONS }, (info: AddressInfo) => {
      const shown = info.family === 'IPv6' ? `[${info.address}]` : info.address
      resolve({
        url: `http://${shown}:${info.port}`,
        port: info.port,
        close: (deadlineMs = 10_000) => shutdown(server as Server, built, deadlineMs),
      })
    }) as Server
    server.once('error', reject)
  })
}

async function shutdown(server: Server, built: BuiltGateway, deadlineMs: number): Promise<void> {
  await new Promise<void>((resolve) => {
    const force = setTimeout(() => server.closeAllConnections(), deadlineMs)
    // A keep-alive connection whose request finishes after close() turns idle later: sweep.
    const sweep = setInterval(() => server.closeIdleConnections(), 50)
    server.close(() => {
      clearTimeout(force)
      clearInterval(sweep)
      resolve()
    })
    server.closeIdleConnections()
  })
  await built.close()
}
