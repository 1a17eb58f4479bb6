/**
 * What core needs from an upstream. Bodies travel as bytes: the gateway forwards what the
 * client sent (re-serialised only when it had to change a field) and returns the upstream's
 * bytes unchanged. Implementations throw GatewayError for every failure.
 */
export interface Upstream {
  /** For the banner: 'built-in mock provider', or the base URL without credentials. */
  readonly description: string
  readonly isMock: boolean
  /** A non-streamed chat completion: the upstream's response body, byte for byte. */
  complete(body: Uint8Array, signal: AbortSignal): Promise<Uint8Array>
  /** A streamed chat completion: raw SSE bytes as they arrive. */
  stream(body: Uint8Array, signal: AbortSignal): Promise<AsyncIterable<Uint8Array>>
  /** Model ids the upstream offers. */
  models(signal?: AbortSignal): Promise<string[]>
  /** An upstream-written text made safe to show a client: no credential, no control character. */
  scrub(text: string): string
}
