import type { Child } from 'hono/jsx'
import { ICON_ASSET, STYLESHEET } from './assets.js'
import { RANGE_NAMES, type UsageRangeView } from '../../core/usage-views.js'

export const NAV = [
  ['overview', '/dashboard', 'Overview'],
  ['usage', '/dashboard/usage', 'Usage'],
  ['budgets', '/dashboard/budgets', 'Budgets'],
  ['errors', '/dashboard/errors', 'Errors'],
  ['log', '/dashboard/log', 'Request log'],
  ['keys', '/dashboard/keys', 'Keys'],
] as const

export type NavId = (typeof NAV)[number][0]

/** A URL of `path` with `query`'s values changed by `changes` (undefined or '' drops one). */
export function href(path: string, query: Record<string, string | undefined>, changes: Record<string, string | undefined> = {}): string {
  const params = new URLSearchParams()
  for (const [k, v] of Object.entries({ ...query, ...changes })) if (v !== undefined && v !== '') params.set(k, v)
  const text = params.toString()
  return text ? `${path}?${text}` : path
}

export function Document(props: { title: string; children: Child }) {
  return (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>{`${props.title} · LLM gateway`}</title>
        <link rel="stylesheet" href={STYLESHEET.path} />
        <link rel="icon" type="image/svg+xml" href={ICON_ASSET.path} />
      </head>
      <body>{props.children}</body>
    </html>
  )
}

export function Page(props: { title: string; nav: NavId; csrf: string; who: string; children: Child }) {
  return (
    <Document title={props.title}>
      <header class="top">
        <span class="brand">LLM gateway</span>
        <nav class="main">
          {NAV.map(([id, path, label]) => (
            <a href={path} class={id === props.nav ? 'on' : ''}>
              {label}
            </a>
          ))}
        </nav>
        <form method="post" action="/dashboard/logout" class="inline">
          <input type="hidden" name="csrf" value={props.csrf} />
          <span class="muted">{props.who}</span>
          <button class="quiet" type="submit">
            Log out
          </button>
        </form>
      </header>
      <main>{props.children}</main>
    </Document>
  )
}

const RANGE_LABEL: Record<string, string> = { '1h': '1 h', '24h': '24 h', today: 'Today', '7d': '7 d', '30d': '30 d' }

/** The range links (the other filters kept) and a custom day range form. */
export function RangePicker(props: { path: string; query: Record<string, string | undefined>; range: UsageRangeView }) {
  const { path, query, range } = props
  const span = range.span
  return (
    <div class="ranges">
      {RANGE_NAMES.filter((r) => r !== 'custom').map((r) => (
        <a class={range.name === r ? 'on' : ''} href={href(path, query, { range: r, from: undefined, to: undefined, before: undefined })}>
          {RANGE_LABEL[r]}
        </a>
      ))}
      <form method="get" action={path} class="inline">
        {Object.entries(query)
          .filter(([k, v]) => !['range', 'from', 'to', 'before'].includes(k) && v)
          .map(([k, v]) => (
            <input type="hidden" name={k} value={v} />
          ))}
        <input type="hidden" name="range" value="custom" />
        <input type="date" name="from" aria-label="from day" value={'fromDay' in span ? span.fromDay : ''} />
        <input type="date" name="to" aria-label="to day" value={'toDay' in span ? span.toDay : ''} />
        <button class={range.name === 'custom' ? '' : 'quiet'} type="submit">
          Custom
        </button>
      </form>
      <span class="muted">{range.label}</span>
      {range.usageCommand ? (
        <span class="muted">
          same totals as <code>{range.usageCommand}</code>
        </span>
      ) : null}
    </div>
  )
}

export function Card(props: { label: string; value: string; unit?: string; id?: string }) {
  return (
    <div class="card" data-figure={props.id}>
      <div class="label">{props.label}</div>
      <div class="value">
        {props.value} {props.unit ? <span class="unit">{props.unit}</span> : null}
      </div>
    </div>
  )
}

export function Empty(props: { children: Child }) {
  return <div class="empty">{props.children}</div>
}
