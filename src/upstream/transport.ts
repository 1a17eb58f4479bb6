import { Agent, type Dispatcher } from 'undici'
import type { CancelSignal } from '../core/cancel.js'

/** One HTTP call to an upstream, as the upstream client makes it. */
export interface TransportRequest {
  url: string
  method: 'GET' | 'POST'
  headers: Record<string, string>
  body?: Uint8Array
  signal: CancelSignal
  /** No response headers within this → the call fails with a `UND_ERR_HEADERS_TIMEOUT` error. */
  headersTimeoutMs: number
}

/** Response headers as undici gives them: lowercase names, a plain object. */
export type RawHeaders = Record<string, string | string[] | undefined>

/**
 * A response body read chunk by chunk (a Node Readable is one; the pooled transport's is
 * lighter). `destroy` ends it early and closes the upstream connection; a reader waiting
 * then gets `err`.
 */
export interface ChunkSource extends AsyncIterable<Buffer> {
  destroy(err?: Error): void
}

export interface TransportResponse {
  status: number
  headers: RawHeaders
  /** Bytes reach the client without a detour through web streams. */
  body: ChunkSource
}

/** How much of a body read whole may come, and how soon after the headers: chosen by its status. */
export interface BodyBound {
  maxBytes: number
  withinMs: number
}

/**
 * An answer read whole. `cut` says why the body is not all there: it took longer than its
 * bound, grew past it, or the connection broke after the headers (`body` then holds nothing).
 */
export interface WholeResponse {
  status: number
  headers: RawHeaders
  body: Buffer
  cut: 'time' | 'size' | 'broken' | null
}

/**
 * How the upstream client reaches an upstream: undici's pool for a real one, a function for
 * the built-in mock. Both answer a stream with a Node stream body, so the mock runs the very
 * same upstream code and error paths as a real upstream.
 */
export interface Transport {
  send(req: TransportRequest): Promise<TransportResponse>
  /** A call answered whole (a non-streamed completion); rejects only before the headers, or when the signal aborts. */
  sendWhole(req: TransportRequest, bound: (status: number) => BodyBound): Promise<WholeResponse>
  close(): Promise<void>
}

/** The most of a body read whole (an error answer, the model list). */
export const MAX_READ_BYTES = 8 * 1024 * 1024

/** A body read whole, up to `cap` bytes: past it the stream is destroyed and `tooLarge()` thrown. */
export async function readCapped(body: ChunkSource, cap: number, tooLarge: () => Error): Promise<Buffer> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of body) {
    size += chunk.byteLength
    if (size > cap) {
      body.destroy()
      throw tooLarge()
    }
    chunks.push(chunk)
  }
  return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size)
}

/**
 * A body read whole (an error answer, the model list), bounded in time and size, so an
 * upstream that stalls or never ends its error page cannot hold the call.
 */
export async function readWhole(body: ChunkSource, timeoutMs: number): Promise<Buffer> {
  const timer = setTimeout(() => body.destroy(new Error('the upstream did not finish its answer in time')), timeoutMs)
  try {
    return await readCapped(body, MAX_READ_BYTES, () => new Error(`the upstream's answer exceeded ${MAX_READ_BYTES} bytes`))
  } finally {
    clearTimeout(timer)
  }
}

/** `sendWhole` over a transport's streamed `send`: the same bounds, for the mock. */
export async function wholeOverStream(res: TransportResponse, bound: (status: number) => BodyBound): Promise<WholeResponse> {
  const { maxBytes, withinMs } = bound(res.status)
  let cut: WholeResponse['cut'] = null
  const timer = setTimeout(() => {
    cut = 'time'
    res.body.destroy()
  }, withinMs)
  try {
    const body = await readCapped(res.body, maxBytes, () => Object.assign(new Error('too large'), { cut: 'size' as const }))
    return { status: res.status, headers: res.headers, body, cut }
  } catch (err) {
    cut ??= (err as { cut?: 'size' }).cut ?? 'broken'
    return { status: res.status, headers: res.headers, body: Buffer.alloc(0), cut }
  } finally {
    clearTimeout(timer)
  }
}

