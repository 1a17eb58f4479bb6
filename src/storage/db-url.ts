/** `--db` names a SQLite file or, with this scheme, a PostgreSQL database. */
export function isPostgresUrl(db: string): boolean {
  return /^postgres(ql)?:\/\//i.test(db)
}

/** How to show `--db`: a URL without its password. */
export function describeDb(db: string): string {
  if (!isPostgresUrl(db)) return db
  try {
    const u = new URL(db)
    if (u.password) u.password = '***'
    return u.toString()
  } catch {
    return 'postgres://…'
  }
}
