/**
 * Issue 7, scenario 8: slow and bad clients. Slowloris sockets (headers or body trickling)
 * do not starve real requests, the server's header and request timeouts are set below Node's
 * defaults, and a client reading a stream very slowly holds back the upstream instead of
 * growing the gateway's memory; when it gives up, the upstream call is aborted and metered.
 */
import { Server } from 'node:http'
import { connect, type Socket } from 'node:net'
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, NO_LIMITS, type TestGateway } from '../support/gateway.js'
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js'
import { expectNothingHeld, keyIdOf, rowFor, sleep, startFloodUpstream, until, type FloodUpstream } from './helpers.js'

let mock: MockUpstream
let gw: TestGateway
let port: number
let key: string

beforeAll(async () => {
  mock = await startMockUpstream()
  gw = await startGateway({ upstreamUrl: mock.url })
  port = Number(new URL(gw.url).port)
  key = await gw.createKey({ name: 'alice', limits: NO_LIMITS })
})

afterAll(async () => {
  await gw?.stop()
  await mock?.close()
})

describe('server timeouts', () => {
  it('the listening server has header, request and keep-alive timeouts below Node\'s defaults (60 s, 300 s)', () => {
    const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles()
    const server = handles.find((h): h is Server => h instanceof Server && (h.address() as { port?: number } | null)?.port === port)
    expect(server, 'the gateway\'s http.Server').toBeDefined()
    expect(server!.headersTimeout).toBeGreaterThan(0)
    expect(server!.headersTimeout).toBeLessThan(60_000)
    expect(server!.requestTimeout).toBeGreaterThan(0)
    expect(server!.requestTimeout).toBeLessThan(300_000)
    expect(server!.keepAliveTimeout).toBeGreaterThan(0)
  })
})

describe('slowloris', () => {
  it('300 sockets trickling headers and 100 trickling bodies do not starve real requests', async () => {
    const sockets: Socket[] = []
    const open = (first: string) =>
      new Promise<Socket>((resolve) => {
        const s = connect(port, '127.0.0.1', () => {
          s.write(first)
          resolve(s)
        })
        s.on('error', () => {})
        sockets.push(s)
      })
    const upstreamBefore = mock.requests.length
    try {
      for (let i = 0; i < 300; i++) await open(`POST /chat HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer ${key}\r\n`)
      for (let i = 0; i < 100; i++) await open(`POST /chat HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer ${key}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"message":"`)
      let tick = 0
      const trickle = setInterval(() => {
        tick++
        sockets.forEach((s, i) => {
          if (!s.destroyed) s.write(i < 300 ? `X-Slow-${tick}: ${'a'.repeat(8)}\r\n` : 'a')
        })
      }, 100)
      try {
        const client = new OpenAI({ apiKey: key, baseURL: `${gw.url}/v1`, maxRetries: 0 })
        const results = await Promise.all([
          ...Array.from({ length: 10 }, async () => (await fetch(`${gw.url}/health`)).status),
          ...Array.from({ length: 10 }, async (_, i) => {
            const res = await gw.post('/chat', key, { message: `real ${i}` })
            const body = (await res.json()) as { response?: string }
            return res.status === 200 && body.response === `Echo: real ${i}` ? 200 : res.status
          }),
          ...Array.from({ length: 5 }, async (_, i) => {
            let text = ''
            for await (const c of await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `stream ${i}` }], stream: true })) text += c.choices[0]?.delta?.content ?? ''
            return text === `Echo: stream ${i}` ? 200 : 0
          }),
        ])
        expect(results).toEqual(Array(25).fill(200))
        // The slow sockets were really held open meanwhile (this exercised concurrency).
        expect(sockets.filter((s) => !s.destroyed).length).toBeGreaterThan(300)
      } finally {
        clearInterval(trickle)
      }
    } finally {
      for (const s of sockets) s.destroy()
    }
    // Only the real requests reached the upstream; the trickling bodies took no slot or reservation.
    expect(mock.requests.length - upstreamBefore).toBe(15)
    await expectNothingHeld(gw, [await keyIdOf(gw, 'alice')])
  }, 60_000)
})

describe('a client reading a stream very slowly', () => {
  let flood: FloodUpstream
  let slow: TestGateway
  let slowKey: string

  beforeAll(async () => {
    flood = await startFloodUpstream({ totalBytes: 128 * 1024 * 1024 })
    slow = await startGateway({ upstreamUrl: flood.url })
    slowKey = await slow.createKey({ name: 'sloth', limits: NO_LIMITS })
  })

  afterAll(async () => {
    await slow?.stop()
    await flood?.close()
  })

  it('holds the upstream back (back-pressure end to end) instead of buffering it; giving up aborts and meters it', async () => {
    const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'flood me' }], stream: true })
    const socket = connect(Number(new URL(slow.url).port), '127.0.0.1')
    let received = 0
    socket.on('data', (d) => {
      received += d.length
      socket.pause()
    })
    socket.on('error', () => {})
    socket.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer ${slowKey}\r\nX-Request-Id: sloth-1\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`)
    const base = process.memoryUsage()
    let peak = 0
    const reader = setInterval(() => socket.resume(), 200) // one read (≤ 64 KiB) every 200 ms
    const sampler = setInterval(() => {
      const m = process.memoryUsage()
      peak = Math.max(peak, m.heapUsed + m.arrayBuffers - base.heapUsed - base.arrayBuffers)
    }, 10)
    try {
      expect(await until(() => received > 0, 5_000)).toBe(true)
      await sleep(3_000)
    } finally {
      clearInterval(reader)
      clearInterval(sampler)
    }
    const mib = (b: number) => `${Math.round(b / 1048576)} MiB`
    // With back-pressure only socket buffers sit between reader and upstream; without it the
    // upstream would have sent (nearly) all 128 MiB into the gateway by now.
    expect(flood.finished, 'the upstream could finish its 128 MiB stream').toBe(0)
    expect(flood.sent, `upstream sent ${mib(flood.sent)} while the client read ${mib(received)}`).toBeLessThan(48 * 1024 * 1024)
    expect(peak, `gateway heap + buffers grew by ${mib(peak)}`).toBeLessThan(64 * 1024 * 1024)

    socket.destroy()
    expect(await until(() => flood.abandoned === 1, 5_000), 'the gateway aborted the upstream call').toBe(true)
    const row = await rowFor(slow, 'sloth-1')
    expect(row).toMatchObject({ status: 499, streamed: true, errorCode: 'client_closed_request', estimated: true })
    expect(row.completionTokens).toBeGreaterThan(0)
    await expectNothingHeld(slow, [await keyIdOf(slow, 'sloth')])
    const usage = (await (await fetch(`${slow.url}/usage`, { headers: { authorization: `Bearer ${slowKey}` } })).json()) as { total_tokens: number }
    expect(usage.total_tokens).toBe(row.totalTokens)
  }, 60_000)
})
