import { escapeControl } from '../core/escape.js'
import { displayWidth } from './display-width.js'

/** An ISO time to the second, for tables: `2026-11-27T10:52:02Z`. */
export function toSecond(iso: string): string
export function toSecond(iso: string | null): string | null
export function toSecond(iso: string | null): string | null {
  return iso === null ? null : iso.replace(/\.\d+Z$/, 'Z')
}

type Cell = string | number | null | undefined

/**
 * A plain-text table: numbers right-aligned, text left, `-` for empty cells, columns as wide
 * as their widest cell in terminal columns. With no rows it is the one line `empty`.
 */
export function renderTable(headers: string[], rows: Cell[][], footer?: Cell[], empty = 'No rows.'): string {
  if (rows.length === 0) return empty
  const all = footer ? [...rows, footer] : rows
  const text = (c: Cell) => (c === null || c === undefined || c === '' ? '-' : escapeControl(String(c)))
  const widths = headers.map((h, i) => Math.max(displayWidth(h), ...all.map((r) => displayWidth(text(r[i])))))
  const numeric = headers.map((_, i) => rows.every((r) => typeof r[i] === 'number' || r[i] === null || r[i] === undefined))
  const line = (cells: Cell[]) =>
    cells
      .map((c, i) => {
        const t = text(c)
        const pad = ' '.repeat(Math.max(0, widths[i] - displayWidth(t)))
        return numeric[i] ? pad + t : t + pad
      })
      .join('  ')
      .trimEnd()
  const out = [line(headers), widths.map((w) => '-'.repeat(w)).join('  ')]
  for (const r of rows) out.push(line(r))
  if (footer) out.push(widths.map((w) => '-'.repeat(w)).join('  '), line(footer))
  return out.join('\n')
}

/** `████░░░░░░ 40%` */
export function bar(fraction: number | null, width = 10): string {
  if (fraction === null) return ''
  const f = Math.max(0, Math.min(1, fraction))
  const filled = Math.round(f * width)
  return `${'█'.repeat(filled)}${'░'.repeat(width - filled)} ${Math.round(fraction * 100)}%`
}
