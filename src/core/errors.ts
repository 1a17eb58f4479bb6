/**
 * The one error type of the gateway. Core code throws it; `app.onError` and the CLI base
 * command are the only places that turn it into an HTTP response or an exit code.
 */
export type ErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'permission_error'
  | 'rate_limit_error'
  | 'queue_error'
  | 'upstream_error'
  | 'server_error'
  | 'not_found_error'

export interface ErrorBody {
  error: { message: string; type: ErrorType; code: string; param: string | null }
}

export class GatewayError extends Error {
  readonly status: number
  readonly type: ErrorType
  readonly code: string
  readonly param: string | null
  readonly headers: Record<string, string>

  constructor(
    status: number,
    type: ErrorType,
    code: string,
    message: string,
    options: { param?: string | null; headers?: Record<string, string>; cause?: unknown } = {},
  ) {
    super(message, { cause: options.cause })
    this.name = 'GatewayError'
    this.status = status
    this.type = type
    this.code = code
    this.param = options.param ?? null
    this.headers = options.headers ?? {}
  }

  toJSON(): ErrorBody {
    return { error: { message: this.message, type: this.type, code: this.code, param: this.param } }
  }
}

export function badRequest(message: string, param: string | null = null, code = 'invalid_request'): GatewayError {
  return new GatewayError(400, 'invalid_request_error', code, message, { param })
}

export function unauthorized(message = 'Invalid or missing API key'): GatewayError {
  return new GatewayError(401, 'authentication_error', 'invalid_api_key', message, {
    headers: { 'www-authenticate': 'Bearer realm="gateway"' },
  })
}

export function forbidden(message: string, code = 'permission_denied', param: string | null = null): GatewayError {
  return new GatewayError(403, 'permission_error', code, message, { param })
}

export function notFound(message = 'Not found'): GatewayError {
  return new GatewayError(404, 'not_found_error', 'not_found', message)
}

export function methodNotAllowed(method: string, path: string, allowed: string[]): GatewayError {
  return new GatewayError(405, 'invalid_request_error', 'method_not_allowed', `${method} is not allowed on ${path}; it takes ${allowed.filter((m) => m !== 'HEAD').join(' or ')}`, {
    headers: { allow: allowed.join(', ') },
  })
}

/** The rest of the body is not read, so the connection closes after the answer. */
export function payloadTooLarge(limit: number): GatewayError {
  return new GatewayError(413, 'invalid_request_error', 'body_too_large', `Request body too large (max ${limit} bytes)`, {
    headers: { connection: 'close' },
  })
}

/** 429 with both Retry-After (whole seconds, rounded up) and retry-after-ms. */
export function rateLimited(message: string, code: string, retryAfterMs: number, extra: Record<string, string> = {}): GatewayError {
  const ms = Math.max(0, Math.ceil(retryAfterMs))
  return new GatewayError(429, 'rate_limit_error', code, message, {
    headers: { 'retry-after': String(Math.max(1, Math.ceil(ms / 1000))), 'retry-after-ms': String(ms), ...extra },
  })
}

export function unavailable(message: string, code: string, retryAfterMs: number): GatewayError {
  const ms = Math.max(0, Math.ceil(retryAfterMs))
  return new GatewayError(503, 'queue_error', code, message, {
    headers: { 'retry-after': String(Math.max(1, Math.ceil(ms / 1000))), 'retry-after-ms': String(ms) },
  })
}

export function upstreamError(status: 502 | 504, message: string, code: string): GatewayError {
  return new GatewayError(status, 'upstream_error', code, message)
}
