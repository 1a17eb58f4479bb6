import { dirname, resolve, sep } from 'node:path'
import { badRequest, GatewayError } from '../core/errors.js'

/** What a file-system error code means, and what to do about it. */
const FILE_ERRORS: Record<string, [string, string]> = {
  ENOENT: ['no such file or folder', 'check the path'],
  ENOTDIR: ['a part of the path is a file, not a folder', 'check the path'],
  EISDIR: ['is a folder, not a file', 'give a file name'],
  EACCES: ['permission denied', 'make it accessible to this user or choose another path'],
  EPERM: ['permission denied', 'make it accessible to this user or choose another path'],
  EROFS: ['read-only file system', 'choose a writable path'],
  ENOSPC: ['no space left on the device', 'free some space'],
}

const SQLITE_ERRORS: Record<string, string> = {
  SQLITE_NOTADB: 'is not a SQLite database; point --db at the gateway\'s database file or at a new file name',
  SQLITE_CORRUPT: 'is a damaged SQLite database; restore it from a backup',
  SQLITE_CANTOPEN: 'cannot be opened; check that its folder exists and is writable for this user',
  SQLITE_READONLY: 'is read-only for this user; make it and its folder writable',
  SQLITE_PERM: 'is not accessible to this user; fix its permissions',
}

type FlagValues = Record<string, unknown>

/** The flag whose path value is `path`, or lies under it (a folder that could not be made). */
function flagOfPath(path: string, flags: FlagValues): string | null {
  const target = resolve(path)
  const paths = Object.entries(flags).filter((e): e is [string, string] => typeof e[1] === 'string')
  const exact = paths.find(([, v]) => resolve(v) === target)
  if (exact) return exact[0]
  const under = paths.find(([, v]) => dirname(resolve(v)) === target || resolve(v).startsWith(target + sep))
  return under ? under[0] : null
}

/**
 * A raw error of the system (busy port, missing folder, not a database) or a typed error
 * about an option, as one line that names the flag, the path and what to do. Null when it
 * is none of those.
 */
export function translateError(err: unknown, flags: FlagValues): GatewayError | null {
  const e = err as { code?: unknown; path?: unknown; syscall?: unknown; address?: unknown; port?: unknown }
  const code = typeof e.code === 'string' ? e.code : ''
  if (err instanceof GatewayError) {
    // A core error about an option's value gets the option's flag in front of it.
    const flag = err.param && !err.param.startsWith('-') && err.param in flags ? `--${err.param}` : null
    return flag && !err.message.includes(flag) ? err.withMessage(`${flag}: ${err.message}`) : null
  }
  if (e.syscall === 'listen' || code === 'EADDRINUSE') {
    const where = `${String(e.address ?? flags.host)}:${String(e.port ?? flags.port)}`
    if (code === 'EADDRINUSE') return badRequest(`--port ${String(flags.port)}: ${where} is in use by another process; stop it or choose another --port`, 'port', 'port_in_use')
    if (code === 'EACCES') return badRequest(`--port ${String(flags.port)}: this user may not listen on ${where}; choose a port of 1024 or above`, 'port', 'port_denied')
    if (code === 'EADDRNOTAVAIL') return badRequest(`--host ${String(flags.host)}: not an address of this machine; use 127.0.0.1, 0.0.0.0 or one of its own addresses`, 'host', 'bad_host')
  }
  const sqlite = SQLITE_ERRORS[code.replace(/^(SQLITE_[A-Z]+).*$/, '$1')]
  if (sqlite && typeof flags.db === 'string') return badRequest(`--db ${flags.db} ${sqlite}`, 'db', 'bad_database')
  const file = FILE_ERRORS[code]
  if (file && typeof e.path === 'string') {
    const flag = flagOfPath(e.path, flags)
    const value = flag ? String(flags[flag]) : null
    const where = value === null ? `${e.path}: ` : resolve(value) === resolve(e.path) ? `--${flag} ${value}: ` : `--${flag} ${value}: ${e.path}: `
    return badRequest(`${where}${file[0]} (${code}); ${file[1]}`, flag, 'bad_path')
  }
  return null
}
