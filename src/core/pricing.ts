import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { badRequest } from './errors.js'

export interface Price {
  /** USD per 1M input tokens, which is also micro-dollars per token. */
  input: number
  output: number
}

export type PriceTable = Record<string, Price>

const BUNDLED = fileURLToPath(new URL('../../prices.json', import.meta.url))

/** Errors name the file and carry the param `prices`, so the CLI can name its flag. */
function readTable(path: string): PriceTable {
  let raw: Record<string, unknown>
  try {
    raw = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>
  } catch (err) {
    if (!(err instanceof SyntaxError)) throw err
    throw badRequest(`${path} is not valid JSON (${err.message}); fix the file or leave the option out`, 'prices', 'bad_prices')
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw badRequest(`${path} must hold a JSON object of model prices`, 'prices', 'bad_prices')
  const table: PriceTable = {}
  for (const [model, p] of Object.entries(raw)) {
    if (model.startsWith('_')) continue
    const price = p as Partial<Price>
    if (typeof price?.input !== 'number' || typeof price.output !== 'number' || price.input < 0 || price.output < 0) {
      throw badRequest(`${path}: price of "${model}" needs non-negative numbers "input" and "output" (USD per 1M tokens)`, 'prices', 'bad_prices')
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

  /**
   * Estimated cost in micro-dollars, or null for a model without a price. An `upstream/model`
   * entry (exact) prices that upstream's model (Azure and OpenAI can differ) over `model`'s.
   */
  costMicros(model: string | null, promptTokens: number, completionTokens: number, upstream: string | null = null): number | null {
    const price = model ? ((upstream !== null ? this.table[`${upstream}/${model}`] : undefined) ?? this.priceOf(model)) : null
    return price ? Math.round(promptTokens * price.input + completionTokens * price.output) : null
  }
}
