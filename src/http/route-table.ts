/** The routes an app serves, read from Hono's own list, to answer 405 and 404 helpfully. */
export interface RouteTable {
  /** Methods a path is served with (HEAD with GET); empty when no route matches it. */
  allowed(path: string): string[]
  /** `POST /v1/chat/completions, GET /v1/models, …` */
  readonly summary: string
}

/** Hono's path syntax to a regular expression: `:name{re}` and `:name` become groups. */
function patternOf(path: string): RegExp {
  const source = path.replace(/:[A-Za-z_]+\{([^}]*)\}|:[A-Za-z_]+|[.^$()[\]\\|+?]/g, (m, re: string | undefined) => {
    if (re !== undefined) return `(${re})`
    return m.startsWith(':') ? '([^/]+)' : `\\${m}`
  })
  return new RegExp(`^${source}$`)
}

export function routeTable(routes: readonly { method: string; path: string }[]): RouteTable {
  const byPath = new Map<string, Set<string>>()
  for (const r of routes) {
    if (r.method === 'ALL' || r.method === 'OPTIONS' || r.path.includes('*')) continue
    let methods = byPath.get(r.path)
    if (!methods) byPath.set(r.path, (methods = new Set()))
    methods.add(r.method)
    if (r.method === 'GET') methods.add('HEAD')
  }
  const entries = [...byPath].map(([path, methods]) => ({ pattern: patternOf(path), methods: [...methods], shown: path.replace(/:([A-Za-z_]+)(\{[^}]*\})?/g, '{$1}') }))
  return {
    allowed: (path) => entries.find((e) => e.pattern.test(path))?.methods ?? [],
    summary: entries.map((e) => `${e.methods.filter((m) => m !== 'HEAD').join('|')} ${e.shown}`).join(', '),
  }
}
