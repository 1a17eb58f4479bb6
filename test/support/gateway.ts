import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import OpenAI from 'openai'
import { writeFileSync } from 'node:fs'
import { buildGateway, DEFAULT_SETTINGS, type BuiltGateway, type GatewaySettings } from '../../src/compose.js'
import { loadUpstreamsFile } from '../../src/cli/upstreams-file.js'
import type { Clock } from '../../src/core/clock.js'
import { KeyManager, type CreateKeyInput } from '../../src/core/keys.js'
import { SqliteStore } from '../../src/storage/sqlite/sqlite-store.js'
import { startServer, type RunningServer } from '../../src/server.js'

export interface TestGateway {
  url: string
  dir: string
  db: string
  built: BuiltGateway
  server: RunningServer
  /** A second connection to the same file, as the CLI has. */
  admin: SqliteStore
  createKey(input: CreateKeyInput): Promise<string>
  client(key: string, options?: Partial<ConstructorParameters<typeof OpenAI>[0]>): OpenAI
  post(path: string, key: string | null, body: unknown, headers?: Record<string, string>): Promise<Response>
  stop(): Promise<void>
}

export function tempDir(prefix = 'gw-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix))
}

/** The real gateway on a loopback port over a temp SQLite file. */
export async function startGateway(settings: Partial<GatewaySettings> & { upstreamUrl?: string; clock?: Clock; dir?: string; onError?: (err: unknown) => void; warn?: (line: string) => void } = {}): Promise<TestGateway> {
  const dir = settings.dir ?? tempDir()
  const db = settings.db ?? join(dir, 'gateway.db')
  const { upstreamUrl, clock, onError, warn, ...rest } = settings
  const built = await buildGateway(
    {
      ...DEFAULT_SETTINGS,
      db,
      csvLog: join(dir, 'requests.csv'),
      apiKey: upstreamUrl ? 'sk-test-upstream-key-0000' : undefined,
      baseURL: upstreamUrl,
      mock: !upstreamUrl && !rest.upstreams,
      ...rest,
    },
    clock,
    onError,
    warn,
  )
  const server = await startServer(built, '127.0.0.1', 0)
  const admin = SqliteStore.open(db)
  const url = server.url
  return {
    url,
    dir,
    db,
    built,
    server,
    admin,
    createKey: async (input) => {
      const secret = (await new KeyManager(admin, clock ?? { now: Date.now }).create(input)).secret
      await built.gateway.refresh() // tests of the ≤1 s pickup wait for the watcher instead
      return secret
    },
    client: (key, options) => new OpenAI({ apiKey: key, baseURL: `${url}/v1`, maxRetries: 0, ...options }),
    post: (path, key, body, headers = {}) =>
      fetch(`${url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}), ...headers },
        body: typeof body === 'string' ? body : JSON.stringify(body),
      }),
    stop: async () => {
      await server.close(2_000)
      await admin.close()
      if (!settings.dir) rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** An upstreams file written to `dir` and read as `serve --upstreams` reads it, keys from `env`. */
export function upstreamsFile(dir: string, yaml: string, env: Record<string, string> = {}): GatewaySettings['upstreams'] {
  const file = join(dir, 'upstreams.yaml')
  writeFileSync(file, yaml)
  return loadUpstreamsFile(file, env)
}

/** Lets the CLI-change watcher (250 ms) pick a change up. */
export const settle = (ms = 400) => new Promise((r) => setTimeout(r, ms))

/** Generous limits for tests that are not about limits. */
export const NO_LIMITS = { rpm: null, tpm: null, dailyTokens: null, maxInputChars: null } as const
