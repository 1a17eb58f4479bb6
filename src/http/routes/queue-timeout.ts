import { badRequest } from '../../core/errors.js'

/** `X-Queue-Timeout: <seconds>`: a client may ask to wait less than the server would. */
export function queueTimeoutOf(header: string | undefined): number | undefined {
  if (header === undefined) return undefined
  const seconds = Number(header)
  if (header.trim() === '' || !Number.isFinite(seconds) || seconds < 0) {
    throw badRequest('X-Queue-Timeout must be a non-negative number of seconds', 'x-queue-timeout')
  }
  return seconds * 1000
}
