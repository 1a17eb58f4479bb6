import { badRequest, forbidden } from './errors.js'
import { countPromptTokens, promptTokenBound, withMargin } from './tokens.js'
import type { ApiKey, Limits } from './types.js'

/** The most messages and the deepest JSON the gateway accepts: beyond, no upstream takes it either. */
export const MAX_MESSAGES = 4_096
export const MAX_DEPTH = 64
export const MAX_CHOICES = 128
const MODEL_PATTERN = /^[\x21-\x7e]{1,256}$/

/** A request checked, ready for admission: what to reserve and what to send. */
export interface PreparedChat {
  model: string
  stream: boolean
  /** Did the client ask for the usage chunk of a stream itself? */
  clientWantsUsage: boolean
  /**
   * Prompt tokens to reserve, margin included: an upper bound from the text's UTF-8 size
   * until `countPrompt` replaces it with the tokenizer's estimate (`promptCounted`).
   */
  promptTokens: number
  promptCounted: boolean
  /** max_tokens per choice, after the gateway filled in or capped it. */
  maxTokens: number
  /**
   * The gateway chose maxTokens (the client sent none, or it was clamped to the budget): the
   * client is told in a header, and a filled-in value is fitted to the budget in either mode.
   * False for the seed's /chat, whose documented default is 500.
   */
  maxTokensApplied: boolean
  n: number
  /** The body to forward; `raw` when nothing had to change. */
  body: Record<string, unknown>
  raw: Uint8Array | null
}

/** Which field carries the completion cap: the client's choice, else max_tokens. */
function capField(body: Record<string, unknown>): 'max_tokens' | 'max_completion_tokens' {
  return body.max_completion_tokens !== undefined && body.max_completion_tokens !== null ? 'max_completion_tokens' : 'max_tokens'
}

export function checkDepth(value: unknown): void {
  const stack: [unknown, number][] = [[value, 0]]
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!
    if (v === null || typeof v !== 'object') continue
    if (depth >= MAX_DEPTH) throw badRequest(`JSON nested deeper than ${MAX_DEPTH} levels`, null, 'too_deep')
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, depth + 1])
  }
}

function checkPositiveInt(value: unknown, param: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
    throw badRequest(`${param} must be a positive integer`, param)
  }
  return value
}

/** The rest of a refusal over a gateway limit: whose limit it is and what changes it. */
export function gatewayLimitHint(key: ApiKey, value: string, flag: string, clientFix: string): string {
  const arg = /^[\w.@-]+$/.test(key.name) ? key.name : JSON.stringify(key.name)
  return `. This is the gateway's limit for key "${key.name}": ${value} (${flag}); ${clientFix}, or an admin can raise it with \`gateway limits set --key ${arg} --${flag} N\``
}

export function checkMaxTokens(value: unknown, param: string, key: ApiKey, limits: Limits): number | null {
  if (value === undefined || value === null) return null
  const n = checkPositiveInt(value, param)
  if (limits.maxTokens !== null && n > limits.maxTokens) {
    throw badRequest(`max_tokens exceeds limit of ${limits.maxTokens}${gatewayLimitHint(key, `${limits.maxTokens} tokens per answer`, 'max-tokens', `lower ${param}`)}`, param, 'max_tokens_exceeded')
  }
  return n
}

export function checkModelAllowed(key: ApiKey, model: string): void {
  if (key.models !== null && !key.models.includes(model)) {
    throw forbidden(`This key may not use model "${model}"`, 'model_not_allowed', 'model')
  }
}

function textLength(content: unknown): number {
  if (typeof content === 'string') return content.length
  if (!Array.isArray(content)) return 0
  let n = 0
  for (const part of content) if (part && typeof part === 'object' && typeof (part as { text?: unknown }).text === 'string') n += (part as { text: string }).text.length
  return n
}

/** The budget a request needs: prompt estimate plus every choice's full completion. */
export function reservationOf(prepared: Pick<PreparedChat, 'promptTokens' | 'maxTokens' | 'n'>): number {
  return prepared.promptTokens + prepared.maxTokens * prepared.n
}

