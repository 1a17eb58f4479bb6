import { Hono } from 'hono'
import { prepareCompletion } from '../../core/chat-request.js'
import { H } from '../../core/headers.js'
import { readJson } from '../body.js'
import { clientCancel } from '../client-cancel.js'
import type { AppEnv, AppServices } from '../env.js'
import { streamResponse } from '../stream-response.js'
import { queueTimeoutOf } from './queue-timeout.js'

const SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' }

/** OpenAI's chat completions, JSON and SSE, forwarded to the upstream. */
export function completionRoutes({ gateway, options, onUnexpected }: AppServices): Hono<AppEnv> {
  return new Hono<AppEnv>().post('/v1/chat/completions', async (c) => {
    const { json, raw } = await readJson(c, options.bodyLimit)
    const key = c.get('key')
    const record = c.get('record')
    const model = (json as { model?: unknown } | null)?.model
    if (typeof model === 'string') record.model = model.slice(0, 256) // refusals are logged with it too
    const prepared = prepareCompletion(json, raw, key, gateway.limitsOf(key))
    const queueTimeoutMs = queueTimeoutOf(c.req.header(H.queueTimeout))
    if (prepared.stream) {
      const outgoing = c.env?.outgoing
      if (!outgoing) throw new Error('streamed responses need the Node server')
      const result = await gateway.stream(record, key, prepared, clientCancel(c), queueTimeoutMs)
      return streamResponse(outgoing, 200, { ...SSE_HEADERS, ...result.headers, [H.requestId]: record.requestId }, result.body, onUnexpected)
    }
    const result = await gateway.complete(record, key, prepared, clientCancel(c), queueTimeoutMs)
    const headers: Record<string, string> = { 'content-type': 'application/json', ...result.headers, [H.requestId]: record.requestId }
    if (record.usage.estimated) headers[H.tokensEstimated] = 'true'
    return new Response(result.bytes, { status: 200, headers })
  })
}
