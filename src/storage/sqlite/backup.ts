import Database from 'better-sqlite3'
import { closeSync, existsSync, openSync, renameSync, rmSync, statSync } from 'node:fs'
import { dirname } from 'node:path'
import { badRequest, GatewayError, notFound } from '../../core/errors.js'

export interface BackupResult {
  /** Absolute path of the copy. */
  file: string
  bytes: number
  pages: number
}

/**
 * Pages copied per step: large enough that a busy server rarely writes between two steps
 * (a write from another connection makes SQLite restart the copy), small enough to report
 * progress on a big database (25 600 pages of 4 KiB = 100 MiB).
 */
const PAGES_PER_STEP = 25_600

/**
 * Copies a live database with SQLite's online backup: a consistent snapshot that includes
 * everything committed to the WAL, taken while the server keeps writing. The copy is written
 * beside the target (0600) and renamed into place, so FILE is never half-written.
 */
export async function backupDatabase(source: string, target: string, options: { force: boolean; onProgress?: (done: number, total: number) => void }): Promise<BackupResult> {
  if (!existsSync(source)) throw notFound(`No database at ${source} (check --db)`)
  if (existsSync(target) && !options.force) {
    throw new GatewayError(409, 'invalid_request_error', 'file_exists', `${target} already exists; pass --force to overwrite it`)
  }
  if (!existsSync(dirname(target))) throw badRequest(`No folder ${dirname(target)} to write the backup in: create it first`, 'FILE')
  const partial = `${target}.partial-${process.pid}`
  closeSync(openSync(partial, 'w', 0o600)) // SQLite keeps the mode of the file it writes into
  const db = new Database(source, { readonly: true, fileMustExist: true })
  let pages = 0
  let lastRemaining = Infinity
  try {
    await db.backup(partial, {
      progress: ({ totalPages, remainingPages }) => {
        pages = totalPages
        // The source changed between steps and the copy restarted: take the rest in one step.
        const restarted = remainingPages > lastRemaining
        lastRemaining = remainingPages
        options.onProgress?.(totalPages - remainingPages, totalPages)
        return restarted ? totalPages : PAGES_PER_STEP
      },
    })
    // A self-contained file: no -wal beside it to copy along.
    const copy = new Database(partial)
    try {
      copy.pragma('journal_mode = DELETE')
    } finally {
      copy.close()
    }
    renameSync(partial, target)
  } catch (err) {
    rmSync(partial, { force: true })
    throw err
  } finally {
    db.close()
  }
  return { file: target, bytes: statSync(target).size, pages }
}