/** Checks an OpenAI chat completions body against the key's limits. */
export function prepareCompletion(json: unknown, raw: Uint8Array, key: ApiKey, limits: Limits): PreparedChat {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw badRequest('The request body must be a JSON object')
  checkDepth(json)
  const body = json as Record<string, unknown>
  if (typeof body.model !== 'string' || !MODEL_PATTERN.test(body.model)) {
    throw badRequest('model must be a non-empty string of printable characters (at most 256)', 'model')
  }
  const model = body.model
  checkModelAllowed(key, model)
  if (!Array.isArray(body.messages) || body.messages.length === 0) throw badRequest('messages must be a non-empty array', 'messages')
  if (body.messages.length > MAX_MESSAGES) throw badRequest(`Too many messages (max ${MAX_MESSAGES})`, 'messages')
  let chars = 0
  for (const m of body.messages) {
    if (m === null || typeof m !== 'object' || typeof (m as { role?: unknown }).role !== 'string') {
      throw badRequest('Each message must be an object with a string role', 'messages')
    }
    chars += textLength((m as { content?: unknown }).content)
  }
  if (limits.maxInputChars !== null && chars > limits.maxInputChars) {
    throw badRequest(`Input too long (max ${limits.maxInputChars} characters)${gatewayLimitHint(key, `${limits.maxInputChars} characters of input`, 'max-input-chars', 'shorten the messages')}`, 'messages', 'input_too_long')
  }
  if (body.stream !== undefined && body.stream !== null && typeof body.stream !== 'boolean') throw badRequest('stream must be a boolean', 'stream')
  if (body.stream_options !== undefined && body.stream_options !== null && (typeof body.stream_options !== 'object' || Array.isArray(body.stream_options))) {
    throw badRequest('stream_options must be an object', 'stream_options')
  }
  let n = 1
  if (body.n !== undefined && body.n !== null) {
    n = checkPositiveInt(body.n, 'n')
    if (n > MAX_CHOICES) throw badRequest(`n must be at most ${MAX_CHOICES}`, 'n')
  }
  const field = capField(body)
  const asked = checkMaxTokens(body[field], field, key, limits)
  const stream = body.stream === true
  const clientWantsUsage = stream && (body.stream_options as { include_usage?: unknown } | undefined)?.include_usage === true
  let changed = false
  let maxTokens = asked
  if (maxTokens === null) {
    // Without a cap there is nothing to reserve against; fill in the key's cap.
    maxTokens = limits.maxTokens ?? 4_096
    body[field] = maxTokens
    changed = true
  }
  if (stream && !clientWantsUsage) {
    body.stream_options = { ...(body.stream_options as object | undefined), include_usage: true }
    changed = true
  }
  const promptTokens = withMargin(promptTokenBound(body.messages, promptExtras(body)))
  return { model, stream, clientWantsUsage, promptTokens, promptCounted: false, maxTokens, maxTokensApplied: asked === null, n, body, raw: changed ? null : raw }
}

/** The seed's `POST /chat` body: `{message, max_tokens = 500}`. */
export function prepareSeedChat(json: unknown, key: ApiKey, limits: Limits, model: string): PreparedChat {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw badRequest('The request body must be a JSON object')
  checkDepth(json)
  const body = json as Record<string, unknown>
  if (body.message === undefined) throw badRequest('message is required', 'message')
  if (typeof body.message !== 'string') throw badRequest('message must be a string', 'message')
  if (body.message.trim().length === 0) throw badRequest('message must not be empty', 'message')
  if (limits.maxInputChars !== null && body.message.length > limits.maxInputChars) {
    throw badRequest(`Message too long (max ${limits.maxInputChars} characters)${gatewayLimitHint(key, `${limits.maxInputChars} characters of input`, 'max-input-chars', 'shorten the message')}`, 'message', 'message_too_long')
  }
  const maxTokens = body.max_tokens === undefined ? Math.min(500, limits.maxTokens ?? 500) : checkMaxTokens(body.max_tokens, 'max_tokens', key, limits)!
  checkModelAllowed(key, model)
  const messages = [{ role: 'user', content: body.message }]
  return {
    model,
    stream: false,
    clientWantsUsage: false,
    promptTokens: withMargin(promptTokenBound(messages)),
    promptCounted: false,
    maxTokens,
    maxTokensApplied: false,
    n: 1,
    body: { model, messages, max_tokens: maxTokens },
    raw: null,
  }
}

/** What besides the messages the upstream counts as prompt. */
function promptExtras(body: Record<string, unknown>): unknown[] {
  return [body.tools, body.functions, body.response_format]
}

/**
 * Replaces the prompt's upper bound by the tokenizer's estimate (never larger, so a
 * reservation only shrinks). Counts once.
 */
export function countPrompt(prepared: PreparedChat): void {
  if (prepared.promptCounted) return
  prepared.promptCounted = true
  prepared.promptTokens = withMargin(countPromptTokens(prepared.body.messages as unknown[], promptExtras(prepared.body)))
}

/** Lowers max_tokens so the reservation fits what the budget still covers. */
export function clampTo(prepared: PreparedChat, available: number, floor: number): boolean {
  const perChoice = Math.floor((available - prepared.promptTokens) / prepared.n)
  if (perChoice < floor || perChoice >= prepared.maxTokens) return false
  prepared.maxTokens = perChoice
  prepared.maxTokensApplied = true
  prepared.body[capField(prepared.body)] = perChoice
  prepared.raw = null
  return true
}

export function serialise(prepared: PreparedChat): Uint8Array {
  return prepared.raw ?? Buffer.from(JSON.stringify(prepared.body))
}
