import type { EventEmitter } from 'node:events'

/** Resolves on the first of `names` that the emitter emits, and leaves no listener behind. */
export function firstEvent(emitter: EventEmitter, names: readonly string[]): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      for (const name of names) emitter.off(name, done)
      resolve()
    }
    for (const name of names) emitter.on(name, done)
  })
}
