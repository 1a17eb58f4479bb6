/**
 * Issue 11 item 8: one SQLite database, one server. Real processes of the shipped CLI.
 */
import { realpathSync } from 'node:fs'
import { join } from 'node:path'
import { expect, it } from 'vitest'
import { runJson, spawnServe } from '../support/cli.js'
import { tempDir } from '../support/gateway.js'

it('a second serve on the same database refuses (exit 2, naming the pid and the file); the CLI works beside the server; a SIGKILLed server leaves no stale claim', async () => {
  const db = join(tempDir(), 'gateway.db')
  const { json: created } = await runJson<{ key: string }>(['keys', 'create', '--name', 'first', '--db', db])
  const first = await spawnServe(['--db', db, '--mock'])
  try {
    // spawnServe rejects when serve exits before listening (and on old code resolves: it listened).
    const second = await spawnServe(['--db', db, '--mock'], {}, false).then(
      async (s) => (await s.stop(), 'it started'),
      (err: Error) => err.message,
    )
    expect(second).toMatch(/^serve exited \(2\) before listening/)
    expect(second).toContain(`pid ${first.proc.pid}`)
    expect(second).toContain(realpathSync(db))
    const asJson = await runJson<{ error: { code: string; exit: number } }>(['serve', '--port', '0', '--mock', '--db', db])
    expect(asJson.code).toBe(2)
    expect(asJson.json.error).toMatchObject({ code: 'database_in_use', exit: 2 })

    // The first server still serves, and the other commands work beside it.
    const chat = await fetch(`${first.url}/chat`, { method: 'POST', headers: { 'x-api-key': created.key, 'content-type': 'application/json' }, body: '{"message":"still here"}' })
    expect(chat.status).toBe(200)
    expect((await runJson(['keys', 'create', '--name', 'beside', '--db', db])).code).toBe(0)
    const listed = await runJson<{ name: string }[]>(['keys', 'list', '--db', db])
    expect(listed.code).toBe(0)
    expect(listed.json.map((k) => k.name).sort()).toEqual(['beside', 'first'])
    const today = await runJson<{ total: { requests: number } }>(['usage', 'today', '--db', db])
    expect(today.code).toBe(0)
    expect(today.json.total.requests).toBe(1)
  } finally {
    first.proc.kill('SIGKILL')
    expect((await first.exited).signal).toBe('SIGKILL')
  }

  const again = await spawnServe(['--db', db, '--mock'])
  try {
    expect((await fetch(`${again.url}/health`)).status).toBe(200)
  } finally {
    expect((await again.stop()).code).toBe(0)
  }
  // A server that stopped cleanly gives the database up as well.
  const third = await spawnServe(['--db', db, '--mock'])
  expect((await fetch(`${third.url}/health`)).status).toBe(200)
  expect((await third.stop()).code).toBe(0)
}, 60_000)
