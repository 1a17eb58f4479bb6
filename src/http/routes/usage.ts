import { Hono } from 'hono'
import { badRequest } from '../../core/errors.js'
import { isDay } from '../../core/usage.js'
import type { AppEnv, AppServices } from '../env.js'

/** `GET /usage[?date=YYYY-MM-DD]`: the caller's usage; an admin key sees everyone's. */
export function usageRoutes({ gateway, usage }: AppServices, now: () => number): Hono<AppEnv> {
  return new Hono<AppEnv>().get('/usage', async (c) => {
    const date = c.req.query('date')
    if (date !== undefined && !isDay(date)) throw badRequest('date must be a calendar date, YYYY-MM-DD', 'date')
    const today = gateway.limiter.dayOf(now())
    const day = date ?? today
    const key = c.get('key')
    const resetsAt = day === today ? new Date(gateway.limiter.resetAt(now())).toISOString() : null
    if (!key.admin) return c.json({ date: day, resets_at: resetsAt, ...(await usage.forKey(key, day)) })
    return c.json({ date: day, resets_at: resetsAt, ...(await usage.forDay(day)) })
  })
}
