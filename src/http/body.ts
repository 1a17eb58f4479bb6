import type { Context } from 'hono'
import { badRequest, payloadTooLarge } from '../core/errors.js'
import { clientClosed } from '../core/queue.js'
import type { AppEnv } from './env.js'

/**
 * Reads the request body with a hard cap, whether it comes with Content-Length, chunked, or
 * both: the count is of bytes actually received, so no framing trick gets past it.
 */
export async function readBody(c: Context<AppEnv>, limit: number): Promise<Buffer> {
  const declared = c.req.header('content-length')
  if (declared !== undefined && Number(declared) > limit) throw payloadTooLarge(limit)
  const incoming = c.env?.incoming
  if (!incoming) throw new Error('request bodies are read from the Node server')
  if (incoming.readableEnded) return Buffer.alloc(0)
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    const done = (err: unknown, body?: Buffer) => {
      incoming.off('data', onData)
      incoming.off('end', onEnd)
      incoming.off('error', onClose)
      incoming.off('close', onClose)
      if (err !== null) reject(err)
      else resolve(body!)
    }
    const onData = (chunk: Buffer) => {
      size += chunk.byteLength
      if (size <= limit) chunks.push(chunk)
      else {
        // Not destroyed: the socket must live to carry the 413. The rest is read and dropped
        // (the stream stays flowing without listeners), and the 413 closes the connection.
        done(payloadTooLarge(limit))
      }
    }
    const onEnd = () => done(null, chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size))
    const onClose = () => done(clientClosed()) // reset or gone before the body ended (Node says "aborted")
    // Events, not an async iterator: the iterator's machinery cost more than the read.
    incoming.on('data', onData)
    incoming.on('end', onEnd)
    incoming.on('error', onClose)
    incoming.on('close', onClose)
  })
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
