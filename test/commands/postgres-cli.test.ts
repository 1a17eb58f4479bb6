import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { PgStore } from '../../src/storage/postgres/pg-store.js'
import { runCli, runJson } from '../support/cli.js'
import { requestRow } from '../support/log-rows.js'
import { scratchDatabase } from '../support/postgres.js'

describe('the CLI against a postgres:// --db', () => {
  it('migrate, keys, limits, usage, logs export and prune work; db backup points to pg_dump (exit 2); the password is never printed', async () => {
    const db = await scratchDatabase()
    const withPassword = db.url.replace('postgres@', 'postgres:hunter2-secret@') // trust auth ignores it
    const cwd = mkdtempSync(join(tmpdir(), 'gw-pgcli-'))
    try {
      const migrated = await runJson<{ db: string; migrations: number }>(['db', 'migrate', '--db', withPassword])
      expect(migrated).toMatchObject({ code: 0, json: { migrations: 3 } })
      expect(migrated.json.db).not.toContain('hunter2')
      expect((await runJson(['keys', 'create', '--name', 'Alice', '--db', db.url])).code).toBe(0)
      expect((await runJson(['keys', 'create', '--name', 'ALICE', '--db', db.url])).code).toBe(4) // names are unique whatever their case
      expect((await runJson(['limits', 'set', '--key', 'alice', '--rpm', '7', '--db', db.url])).code).toBe(0)
      expect((await runJson(['limits', 'set', '--default', '--tpm', '900', '--db', db.url])).code).toBe(0)
      const shown = await runJson<Record<string, unknown>>(['limits', 'show', '--key', 'alice', '--db', db.url])
      expect(JSON.stringify(shown.json)).toMatch(/"rpm"[^}]*7/)
      expect(JSON.stringify(shown.json)).toMatch(/"tpm"[^}]*900/)
      const store = new PgStore(db.url)
      const keyId = (await store.findKey('alice'))!.id
      await store.appendRequests([
        requestRow({ timestamp: '2020-01-01T00:00:00.000Z', day: '2020-01-01', keyId, totalTokens: 5 }),
        requestRow({ keyId, totalTokens: 7 }),
      ])
      await store.close()
      const exported = await runCli(['logs', 'export', '--db', db.url, '--format', 'jsonl'])
      expect(exported.stdout.trim().split('\n')).toHaveLength(2)
      const pruned = await runJson<{ deleted: number }>(['logs', 'prune', '--older-than', '30d', '--db', db.url, '--csv-log', join(cwd, 'requests.csv')])
      expect(pruned).toMatchObject({ code: 0, json: { deleted: 1 } })
      const usage = await runJson<{ groups: { total_tokens: number }[] }>(['usage', '--since', '2019-12-31', '--by', 'key', '--db', db.url])
      expect(usage.json.groups.reduce((a, g) => a + g.total_tokens, 0)).toBe(12) // the pruned row's tokens stay in the totals
      const backup = await runCli(['db', 'backup', join(cwd, 'copy.db'), '--db', withPassword])
      expect(backup.code).toBe(2)
      expect(backup.stderr).toContain('pg_dump')
      expect(backup.stderr + backup.stdout).not.toContain('hunter2')
    } finally {
      rmSync(cwd, { recursive: true, force: true })
      await db.drop()
    }
  })
})
