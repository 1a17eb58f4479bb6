import type { Context } from 'hono'
import { badRequest, payloadTooLarge } from '../core/errors.js'
import type { AppEnv } from './env.js'

/**
 * Reads the request body with a hard cap, whether it comes with Content-Length, chunked, or
 * both: the count is of bytes actually received, so no framing trick gets past it.
 */
export async function readBody(c: Context<AppEnv>, limit: number): Promise<Buffer> {
  const declared = c.req.header('content-length')
  if (declared !== undefined && Number(declared) > limit) throw payloadTooLarge(limit)
  const incoming = c.env?.incoming
  const chunks: Buffer[] = []
  let size = 0
  const take = (chunk: Uint8Array) => {
    size += chunk.byteLength
    if (size > limit) throw payloadTooLarge(limit)
    chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength))
  }
  if (incoming && !incoming.readableDidRead) {
    try {
      // Not destroyed on an early exit: the socket must live to carry the 413.
      for await (const chunk of incoming.iterator({ destroyOnReturn: false })) take(chunk as Buffer)
    } catch (err) {
      incoming.resume() // discard the rest unread; the 413 closes the connection after it
      throw err
    }
  } else if (c.req.raw.body) {
    for await (const chunk of c.req.raw.body as unknown as AsyncIterable<Uint8Array>) take(chunk)
  }
  return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size)
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
