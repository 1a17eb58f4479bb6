/** `--db` names a SQLite file or, with this scheme, a PostgreSQL database. */
export function isPostgresUrl(db: string): boolean {
  return /^postgres(ql)?:\/\//i.test(db)
}

/**
 * A URL as shown: its password replaced by ***. Text that does not parse as a URL keeps
 * everything but a `//user:password@` part, which becomes `//…@`.
 */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url)
    if (u.password) u.password = '***'
    return u.toString()
  } catch {
    return url.replace(/\/\/[^/]*@/, '//…@') // up to the last @: a password may hold one
  }
}

/** How to show `--db`: a URL without its password. */
export function describeDb(db: string): string {
  return isPostgresUrl(db) ? redactUrl(db) : db
}
