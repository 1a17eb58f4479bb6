import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response'
import type { ServerResponse } from 'node:http'
import { firstEvent } from '../first-event.js'

/**
 * Writes an async iterable straight into Node's response, with backpressure, and tells
 * node-server the response is already sent. No web ReadableStream sits between the relay
 * and the socket: on Node 20 its reads cost more CPU than the relaying itself.
 *
 * When the client leaves, reading stops and the iterator is returned, so a relay's
 * `finally` runs at once (it meters and logs what was streamed).
 */
export function streamResponse(
  outgoing: ServerResponse,
  status: number,
  headers: Record<string, string>,
  source: AsyncIterable<Uint8Array>,
  onError: (err: unknown) => void,
): Response {
  outgoing.writeHead(status, headers)
  outgoing.flushHeaders() // the client learns it was admitted before the first token
  pump(outgoing, source[Symbol.asyncIterator]()).catch((err: unknown) => {
    onError(err)
    outgoing.destroy()
  })
  return RESPONSE_ALREADY_SENT
}

async function pump(outgoing: ServerResponse, it: AsyncIterator<Uint8Array>): Promise<void> {
  let finished = false
  try {
    for (;;) {
      const next = await it.next()
      if (next.done) {
        finished = true
        break
      }
      if (outgoing.destroyed) break
      if (!outgoing.write(next.value)) await firstEvent(outgoing, ['drain', 'close']) // room again, or gone
    }
    if (!outgoing.destroyed) outgoing.end()
  } finally {
    if (!finished) await it.return?.()
  }
}
