import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

export interface Price {
  /** USD per 1M input tokens, which is also micro-dollars per token. */
  input: number
  output: number
}

export type PriceTable = Record<string, Price>

const BUNDLED = fileURLToPath(new URL('../../prices.json', import.meta.url))

function readTable(path: string): PriceTable {
  const raw = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>
  const table: PriceTable = {}
  for (const [model, p] of Object.entries(raw)) {
    if (model.startsWith('_')) continue
    const price = p as Partial<Price>
    if (typeof price?.input !== 'number' || typeof price.output !== 'number' || price.input < 0 || price.output < 0) {
      throw new Error(`${path}: price of "${model}" needs non-negative numbers "input" and "output" (USD per 1M tokens)`)
    }
    table[model] = { input: price.input, output: price.output }
  }
  return table
}

/** Prices by model: the bundled table with the operator's file laid over it. */
export class Pricing {
  private readonly table: PriceTable
  private readonly names: string[]
  private readonly cache = new Map<string, Price | null>()

  constructor(table: PriceTable) {
    this.table = table
    this.names = Object.keys(table).sort((a, b) => b.length - a.length)
  }

  static load(overridePath?: string): Pricing {
    return new Pricing({ ...readTable(BUNDLED), ...(overridePath ? readTable(overridePath) : {}) })
  }

  priceOf(model: string): Price | null {
    let price = this.cache.get(model)
    if (price === undefined) {
      const name = model in this.table ? model : this.names.find((n) => model.startsWith(`${n}-`))
      price = name ? this.table[name] : null
      if (this.cache.size < 1000) this.cache.set(model, price)
    }
    return price
  }

  /** Estimated cost in micro-dollars, or null for a model without a price. */
  costMicros(model: string | null, promptTokens: number, completionTokens: number): number | null {
    const price = model ? this.priceOf(model) : null
    return price ? Math.round(promptTokens * price.input + completionTokens * price.output) : null
  }
}
