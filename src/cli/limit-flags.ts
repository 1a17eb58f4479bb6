import { Flags } from '@oclif/core'
import { parseLimitValue } from '../core/limits.js'
import type { DefaultOverrides, LimitOverrides } from '../core/types.js'

const limit = (description: string) =>
  Flags.custom<number | null>({ description: `${description} (a number, or "off")`, parse: async (input, _ctx, opts) => parseLimitValue(input, `--${opts.name}`) })()

/** The per-key limit flags, shared by `keys create`, `keys update` and `limits set`. */
export const keyLimitFlags = {
  rpm: limit('requests per minute'),
  tpm: limit('tokens per minute'),
  concurrency: limit('requests in flight at once'),
  'daily-tokens': limit('tokens per calendar day'),
  'max-tokens': limit('largest max_tokens per request'),
  'max-input-chars': limit('characters of input per request'),
  'on-budget-short': Flags.string({ description: 'when the budget cannot cover a request: refuse it, or clamp max_tokens', options: ['refuse', 'clamp'] }),
}

/** Server-wide per-IP limits; only with `limits set --default`. */
export const ipLimitFlags = {
  'auth-failures-per-minute': limit('failed authentications per client IP per minute'),
  'ip-rpm': limit('requests per client IP per minute'),
}

type LimitFlagValues = { [K in keyof typeof keyLimitFlags]?: unknown } & { [K in keyof typeof ipLimitFlags]?: unknown }

/** The limits named on the command line (absent flags are left out). */
export function limitsFromFlags(flags: LimitFlagValues): LimitOverrides & DefaultOverrides {
  const out: DefaultOverrides = {}
  const take = (flag: keyof LimitFlagValues, name: keyof DefaultOverrides) => {
    if (flags[flag] !== undefined) (out as Record<string, unknown>)[name] = flags[flag]
  }
  take('rpm', 'rpm')
  take('tpm', 'tpm')
  take('concurrency', 'concurrency')
  take('daily-tokens', 'dailyTokens')
  take('max-tokens', 'maxTokens')
  take('max-input-chars', 'maxInputChars')
  take('on-budget-short', 'onBudgetShort')
  take('auth-failures-per-minute', 'authFailuresPerMinute')
  take('ip-rpm', 'ipRpm')
  return out
}
