/**
 * Spreadsheet formula injection: a cell starting with = + - @ (or tab/CR, which some
 * programs strip before reading the formula) is prefixed with a quote so it stays text.
 */
const FORMULA_START = /^[=+\-@\t\r]/

export function neutraliseCell(value: string): string {
  return FORMULA_START.test(value) ? `'${value}` : value
}

/** A cell's text for CSV: numbers stay numbers (a negative number is no formula), strings are neutralised. */
export function csvCell(value: unknown): string | number {
  if (value === null || value === undefined) return ''
  if (typeof value === 'number') return value
  if (typeof value === 'boolean') return value ? 'true' : 'false'
  return neutraliseCell(String(value))
}
