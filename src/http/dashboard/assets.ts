import { hash } from 'node:crypto'

/**
 * The dashboard's one stylesheet, served by the gateway (no CDN, no build step). Its URL
 * carries a digest of the text, so browsers may keep it for a year. Light and dark follow
 * the system (prefers-color-scheme); one column on a phone.
 */
const CSS = `
:root { color-scheme: light dark; --bg: #f6f7f9; --card: #fff; --fg: #1b1f24; --muted: #5b6573; --line: #dde1e6; --accent: #2563eb;
  --warn: #b45309; --bad: #b91c1c; --ok: #15803d; --s0: #2563eb; --s1: #db2777; --s2: #059669; --s3: #d97706; --s4: #7c3aed; --s5: #0891b2; --s6: #65a30d; --s7: #6b7280; }
@media (prefers-color-scheme: dark) { :root { --bg: #0f1115; --card: #181b21; --fg: #e6e8eb; --muted: #9aa4b2; --line: #2a2f38; --accent: #60a5fa;
  --warn: #f59e0b; --bad: #f87171; --ok: #4ade80; --s0: #60a5fa; --s1: #f472b6; --s2: #34d399; --s3: #fbbf24; --s4: #a78bfa; --s5: #22d3ee; --s6: #a3e635; --s7: #9ca3af; } }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; background: var(--bg); color: var(--fg); }
a { color: var(--accent); }
header.top { display: flex; flex-wrap: wrap; align-items: center; gap: 8px 20px; padding: 10px 20px; background: var(--card); border-bottom: 1px solid var(--line); }
header.top .brand { font-weight: 700; }
nav.main { display: flex; flex-wrap: wrap; gap: 4px 14px; flex: 1; }
nav.main a { text-decoration: none; color: var(--muted); padding: 4px 0; }
nav.main a.on { color: var(--fg); border-bottom: 2px solid var(--accent); }
main { max-width: 1200px; margin: 0 auto; padding: 16px 20px 40px; }
h1 { font-size: 22px; margin: 8px 0 4px; }
h2 { font-size: 17px; margin: 0 0 8px; }
p.sub { color: var(--muted); margin: 0 0 14px; }
.ranges { display: flex; flex-wrap: wrap; gap: 6px; margin: 8px 0 16px; align-items: center; }
.ranges a { padding: 4px 10px; border: 1px solid var(--line); border-radius: 14px; text-decoration: none; color: var(--fg); background: var(--card); }
.ranges a.on { background: var(--accent); border-color: var(--accent); color: #fff; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(180px, 1fr)); gap: 12px; margin-bottom: 16px; }
.card, section.panel { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; }
section.panel { margin-bottom: 16px; overflow-x: auto; }
.card .label { color: var(--muted); font-size: 13px; }
.card .value { line-height: 1.25; font-size: 24px; font-weight: 650; font-variant-numeric: tabular-nums; }
.card .unit { font-size: 14px; color: var(--muted); font-weight: 400; }
.grid2 { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { color: var(--muted); font-weight: 600; font-size: 13px; }
td.num, th.num { text-align: right; }
tr.sel td { background: color-mix(in srgb, var(--accent) 12%, transparent); }
.chart { width: 100%; height: auto; display: block; }
.chart .axis { stroke: var(--line); }
.chart text { fill: var(--muted); font-size: 11px; }
.chart .s0 { fill: var(--s0); } .chart .s1 { fill: var(--s1); } .chart .s2 { fill: var(--s2); } .chart .s3 { fill: var(--s3); }
.chart .s4 { fill: var(--s4); } .chart .s5 { fill: var(--s5); } .chart .s6 { fill: var(--s6); } .chart .s7 { fill: var(--s7); }
.chart .bad { fill: var(--bad); } .chart .warn { fill: var(--warn); }
.legend { display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: 13px; color: var(--muted); margin-top: 6px; }
.dot { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 5px; }
.dot.s0 { background: var(--s0); } .dot.s1 { background: var(--s1); } .dot.s2 { background: var(--s2); } .dot.s3 { background: var(--s3); }
.dot.s4 { background: var(--s4); } .dot.s5 { background: var(--s5); } .dot.s6 { background: var(--s6); } .dot.s7 { background: var(--s7); }
.dot.bad { background: var(--bad); } .dot.warn { background: var(--warn); }
progress { width: 90px; height: 8px; accent-color: var(--ok); margin-right: 6px; vertical-align: middle; }
progress.l75 { accent-color: var(--warn); } progress.l90, progress.l100 { accent-color: var(--bad); }
.tag { display: inline-block; padding: 1px 7px; border-radius: 10px; font-size: 12px; border: 1px solid var(--line); color: var(--muted); }
.tag.l75 { color: var(--warn); border-color: var(--warn); } .tag.l90, .tag.l100, .tag.bad { color: var(--bad); border-color: var(--bad); }
.tag.ok { color: var(--ok); border-color: var(--ok); }
.empty { color: var(--muted); padding: 18px 4px; }
.empty code, code { background: color-mix(in srgb, var(--muted) 15%, transparent); padding: 1px 5px; border-radius: 4px; }
form.filters { display: flex; flex-wrap: wrap; gap: 8px; align-items: end; margin-bottom: 12px; }
label { display: flex; flex-direction: column; gap: 3px; font-size: 13px; color: var(--muted); }
input, select, button { font: inherit; padding: 6px 8px; border: 1px solid var(--line); border-radius: 6px; background: var(--card); color: var(--fg); }
input[type=checkbox] { width: auto; }
button, .button { background: var(--accent); color: #fff; border-color: var(--accent); cursor: pointer; text-decoration: none; padding: 6px 12px; border-radius: 6px; display: inline-block; }
.quiet, button.quiet { background: var(--card); color: var(--fg); border-color: var(--line); }
button.danger { background: var(--bad); border-color: var(--bad); }
form.inline { display: inline-flex; gap: 6px; align-items: end; flex-wrap: wrap; margin: 0; }
div.actions { display: flex; gap: 6px; align-items: center; flex-wrap: wrap; min-width: 340px; }
td.wrap { white-space: normal; min-width: 160px; }
details summary { cursor: pointer; color: var(--accent); padding: 6px 0; }
details[open] form { margin-top: 6px; }
select.small { padding: 5px 6px; }
.login { max-width: 420px; margin: 10vh auto; }
.login form { display: flex; flex-direction: column; gap: 12px; }
.msg { padding: 10px 12px; border-radius: 6px; margin-bottom: 12px; border: 1px solid var(--line); }
.msg.error { border-color: var(--bad); color: var(--bad); }
.msg.ok { border-color: var(--ok); }
.secret { font-family: ui-monospace, monospace; font-size: 14px; word-break: break-all; padding: 10px; border: 1px dashed var(--ok); border-radius: 6px; user-select: all; }
dl.detail { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 0; }
dl.detail dt { color: var(--muted); } dl.detail dd { margin: 0; word-break: break-all; }
pre { white-space: pre-wrap; word-break: break-all; max-height: 300px; overflow: auto; }
.pager { display: flex; gap: 10px; margin-top: 10px; align-items: center; }
.muted { color: var(--muted); }
@media (max-width: 720px) {
  header.top { padding: 8px 12px; } main { padding: 10px 12px 30px; }
  nav.main { order: 3; flex-basis: 100%; flex-wrap: nowrap; overflow-x: auto; }
  .grid2 { grid-template-columns: 1fr; }
  .card .value { font-size: 20px; }
  .cards { grid-template-columns: 1fr 1fr; }
  th, td { padding: 5px 6px; }
}
`

/** Its own icon, linked from every page: otherwise the browser asks the API for /favicon.ico (a 401, counted as a failed login). */
const ICON = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="7" fill="#2563eb"/><path d="M8 22V10h4v12zm6 0V14h4v8zm6 0V7h4v15z" fill="#fff"/></svg>'

export const ICON_ASSET = { path: `/dashboard/assets/icon.${hash('sha256', ICON, 'hex').slice(0, 12)}.svg`, body: ICON }

export const STYLESHEET = { path: `/dashboard/assets/dashboard.${hash('sha256', CSS, 'hex').slice(0, 12)}.css`, body: CSS }
