import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'

export const BIN = fileURLToPath(new URL('../../bin/run.js', import.meta.url))

/**
 * The environment of a CLI child: the shipped build (vitest sets NODE_ENV=test, under which
 * oclif would run src/ through tsx) and no colour in --json output.
 */
export function cliEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  // Hermetic: no OPENAI_* or GATEWAY_* from the developer's shell.
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('OPENAI_') && !k.startsWith('GATEWAY_')) env[k] = v
  return { ...env, NODE_ENV: 'production', FORCE_COLOR: '0', NO_COLOR: '1', ...extra }
}

export interface ServeChild {
  proc: ChildProcess
  url: string
  info: Record<string, unknown>
  stdout(): string
  stderr(): string
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  /** SIGTERM, then SIGKILL after `graceMs` if it has not exited; resolves when it has. */
  stop(graceMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

/**
 * `node bin/run.js serve --port 0 …` as a real child process; resolves once it listens: with
 * --json when its one JSON line is out, without when the "listening on URL" line appears.
 */
export function spawnServe(args: string[], env: Record<string, string> = {}, asJson = true, nodeArgs: string[] = []): Promise<ServeChild> {
  const proc = spawn(process.execPath, [...nodeArgs, BIN, 'serve', '--port', '0', ...(asJson ? ['--json'] : []), ...args], { env: cliEnv(env), stdio: ['ignore', 'pipe', 'pipe'] })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => proc.once('exit', (code, signal) => r({ code, signal })))
  let out = ''
  let err = ''
  proc.stderr!.on('data', (d) => (err += d))
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL')
      reject(new Error(`serve did not start: ${out}\n${err}`))
    }, 30_000)
    let stopping: ReturnType<ServeChild['stop']> | null = null
    const stop = (graceMs = 10_000) => {
      stopping ??= (async () => {
        if (proc.exitCode !== null || proc.signalCode !== null) return exited
        proc.kill('SIGTERM')
        const t = setTimeout(() => proc.kill('SIGKILL'), graceMs)
        const result = await exited
        clearTimeout(t)
        return result
      })()
      return stopping
    }
    const done = (url: string, info: Record<string, unknown>) => {
      clearTimeout(timer)
      resolve({ proc, url, info, exited, stop, stdout: () => out, stderr: () => err })
    }
    proc.stdout!.on('data', (d) => {
      out += d
      if (asJson) {
        const line = out.split('\n')[0]
        if (out.includes('\n')) done(String((JSON.parse(line) as { url: string }).url), JSON.parse(line) as Record<string, unknown>)
      } else {
        const m = /listening on (http:\/\/\S+)/.exec(out)
        if (m) done(m[1], {})
      }
    })
    void exited.then(({ code }) => {
      clearTimeout(timer)
      reject(new Error(`serve exited (${code}) before listening: ${out}\n${err}`))
    })
  })
}

export interface CliResult {
  code: number
  stdout: string
  stderr: string
}

/** Runs the real `gateway` binary (built dist), as a user would. */
export function runCli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: cliEnv(env), maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0
      resolve({ code, stdout, stderr })
    })
  })
}

export async function runJson<T = Record<string, unknown>>(args: string[], env: Record<string, string> = {}): Promise<{ code: number; json: T; stderr: string }> {
  const r = await runCli([...args, '--json'], env)
  let json: T
  try {
    json = JSON.parse(r.stdout) as T
  } catch {
    throw new Error(`not JSON (exit ${r.code}): ${r.stdout}\n${r.stderr}`)
  }
  return { code: r.code, json, stderr: r.stderr }
}
