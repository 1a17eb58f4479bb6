import OpenAI, { AzureOpenAI } from 'openai'
import type { UpstreamSpec } from '../core/routing/config.js'
import { scrubSecrets } from '../upstream/scrub.js'

interface UpstreamCheckResult {
  name: string
  ok: boolean
  /** What it lists (its /models, or its configured models / deployments); null when the listing failed. */
  models: string[] | null
  list_ms: number | null
  list_error: string | null
  /** The model the 1-token completion asked for; null when there was none to ask. */
  model: string | null
  completion_ms: number | null
  completion_error: string | null
}

/** The official SDK, as a client of one upstream: no retries, no logging, a bounded wait. */
function clientFor(spec: UpstreamSpec, key: string, timeoutMs: number): OpenAI {
  const common = { apiKey: key || 'none', maxRetries: 0, timeout: timeoutMs, logLevel: 'off' as const }
  if (spec.provider === 'azure') return new AzureOpenAI({ ...common, endpoint: spec.baseURL, apiVersion: spec.apiVersion ?? undefined })
  return new OpenAI({ ...common, baseURL: spec.baseURL })
}

/** An SDK error in one line, without the key (nor any key-shaped string). */
function describe(err: unknown, key: string): string {
  const status = err instanceof OpenAI.APIError && err.status !== undefined ? `HTTP ${err.status}: ` : ''
  const text = `${status}${err instanceof Error ? err.message : String(err)}`
  return scrubSecrets(text, [key], 300)
}

/**
 * One upstream checked through the official SDK: its model list (asked, unless the file lists
 * them or it is Azure), then a 1-token completion of `model` (default: the first it serves).
 */
export async function checkUpstream(spec: UpstreamSpec, key: string, options: { model?: string; timeoutMs: number }): Promise<UpstreamCheckResult> {
  const client = clientFor(spec, key, options.timeoutMs)
  const result: UpstreamCheckResult = { name: spec.name, ok: false, models: null, list_ms: null, list_error: null, model: null, completion_ms: null, completion_error: null }
  let started = performance.now()
  if (spec.models !== null) result.models = spec.models
  else {
    try {
      const ids: string[] = []
      for await (const m of client.models.list()) ids.push(m.id)
      result.models = ids
    } catch (err) {
      result.list_error = describe(err, key)
    }
    result.list_ms = Math.round(performance.now() - started)
  }
  result.model = options.model ?? result.models?.[0] ?? null
  if (result.model === null) return result
  started = performance.now()
  try {
    // Azure names the deployment where OpenAI names the model.
    const model = spec.provider === 'azure' ? (spec.deployments[result.model] ?? result.model) : result.model
    await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'Say OK.' }], max_tokens: 1 })
    result.ok = result.list_error === null
  } catch (err) {
    result.completion_error = describe(err, key)
  }
  result.completion_ms = Math.round(performance.now() - started)
  return result
}
