import type { Context } from 'hono'
import { Cancel } from '../core/cancel.js'
import { clientClosed } from '../core/queue.js'
import type { AppEnv } from './env.js'

/**
 * The request's cancellation, aborted with `client_closed` when the client's connection
 * closes before its answer is complete. Taken from Node's response rather than from
 * `c.req.raw.signal`: that getter makes node-server build an AbortController, and each
 * cost ~5 µs per request. The gateway aborts the same Cancel at the shutdown deadline.
 */
export function clientCancel(c: Context<AppEnv>): Cancel {
  const cancel = new Cancel()
  const outgoing = c.env?.outgoing
  if (!outgoing) return cancel // not over a socket (app.request in tests): no client to leave
  const onClose = () => {
    if (!outgoing.writableFinished) cancel.abort(clientClosed())
  }
  if (outgoing.destroyed) onClose()
  else outgoing.once('close', onClose)
  return cancel
}
