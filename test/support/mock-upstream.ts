import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { mockChunks, mockCompletion, MOCK_MODELS, warmMockProvider } from '../../src/upstream/mock-provider.js'

/** What the mock does with the next chat request; `normal` when nothing is scripted. */
export type Behavior =
  | { kind: 'normal'; omitUsage?: boolean; delayMs?: number; chunkDelayMs?: number; toolCalls?: boolean }
  | { kind: 'status'; status: number; body?: string; headers?: Record<string, string> }
  | { kind: 'hang' }
  | { kind: 'headers-then-hang' }
  | { kind: 'drop-mid-stream'; afterChunks: number }
  | { kind: 'raw'; status?: number; headers?: Record<string, string>; chunks: (string | Buffer)[]; chunkDelayMs?: number; end?: boolean | 'hang' }
  | { kind: 'endless'; status?: number }

export interface RecordedRequest {
  method: string
  path: string
  headers: IncomingMessage['headers']
  body: Record<string, unknown> | null
}

/** An Azure OpenAI resource: chat only at /openai/deployments/{d}/chat/completions?api-version=V, key in `api-key`. */
export interface AzureShape {
  apiVersion: string
  key: string
  deployments: string[]
}

export interface MockUpstream {
  /** Base URL with /v1, as OPENAI_BASE_URL takes it (an Azure mock: the resource URL, no path). */
  url: string
  requests: RecordedRequest[]
  /** Chat requests whose response the client abandoned before it ended. */
  abandoned: number
  /** Usage the mock reported, summed over completed answers. */
  reportedTokens: number
  script(...behaviors: Behavior[]): void
  close(): Promise<void>
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

function toolCallChunks(body: Record<string, unknown>): object[] {
  const base = { id: 'chatcmpl-tools', object: 'chat.completion.chunk', created: 1, model: body.model }
  const args = ['{"city":', '"Paris"}']
  return [
    { ...base, choices: [{ index: 0, delta: { role: 'assistant', content: null, tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'weather', arguments: '' } }] }, finish_reason: null }] },
    ...args.map((a) => ({ ...base, choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: a } }] }, finish_reason: null }] })),
    { ...base, choices: [{ index: 0, delta: {}, finish_reason: 'tool_calls' }] },
  ]
}

