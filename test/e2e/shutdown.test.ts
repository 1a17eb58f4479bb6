import Database from 'better-sqlite3'
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

/** One chat.completion.chunk with `content`, as an SSE event. */
const chunk = (content: string) =>
  `data: ${JSON.stringify({ id: 'chatcmpl-cut', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta: { content }, finish_reason: null }] })}\n\n`

it('SIGINT with slow calls past --shutdown-timeout: each cut request is answered, logged and charged; the queue is refused; exit 6 with the count', async () => {
  const db = join(tempDir(), 'gateway.db')
  const { json: created } = await runJson<{ id: string; key: string }>(['keys', 'create', '--name', 'cut', '--rpm', 'off', '--db', db])
  const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', '--db', db, '--json', '--shutdown-timeout', '2s', '--max-inflight', '2', '--metrics-public'], {
    env: cliEnv({ OPENAI_API_KEY: 'sk-shutdown-test', OPENAI_BASE_URL: upstream.url }),
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  let out = ''
  let err = ''
  child.stdout.on('data', (d) => (out += d))
  child.stderr.on('data', (d) => (err += d))
  while (!out.includes('\n')) await once(child.stdout, 'data')
  const { url } = JSON.parse(out.split('\n')[0]) as { url: string }
  const headers = { authorization: `Bearer ${created.key}`, 'content-type': 'application/json' }
  const seen = upstream.requests.length
  const arrived = async (n: number) => {
    for (let i = 0; i < 500 && upstream.requests.length < seen + n; i++) await new Promise((r) => setTimeout(r, 10))
    expect(upstream.requests.length).toBe(seen + n)
  }

  // A stream that sent part of its answer and then stalls.
  const streamed = 'The first part of an answer that never ends'
  upstream.script({ kind: 'raw', chunks: [chunk(streamed.slice(0, 20)), chunk(streamed.slice(20))], end: 'hang' })
  const stream = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers, body: JSON.stringify({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'tell me a long story' }] }) })
  expect(stream.status).toBe(200)
  const streamText = stream.text()
  await arrived(1)
  // A JSON call the upstream never answers.
  upstream.script({ kind: 'hang' })
  const chat = fetch(`${url}/chat`, { method: 'POST', headers, body: JSON.stringify({ message: 'a slow question' }) })
  await arrived(2)
  // A third waits in the fair queue (--max-inflight 2).
  const queued = fetch(`${url}/v1/chat/completions`, { method: 'POST', headers, body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'waiting' }] }) })
  let depth = ''
  for (let i = 0; i < 500 && depth !== '1'; i++) {
    depth = /^gateway_queue_depth (\d+)/m.exec(await (await fetch(`${url}/metrics`)).text())?.[1] ?? ''
    if (depth !== '1') await new Promise((r) => setTimeout(r, 10))
  }
  expect(depth).toBe('1')

  child.kill('SIGINT')
  const waiting = await queued
  expect(waiting.status).toBe(503)
  expect(((await waiting.json()) as { error: { code: string } }).error.code).toBe('shutting_down')

  const answered = await chat
  expect(answered.status).toBe(503)
  expect(await answered.json()).toEqual({ error: { message: expect.any(String), type: 'server_error', code: 'shutting_down', param: null } })
  const events = (await streamText).split('\n\n').filter((e) => e.length > 0)
  expect(events.slice(0, 2)).toEqual([chunk(streamed.slice(0, 20)).trim(), chunk(streamed.slice(20)).trim()])
  expect(events).toHaveLength(3)
  expect(JSON.parse(events[2].replace(/^data: /, ''))).toEqual({ error: { message: expect.any(String), type: 'server_error', code: 'shutting_down', param: null } })

  expect(await exited).toBe(6)
  // After the start line come the access log's lines (JSON under --json), then the stop event, last.
  const lines = out.trim().split('\n').slice(1).map((l) => JSON.parse(l) as Record<string, unknown>)
  expect(lines.at(-1)).toEqual({ stopped: true, cut: 2 })
  expect(lines.filter((l) => 'stopped' in l)).toHaveLength(1)
  expect(err).not.toMatch(/unexpected error/)

  const ids = [stream, answered, waiting].map((r) => r.headers.get('x-request-id'))
  const conn = new Database(db, { readonly: true })
  type Row = { request_id: string; status: number; error_code: string; prompt_tokens: number; completion_tokens: number; total_tokens: number; estimated: number }
  const rows = conn.prepare('select request_id, status, error_code, prompt_tokens, completion_tokens, total_tokens, estimated from request_log where key_id = ?').all(created.id) as Row[]
  const daily = conn.prepare('select requests, total_tokens from daily_usage where key_id = ?').all(created.id)
  conn.close()
  expect(rows).toHaveLength(3)
  const [streamRow, chatRow, queuedRow] = ids.map((id) => rows.find((r) => r.request_id === id)!)
  // The stream's row: what it was sent (200), cut, charged the prompt and the text streamed, estimated.
  expect(streamRow).toMatchObject({ status: 200, error_code: 'shutting_down', estimated: 1 })
  expect(streamRow.prompt_tokens).toBeGreaterThan(0)
  expect(streamRow.completion_tokens).toBeGreaterThan(0)
  // The JSON call's row: 503, charged its prompt (the upstream worked on it), estimated.
  expect(chatRow).toMatchObject({ status: 503, error_code: 'shutting_down', completion_tokens: 0, estimated: 1 })
  expect(chatRow.prompt_tokens).toBeGreaterThan(0)
  // The queued one never reached the upstream: logged, nothing charged.
  expect(queuedRow).toMatchObject({ status: 503, error_code: 'shutting_down', total_tokens: 0 })
  expect(daily).toEqual([{ requests: 3, total_tokens: streamRow.total_tokens + chatRow.total_tokens }])
  const { json: usage } = await runJson<{ keys: { key_id: string | null; requests: number; total_tokens: number }[] }>(['usage', 'today', '--db', db])
  expect(usage.keys.find((k) => k.key_id === created.id)).toMatchObject({ requests: 3, total_tokens: streamRow.total_tokens + chatRow.total_tokens })
}, 60_000)
