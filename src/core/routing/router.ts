import type { Clock } from '../clock.js'
import { GatewayError, unavailable } from '../errors.js'
import { isRetryable, type Upstream } from '../upstream.js'
import type { CooldownOptions, RouteTarget } from './config.js'
import { Cooldown, type BreakerState } from './cooldown.js'
import { backoffMs, sleepUnlessAborted } from './retries.js'
import type { CancelSignal } from '../cancel.js'

/** An upstream as the router sees it. */
export interface RoutedUpstreamOptions {
  upstream: Upstream
  /** null: whatever its /models lists; it also takes models no list names. */
  models: string[] | null
  weight: number
  maxInflight: number | null
}

export interface RouterOptions {
  cooldown: CooldownOptions
  /** One deadline for all attempts of a request. */
  deadlineMs: number
  /** Base of the jittered backoff between attempts. */
  backoffMs?: number
  /** [0, 1): weighted picks and jitter (tests may fix it). */
  random?: () => number
}

/** Where a request went: filled in attempt by attempt, read into the log row. */
export interface RouteTrace {
  upstream: string | null
  servedModel: string | null
  attempts: number
}

export interface UpstreamView {
  name: string
  description: string
  weight: number
  models: string[] | null
  inflight: number
  maxInflight: number | null
  state: BreakerState
  failuresInRow: number
  coolingUntil: string | null
}

interface Entry extends RoutedUpstreamOptions {
  inflight: number
  cooldown: Cooldown
}

interface Candidate {
  entry: Entry
  model: string
}

/** A model's candidates, resolved before admission (so an unknown model reserves nothing). */
export interface Route {
  readonly model: string
  readonly candidates: readonly Candidate[]
  /** An alias: its list in order; a model: a weighted order drawn per request. */
  readonly ordered: boolean
}

const DEFAULT_BACKOFF_MS = 50
const MODELS_TTL_MS = 5 * 60_000
/** The most model names a model_not_found message lists. */
const NAMES_SHOWN = 30

/**
 * Model routing: which upstreams serve a model (weighted), aliases (in order), fallbacks and
 * retries before the first byte, cooldown of an upstream failing in a row.
 */
export class Router {
  private readonly entries = new Map<string, Entry>()
  /** Model → upstreams listing it. */
  private readonly byModel = new Map<string, Entry[]>()
  /** Upstreams without a models list: they take what no list names. */
  private readonly open: Entry[] = []
  private readonly listCache = new Map<string, { at: number; ids: Promise<string[]> }>()
  private readonly random: () => number

  constructor(
    upstreams: RoutedUpstreamOptions[],
    private readonly aliases: Record<string, RouteTarget[]>,
    private readonly options: RouterOptions,
    private readonly clock: Clock,
  ) {
    this.random = options.random ?? Math.random
    for (const u of upstreams) {
      const entry: Entry = { ...u, inflight: 0, cooldown: new Cooldown(options.cooldown) }
      this.entries.set(u.upstream.name, entry)
      if (u.models === null) this.open.push(entry)
      else for (const m of u.models) this.byModel.set(m, [...(this.byModel.get(m) ?? []), entry])
    }
  }

  /** Whether a model or alias reaches some upstream (without asking one). */
  serves(model: string): boolean {
    return model in this.aliases || this.byModel.has(model) || this.open.length > 0
  }

  /** The candidates for a model or alias; 404 `model_not_found` when none. */
  route(model: string, allowed: () => string[]): Route {
    const alias = Object.hasOwn(this.aliases, model) ? this.aliases[model] : undefined
    if (alias) return { model, ordered: true, candidates: alias.map((t) => ({ entry: this.entries.get(t.upstream)!, model: t.model })) }
    const entries = this.byModel.get(model) ?? this.open
    if (entries.length === 0) {
      const names = allowed()
      const shown = names.slice(0, NAMES_SHOWN).join(', ') + (names.length > NAMES_SHOWN ? `, … (${names.length - NAMES_SHOWN} more: GET /v1/models)` : '')
      throw new GatewayError(404, 'invalid_request_error', 'model_not_found', `The model "${model}" is not served by this gateway; this key may use: ${shown || 'none'}`, { param: 'model' })
    }
    return { model, ordered: false, candidates: entries.map((entry) => ({ entry, model })) }
  }

  /** Model names clients may ask for: every listed model and alias (no upstream asked). */
  listedModels(): string[] {
    return [...new Set([...this.byModel.keys(), ...Object.keys(this.aliases)])]
  }

