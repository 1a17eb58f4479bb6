import { badRequest } from '../core/errors.js'
import { redactUrl } from '../storage/db-url.js'
import type { HttpUpstream } from './http-upstream.js'

/**
 * OPENAI_BASE_URL must be an absolute http(s) URL: without a scheme every request URL
 * fails, so the gateway would start and answer nothing but 502s.
 * Returns the value to use (undefined: OpenAI's).
 */
export function checkBaseUrl(value: string | undefined): string | undefined {
  const raw = value?.trim()
  if (!raw) return undefined
  let url: URL | null = null
  try {
    url = new URL(raw)
  } catch {
    url = null
  }
  const shown = JSON.stringify(redactUrl(raw)) // never echo credentials
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || !url.hostname) {
    throw badRequest(`OPENAI_BASE_URL ${shown} is not an http(s) URL: write it in full, e.g. https://api.openai.com/v1 or http://127.0.0.1:11434/v1`, 'OPENAI_BASE_URL', 'invalid_base_url')
  }
  return raw
}

export type UpstreamCheck = { ok: true; ms: number; models: number } | { ok: false; ms: number; cause: string; message: string }

/** One model-list call (bounded by the upstream's first-byte timeout), as `serve --check-upstream` reports it. */
export async function probeUpstream(upstream: HttpUpstream): Promise<UpstreamCheck> {
  const started = performance.now()
  const ms = () => Math.round(performance.now() - started)
  try {
    const models = await upstream.models()
    return { ok: true, ms: ms(), models: models.length }
  } catch (err) {
    const failure = upstream.health.state().lastFailure
    return { ok: false, ms: ms(), cause: failure?.cause ?? 'unreachable', message: failure?.message ?? (err instanceof Error ? err.message : String(err)) }
  }
}
