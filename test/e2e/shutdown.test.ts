import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { connect } from 'node:net'
import { join } from 'node:path'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { BIN, cliEnv, runJson } from '../support/cli.js'
import { tempDir } from '../support/gateway.js'
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js'

let upstream: MockUpstream

beforeAll(async () => {
  upstream = await startMockUpstream()
})
afterAll(async () => {
  await upstream.close()
})

it('SIGTERM: stops accepting, lets the request in flight finish and log, exits 0', async () => {
  const db = join(tempDir(), 'gateway.db')
  const { json: created } = await runJson<{ key: string }>(['keys', 'create', '--name', 'late', '--rpm', 'off', '--db', db])
  const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', '--db', db, '--json'], {
    env: cliEnv({ OPENAI_API_KEY: 'sk-shutdown-test', OPENAI_BASE_URL: upstream.url }),
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  child.stdout.on('data', (d) => (out += d))
  while (!out.includes('\n')) await once(child.stdout, 'data')
  const { url } = JSON.parse(out.split('\n')[0]) as { url: string }
  upstream.script({ kind: 'normal', delayMs: 600 })
  const inFlight = fetch(`${url}/chat`, {
    method: 'POST',
    headers: { 'x-api-key': created.key, 'content-type': 'application/json' },
    body: JSON.stringify({ message: 'finish me' }),
  })
  let answered = false
  void inFlight.finally(() => (answered = true))
  while (upstream.requests.length === 0) await new Promise((r) => setTimeout(r, 10))
  child.kill('SIGTERM')
  // Stops accepting: a new connection is refused while the first request is still being answered.
  const port = Number(new URL(url).port)
  const accepts = () =>
    new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1')
      socket.once('connect', () => (socket.destroy(), resolve(true)))
      socket.once('error', () => resolve(false))
    })
  let refused = false
  for (let i = 0; i < 50 && !refused && !answered; i++) {
    refused = !(await accepts())
    if (!refused) await new Promise((r) => setTimeout(r, 10))
  }
  expect(refused, 'a new connection was refused after SIGTERM').toBe(true)
  expect(answered, 'while the request in flight was still running').toBe(false)
  const res = await inFlight
  expect(res.status).toBe(200)
  expect(((await res.json()) as { response: string }).response).toBe('Echo: finish me')
  const [code] = (await once(child, 'exit')) as [number | null]
  expect(code).toBe(0)
  await expect(fetch(`${url}/health`)).rejects.toThrow()
  const { json: usage } = await runJson<{ total: { requests: number } }>(['usage', 'today', '--db', db])
  expect(usage.total.requests).toBe(1)
})
