import { serve } from '@hono/node-server'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { BuiltGateway } from './compose.js'

export interface Stopped {
  /** Upstream calls in flight at the deadline, cancelled (each answered 503 or with an error event, logged and charged). */
  cut: number
}

export interface RunningServer {
  url: string
  port: number
  /**
   * Stops accepting and refuses what waits in the queue, lets the requests in flight finish
   * until the deadline, then cuts the rest; closes the store once every row is committed.
   */
  close(deadlineMs?: number): Promise<Stopped>
}

/** After the cut, how long the cut requests may take to send their answers before their sockets are closed. */
const CUT_ANSWER_MS = 5_000

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

async function shutdown(server: Server, built: BuiltGateway, deadlineMs: number): Promise<Stopped> {
  built.gateway.stopAdmitting()
  const closed = new Promise<void>((resolve) => server.close(() => resolve()))
  server.closeIdleConnections()
  // A keep-alive connection whose request finishes after close() turns idle later: sweep.
  const sweep = setInterval(() => server.closeIdleConnections(), 50)
  let cut = 0
  if (!(await within(closed, deadlineMs))) {
    cut = built.gateway.cutInFlight()
    if (!(await within(closed, CUT_ANSWER_MS))) server.closeAllConnections()
  }
  await closed
  clearInterval(sweep)
  await built.close()
  return { cut }
}

/** Whether `promise` settles within `ms`. */
async function within(promise: Promise<void>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)))
  try {
    return await Promise.race([promise.then(() => true), timeout])
  } finally {
    clearTimeout(timer)
  }
}
