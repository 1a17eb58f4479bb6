import { Readable } from 'node:stream'
import { countPromptTokens, countTextTokens } from '../core/tokens.js'
import { wholeOverStream, type Transport, type TransportRequest, type TransportResponse } from './transport.js'

/**
 * The built-in mock provider: a deterministic OpenAI-compatible upstream that echoes the last
 * user message, with real token counts. It speaks the transport interface, so `--mock` runs
 * the very same upstream client and error paths as a real upstream, with the same kind of
 * response (a Node stream body). The tests' mock HTTP server reuses its completion builders.
 */

export const MOCK_MODELS = ['gpt-4o-mini', 'gpt-4o', 'gpt-4.1-mini', 'mock-echo']
const CREATED = 1_700_000_000

interface ChatBody {
  model?: string
  messages?: { role?: string; content?: unknown }[]
  max_tokens?: number
  max_completion_tokens?: number
  n?: number
  stream?: boolean
  stream_options?: { include_usage?: boolean }
}

function lastUserText(body: ChatBody): string {
  const messages = Array.isArray(body.messages) ? body.messages : []
  for (let i = messages.length - 1; i >= 0; i--) {
    const c = messages[i]?.content
    if (messages[i]?.role !== 'user') continue
    if (typeof c === 'string') return c
    if (Array.isArray(c)) return c.map((p) => (typeof p?.text === 'string' ? p.text : '')).join(' ')
  }
  return ''
}

/** The reply's words, cut to max_tokens; finish_reason says whether it was cut. */
export function mockReply(body: ChatBody): { words: string[]; finishReason: 'stop' | 'length'; completionTokens: number } {
  const limit = body.max_completion_tokens ?? body.max_tokens ?? 4096
  const all = `Echo: ${lastUserText(body)}`.split(/(?<= )/)
  const words: string[] = []
  let tokens = 0
  for (const w of all) {
    const t = countTextTokens(w)
    if (tokens + t > limit) return { words, finishReason: 'length', completionTokens: tokens }
    words.push(w)
    tokens += t
  }
  return { words, finishReason: 'stop', completionTokens: countTextTokens(words.join('')) }
}

function usageOf(body: ChatBody, completionTokens: number) {
  const n = body.n ?? 1
  const prompt = countPromptTokens(body.messages ?? [])
  return { prompt_tokens: prompt, completion_tokens: completionTokens * n, total_tokens: prompt + completionTokens * n }
}

export function mockCompletion(body: ChatBody, id = 'chatcmpl-mock') {
  const reply = mockReply(body)
  const content = reply.words.join('')
  return {
    id,
    object: 'chat.completion',
    created: CREATED,
    model: body.model ?? 'mock-echo',
    choices: Array.from({ length: body.n ?? 1 }, (_, index) => ({
      index,
      message: { role: 'assistant', content, refusal: null },
      logprobs: null,
      finish_reason: reply.finishReason,
    })),
    usage: usageOf(body, reply.completionTokens),
    system_fingerprint: 'fp_mock',
  }
}

/** The chunks of a streamed answer, usage chunk included when the request asks for it. */
export function mockChunks(body: ChatBody, id = 'chatcmpl-mock'): object[] {
  const reply = mockReply(body)
  const includeUsage = body.stream_options?.include_usage === true
  const base = { id, object: 'chat.completion.chunk', created: CREATED, model: body.model ?? 'mock-echo', system_fingerprint: 'fp_mock' }
  const extra = includeUsage ? { usage: null } : {}
  const chunks: object[] = []
  const n = body.n ?? 1
  for (let index = 0; index < n; index++) {
    chunks.push({ ...base, choices: [{ index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }], ...extra })
    for (const w of reply.words) {
      chunks.push({ ...base, choices: [{ index, delta: { content: w }, logprobs: null, finish_reason: null }], ...extra })
    }
    chunks.push({ ...base, choices: [{ index, delta: {}, logprobs: null, finish_reason: reply.finishReason }], ...extra })
  }
  if (includeUsage) chunks.push({ ...base, choices: [], usage: usageOf(body, reply.completionTokens) })
  return chunks
}

/** A response whose body arrives in these parts (a stream: one per event). */
function respond(status: number, contentType: string, parts: string[]): TransportResponse {
  return { status, headers: { 'content-type': contentType }, body: Readable.from(parts.map((p) => Buffer.from(p))) }
}

function json(status: number, value: unknown): TransportResponse {
  return respond(status, 'application/json', [JSON.stringify(value)])
}

/** Loads the tokenizer the mock's usage figures come from now, not inside its first answer. */
export function warmMockProvider(): void {
  countTextTokens('warm')
}

/** An OpenAI-compatible server behind the transport interface: POST …/chat/completions and GET …/models. */
export function createMockTransport(): Transport {
  warmMockProvider()
  let counter = 0
  const send = async (req: TransportRequest): Promise<TransportResponse> => {
    const url = new URL(req.url)
    if (url.pathname.endsWith('/models')) {
      return json(200, { object: 'list', data: MOCK_MODELS.map((id) => ({ id, object: 'model', created: CREATED, owned_by: 'gateway-mock' })) })
    }
    if (!url.pathname.endsWith('/chat/completions') || req.method !== 'POST') {
      return json(404, { error: { message: 'Unknown mock route', type: 'invalid_request_error', code: 'not_found', param: null } })
    }
    let body: ChatBody
    try {
      body = JSON.parse(new TextDecoder().decode(req.body)) as ChatBody
    } catch {
      return json(400, { error: { message: 'Invalid JSON', type: 'invalid_request_error', code: null, param: null } })
    }
    const id = `chatcmpl-mock${++counter}`
    if (!body.stream) return json(200, mockCompletion(body, id))
    const events = mockChunks(body, id).map((c) => `data: ${JSON.stringify(c)}\n\n`)
    return respond(200, 'text/event-stream', [...events, 'data: [DONE]\n\n'])
  }
  return {
    send,
    sendWhole: async (req, bound) => wholeOverStream(await send(req), bound),
    close: async () => {},
  }
}
