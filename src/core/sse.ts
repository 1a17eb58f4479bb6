import { upstreamError } from './errors.js'

/** No chat completion chunk comes near this; an event that does is an upstream gone wrong. */
export const MAX_EVENT_CHARS = 1 << 20

/**
 * Incremental SSE framing: bytes in, whole events out (as text, with their terminator), so a
 * multibyte character or an event split across network chunks is reassembled first. Only
 * the new text is scanned, and an event may not grow past MAX_EVENT_CHARS.
 */
export class SseSplitter {
  private readonly decoder = new TextDecoder()
  private buffer = ''

  push(chunk: Uint8Array): string[] {
    // A terminator may straddle the old end: rescan its last three characters.
    const from = Math.max(0, this.buffer.length - 3)
    this.buffer += this.decoder.decode(chunk, { stream: true })
    const events = this.take(from)
    if (this.buffer.length > MAX_EVENT_CHARS) {
      throw upstreamError(502, `The upstream sent a stream event over ${MAX_EVENT_CHARS} characters`, 'upstream_malformed')
    }
    return events
  }

  /** What is left when the stream ends (an unterminated last event). */
  end(): string {
    this.buffer += this.decoder.decode()
    const rest = this.buffer
    this.buffer = ''
    return rest
  }

  private take(from: number): string[] {
    const events: string[] = []
    let start = 0
    for (let scan = from; ; scan = start) {
      const lf = this.buffer.indexOf('\n\n', scan)
      const crlf = this.buffer.indexOf('\r\n\r\n', scan)
      let end: number
      if (lf < 0 && crlf < 0) break
      if (crlf >= 0 && (lf < 0 || crlf < lf)) end = crlf + 4
      else end = lf + 2
      events.push(this.buffer.slice(start, end))
      start = end
    }
    if (start > 0) this.buffer = this.buffer.slice(start)
    return events
  }
}

/** The `data:` payload of an event (lines joined), or null for comments and other fields. */
export function eventData(event: string): string | null {
  let data: string | null = null
  for (const line of event.split(/\r?\n/)) {
    if (!line.startsWith('data:')) continue
    const value = line.slice(line.charCodeAt(5) === 32 ? 6 : 5)
    data = data === null ? value : `${data}\n${value}`
  }
  return data
}
