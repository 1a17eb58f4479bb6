/**
 * `gateway … | head -1`: the reader closes the pipe after one line. The command stops quietly
 * and exits 0, so `set -o pipefail` scripts do not fail on it.
 */
import { spawn } from 'node:child_process'
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { KeyManager } from '../../src/core/keys.js'
import type { RequestRow } from '../../src/core/types.js'
import { SqliteStore } from '../../src/storage/sqlite/sqlite-store.js'
import { BIN, cliEnv } from '../support/cli.js'
import { tempDir } from '../support/gateway.js'

/** Runs the CLI with stdout read up to its first line, then closed, as `| head -1` does. */
function headOne(args: string[]): Promise<{ code: number | null; firstLine: string; stderr: string }> {
  const proc = spawn(process.execPath, [BIN, ...args], { env: cliEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  proc.stderr.on('data', (d) => (err += d))
  proc.stdout.on('data', (d) => {
    out += d
    if (out.includes('\n')) proc.stdout.destroy()
  })
  return new Promise((resolve) => proc.once('exit', (code) => resolve({ code, firstLine: out.split('\n')[0], stderr: err })))
}

let dir: string
let db: string

beforeAll(async () => {
  dir = tempDir('gw-pipe-')
  db = join(dir, 'gateway.db')
  const store = SqliteStore.open(db)
  try {
    // Enough output that it cannot all sit in the pipe's buffer when the reader leaves.
    const keys = new KeyManager(store, { now: Date.now })
    for (let i = 0; i < 1500; i++) await keys.create({ name: `key-${i}` })
    const rows: RequestRow[] = []
    for (let n = 0; n < 20_000; n++) {
      rows.push({
        timestamp: new Date(Date.now() - 60_000 + n).toISOString(),
        requestId: `req_${n}`,
        keyId: null,
        keyName: null,
        ip: '127.0.0.1',
        method: 'POST',
        route: '/chat',
        model: 'mock-echo',
        status: 200,
        errorCode: null,
        promptTokens: 1,
        completionTokens: 1,
        totalTokens: 2,
        estimated: false,
        latencyMs: 1,
        upstreamMs: 1,
        queuedMs: 0,
        streamed: false,
        userAgent: 'x'.repeat(200),
        costMicros: null,
        day: new Date().toISOString().slice(0, 10),
        requestBody: null,
        responseBody: null,
        upstream: null,
        servedModel: null,
        attempts: 0,
      })
    }
    await store.appendRequests(rows)
  } finally {
    store.close()
  }
})

afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('a closed stdout pipe', () => {
  it.each([
    ['logs export', ['logs', 'export'], /^\uFEFF?timestamp,/],
    ['keys list (a table)', ['keys', 'list'], /^ID\s+NAME/],
  ])('%s exits 0 with nothing on stderr', async (_name, args, header) => {
    const r = await headOne([...args, '--db', db])
    expect(r.firstLine).toMatch(header)
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
  })
})
