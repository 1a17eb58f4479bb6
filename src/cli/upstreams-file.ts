import { readFileSync } from 'node:fs'
import { LineCounter, parseDocument, type Document } from 'yaml'
import { DEFAULT_COOLDOWN, type LoadedUpstreams, type RouteTarget, type RoutingConfig, type UpstreamSpec } from '../core/routing/config.js'
import { badRequest, GatewayError } from '../core/errors.js'
import { escapeControl } from '../core/escape.js'
import { parseDuration } from './durations.js'

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/
const MODEL = /^[\x21-\x7e]{1,256}$/
/** Strings that look like a credential: provider key prefixes, or a long unbroken token (Azure keys are 32 hex digits). */
const KEY_LIKE = [/\b(sk|gsk|xai|pk|rk)[-_][A-Za-z0-9_-]{16,}/, /^[A-Za-z0-9_+/=]{32,}$/]
const UPSTREAM_FIELDS = new Set(['name', 'provider', 'base_url', 'api_key_env', 'models', 'weight', 'max_inflight', 'timeout', 'api_version', 'deployments'])
const TOP_FIELDS = new Set(['upstreams', 'models', 'cooldown'])
const SECRET_FIELDS = new Set(['api_key', 'apikey', 'key', 'secret', 'token', 'password', 'authorization'])

type Path = (string | number)[]

/** A refused upstreams file: every problem is one line (`problems`), the message all of them. */
export class UpstreamsFileError extends GatewayError {
  constructor(readonly problems: string[]) {
    // No param: each problem names the file already, the CLI puts no flag in front.
    super(400, 'invalid_request_error', 'bad_upstreams', problems.join('; '))
  }
}

