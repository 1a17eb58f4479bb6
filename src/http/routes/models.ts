import { Hono } from 'hono'
import { notFound } from '../../core/errors.js'
import type { AppEnv, AppServices } from '../env.js'

const toModel = (id: string) => ({ id, object: 'model', created: 0, owned_by: 'gateway' })

/** The models this key may use. */
export function modelRoutes({ gateway }: AppServices): Hono<AppEnv> {
  return new Hono<AppEnv>()
    .get('/v1/models', async (c) => {
      const ids = await gateway.models(c.get('key'))
      return c.json({ object: 'list', data: ids.map(toModel) })
    })
    .get('/v1/models/:model{.+}', async (c) => {
      const id = c.req.param('model')
      const ids = await gateway.models(c.get('key'))
      if (!ids.includes(id)) throw notFound(`Model "${id}" is not available to this key`)
      return c.json(toModel(id))
    })
}
