/** One upstream of an upstreams file, validated (the key itself is never part of it). */
export interface UpstreamSpec {
  name: string
  provider: 'openai' | 'azure'
  baseURL: string
  /** The environment variable holding its key; null: no credential (a local server). */
  apiKeyEnv: string | null
  /** The models it serves; null: whatever its /models lists (then it also takes models no list names). */
  models: string[] | null
  /** Its share among the upstreams serving the same model. */
  weight: number
  /** Its own cap on calls in flight; null: none beyond the gateway's. */
  maxInflight: number | null
  /** Its own whole-request timeout; null: the gateway's. */
  timeoutMs: number | null
  /** Azure only. */
  apiVersion: string | null
  /** Azure only: model → deployment (a model not named is its own deployment). */
  deployments: Record<string, string>
}

/** An alias's entry: this model on this upstream. */
export interface RouteTarget {
  upstream: string
  model: string
}

export interface CooldownOptions {
  /** Failures in a row that put an upstream in cooldown. */
  failures: number
  /** How long it is skipped before one request tries it again. */
  ms: number
}

export const DEFAULT_COOLDOWN: CooldownOptions = { failures: 3, ms: 30_000 }

export interface RoutingConfig {
  upstreams: UpstreamSpec[]
  /** Names clients may use, each tried in order. */
  aliases: Record<string, RouteTarget[]>
  cooldown: CooldownOptions
}

/** What `serve --upstreams FILE` reads: the routing config and each upstream's key, from the environment. */
export interface LoadedUpstreams {
  config: RoutingConfig
  /** Upstream name → key (upstreams without `api_key_env` have none). */
  keys: Record<string, string>
}
