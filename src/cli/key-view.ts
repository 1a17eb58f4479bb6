import type { CreatedKey } from '../core/keys.js'
import { keyStatus } from '../core/keys.js'
import type { ApiKey } from '../core/types.js'

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString())

/** A key as `--json` shows it; never the secret. */
export function keyView(key: ApiKey, prefixes: string[], now: number) {
  return {
    id: key.id,
    name: key.name,
    prefix: prefixes[0] ?? null,
    prefixes,
    admin: key.admin,
    status: keyStatus(key, now),
    createdAt: iso(key.createdAt),
    expiresAt: iso(key.expiresAt),
    revokedAt: iso(key.revokedAt),
    limits: key.limits,
    models: key.models,
  }
}

/** A new secret as `keys create --json` and `keys rotate --json` show it, once. */
export function createdView(created: CreatedKey) {
  return {
    id: created.key.id,
    name: created.key.name,
    key: created.secret,
    prefix: created.prefix,
    createdAt: iso(created.key.createdAt),
    expiresAt: iso(created.key.expiresAt),
    admin: created.key.admin,
  }
}

export function describeKey(view: ReturnType<typeof keyView>, safe: (s: string) => string): string {
  const lines = [
    `${safe(view.name)} (${view.id})`,
    `  status:   ${view.status}${view.admin ? ', admin' : ''}`,
    `  prefix:   ${view.prefixes.length > 0 ? view.prefixes.map((p) => `${p}…`).join(', ') : '-'}`,
    `  created:  ${view.createdAt}`,
    `  expires:  ${view.expiresAt ?? 'never'}`,
  ]
  if (view.revokedAt) lines.push(`  revoked:  ${view.revokedAt}`)
  lines.push(`  models:   ${view.models ? view.models.map(safe).join(', ') : 'all the upstream offers'}`)
  const limits = Object.entries(view.limits)
  lines.push(`  limits:   ${limits.length > 0 ? limits.map(([k, v]) => `${k}=${v ?? 'off'}`).join(' ') : 'defaults'}`)
  return lines.join('\n')
}