/**
 * The pooled keep-alive transport over undici's `dispatch` (no fetch, no web streams: on
 * Node 20 those cost several times the CPU of the proxying itself). Its handlers hand the
 * chunks on themselves: an answer read whole is gathered with no stream object at all, a
 * stream is read through a small async iterator, not undici's `request` and its Readable
 * (~90 µs of CPU per call less, measured on loopback). Redirects are never followed (an
 * upstream redirect must not move where the gateway connects); the body's deadline is the
 * upstream client's, so undici's body timeout is off.
 */
export function createPooledTransport(options: { connectTimeoutMs: number }): Transport {
  const dispatcher = new Agent({
    keepAliveTimeout: 30_000,
    keepAliveMaxTimeout: 600_000,
    connections: 256,
    connectTimeout: options.connectTimeoutMs,
    bodyTimeout: 0,
  })
  return {
    send(req) {
      return new Promise((resolve, reject) => dispatcher.dispatch(dispatchOptions(req), new StreamHandler(req.signal, resolve, reject)))
    },
    sendWhole(req, bound) {
      return new Promise((resolve, reject) => dispatcher.dispatch(dispatchOptions(req), new WholeHandler(req.signal, bound, resolve, reject)))
    },
    close: () => dispatcher.close(),
  }
}

function dispatchOptions(req: TransportRequest): Dispatcher.DispatchOptions {
  const url = new URL(req.url)
  return { origin: url.origin, path: url.pathname + url.search, method: req.method, headers: req.headers, body: req.body, headersTimeout: req.headersTimeoutMs }
}

/** Past this much read and not yet taken, the upstream socket is paused (backpressure) until the reader takes it. */
const HIGH_WATER_BYTES = 64 * 1024

/** What both handlers share: undici's controller, aborted with the reason when the request's Cancel aborts. */
abstract class CancellableHandler implements Dispatcher.DispatchHandler {
  protected controller: Dispatcher.DispatchController | null = null
  private readonly onAbort = () => this.controller?.abort(this.signal.reason as Error)

  constructor(protected readonly signal: CancelSignal) {}

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller
    if (this.signal.aborted) controller.abort(this.signal.reason as Error)
    else this.signal.addEventListener('abort', this.onAbort, { once: true })
  }

  /** The call is over: the Cancel no longer concerns it. */
  protected unlisten(): void {
    this.signal.removeEventListener('abort', this.onAbort)
  }
}

/**
 * One streamed answer for `send`: resolves at the headers with itself as the body, then
 * hands what arrived to one reader, all of it at once like a Readable's `read()` (an
 * upstream writes each SSE event as an HTTP chunk: one at a time cost an iteration, a
 * split and a client write each). A client's abort, `destroy` or a broken connection ends
 * it; the reader then gets what came before, then the error.
 */
class StreamHandler extends CancellableHandler implements ChunkSource {
  private started = false
  private chunks: Buffer[] = []
  private buffered = 0
  private ended = false
  private error: Error | null = null
  private waiter: { resolve(r: IteratorResult<Buffer>): void; reject(err: unknown): void } | null = null
  /** The waiting reader is settled in a microtask, so chunks parsed from one socket read go together. */
  private poked = false

  constructor(
    signal: CancelSignal,
    private readonly resolve: (res: TransportResponse) => void,
    private readonly reject: (err: unknown) => void,
  ) {
    super(signal)
  }

  onResponseStart(controller: Dispatcher.DispatchController, status: number, headers: RawHeaders): void {
    this.started = true
    this.resolve({ status, headers, body: this })
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.chunks.push(chunk)
    this.buffered += chunk.byteLength
    if (this.buffered > HIGH_WATER_BYTES) controller.pause()
    this.poke()
  }

