import { upstreamError } from '../errors.js'
import type { CancelSignal } from '../cancel.js'

/** The most one backoff waits, however many attempts came before. */
const MAX_BACKOFF_MS = 2_000

/** Full-jitter exponential backoff before attempt `n + 1` (n ≥ 1 attempts made): in [base·2ⁿ⁻¹/2, base·2ⁿ⁻¹). */
export function backoffMs(n: number, baseMs: number, random: () => number): number {
  const ceiling = Math.min(MAX_BACKOFF_MS, baseMs * 2 ** (n - 1))
  return ceiling / 2 + random() * (ceiling / 2)
}

/** Waits `ms`, or less if the signal aborts first. */
export function sleepUnlessAborted(ms: number, signal: CancelSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve()
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    signal.addEventListener('abort', done, { once: true })
  })
}

/**
 * A stream's first chunk read before anything reaches the client, so a stream that breaks
 * before its first byte may still go to the next upstream (`onFailure` marks the error so);
 * returns the whole stream, that chunk first.
 */
export async function withFirstChunk(source: AsyncIterable<Uint8Array>, onFailure: (err: unknown) => unknown): Promise<AsyncIterable<Uint8Array>> {
  const it = source[Symbol.asyncIterator]()
  let first: IteratorResult<Uint8Array, unknown>
  try {
    first = await it.next()
  } catch (err) {
    throw onFailure(err)
  }
  if (first.done) throw onFailure(upstreamError(502, 'The upstream ended the stream before any data', 'upstream_incomplete'))
  return (async function* rest() {
    try {
      yield first.value
      for (let next = await it.next(); !next.done; next = await it.next()) yield next.value
    } finally {
      await it.return?.()
    }
  })()
}
