import { GatewayError } from '../core/errors.js'

/** A running gateway (`try`, `upstreams --url`) that did not answer at all: 503 gateway_unreachable. */
export function gatewayUnreachable(url: string, err: unknown): GatewayError {
  return new GatewayError(503, 'upstream_error', 'gateway_unreachable', `Could not reach the gateway at ${url}: ${err instanceof Error ? err.message : String(err)}`)
}
