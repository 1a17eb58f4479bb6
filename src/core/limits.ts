import { badRequest } from './errors.js'
import type { DefaultOverrides, IpLimits, LimitOverrides, Limits } from './types.js'

/** Built-in defaults (the seed's numbers); the operator overrides them with `gateway limits set`. */
export const BUILT_IN_LIMITS: Readonly<Limits & IpLimits> = Object.freeze({
  rpm: 10,
  tpm: null,
  concurrency: null,
  dailyTokens: 50_000,
  maxTokens: 1_000,
  maxInputChars: 2_000,
  onBudgetShort: 'refuse',
  authFailuresPerMinute: 10,
  ipRpm: null,
})

export const KEY_LIMIT_NAMES = ['rpm', 'tpm', 'concurrency', 'dailyTokens', 'maxTokens', 'maxInputChars', 'onBudgetShort'] as const

export type LimitSource = 'built-in' | 'default' | 'key'

export interface ResolvedLimits {
  limits: Limits
  sources: Record<keyof Limits, LimitSource>
}

export function resolveKeyLimits(defaults: DefaultOverrides, key: LimitOverrides = {}): ResolvedLimits {
  const limits = {} as Record<string, unknown>
  const sources = {} as Record<string, LimitSource>
  for (const name of KEY_LIMIT_NAMES) {
    if (name in key && key[name] !== undefined) {
      limits[name] = key[name]
      sources[name] = 'key'
    } else if (name in defaults && defaults[name] !== undefined) {
      limits[name] = defaults[name]
      sources[name] = 'default'
    } else {
      limits[name] = BUILT_IN_LIMITS[name]
      sources[name] = 'built-in'
    }
  }
  return { limits: limits as unknown as Limits, sources: sources as Record<keyof Limits, LimitSource> }
}

export function resolveIpLimits(defaults: DefaultOverrides): IpLimits {
  return {
    authFailuresPerMinute: defaults.authFailuresPerMinute !== undefined ? defaults.authFailuresPerMinute : BUILT_IN_LIMITS.authFailuresPerMinute,
    ipRpm: defaults.ipRpm !== undefined ? defaults.ipRpm : BUILT_IN_LIMITS.ipRpm,
  }
}

/** `off` → null, otherwise a positive whole number. */
export function parseLimitValue(text: string, name: string): number | null {
  const t = text.trim().toLowerCase()
  if (t === 'off' || t === 'none' || t === 'unlimited') return null
  if (!/^\d+$/.test(t) || Number(t) <= 0 || !Number.isSafeInteger(Number(t))) {
    throw badRequest(`${name} must be a positive whole number or "off", got "${text}"`, name)
  }
  return Number(t)
}

export function formatLimit(value: number | string | null): string {
  return value === null ? 'off' : String(value)
}