  onResponseEnd(): void {
    this.ended = true
    this.unlisten()
    this.poke()
  }

  onResponseError(controller: Dispatcher.DispatchController, err: Error): void {
    this.unlisten()
    const reason = this.signal.aborted ? (this.signal.reason as Error) : err
    if (!this.started) return this.reject(reason)
    this.error ??= reason
    this.poke()
  }

  destroy(err: Error = new Error('the upstream answer was abandoned')): void {
    if (this.ended || this.error) return
    this.error = err
    this.chunks = []
    this.controller?.abort(err)
    this.poke()
  }

  [Symbol.asyncIterator](): AsyncIterator<Buffer> {
    return {
      next: () => new Promise((resolve, reject) => this.settle({ resolve, reject })),
      return: async () => {
        this.destroy() // the reader stopped early: the upstream connection must not stay open for nothing
        return { value: undefined, done: true }
      },
    }
  }

  private poke(): void {
    if (this.waiter === null || this.poked) return
    this.poked = true
    queueMicrotask(() => {
      this.poked = false
      const waiter = this.waiter
      this.waiter = null
      if (waiter) this.settle(waiter)
    })
  }

  /** Gives the reader everything read so far, else the error or the end; else it waits. */
  private settle(reader: NonNullable<StreamHandler['waiter']>): void {
    if (this.chunks.length > 0) {
      const chunk = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.buffered)
      this.chunks = []
      this.buffered = 0
      if (this.controller?.paused) this.controller.resume()
      reader.resolve({ value: chunk, done: false })
    } else if (this.error) reader.reject(this.error)
    else if (this.ended) reader.resolve({ value: undefined, done: true })
    else this.waiter = reader
  }
}

/**
 * Gathers one answer for `sendWhole`. Before the headers a failure rejects (the caller maps
 * undici's codes); after them the answer is resolved with whatever `cut` it, so the caller
 * still knows the status. A client's abort rejects with the signal's reason at any point.
 */
class WholeHandler extends CancellableHandler {
  private status = 0
  private headers: RawHeaders = {}
  private chunks: Buffer[] = []
  private size = 0
  private maxBytes = 0
  private timer: NodeJS.Timeout | null = null
  private settled = false

  constructor(
    signal: CancelSignal,
    private readonly bound: (status: number) => BodyBound,
    private readonly resolve: (res: WholeResponse) => void,
    private readonly reject: (err: unknown) => void,
  ) {
    super(signal)
  }

  onResponseStart(controller: Dispatcher.DispatchController, status: number, headers: RawHeaders): void {
    this.status = status
    this.headers = headers
    const { maxBytes, withinMs } = this.bound(status)
    this.maxBytes = maxBytes
    this.timer = setTimeout(() => this.finish('time'), withinMs)
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.size += chunk.byteLength
    if (this.size > this.maxBytes) this.finish('size')
    else this.chunks.push(chunk)
  }

  onResponseEnd(): void {
    this.finish(null)
  }

  onResponseError(controller: Dispatcher.DispatchController, err: Error): void {
    if (this.signal.aborted || this.status === 0) this.fail(this.signal.aborted ? this.signal.reason : err)
    else this.finish('broken')
  }

  /** The answer as it stands; a cut one also ends the call (its connection is closed). */
  private finish(cut: WholeResponse['cut']): void {
    if (this.settled) return
    this.end()
    const body = cut !== null ? Buffer.alloc(0) : this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.size)
    this.chunks = []
    this.resolve({ status: this.status, headers: this.headers, body, cut })
    if (cut !== null) this.controller?.abort(new Error(`upstream answer cut (${cut})`))
  }

  private fail(err: unknown): void {
    if (this.settled) return
    this.end()
    this.reject(err)
  }

  private end(): void {
    this.settled = true
    if (this.timer !== null) clearTimeout(this.timer)
    this.unlisten()
  }
}
