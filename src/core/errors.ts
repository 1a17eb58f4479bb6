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

/**
 * Every error code the gateway assigns, in one place. The one code that can be something
 * else is an upstream's own, relayed when it rejects a request (`upstreamCode`); so a code
 * outside this list came from an upstream, and metrics label it `other`.
 */
export const ERROR_CODES = [
  'invalid_request',
  'invalid_json',
  'too_deep',
  'max_tokens_exceeded',
  'input_too_long',
  'message_too_long',
  'conflicting_credentials',
  'body_too_large',
  'invalid_api_key',
  'permission_denied',
  'admin_required',
  'model_not_allowed',
  'not_found',
  'key_exists',
  'key_not_found',
  'client_closed_request',
  'rate_limit_exceeded',
  'tokens_rate_limit_exceeded',
  'request_too_large',
  'daily_limit_exceeded',
  'ip_rate_limit_exceeded',
  'auth_rate_limit_exceeded',
  'queue_full',
  'queue_timeout',
  'limiter_unavailable',
  'shutting_down',
  'database_in_use',
  'no_database',
  'ambiguous_prefix',
  'rotation_in_grace',
  'bad_prices',
  'bad_host',
  'bad_database',
  'backup_not_sqlite',
  'bad_path',
  'port_in_use',
  'port_denied',
  'upstream_check_failed',
  'model_not_found',
  'upstream_busy',
  'bad_upstreams',
  'gateway_unreachable',
  'method_not_allowed',
  'file_exists',
  'invalid_base_url',
  'key_revoked',
  'key_expired',
  'upstream_invalid_request',
  'upstream_rate_limited',
  'upstream_auth_failed',
  'upstream_redirect',
  'upstream_error',
  'upstream_timeout',
  'upstream_unreachable',
  'upstream_broken',
  'upstream_malformed',
  'upstream_too_large',
  'upstream_stream_error',
  'upstream_incomplete',
  'internal_error',
  'csrf_failed',
  'session_expired',
] as const

export type ErrorCode = (typeof ERROR_CODES)[number]

const GATEWAY_CODES: ReadonlySet<string> = new Set(ERROR_CODES)

/** Whether the gateway assigned this code (else an upstream chose it). */
export function isGatewayCode(code: string): code is ErrorCode {
  return GATEWAY_CODES.has(code)
}

export interface ErrorBody {
  error: { message: string; type: ErrorType; code: string; param: string | null }
}

export class GatewayError extends Error {
  readonly status: number
  readonly type: ErrorType
  readonly code: string
  readonly param: string | null
  readonly headers: Record<string, string>

  /** `upstreamCode`: an upstream's own code, relayed instead of `code` (see ERROR_CODES). */
  constructor(
    status: number,
    type: ErrorType,
    code: ErrorCode,
    message: string,
    options: { param?: string | null; headers?: Record<string, string>; cause?: unknown; upstreamCode?: string } = {},
  ) {
    super(message, { cause: options.cause })
    this.name = 'GatewayError'
    this.status = status
    this.type = type
    this.code = options.upstreamCode ?? code
    this.param = options.param ?? null
    this.headers = options.headers ?? {}
  }

  /** The same error with another message (the CLI puts the flag's name in front). */
  withMessage(message: string): GatewayError {
    const own = isGatewayCode(this.code)
    return new GatewayError(this.status, this.type, own ? this.code : 'upstream_error', message, {
      param: this.param,
      headers: this.headers,
      upstreamCode: own ? undefined : this.code,
    })
  }

  toJSON(): ErrorBody {
    return { error: { message: this.message, type: this.type, code: this.code, param: this.param } }
  }
}

export function badRequest(message: string, param: string | null = null, code: ErrorCode = 'invalid_request'): GatewayError {
  return new GatewayError(400, 'invalid_request_error', code, message, { param })
}

/** 401; `code` is invalid_api_key, or key_revoked / key_expired for a known key that no longer works. */
export function unauthorized(message = 'Invalid or missing API key', code: 'invalid_api_key' | 'key_revoked' | 'key_expired' = 'invalid_api_key'): GatewayError {
  return new GatewayError(401, 'authentication_error', code, message, {
    headers: { 'www-authenticate': 'Bearer realm="gateway"' },
  })
}

export function forbidden(message: string, code: ErrorCode = 'permission_denied', param: string | null = null): GatewayError {
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
export function rateLimited(message: string, code: ErrorCode, retryAfterMs: number, extra: Record<string, string> = {}): GatewayError {
  const ms = Math.max(0, Math.ceil(retryAfterMs))
  return new GatewayError(429, 'rate_limit_error', code, message, {
    headers: { 'retry-after': String(Math.max(1, Math.ceil(ms / 1000))), 'retry-after-ms': String(ms), ...extra },
  })
}

export function unavailable(message: string, code: ErrorCode, retryAfterMs: number): GatewayError {
  const ms = Math.max(0, Math.ceil(retryAfterMs))
  return new GatewayError(503, 'queue_error', code, message, {
    headers: { 'retry-after': String(Math.max(1, Math.ceil(ms / 1000))), 'retry-after-ms': String(ms) },
  })
}

/** The shared limit state (Redis) cannot be reached: refused rather than let through unlimited (fail closed). */
export function limiterUnavailable(cause?: unknown): GatewayError {
  return new GatewayError(503, 'server_error', 'limiter_unavailable', 'The gateway cannot reach its rate-limit store; retry shortly', {
    headers: { 'retry-after': '1', 'retry-after-ms': '1000' },
    cause,
  })
}

/** A request the gateway cannot finish because it is stopping; another instance (or a restart) can serve it. */
export function shuttingDown(): GatewayError {
  return new GatewayError(503, 'server_error', 'shutting_down', 'The gateway is shutting down; retry shortly', {
    headers: { 'retry-after': '1', 'retry-after-ms': '1000' },
  })
}

export function upstreamError(status: 502 | 504, message: string, code: ErrorCode): GatewayError {
  return new GatewayError(status, 'upstream_error', code, message)
}

/** A second server on one SQLite database (exit 2: the command was wrong, not the gateway). */
export function databaseInUse(message: string): GatewayError {
  return new GatewayError(423, 'invalid_request_error', 'database_in_use', message)
}