/** Reads and validates an upstreams file (YAML, so JSON too), then the keys it names from `env` (not needed with --mock). */
export function loadUpstreamsFile(file: string, env: NodeJS.ProcessEnv, options: { needKeys: boolean } = { needKeys: true }): LoadedUpstreams {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw badRequest(`--upstreams: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, 'upstreams', 'bad_upstreams')
  }
  const config = parseUpstreams(text, file)
  const keys: Record<string, string> = {}
  const missing: string[] = []
  for (const u of config.upstreams) {
    if (u.apiKeyEnv === null || !options.needKeys) continue
    const value = env[u.apiKeyEnv]?.trim()
    if (value) keys[u.name] = value
    else missing.push(escapeControl(`${file}: upstream "${u.name}": api_key_env ${u.apiKeyEnv} is not set in the environment`))
  }
  if (missing.length > 0) throw new UpstreamsFileError(missing)
  return { config, keys }
}

/** The upstreams file's text, validated: every problem is one line naming the file, line and field. */
export function parseUpstreams(text: string, file: string): RoutingConfig {
  const lines = new LineCounter()
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true })
  const errors: string[] = []
  for (const e of doc.errors) errors.push(escapeControl(`${file}:${e.linePos?.[0].line ?? 1}: ${e.message.split('\n')[0]}`))
  if (errors.length > 0) throw new UpstreamsFileError(errors)
  const v = new Validator(doc, lines, file)
  const config = v.config(doc.toJS() as unknown)
  if (v.errors.length > 0) throw new UpstreamsFileError(v.errors.sort((x, y) => lineOf(x) - lineOf(y)))
  return config
}

class Validator {
  readonly errors: string[] = []

  constructor(
    private readonly doc: Document,
    private readonly lines: LineCounter,
    private readonly file: string,
  ) {}

  fail(path: Path, message: string): void {
    const node = this.doc.getIn(path, true) as { range?: [number, number, number] } | undefined
    const line = node?.range ? this.lines.linePos(node.range[0]).line : this.lineOfParent(path)
    const field = path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? p : `.${p}`)).join('')
    this.errors.push(escapeControl(`${this.file}:${line}: ${field || '(top level)'}: ${message}`))
  }

  private lineOfParent(path: Path): number {
    for (let n = path.length - 1; n >= 0; n--) {
      const node = this.doc.getIn(path.slice(0, n), true) as { range?: [number, number, number] } | undefined
      if (node?.range) return this.lines.linePos(node.range[0]).line
    }
    return 1
  }

  config(root: unknown): RoutingConfig {
    const config: RoutingConfig = { upstreams: [], aliases: {}, cooldown: { ...DEFAULT_COOLDOWN } }
    this.secrets(root, [])
    if (!isObject(root)) {
      this.fail([], 'the file must be a mapping with an `upstreams:` list')
      return config
    }
    this.unknown(root, [], TOP_FIELDS)
    if (!Array.isArray(root.upstreams) || root.upstreams.length === 0) this.fail(['upstreams'], 'a non-empty list of upstreams is required')
    else {
      const names = new Set<unknown>()
      root.upstreams.forEach((u, i) => {
        const name = isObject(u) ? u.name : undefined
        if (typeof name === 'string' && names.has(name)) this.fail(['upstreams', i, 'name'], `"${name}" names two upstreams`)
        names.add(name)
        const spec = this.upstream(u, ['upstreams', i])
        if (spec && !config.upstreams.some((o) => o.name === spec.name)) config.upstreams.push(spec)
      })
    }
    if (root.cooldown !== undefined) {
      if (!isObject(root.cooldown)) this.fail(['cooldown'], 'must be a mapping: {failures: 3, duration: 30s}')
      else {
        this.unknown(root.cooldown, ['cooldown'], new Set(['failures', 'duration']))
        if (root.cooldown.failures !== undefined) config.cooldown.failures = this.int(root.cooldown.failures, ['cooldown', 'failures']) ?? DEFAULT_COOLDOWN.failures
        if (root.cooldown.duration !== undefined) config.cooldown.ms = this.duration(root.cooldown.duration, ['cooldown', 'duration']) ?? DEFAULT_COOLDOWN.ms
      }
    }
    if (root.models !== undefined) {
      if (!isObject(root.models)) this.fail(['models'], 'must map alias names to lists of {upstream, model}')
      else for (const [alias, list] of Object.entries(root.models)) {
        const targets = this.alias(alias, list, config.upstreams)
        if (targets) config.aliases[alias] = targets
      }
    }
    return config
  }

  private upstream(u: unknown, path: Path): UpstreamSpec | null {
    if (!isObject(u)) {
      this.fail(path, 'each upstream must be a mapping with at least name and base_url')
      return null
    }
    this.unknown(u, path, UPSTREAM_FIELDS)
    const at = (field: string) => [...path, field]
    const name = typeof u.name === 'string' && NAME.test(u.name) ? u.name : null
    if (name === null) this.fail(at('name'), 'a name of letters, digits, ".", "_" or "-" (at most 64) is required')
    const provider = u.provider ?? 'openai'
    if (provider !== 'openai' && provider !== 'azure') this.fail(at('provider'), 'must be openai or azure')
    const baseURL = this.url(u.base_url, at('base_url'))
    let apiKeyEnv: string | null = null
    if (u.api_key_env !== undefined) {
      if (typeof u.api_key_env === 'string' && ENV_NAME.test(u.api_key_env)) apiKeyEnv = u.api_key_env
      else this.fail(at('api_key_env'), 'must be the name of an environment variable, e.g. OPENAI_API_KEY')
    }
    let models: string[] | null = null
    if (u.models !== undefined) {
      if (!Array.isArray(u.models) || u.models.length === 0) this.fail(at('models'), 'must be a non-empty list of model names')
      else {
        models = []
        u.models.forEach((m, i) => (typeof m === 'string' && MODEL.test(m) ? models!.push(m) : this.fail([...path, 'models', i], 'must be a model name')))
      }
    }
    let weight = 1
    if (u.weight !== undefined) {
      if (typeof u.weight === 'number' && Number.isFinite(u.weight) && u.weight > 0) weight = u.weight
      else this.fail(at('weight'), 'must be a number above 0')
    }
    const maxInflight = u.max_inflight === undefined ? null : this.int(u.max_inflight, at('max_inflight'))
    const timeoutMs = u.timeout === undefined ? null : this.duration(u.timeout, at('timeout'))
    let apiVersion: string | null = null
    const deployments: Record<string, string> = {}
    if (provider === 'azure') {
      if (typeof u.api_version === 'string' || u.api_version instanceof Date) apiVersion = typeof u.api_version === 'string' ? u.api_version : u.api_version.toISOString().slice(0, 10)
      else this.fail(at('api_version'), 'an Azure upstream needs api_version, e.g. 2024-10-21')
      if (u.deployments !== undefined) {
        if (!isObject(u.deployments)) this.fail(at('deployments'), 'must map model names to deployment names')
        else for (const [model, dep] of Object.entries(u.deployments)) {
          if (typeof dep === 'string' && MODEL.test(dep) && MODEL.test(model)) deployments[model] = dep
          else this.fail([...path, 'deployments', model], 'must be a deployment name')
        }
      }
      if (models === null) {
        if (Object.keys(deployments).length === 0) this.fail(path, 'an Azure upstream needs models or deployments: it has no model list to ask')
        else models = Object.keys(deployments)
      }
    } else {
      if (u.api_version !== undefined) this.fail(at('api_version'), 'only for provider: azure')
      if (u.deployments !== undefined) this.fail(at('deployments'), 'only for provider: azure')
    }
    if (name === null || baseURL === null) return null
    return { name, provider: provider === 'azure' ? 'azure' : 'openai', baseURL, apiKeyEnv, models, weight, maxInflight, timeoutMs, apiVersion, deployments }
  }

  private alias(alias: string, list: unknown, upstreams: UpstreamSpec[]): RouteTarget[] | null {
    const path = ['models', alias]
    if (!MODEL.test(alias)) this.fail(path, 'an alias must be a model-like name')
    if (upstreams.some((u) => u.models?.includes(alias))) this.fail(path, `"${alias}" is also a model an upstream serves; an alias needs its own name`)
    if (!Array.isArray(list) || list.length === 0) {
      this.fail(path, 'must be a non-empty list of {upstream, model}')
      return null
    }
    const targets: RouteTarget[] = []
    list.forEach((t, i) => {
      if (!isObject(t) || typeof t.upstream !== 'string' || typeof t.model !== 'string' || !MODEL.test(t.model)) {
        this.fail([...path, i], 'must be {upstream: NAME, model: MODEL}')
        return
      }
      this.unknown(t, [...path, i], new Set(['upstream', 'model']))
      const u = upstreams.find((o) => o.name === t.upstream)
      if (!u) this.fail([...path, i, 'upstream'], `no upstream is named "${t.upstream}"`)
      else if (u.models !== null && !u.models.includes(t.model)) this.fail([...path, i, 'model'], `upstream "${u.name}" does not list "${t.model}" in its models`)
      else targets.push({ upstream: t.upstream, model: t.model })
    })
    return targets
  }

  private url(value: unknown, path: Path): string | null {
    let url: URL | null = null
    try {
      url = typeof value === 'string' ? new URL(value) : null
    } catch {
      url = null
    }
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || !url.hostname) {
      this.fail(path, 'an absolute http(s) URL is required, e.g. https://api.openai.com/v1')
      return null
    }
    if (url.username || url.password) {
      this.fail(path, 'credentials in the URL: keys come from the environment (api_key_env), never from this file')
      return null
    }
    return (value as string).replace(/\/+$/, '')
  }

  private int(value: unknown, path: Path): number | null {
    if (typeof value === 'number' && Number.isInteger(value) && value >= 1) return value
    this.fail(path, 'must be a whole number of at least 1')
    return null
  }

  private duration(value: unknown, path: Path): number | null {
    try {
      const ms = parseDuration(String(value), path.join('.'))
      if (ms > 0) return ms
    } catch {
      // named below
    }
    this.fail(path, 'must be a duration like 500ms, 30s or 10m (a bare number is seconds)')
    return null
  }

  private unknown(value: Record<string, unknown>, path: Path, known: Set<string>): void {
    for (const field of Object.keys(value)) {
      if (!known.has(field) && !SECRET_FIELDS.has(field.toLowerCase())) this.fail([...path, field], `unknown field (expected one of: ${[...known].join(', ')})`)
    }
  }

  /** A key in the file is refused, whatever field holds it. */
  private secrets(value: unknown, path: Path): void {
    if (typeof value === 'string') {
      if (KEY_LIKE.some((re) => re.test(value))) this.fail(path, 'looks like a key: keys come from the environment (api_key_env), never from this file')
      return
    }
    if (Array.isArray(value)) value.forEach((v, i) => this.secrets(v, [...path, i]))
    else if (isObject(value)) {
      for (const [k, v] of Object.entries(value)) {
        if (SECRET_FIELDS.has(k.toLowerCase())) this.fail([...path, k], 'keys come from the environment: name the variable with api_key_env, never the key itself')
        else this.secrets(v, [...path, k])
      }
    }
  }
}

/** The line a problem names (`file:LINE: …`), for listing them in file order. */
function lineOf(problem: string): number {
  return Number(/:(\d+): /.exec(problem)?.[1] ?? 0)
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Date)
}
