import { Flags } from '@oclif/core'
import { parseLimitValue } from '../core/limits.js'
import type { DefaultOverrides, LimitOverrides } from '../core/types.js'

/** The value that removes an override: the key follows the defaults again (the defaults, the built-in value). */
const FOLLOW_DEFAULT = 'default'
type Follow = typeof FOLLOW_DEFAULT

const limit = (description: string) =>
  Flags.custom<number | null | Follow>({
    description: `${description}: a number, "off" (or "none": no limit), or "default" (drop the override)`,
    parse: async (input, _ctx, opts) => (input.trim().toLowerCase() === FOLLOW_DEFAULT ? FOLLOW_DEFAULT : parseLimitValue(input, `--${opts.name}`)),
  })()

/** The per-key limit flags, shared by `keys create`, `keys update` and `limits set`. */
export const keyLimitFlags = {
  rpm: limit('requests per minute'),
  tpm: limit('tokens per minute'),
  concurrency: limit('requests in flight at once'),
  'daily-tokens': limit('tokens per calendar day'),
  'max-tokens': limit('largest max_tokens per request'),
  'max-input-chars': limit('characters of input per request'),
  'on-budget-short': Flags.string({
    description: 'when the budget cannot cover a request: refuse it, or clamp max_tokens ("default": drop the override)',
    options: ['refuse', 'clamp', FOLLOW_DEFAULT],
  }),
}

/** Server-wide per-IP limits; only with `limits set --default`. */
export const ipLimitFlags = {
  'auth-failures-per-minute': limit('failed authentications per client IP per minute'),
  'ip-rpm': limit('requests per client IP per minute'),
}

type LimitFlag = keyof typeof keyLimitFlags | keyof typeof ipLimitFlags
type LimitFlagValues = { [K in LimitFlag]?: unknown }

/** Each stored limit's flag: the one name a user sees, in flags and in `limits show`. */
export const FLAG_OF: Record<keyof DefaultOverrides, LimitFlag> = {
  rpm: 'rpm',
  tpm: 'tpm',
  concurrency: 'concurrency',
  dailyTokens: 'daily-tokens',
  maxTokens: 'max-tokens',
  maxInputChars: 'max-input-chars',
  onBudgetShort: 'on-budget-short',
  authFailuresPerMinute: 'auth-failures-per-minute',
  ipRpm: 'ip-rpm',
}

/**
 * The limits named on the command line (absent flags are left out); a limit set to
 * "default" is present with the value undefined, which the store reads as "remove".
 */
export function limitsFromFlags(flags: LimitFlagValues): LimitOverrides & DefaultOverrides {
  const out: Record<string, unknown> = {}
  for (const [name, flag] of Object.entries(FLAG_OF)) {
    const value = flags[flag]
    if (value !== undefined) out[name] = value === FOLLOW_DEFAULT ? undefined : value
  }
  return out as DefaultOverrides
}

/** Stored limits keyed by their flag names, as the CLI shows them (human and --json). */
export function byFlag(limits: DefaultOverrides): Record<string, unknown> {
  return Object.fromEntries(Object.entries(limits).map(([name, value]) => [FLAG_OF[name as keyof DefaultOverrides] ?? name, value]))
}
