import { Agent, request } from 'undici'
import type { Readable } from 'node:stream'

/**
 * The part of a fetch Response the `openai` SDK and our upstream code read. The body is
 * undici's Node stream (async-iterable), so bytes reach the client without a detour through
 * web streams, which cost several times the CPU of the proxying itself on Node 20.
 */
class PooledResponse {
  readonly statusText = ''

  constructor(
    readonly status: number,
    readonly headers: Headers,
    readonly body: Readable,
    readonly url: string,
  ) {}

  get ok(): boolean {
    return this.status >= 200 && this.status < 300
  }

  async text(): Promise<string> {
    return (await this.bytes()).toString('utf8')
  }

  async json(): Promise<unknown> {
    return JSON.parse(await this.text())
  }

  private async bytes(): Promise<Buffer> {
    const chunks: Buffer[] = []
    for await (const chunk of this.body) chunks.push(chunk as Buffer)
    return Buffer.concat(chunks)
  }
}

function toHeaders(raw: Record<string, string | string[] | undefined>): Headers {
  const headers = new Headers()
  for (const [name, value] of Object.entries(raw)) {
    if (Array.isArray(value)) for (const v of value) headers.append(name, v)
    else if (value !== undefined) headers.append(name, value)
  }
  return headers
}

function fromHeaders(init: RequestInit["headers"]): Record<string, string> {
  if (!init) return {}
  if (init instanceof Headers) return Object.fromEntries(init)
  if (Array.isArray(init)) return Object.fromEntries(init)
  return init as Record<string, string>
}

/**
 * The upstream transport: a `fetch` over undici's pooled keep-alive `request`. Redirects are
 * never followed (an upstream redirect must not move where the gateway connects); the
 * gateway's own deadlines govern, so undici's are off.
 */
export function createPooledFetch(options: { connections?: number } = {}): { fetch: typeof fetch; close(): Promise<void> } {
  const dispatcher = new Agent({
    keepAliveTimeout: 30_000,
    keepAliveMaxTimeout: 600_000,
    connections: options.connections ?? 256,
    headersTimeout: 0,
    bodyTimeout: 0,
  })
  const pooledFetch = async (input: Parameters<typeof fetch>[0], init: RequestInit = {}): Promise<Response> => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url
    const res = await request(url, {
      method: (init.method ?? 'GET') as 'GET',
      headers: fromHeaders(init.headers),
      body: init.body as string | Buffer | Uint8Array | null | undefined,
      signal: init.signal ?? undefined,
      dispatcher,
    })
    return new PooledResponse(res.statusCode, toHeaders(res.headers), res.body, url) as unknown as Response
  }
  return { fetch: pooledFetch as typeof fetch, close: () => dispatcher.close() }
}
