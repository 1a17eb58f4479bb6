/**
 * Incremental SSE framing: bytes in, whole events out (as text, with their terminator), so a
 * multibyte character or an event split across network chunks is reassembled first.
 */
export class SseSplitter {
  private readonly decoder = new TextDecoder()
  private buffer = ''

  push(chunk: Uint8Array): string[] {
    this.buffer += this.decoder.decode(chunk, { stream: true })
    return this.take()
  }

  /** What is left when the stream ends (an unterminated last event). */
  end(): string {
    this.buffer += this.decoder.decode()
    const rest = this.buffer
    this.buffer = ''
    return rest
  }

  private take(): string[] {
    const events: string[] = []
    let start = 0
    for (;;) {
      const lf = this.buffer.indexOf('\n\n', start)
      const crlf = this.buffer.indexOf('\r\n\r\n', start)
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
