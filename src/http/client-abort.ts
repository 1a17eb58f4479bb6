import type { Context } from 'hono'
import { clientClosed } from '../core/queue.js'
import type { AppEnv } from './env.js'

/**
 * The request's one abort controller, aborted with `client_closed` when the client's
 * connection closes before its answer is complete. Built from Node's response rather than
 * read from `c.req.raw.signal`: that getter makes node-server build a controller of its
 * own, and linking the two cost a second controller and two listeners per request. The
 * gateway aborts the same controller at the shutdown deadline.
 */
export function clientAbort(c: Context<AppEnv>): AbortController {
  const controller = new AbortController()
  const outgoing = c.env?.outgoing
  if (!outgoing) return controller // not over a socket (app.request in tests): no client to leave
  const onClose = () => {
    if (!outgoing.writableFinished) controller.abort(clientClosed())
  }
  if (outgoing.destroyed) onClose()
  else outgoing.once('close', onClose)
  return controller
}
