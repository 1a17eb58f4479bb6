import type pg from 'pg'
import { connectionConfig, driver } from './open.js'

const CHANNEL = 'gateway_config'
const RECONNECT_MS = 1_000

/**
 * The PostgreSQL change marker: a counter kept current by LISTEN on the channel every
 * configuration write notifies (a trigger, delivered at commit). Reading it is a local,
 * synchronous read. Each (re)connection bumps it too, since notifications sent while the
 * connection was down are lost: the gateway then reloads once.
 */
export class ChangeListener {
  private version = 0
  private client: pg.Client | null = null
  private timer: NodeJS.Timeout | null = null
  private closed = false

  constructor(private readonly url: string) {}

  current(): number {
    if (!this.client && !this.timer && !this.closed) this.connect()
    return this.version
  }

  private connect(): void {
    const client = new (driver().Client)(connectionConfig(this.url))
    this.client = client
    const retry = () => {
      if (this.client !== client) return
      this.client = null
      client.removeAllListeners()
      client.on('error', () => {})
      void client.end().catch(() => {})
      if (this.closed) return
      this.timer = setTimeout(() => {
        this.timer = null
        this.connect()
      }, RECONNECT_MS)
      this.timer.unref()
    }
    client.on('error', retry)
    client.on('end', retry)
    client.on('notification', () => this.version++)
    client
      .connect()
      .then(() => client.query(`LISTEN ${CHANNEL}`))
      .then(() => {
        if (this.client === client) this.version++
      })
      .catch(retry)
  }

  async close(): Promise<void> {
    this.closed = true
    if (this.timer) clearTimeout(this.timer)
    const client = this.client
    this.client = null
    if (client) {
      client.removeAllListeners()
      client.on('error', () => {})
      await client.end().catch(() => {})
    }
  }
}