  /** Every listed model and alias, and what the upstreams without a list report (cached). */
  async models(): Promise<string[]> {
    const ids = new Set(this.listedModels())
    let failure: unknown = null
    let answered = this.open.length === 0
    for (const result of await Promise.allSettled(this.open.map((e) => this.listOf(e)))) {
      if (result.status === 'rejected') failure ??= result.reason
      else {
        answered = true
        for (const id of result.value) ids.add(id)
      }
    }
    if (!answered && ids.size === 0) throw failure
    return [...ids]
  }

  /**
   * Runs `call` on the route's candidates in turn until one answers: a retryable failure
   * (nothing answered yet) moves on to the next after a jittered backoff, within one deadline
   * for all attempts; any other failure, or the client leaving, ends it. Each attempt is
   * noted in `trace`.
   */
  async run<T>(route: Route, trace: RouteTrace, signal: CancelSignal, call: (upstream: Upstream, model: string, timeoutMs: number, more: boolean) => Promise<T>, hold?: (value: T, release: () => void) => T): Promise<T> {
    const endsAt = performance.now() + this.options.deadlineMs
    const queue = route.ordered ? [...route.candidates] : this.weighted(route.candidates)
    const firstPass = queue.length
    let last: unknown = null
    let tried = 0
    for (let i = 0; i < queue.length; i++) {
      const candidate = queue[i]
      const { entry } = candidate
      if (entry.maxInflight !== null && entry.inflight >= entry.maxInflight) continue
      // In cooldown: tried last, only when everything before it failed (so a model with one
      // upstream is never refused without a try). Past the cooldown, one request probes it.
      if (i < firstPass && !entry.cooldown.take(this.clock.now())) {
        queue.push(candidate)
        continue
      }
      if (tried > 0) {
        const wait = backoffMs(tried, this.options.backoffMs ?? DEFAULT_BACKOFF_MS, this.random)
        if (performance.now() + wait >= endsAt) break
        await sleepUnlessAborted(wait, signal)
        if (signal.aborted) break
      }
      tried++
      trace.attempts++
      trace.upstream = entry.upstream.name
      trace.servedModel = candidate.model
      entry.inflight++
      let held = false
      const release = () => {
        entry.inflight--
      }
      try {
        const value = await call(entry.upstream, candidate.model, Math.max(1, endsAt - performance.now()), i < queue.length - 1)
        entry.cooldown.success()
        if (hold) {
          held = true
          return hold(value, release)
        }
        return value
      } catch (err) {
        last = err
        if (signal.aborted) {
          entry.cooldown.release() // the client left: says nothing about the upstream
          throw err
        }
        if (!isRetryable(err)) {
          entry.cooldown.success() // it answered (a 400, a 401…): reachable, and the client gets its answer
          throw err
        }
        entry.cooldown.failure(this.clock.now())
      } finally {
        if (!held) release()
      }
    }
    if (last !== null) throw last
    throw unavailable(`Every upstream serving "${route.model}" is at its max_inflight`, 'upstream_busy', 1000)
  }

  /** A weighted random order without repetition. */
  private weighted(candidates: readonly Candidate[]): Candidate[] {
    if (candidates.length === 1) return [candidates[0]]
    const left = [...candidates]
    const out: Candidate[] = []
    while (left.length > 0) {
      let total = 0
      for (const c of left) total += c.entry.weight
      let x = this.random() * total
      let i = 0
      while (i < left.length - 1 && x >= left[i].entry.weight) x -= left[i++].entry.weight
      out.push(left.splice(i, 1)[0])
    }
    return out
  }

  private listOf(entry: Entry): Promise<string[]> {
    const now = this.clock.now()
    const cached = this.listCache.get(entry.upstream.name)
    if (cached && now - cached.at <= MODELS_TTL_MS) return cached.ids
    const ids = entry.upstream.models()
    this.listCache.set(entry.upstream.name, { at: now, ids })
    ids.catch(() => {
      if (this.listCache.get(entry.upstream.name)?.ids === ids) this.listCache.delete(entry.upstream.name)
    })
    return ids
  }

  /** Upstream-written text made safe by every upstream (each removes its own credentials). */
  scrub(text: string): string {
    let out = text
    for (const e of this.entries.values()) out = e.upstream.scrub(out)
    return out
  }

  /** Each upstream's routing state, for /health?deep=1 and `gateway upstreams`. */
  views(): UpstreamView[] {
    const now = this.clock.now()
    return [...this.entries.values()].map((e) => {
      const s = e.cooldown.state(now)
      return {
        name: e.upstream.name,
        description: e.upstream.description,
        weight: e.weight,
        models: e.models,
        inflight: e.inflight,
        maxInflight: e.maxInflight,
        state: s.state,
        failuresInRow: s.failuresInRow,
        coolingUntil: s.coolingUntil === null ? null : new Date(s.coolingUntil).toISOString(),
      }
    })
  }
}
