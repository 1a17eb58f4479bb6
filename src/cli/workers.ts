import cluster, { type Worker } from 'node:cluster'
import { firstEvent } from '../first-event.js'

/** What a worker tells the primary. */
type WorkerMessage = { type: 'listening'; info: Record<string, unknown> } | { type: 'stopped'; cut: number }

interface WorkersResult {
  /** Upstream calls cut at the shutdown deadline, over all workers. */
  cut: number
  /** The worst exit code among the workers. */
  code: number
}

/** Whether this process is a worker of `serve --workers N`. */
export const isWorker = (): boolean => cluster.isWorker

/** From a worker: tells the primary (a no-op in a lone server). */
export function tellPrimary(message: WorkerMessage): void {
  if (cluster.isWorker) process.send?.(message)
}

/** From a worker that has stopped: lets go of the channel to the primary, which would keep it alive. */
export function leavePrimary(): void {
  cluster.worker?.disconnect()
}

/**
 * The primary of `serve --workers N`: forks N copies of this very command (node:cluster, so
 * they share one listening socket), resolves `listening` with the first worker's info once
 * all N listen, and on SIGINT/SIGTERM passes SIGTERM to every worker and waits for them all
 * (each drains as a lone server does). A worker that dies while serving is replaced; one
 * that dies before all listen stops the lot (it could not start: Redis, port, database).
 */
export function runWorkers(n: number, onListening: (info: Record<string, unknown>) => void): Promise<WorkersResult> {
  cluster.setupPrimary({ exec: process.argv[1], args: process.argv.slice(2) })
  const workers = new Set<Worker>()
  let listening = 0
  let started = false
  let stopping = false
  let cut = 0
  let worst = 0
  return new Promise((resolve) => {
    const finish = () => {
      if (workers.size === 0) resolve({ cut, code: worst })
    }
    const stopAll = () => {
      stopping = true
      for (const w of workers) w.process.kill('SIGTERM')
      finish()
    }
    const fork = () => {
      const w = cluster.fork()
      workers.add(w)
      w.on('message', (m: WorkerMessage) => {
        if (m.type === 'stopped') cut += m.cut
        else if (m.type === 'listening' && started) process.stderr.write(`gateway: worker ${w.process.pid} listening in place of the one that died\n`)
        else if (m.type === 'listening' && ++listening === n) {
          started = true
          onListening(m.info)
        }
      })
      w.on('exit', (code, signal) => {
        workers.delete(w)
        // A worker our SIGTERM ended before it could catch it (still starting) stopped as asked.
        worst = Math.max(worst, code ?? (stopping && signal === 'SIGTERM' ? 0 : 1))
        if (stopping) return finish()
        if (!started) {
          process.stderr.write(`gateway: a worker could not start (exit ${code ?? signal}); stopping the others\n`)
          return stopAll()
        }
        process.stderr.write(`gateway: worker ${w.process.pid} died (${code ?? signal}); starting another\n`)
        worst = 0
        fork()
      })
    }
    for (let i = 0; i < n; i++) fork()
    void firstEvent(process, ['SIGINT', 'SIGTERM']).then(() => {
      // A second signal (a terminal's Ctrl-C reaches every process of the group) must not kill the primary mid-drain.
      const ignore = () => {}
      process.on('SIGINT', ignore).on('SIGTERM', ignore)
      stopAll()
    })
  })
}