/** A real HTTP server speaking OpenAI's chat completions and models API, scripted per request. */
export async function startMockUpstream(options: { azure?: AzureShape } = {}): Promise<MockUpstream> {
  warmMockProvider() // tests time the first answer against short upstream timeouts
  const queue: Behavior[] = []
  const sockets = new Set<Socket>()
  const state: MockUpstream = {
    url: '',
    requests: [],
    abandoned: 0,
    reportedTokens: 0,
    script: (...b) => queue.push(...b),
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>((r) => server.close(() => r()))
    },
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = []
    for await (const c of req) chunks.push(c as Buffer)
    const text = Buffer.concat(chunks).toString('utf8')
    let body: Record<string, unknown> | null = null
    try {
      body = text ? (JSON.parse(text) as Record<string, unknown>) : null
    } catch {
      body = null
    }
    state.requests.push({ method: req.method ?? '', path: req.url ?? '', headers: req.headers, body })
    if (req.url?.endsWith('/models')) {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ object: 'list', data: MOCK_MODELS.map((id) => ({ id, object: 'model', created: 1, owned_by: 'mock' })) }))
      return
    }
    if (options.azure) {
      const refusal = azureRefusal(options.azure, req)
      if (refusal) {
        res.writeHead(refusal.status, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ error: { code: refusal.code, message: refusal.message } }))
        return
      }
    }
    const behavior = queue.shift() ?? { kind: 'normal' }
    let finished = false
    res.on('finish', () => (finished = true))
    res.on('close', () => {
      if (!finished) state.abandoned++
    })
    switch (behavior.kind) {
      case 'status':
        res.writeHead(behavior.status, { 'content-type': 'application/json', ...behavior.headers })
        res.end(behavior.body ?? JSON.stringify({ error: { message: `mock status ${behavior.status}`, type: 'server_error', code: null, param: null } }))
        return
      case 'hang':
        return // never answers
      case 'headers-then-hang':
        res.writeHead(200, { 'content-type': body?.stream ? 'text/event-stream' : 'application/json' })
        res.flushHeaders()
        return
      case 'endless': {
        res.writeHead(behavior.status ?? 200, { 'content-type': 'application/json' })
        const piece = Buffer.alloc(64 * 1024, 0x20)
        const pump = () => {
          while (!res.destroyed && res.write(piece));
          if (!res.destroyed) res.once('drain', pump)
        }
        pump()
        return
      }
      case 'raw': {
        res.writeHead(behavior.status ?? 200, { 'content-type': 'text/event-stream', ...behavior.headers })
        for (const c of behavior.chunks) {
          if (res.destroyed) return
          res.write(c)
          if (behavior.chunkDelayMs) await sleep(behavior.chunkDelayMs)
        }
        if (behavior.end === 'hang') return // the socket stays open, silent, until the client leaves
        if (behavior.end === false) res.destroy()
        else res.end()
        return
      }
      case 'drop-mid-stream': {
        res.writeHead(200, { 'content-type': 'text/event-stream' })
        const all = mockChunks(body ?? {})
        for (const c of all.slice(0, behavior.afterChunks)) res.write(`data: ${JSON.stringify(c)}\n\n`)
        await sleep(5)
        res.destroy()
        return
      }
      case 'normal': {
        if (behavior.delayMs) await sleep(behavior.delayMs)
        const b = body ?? {}
        if (!b.stream) {
          const completion = mockCompletion(b)
          const out: Record<string, unknown> = { ...completion }
          if (behavior.omitUsage) delete out.usage
          else state.reportedTokens += completion.usage.total_tokens
          res.writeHead(200, { 'content-type': 'application/json' })
          res.end(JSON.stringify(out))
          return
        }
        const includeUsage = (b.stream_options as { include_usage?: boolean } | undefined)?.include_usage === true && !behavior.omitUsage
        const events = behavior.toolCalls ? toolCallChunks(b) : mockChunks({ ...b, stream_options: { include_usage: includeUsage } })
        res.writeHead(200, { 'content-type': 'text/event-stream' })
        for (const e of events) {
          if (res.destroyed) return
          res.write(`data: ${JSON.stringify(e)}\n\n`)
          const usage = (e as { usage?: { total_tokens?: number } }).usage
          if (usage?.total_tokens) state.reportedTokens += usage.total_tokens
          if (behavior.chunkDelayMs) await sleep(behavior.chunkDelayMs)
        }
        if (!res.destroyed) res.end('data: [DONE]\n\n')
        return
      }
    }
  }

  const server = createServer((req, res) => {
    handle(req, res).catch(() => res.destroy())
  })
  server.on('connection', (s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}${options.azure ? '' : '/v1'}`
  return state
}

/** What Azure OpenAI answers a request of the wrong shape (as its own error codes name it). */
function azureRefusal(azure: AzureShape, req: IncomingMessage): { status: number; code: string; message: string } | null {
  if (req.headers['api-key'] !== azure.key || req.headers.authorization !== undefined) return { status: 401, code: '401', message: 'Access denied due to invalid subscription key or wrong API endpoint.' }
  const url = new URL(req.url ?? '/', 'http://mock')
  const m = /^\/openai\/deployments\/([^/]+)\/chat\/completions$/.exec(url.pathname)
  if (!m || req.method !== 'POST') return { status: 404, code: '404', message: 'Resource not found' }
  if (url.searchParams.get('api-version') !== azure.apiVersion) return { status: 404, code: '404', message: 'Resource not found (api-version)' }
  if (!azure.deployments.includes(decodeURIComponent(m[1]))) return { status: 404, code: 'DeploymentNotFound', message: 'The API deployment for this resource does not exist.' }
  return null
}

/** A loopback port where nothing listens: connections to it are refused. */
export async function refusingPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  const port = (server.address() as AddressInfo).port
  await new Promise<void>((r) => server.close(() => r()))
  return port
}
