import type { ApiKey, LimitOverrides } from '../core/types.js'

/** An api_keys row as either dialect's schema reads it. */
export interface StoredKey {
  id: string
  name: string
  role: string
  createdAt: number
  expiresAt: number | null
  revokedAt: number | null
  limits: LimitOverrides | null
  models: string[] | null
}

export function toApiKey(row: StoredKey): ApiKey {
  return {
    id: row.id,
    name: row.name,
    admin: row.role === 'admin',
    createdAt: row.createdAt,
    expiresAt: row.expiresAt,
    revokedAt: row.revokedAt,
    limits: row.limits ?? {},
    models: row.models ?? null,
  }
}
