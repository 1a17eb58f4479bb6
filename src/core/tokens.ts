import type { GptEncoding } from 'gpt-tokenizer/esm/GptEncoding'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)

/**
 * The o200k_base ranks from the package's plain `.tiktoken` file (base64 token, rank), not
 * from its 2.4 MB JavaScript module: V8 parsing that literal left ~10 MB more resident
 * memory behind, for the same table.
 */
function loadRanks(): (string | number[])[] {
  const file = require.resolve('gpt-tokenizer/data/o200k_base.tiktoken')
  const text = readFileSync(file, 'latin1')
  const utf8 = new TextDecoder('utf-8', { fatal: true })
  const ranks: (string | number[])[] = []
  for (let start = 0; start < text.length; ) {
    let end = text.indexOf('\n', start)
    if (end < 0) end = text.length
    const space = text.indexOf(' ', start)
    if (space > start && space < end) {
      const bytes = Buffer.from(text.slice(start, space), 'base64')
      let token: string | number[]
      try {
        token = utf8.decode(bytes)
      } catch {
        token = [...bytes] // not valid UTF-8 on its own: the tokenizer takes raw bytes
      }
      ranks[Number(text.slice(space + 1, end))] = token
    }
    start = end + 1
  }
  return ranks
}

/**
 * Loaded on first use: admission reserves on a byte bound and counts only when a limit is
 * near (see `promptTokenBound`), so a gateway far from its limits never pays the table's
 * ~40 MB of resident memory.
 */
let encoding: GptEncoding | null = null
function tokenizer(): GptEncoding {
  if (encoding === null) {
    // Its code too: the package's CommonJS build, required here (synchronously) rather than imported at start.
    const { GptEncoding: Encoding } = require('gpt-tokenizer/GptEncoding') as typeof import('gpt-tokenizer/esm/GptEncoding')
    encoding = Encoding.getEncodingApi('o200k_base', loadRanks)
  }
  return encoding
}

/**
 * Token counting with a real BPE tokenizer (o200k_base, the gpt-4o family's). Used to
 * reserve budget before a call and to meter a stream that ended without usage. Counts for
 * other model families differ a little, which the reservation margin absorbs.
 */
export function countTextTokens(text: string): number {
  if (text.length <= PIECE) return text.length === 0 ? 0 : tokenizer().countTokens(text)
  let total = 0
  for (let start = 0; start < text.length; ) {
    total += tokenizer().countTokens(text.slice(start, (start = pieceEnd(text, start))))
  }
  return total
}

/**
 * BPE cost grows with the square of an unbroken run (a 200,000-character word took 31 s and
 * blocked the event loop), so long text is counted in pieces. A piece ends just before a
 * space where one is near, which is where o200k's pre-tokenizer splits anyway (a space
 * belongs to the word after it), so ordinary text counts exactly; only a run with no space
 * for half a piece is cut mid-run, which may shift its count by a token.
 */
const PIECE = 1_000

function pieceEnd(text: string, start: number): number {
  let end = start + PIECE
  if (end >= text.length) return text.length
  const space = text.lastIndexOf(' ', end)
  if (space > start + PIECE / 2) return space
  const code = text.charCodeAt(end - 1)
  if (code >= 0xd800 && code <= 0xdbff) end-- // never split a surrogate pair
  return end
}

/** Per-message framing tokens in OpenAI's chat format, and the reply's priming tokens. */
const PER_MESSAGE = 4
const PER_REPLY = 3
/** An image costs at most this many prompt tokens at high detail (gpt-4o tiling). */
const IMAGE_TOKENS = 1_500

/** Prompt tokens of a chat request: message text, names, tool calls and tool definitions. */
export function countPromptTokens(messages: readonly unknown[], extra: readonly unknown[] = []): number {
  return walkPrompt(messages, extra, countTextTokens)
}

/**
 * An upper bound of `countPromptTokens` without the tokenizer: a byte-level BPE token holds
 * at least one UTF-8 byte, so a text's byte length bounds its token count.
 */
export function promptTokenBound(messages: readonly unknown[], extra: readonly unknown[] = []): number {
  return walkPrompt(messages, extra, utf8Length)
}

function utf8Length(text: string): number {
  return Buffer.byteLength(text, 'utf8')
}

/** Sums `count` over a prompt's text, with the chat format's framing tokens. */
function walkPrompt(messages: readonly unknown[], extra: readonly unknown[], count: (text: string) => number): number {
  let total = PER_REPLY
  for (const m of messages) {
    total += PER_MESSAGE
    if (m === null || typeof m !== 'object') continue
    const msg = m as Record<string, unknown>
    for (const [field, value] of Object.entries(msg)) {
      if (field === 'content') total += countContent(value, count)
      else if (typeof value === 'string') total += count(value)
      else if (value !== null && typeof value === 'object') total += count(JSON.stringify(value))
    }
  }
  for (const e of extra) if (e !== undefined && e !== null) total += count(JSON.stringify(e))
  return total
}

function countContent(content: unknown, count: (text: string) => number): number {
  if (typeof content === 'string') return count(content)
  if (!Array.isArray(content)) return 0
  let total = 0
  for (const part of content) {
    if (part === null || typeof part !== 'object') continue
    const p = part as Record<string, unknown>
    if (typeof p.text === 'string') total += count(p.text)
    else if (p.type === 'image_url' || p.type === 'input_image') total += IMAGE_TOKENS
    else total += count(JSON.stringify(p))
  }
  return total
}

/** The reservation margin over the estimate: tokenizers of other families count a bit higher. */
export function withMargin(tokens: number): number {
  return Math.ceil(tokens * 1.1) + 16
}
