/** Numbers as the dashboard shows them: en-US grouping, always with a unit. */
const whole = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 })

export function count(n: number, unit: string, plural = `${unit}s`): string {
  return `${whole.format(n)} ${n === 1 ? unit : plural}`
}

export function num(n: number): string {
  return whole.format(n)
}

export function usd(v: number | null): string {
  if (v === null) return 'n/a (no price)'
  if (v === 0) return '$0.00'
  return v < 0.01 ? `$${v.toFixed(6)}` : `$${v.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 4 })}`
}

export function ms(v: number | null): string {
  return v === null ? 'n/a' : `${whole.format(Math.round(v))} ms`
}

export function percent(v: number | null, digits = 1): string {
  return v === null ? 'n/a' : `${(v * 100).toFixed(digits)} %`
}

/** `2026-11-27 10:42:07 UTC` from epoch ms or an ISO timestamp. */
export function when(t: number | string): string {
  return `${new Date(t).toISOString().slice(0, 19).replace('T', ' ')} UTC`
}
