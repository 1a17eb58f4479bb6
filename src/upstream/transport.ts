import { Agent, request } from 'undici'
import type { Readable } from 'node:stream'

/** One HTTP call to an upstream, as the upstream client makes it. */
export interface TransportRequest {
  url: string
  method: 'GET' | 'POST'
  headers: Record<string, string>
  body?: Uint8Array
  signal: AbortSignal
  /** No response headers within this → the call fails with a `UND_ERR_HEADERS_TIMEOUT` error. */
  headersTimeoutMs: number
}

/** Response headers as undici gives them: lowercase names, a plain object. */
export type RawHeaders = Record<string, string | string[] | undefined>

export interface TransportResponse {
  status: number
  headers: RawHeaders
  /** A Node stream: bytes reach the client without a detour through web streams. */
  body: Readable
}

/**
 * How the upstream client reaches an upstream: undici's pooled `request` for a real one, a
 * function for the built-in mock. Both answer with a Node stream body, so the mock runs the
 * very same upstream code and error paths as a real upstream.
 */
export interface Transport {
  send(req: TransportRequest): Promise<TransportResponse>
  close(): Promise<void>
}

/** The most of a body read whole (an error answer, the model list). */
export const MAX_READ_BYTES = 8 * 1024 * 1024

/** A body read whole, up to `cap` bytes: past it the stream is destroyed and `tooLarge()` thrown. */
export async function readCapped(body: Readable, cap: number, tooLarge: () => Error): Promise<Buffer> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of body) {
    size += (chunk as Buffer).byteLength
    if (size > cap) {
      body.destroy()
      throw tooLarge()
    }
    chunks.push(chunk as Buffer)
  }
  return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size)
}

/**
 * A body read whole (an error answer, the model list), bounded in time and size, so an
 * upstream that stalls or never ends its error page cannot hold the call.
 */
export async function readWhole(body: Readable, timeoutMs: number): Promise<Buffer> {
  const timer = setTimeout(() => body.destroy(new Error('the upstream did not finish its answer in time')), timeoutMs)
  try {
    return await readCapped(body, MAX_READ_BYTES, () => new Error(`the upstream's answer exceeded ${MAX_READ_BYTES} bytes`))
  } finally {
    clearTimeout(timer)
  }
}

/**
 * The pooled keep-alive transport over undici's `request` (no fetch, no web streams: on
 * Node 20 those cost several times the CPU of the proxying itself). Redirects are never
 * followed (an upstream redirect must not move where the gateway connects); the body's
 * deadline is the upstream client's, so undici's body timeout is off.
 */
export function createPooledTransport(options: { connectTimeoutMs: number }): Transport {
  const dispatcher = new Agent({
    keepAliveTimeout: 30_000,
    keepAliveMaxTimeout: 600_000,
    connections: 256,
    connectTimeout: options.connectTimeoutMs,
    bodyTimeout: 0,
  })
  return {
    async send(req) {
      const res = await request(req.url, {
        method: req.method,
        headers: req.headers,
        body: req.body,
        signal: req.signal,
        headersTimeout: req.headersTimeoutMs,
        dispatcher,
      })
      return { status: res.statusCode, headers: res.headers, body: res.body }
    },
    close: () => dispatcher.close(),
  }
}
