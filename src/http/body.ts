import type { Context } from 'hono'
import type { IncomingMessage } from 'node:http'
import { badRequest, payloadTooLarge } from '../core/errors.js'
import { clientClosed } from '../core/queue.js'
import type { AppEnv } from './env.js'

/**
 * How much of an over-limit body is read and dropped before the 413. A client still
 * uploading when the server closes gets EPIPE instead of the answer (and the SDK retries
 * the upload); read to the body's end, the 413 reaches it. Past either bound the 413 goes
 * out at once and the connection closes (Connection: close) whatever the client does.
 */
const DISCARD_MAX_BYTES = 64 * 1024 * 1024
const DISCARD_MAX_MS = 5_000

/** Reads and drops the rest of a body: resolves at its end, when the client goes, or at a bound. */
function discardRest(incoming: IncomingMessage, received: number): Promise<void> {
  if (incoming.readableEnded || incoming.destroyed) return Promise.resolve()
  return new Promise<void>((resolve) => {
    let size = received
    const stop = () => {
      clearTimeout(timer)
      incoming.off('data', onData)
      incoming.off('end', stop)
      incoming.off('error', stop)
      incoming.off('close', stop)
      resolve()
    }
    const onData = (chunk: Buffer) => {
      size += chunk.byteLength
      if (size > DISCARD_MAX_BYTES) stop()
    }
    const timer = setTimeout(stop, DISCARD_MAX_MS)
    incoming.on('data', onData)
    incoming.on('end', stop)
    incoming.on('error', stop)
    incoming.on('close', stop)
    incoming.resume()
  })
}

/**
 * Reads the request body with a hard cap, whether it comes with Content-Length, chunked, or
 * both: the count is of bytes actually received, so no framing trick gets past it. An
 * over-limit body is read to its end (within the discard bounds) before the 413.
 */
export async function readBody(c: Context<AppEnv>, limit: number): Promise<Buffer> {
  const incoming = c.env?.incoming
  if (!incoming) throw new Error('request bodies are read from the Node server')
  const declared = c.req.header('content-length')
  if (declared !== undefined && Number(declared) > limit) {
    if (Number(declared) <= DISCARD_MAX_BYTES) await discardRest(incoming, 0)
    throw payloadTooLarge(limit)
  }
  if (incoming.readableEnded) return Buffer.alloc(0)
  let size = 0
  const body = await new Promise<Buffer | null>((resolve, reject) => {
    const chunks: Buffer[] = []
    const done = (err: unknown, body: Buffer | null = null) => {
      incoming.off('data', onData)
      incoming.off('end', onEnd)
      incoming.off('error', onClose)
      incoming.off('close', onClose)
      if (err !== null) reject(err)
      else resolve(body)
    }
    const onData = (chunk: Buffer) => {
      size += chunk.byteLength
      if (size <= limit) chunks.push(chunk)
      else done(null, null) // over the limit: drop what was kept, read the rest below
    }
    const onEnd = () => done(null, chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size))
    const onClose = () => done(clientClosed()) // reset or gone before the body ended (Node says "aborted")
    // Events, not an async iterator: the iterator's machinery cost more than the read.
    incoming.on('data', onData)
    incoming.on('end', onEnd)
    incoming.on('error', onClose)
    incoming.on('close', onClose)
  })
  if (body !== null) return body
  await discardRest(incoming, size)
  throw payloadTooLarge(limit)
}

/** The body parsed as JSON; 400 when it is not. */
export async function readJson(c: Context<AppEnv>, limit: number): Promise<{ json: unknown; raw: Buffer }> {
  const raw = await readBody(c, limit)
  if (raw.length === 0) throw badRequest('The request body is empty; send a JSON object', null, 'invalid_json')
  try {
    return { json: JSON.parse(raw.toString('utf8')), raw }
  } catch {
    throw badRequest('The request body is not valid JSON', null, 'invalid_json')
  }
}
