import { isIP } from 'node:net'
import { escapeControl } from '../core/escape.js'

interface BannerInfo {
  url: string
  host: string
  upstream: string
  model: string
  /** Absolute paths. */
  db: string
  csvLog: string | null
  timezone: string
  /** Why the mock answers: null when the real upstream does. */
  mockReason: 'no-key' | 'flag' | null
  hasKeys: boolean
  /** --db was left at its default, so the "create a key" hint needs no --db. */
  dbIsDefault: boolean
}

/** 127.0.0.0/8, ::1 and localhost: only this machine can connect. */
function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase()
  if (h === 'localhost' || h === '::1') return true
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h
  return isIP(v4) === 4 && v4.startsWith('127.')
}

/** Lines in a closed box, padded to the longest (counted in code points). */
function box(sections: string[][]): string {
  const width = Math.max(...sections.flat().map((l) => [...l].length))
  const rule = '─'.repeat(width + 2)
  const row = (l: string) => `│ ${l}${' '.repeat(width - [...l].length)} │`
  return [`┌${rule}┐`, ...sections.map((s) => s.map(row).join('\n')).join(`\n├${rule}┤\n`).split('\n'), `└${rule}┘`].join('\n')
}

/** serve's human start-up text: where it listens, what it forwards to, where data goes, and what needs attention. */
export function renderBanner(info: BannerInfo): string {
  const main = [
    `gateway listening on ${info.url}`,
    `  upstream:   ${escapeControl(info.upstream)}  (/chat model: ${escapeControl(info.model)})`,
    `  database:   ${escapeControl(info.db)}`,
    `  csv log:    ${info.csvLog === null ? 'off' : escapeControl(info.csvLog)}`,
    `  budget day: ${escapeControl(info.timezone)}`,
  ]
  const warnings: string[] = []
  if (info.mockReason === 'no-key') {
    warnings.push('! MOCK MODE (OPENAI_API_KEY is not set): answers come from the built-in', '  mock provider, not from a model. Set OPENAI_API_KEY to forward upstream.')
  } else if (info.mockReason === 'flag') {
    warnings.push('! MOCK MODE (--mock is on): answers come from the built-in mock provider,', '  not from a model; OPENAI_API_KEY is ignored. Drop --mock to forward upstream.')
  }
  if (!isLoopback(info.host)) {
    warnings.push(`! Listening on ${escapeControl(info.host)}, beyond this machine: keys travel in clear`, '  text unless TLS is in front (a reverse proxy; see docs/operations.md).')
  }
  let out = box(warnings.length > 0 ? [main, warnings] : [main])
  if (!info.hasKeys) {
    out += `\nNo API keys yet. In another terminal: npx gateway keys create --name me${info.dbIsDefault ? '' : ` --db ${escapeControl(info.db)}`}`
  }
  return out
}
