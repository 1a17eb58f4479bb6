import type { CreatedKey, LiveSecret } from '../core/keys.js'
import { keyStatus } from '../core/keys.js'
import type { ApiKey } from '../core/types.js'
import { escapeControl } from '../core/escape.js'
import { byFlag } from './limit-flags.js'
import { toSecond } from './table.js'

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString())

/** What a key argument may be: every key command finds a key the same way (KeyManager.get). */
export const KEY_REF_HELP = 'key id, name (any case; the live key before revoked ones), display prefix (gw-AbC1) or whole secret'

/** A key as `--json` shows it; never the secret. `live`: its working secrets, newest first. */
export function keyView(key: ApiKey, live: LiveSecret[], now: number) {
  const prefixes = live.map((s) => s.prefix)
  return {
    id: key.id,
    name: key.name,
    prefix: prefixes[0] ?? null,
    prefixes,
    /** Secrets of earlier rotations that still work, and until when. */
    retiring: live.filter((s) => s.expiresAt !== null).map((s) => ({ prefix: s.prefix, expiresAt: iso(s.expiresAt) })),
    admin: key.admin,
    status: keyStatus(key, now),
    createdAt: iso(key.createdAt),
    expiresAt: iso(key.expiresAt),
    revokedAt: iso(key.revokedAt),
    limits: byFlag(key.limits),
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

/** `--models`: a comma-separated list, or "all" for no restriction (null). */
export function parseModels(text: string): string[] | null {
  return text.trim() === 'all' ? null : text.split(',').map((m) => m.trim()).filter(Boolean)
}

/** The new secret as `keys create` and `keys rotate` print it: set apart, with the warning that it is shown once. */
export function secretShownOnce(secret: string): string {
  return `\n  ${secret}\n\nStore it now: it is shown this once and cannot be recovered.`
}

export function describeKey(view: ReturnType<typeof keyView>): string {
  const lines = [
    `${escapeControl(view.name)} (${view.id})`,
    `  status:   ${view.status}${view.admin ? ', admin' : ''}`,
    `  prefix:   ${view.prefix ? `${view.prefix}…` : '-'}`,
  ]
  for (const r of view.retiring) lines.push(`  retiring: ${r.prefix}… stops working at ${toSecond(r.expiresAt)}`)
  lines.push(`  created:  ${toSecond(view.createdAt)}`, `  expires:  ${toSecond(view.expiresAt) ?? 'never'}`)
  if (view.revokedAt) lines.push(`  revoked:  ${toSecond(view.revokedAt)}`)
  lines.push(`  models:   ${view.models ? view.models.map(escapeControl).join(', ') : 'all the upstream offers'}`)
  const limits = Object.entries(view.limits)
  lines.push(`  limits:   ${limits.length > 0 ? limits.map(([k, v]) => `${k}=${v ?? 'off'}`).join(' ') : 'defaults'}`)
  return lines.join('\n')
}
