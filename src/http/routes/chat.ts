import { Hono } from 'hono'
import { prepareSeedChat } from '../../core/chat-request.js'
import { upstreamError } from '../../core/errors.js'
import { H } from '../../core/headers.js'
import { readJson } from '../body.js'
import { clientCancel } from '../client-cancel.js'
import type { AppEnv, AppServices } from '../env.js'
import { queueTimeoutOf } from './queue-timeout.js'

/** The seed's contract: `{message, max_tokens}` → `{response, tokens_used, latency_ms}`. */
export function chatRoutes({ gateway, options }: AppServices, model: string): Hono<AppEnv> {
  return new Hono<AppEnv>().post('/chat', async (c) => {
    const record = c.get('record')
    record.model = model // refusals are logged with it too
    const { json } = await readJson(c, options.bodyLimit)
    const key = c.get('key')
    const prepared = prepareSeedChat(json, key, gateway.limitsOf(key), model)
    const result = await gateway.complete(record, key, prepared, clientCancel(c), queueTimeoutOf(c.req.header(H.queueTimeout)))
    const choice = (result.json.choices as { message?: { content?: unknown } }[] | undefined)?.[0]
    const text = choice?.message?.content
    if (typeof text !== 'string') throw upstreamError(502, 'The upstream answer has no message text', 'upstream_malformed')
    const latency = Math.round((performance.now() - record.startedAt) * 100) / 100
    return c.json({ response: text, tokens_used: record.usage.totalTokens, latency_ms: latency }, 200, result.headers)
  })
}
