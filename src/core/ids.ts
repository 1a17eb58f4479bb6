import { randomBytes, randomUUID } from 'node:crypto'

/** Short random ids for rows (`key_…`, `sec_…`); not secrets. */
export function newId(kind: 'key' | 'sec'): string {
  return `${kind}_${randomBytes(8).toString('hex')}`
}

export function newRequestId(): string {
  return `req_${randomUUID().replaceAll('-', '')}`
}
