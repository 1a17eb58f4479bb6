import { spawn, type ChildProcess } from 'node:child_process'
import { createServer, Socket } from 'node:net'

export interface TestRedis {
  port: number
  url: string
  /** Sends one command (inline protocol) and returns the raw reply text. */
  command(...args: string[]): Promise<string>
  /** SIGKILL: the data goes with it (no persistence). */
  kill(): Promise<void>
  /** Starts it again on the same port, empty. */
  start(): Promise<void>
  stop(): Promise<void>
}

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  const port = (server.address() as { port: number }).port
  await new Promise<void>((r) => server.close(() => r()))
  return port
}

/** RESP for one command. */
function encode(args: string[]): string {
  return `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`
}

/**
 * A private redis-server on a free loopback port, no persistence, started and killed by the
 * test: never the machine's shared one.
 */
export async function startRedis(): Promise<TestRedis> {
  const port = await freePort()
  let proc: ChildProcess | null = null
  const command = (...args: string[]) =>
    new Promise<string>((resolve, reject) => {
      const s = new Socket()
      let out = ''
      const timer = setTimeout(() => (s.destroy(), reject(new Error('redis command timed out'))), 2_000)
      s.on('data', (d) => {
        out += d
        if (out.endsWith('\r\n')) {
          clearTimeout(timer)
          s.end()
          resolve(out)
        }
      })
      s.on('error', (e) => (clearTimeout(timer), reject(e)))
      s.connect(port, '127.0.0.1', () => s.write(encode(args)))
    })
  const start = async () => {
    proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
    const end = Date.now() + 10_000
    for (;;) {
      try {
        if ((await command('PING')).startsWith('+PONG')) return
      } catch {
        // not listening yet
      }
      if (Date.now() > end) throw new Error(`redis-server did not start on ${port}`)
      await new Promise((r) => setTimeout(r, 50))
    }
  }
  const kill = async () => {
    const p = proc
    if (!p || p.exitCode !== null || p.signalCode !== null) return
    const exited = new Promise((r) => p.once('exit', r))
    p.kill('SIGKILL')
    await exited
  }
  await start()
  return { port, url: `redis://127.0.0.1:${port}`, command, kill, start, stop: kill }
}
