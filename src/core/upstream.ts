import type { GatewayError } from './errors.js'
import type { CancelSignal } from './cancel.js'

/**
 * What core needs from an upstream. Bodies travel as bytes: the gateway forwards what the
 * client sent (re-serialised only when it had to change a field) and returns the upstream's
 * bytes unchanged. Implementations throw GatewayError for every failure, and mark with
 * `markRetryable` the ones another upstream may be asked after (nothing was answered yet).
 */
export interface Upstream {
  /** The name routes and log rows use ('default' without an upstreams file). */
  readonly name: string
  /** For the banner and warnings: 'built-in mock provider', or the base URL without credentials. */
  readonly description: string
  readonly isMock: boolean
  /** A non-streamed chat completion of `model`: the upstream's response body, byte for byte; within `timeoutMs` (and its own timeout). */
  complete(model: string, body: Uint8Array, signal: CancelSignal, timeoutMs?: number): Promise<Uint8Array>
  /** A streamed chat completion of `model`: raw SSE bytes as they arrive. */
  stream(model: string, body: Uint8Array, signal: CancelSignal, timeoutMs?: number): Promise<AsyncIterable<Uint8Array>>
  /** Model ids the upstream offers. */
  models(signal?: CancelSignal): Promise<string[]>
  /** An upstream-written text made safe to show a client: no credential, no control character. */
  scrub(text: string): string
}

const retryable = new WeakSet<GatewayError>()

/** A failure before the upstream started answering (refused, timed out before headers, 429, 5xx). */
export function markRetryable(err: GatewayError): GatewayError {
  retryable.add(err)
  return err
}

export function isRetryable(err: unknown): boolean {
  return retryable.has(err as GatewayError)
}
