import { Agent, request } from 'undici'
import type { Readable } from 'node:stream'

/**
 * The part of a fetch Response the `openai` SDK and our upstream code read. The body is a
 * Node stream (undici's, or the built-in mock's), so bytes reach the client without a detour
 * through web streams, which cost several times the CPU of the proxying itself on Node 20.
 */
export class NodeResponse {
  readonly headers: Headers

  constructor(
    readonly status: number,
    headers: Record<string, string | string[] | undefined>,
    readonly body: Readable,
    readonly url: string,
    private readonly readTimeoutMs: number,
  ) {
    this.headers = new ResponseHeaders(headers) as unknown as Headers
  }

  get ok(): boolean {
    return this.status >= 200 && this.status < 300
  }

  async text(): Promise<string> {
    return (await this.bytes()).toString('utf8')
  }

  async json(): Promise<unknown> {
    return JSON.parse(await this.text())
  }

  /**
   * A body read whole: by the SDK, for an error answer or the model list. Bounded in time and
   * size, so an upstream that stalls or never ends its error page cannot hold the call.
   */
  private async bytes(): Promise<Buffer> {
    const timer = setTimeout(() => this.body.destroy(new Error('the upstream did not finish its answer in time')), this.readTimeoutMs)
    try {
      return await readCapped(this.body, MAX_READ_BYTES, () => new Error(`the upstream's answer exceeded ${MAX_READ_BYTES} bytes`))
    } finally {
      clearTimeout(timer)
    }
  }
}

/** A body read whole, up to `cap` bytes: past it the stream is destroyed and `tooLarge()` thrown. */
export async function readCapped(body: Readable, cap: number, tooLarge: () => Error): Promise<Buffer> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of body) {
    size += (chunk as Buffer).byteLength
    if (size > cap) {
      body.destroy()
      throw tooLarge()
    }
    chunks.push(chunk as Buffer)
  }
  return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size)
}

/** The URL of a fetch call's input. */
export function urlOf(input: Parameters<typeof fetch>[0]): string {
  return typeof input === 'string' ? input : input instanceof URL ? input.href : input.url
}

/** The most of a body read whole (an error answer, the model list). */
const MAX_READ_BYTES = 8 * 1024 * 1024

/**
 * The response headers, read-only, over undici's plain object (names already lowercase):
 * `get` and `entries`, what the SDK reads. A web `Headers` costs a validated append per
 * header on every response, and the SDK copies it again for a log line it never prints.
 */
class ResponseHeaders {
  readonly #raw: Record<string, string | string[] | undefined>

  constructor(raw: Record<string, string | string[] | undefined>) {
    this.#raw = raw
  }

  get(name: string): string | null {
    const value = this.#raw[name.toLowerCase()]
    if (value === undefined) return null
    return Array.isArray(value) ? value.join(', ') : value
  }

  *entries(): IterableIterator<[string, string]> {
    for (const name of Object.keys(this.#raw)) {
      const value = this.get(name)
      if (value !== null) yield [name, value]
    }
  }
}


/**
 * The upstream transport: a `fetch` over undici's pooled keep-alive `request`. Redirects are
 * never followed (an upstream redirect must not move where the gateway connects); the
 * gateway's own deadlines govern, so undici's are off.
 */
export function createPooledFetch(options: { readTimeoutMs: number }): { fetch: typeof fetch; close(): Promise<void> } {
  const dispatcher = new Agent({
    keepAliveTimeout: 30_000,
    keepAliveMaxTimeout: 600_000,
    connections: 256,
    headersTimeout: 0,
    bodyTimeout: 0,
  })
  const pooledFetch = async (input: Parameters<typeof fetch>[0], init: RequestInit = {}): Promise<Response> => {
    const url = urlOf(input)
    const res = await request(url, {
      method: (init.method ?? 'GET') as 'GET',
      headers: init.headers as Iterable<[string, string]> | Record<string, string> | undefined,
      body: init.body as string | Buffer | Uint8Array | null | undefined,
      signal: init.signal ?? undefined,
      dispatcher,
    })
    return new NodeResponse(res.statusCode, res.headers, res.body, url, options.readTimeoutMs) as unknown as Response
  }
  return { fetch: pooledFetch as typeof fetch, close: () => dispatcher.close() }
}
