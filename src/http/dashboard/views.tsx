import type { LoggedRequest } from '../../core/store.js'
import type { ErrorView, GroupTotals, KeyBudget, Overview, UsageRangeView } from '../../core/usage-views.js'
import type { LimitSource } from '../../core/limits.js'
import { keyStatus, type LiveSecret } from '../../core/keys.js'
import { costUsd } from '../../core/log-columns.js'
import type { ApiKey, RequestRow } from '../../core/types.js'
import { BarChart, Legend } from './chart.js'
import { count, ms, num, percent, usd, when } from './format.js'
import { Card, Empty, href, RangePicker } from './layout.js'

type Query = Record<string, string | undefined>

const NO_TRAFFIC = (
  <>
    Send a request with an API key, e.g. <code>curl -H "Authorization: Bearer $KEY" -d '{'{"message":"hi"}'}' http://HOST/chat</code>, or create a key on the{' '}
    <a href="/dashboard/keys">Keys</a> page first.
  </>
)

export function OverviewView(props: { range: UsageRangeView; query: Query; o: Overview }) {
  const { range, query, o } = props
  const t = o.totals
  return (
    <>
      <h1>Overview</h1>
      <RangePicker path="/dashboard" query={query} range={range} />
      <div class="cards">
        <Card id="requests" label="Requests" value={num(t.requests)} unit="req" />
        <Card id="tokens" label="Tokens" value={num(t.totalTokens)} unit="tokens" />
        <Card id="cost" label="Estimated cost" value={usd(t.costUsd)} unit="USD" />
        <Card id="error-rate" label="Error rate" value={percent(t.errorRate)} unit={`${num(t.errors)} err`} />
        <Card id="p50" label="Latency p50" value={ms(o.p50Ms)} />
        <Card id="p95" label="Latency p95" value={ms(o.p95Ms)} />
      </div>
      {t.requests === 0 ? (
        <section class="panel">
          <Empty>No requests in {range.label}. {NO_TRAFFIC}</Empty>
        </section>
      ) : (
        <div class="grid2">
          <section class="panel">
            <h2>Requests</h2>
            <BarChart
              title="Requests over time"
              width={540}
              unit="requests"
              labels={range.buckets}
              series={[
                { name: 'answered', className: 's0', values: o.series.map((s) => s.requests - s.errors) },
                { name: 'errors', className: 'bad', values: o.series.map((s) => s.errors) },
              ]}
            />
            <Legend series={[{ name: 'answered', className: 's0' }, { name: 'errors (4xx/5xx)', className: 'bad' }]} />
          </section>
          <section class="panel">
            <h2>Tokens</h2>
            <BarChart
              title="Tokens over time"
              width={540}
              unit="tokens"
              labels={range.buckets}
              series={[
                { name: 'prompt', className: 's2', values: o.series.map((s) => s.promptTokens) },
                { name: 'completion', className: 's4', values: o.series.map((s) => s.completionTokens) },
              ]}
            />
            <Legend series={[{ name: 'prompt tokens', className: 's2' }, { name: 'completion tokens', className: 's4' }]} />
          </section>
        </div>
      )}
      {o.p50Ms === null && t.requests > 0 ? <p class="muted">Latency: n/a where some of the range's log rows were pruned (the kept totals hold no latencies).</p> : null}
    </>
  )
}

const TOP = 7

export function UsageView(props: { range: UsageRangeView; query: Query; by: 'key' | 'model'; groups: GroupTotals[]; names: Map<string, string> }) {
  const { range, query, by, groups, names } = props
  const label = (g: string) => (by === 'key' ? (names.get(g) ?? (g || '(no key)')) : g || '(no model)')
  const top = groups.slice(0, TOP)
  const rest = groups.slice(TOP)
  const series = top.map((g, i) => ({ name: label(g.group), className: `s${i}`, values: g.perBucket }))
  if (rest.length > 0) series.push({ name: `${rest.length} more`, className: 's7', values: range.buckets.map((_, i) => rest.reduce((a, g) => a + g.perBucket[i], 0)) })
  const byCost = [...groups].filter((g) => g.costUsd !== null).sort((a, b) => (b.costUsd ?? 0) - (a.costUsd ?? 0)).slice(0, TOP)
  return (
    <>
      <h1>Usage by {by}</h1>
      <div class="ranges">
        <a class={by === 'key' ? 'on' : ''} href={href('/dashboard/usage', query, { by: 'key' })}>
          By key
        </a>
        <a class={by === 'model' ? 'on' : ''} href={href('/dashboard/usage', query, { by: 'model' })}>
          By model
        </a>
      </div>
      <RangePicker path="/dashboard/usage" query={query} range={range} />
      {groups.length === 0 ? (
        <section class="panel">
          <Empty>No usage in {range.label}. {NO_TRAFFIC}</Empty>
        </section>
      ) : (
        <>
          <section class="panel">
            <h2>Tokens over time, by {by}</h2>
            <BarChart title={`Tokens over time by ${by}`} unit="tokens" labels={range.buckets} series={series} />
            <Legend series={series} />
          </section>
          <section class="panel">
            <h2>Top {by}s by tokens</h2>
            <table id="usage-table">
              <thead>
                <tr>
                  <th>{by === 'key' ? 'Key' : 'Model'}</th>
                  <th class="num">Requests</th>
                  <th class="num">Prompt tokens</th>
                  <th class="num">Completion tokens</th>
                  <th class="num">Total tokens</th>
                  <th class="num">Cost (USD)</th>
                  <th class="num">Errors</th>
                </tr>
              </thead>
              <tbody>
                {groups.map((g) => (
                  <tr data-group={g.group}>
                    <td>{label(g.group)}</td>
                    <td class="num">{count(g.requests, 'req', 'req')}</td>
                    <td class="num">{count(g.promptTokens, 'token')}</td>
                    <td class="num">{count(g.completionTokens, 'token')}</td>
                    <td class="num" data-figure="total_tokens">
                      {count(g.totalTokens, 'token')}
                    </td>
                    <td class="num">{usd(g.costUsd)}</td>
                    <td class="num">{count(g.errors, 'error')}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </section>
          <section class="panel">
            <h2>Top {by}s by cost</h2>
            {byCost.length === 0 ? (
              <Empty>No priced model in this range: add prices with --prices (USD per 1M tokens) to see costs.</Empty>
            ) : (
              <table>
                <tbody>
                  {byCost.map((g) => (
                    <tr>
                      <td>{label(g.group)}</td>
                      <td class="num">{usd(g.costUsd)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </section>
        </>
      )}
    </>
  )
}

/** Where a limit's value comes from; the key's own stands out. */
function sourceTag(source: LimitSource) {
  return <span class={source === 'key' ? 'tag ok' : 'tag'}>{source}</span>
}

function limitCell(value: number | null, source: LimitSource, unit: string) {
  return (
    <td>
      {value === null ? 'off' : `${num(value)} ${unit}`} {sourceTag(source)}
    </td>
  )
}

export function BudgetsView(props: { day: string; resetsAt: number; keys: KeyBudget[] }) {
  const { day, resetsAt, keys } = props
  const near = (level: number) => keys.filter((k) => k.level === level).length
  return (
    <>
      <h1>Budgets</h1>
      <p class="sub">
        Today is {day}; daily budgets reset at {when(resetsAt)}.
      </p>
      <div class="cards">
        <Card id="near-75" label="Keys at 75 to 90 %" value={num(near(75))} unit="keys" />
        <Card id="near-90" label="Keys at 90 to 100 %" value={num(near(90))} unit="keys" />
        <Card id="at-100" label="Keys used up (100 %)" value={num(near(100))} unit="keys" />
      </div>
      <section class="panel">
        {keys.length === 0 ? (
          <Empty>
            No usable keys. Create one on the <a href="/dashboard/keys">Keys</a> page.
          </Empty>
        ) : (
          <table id="budgets-table">
            <thead>
              <tr>
                <th>Key</th>
                <th class="num">Used today</th>
                <th class="num">Daily budget</th>
                <th class="num">Left</th>
                <th>Used</th>
                <th>Requests/min</th>
                <th>Tokens/min</th>
              </tr>
            </thead>
            <tbody>
              {keys.map((k) => (
                <tr data-key={k.key.id}>
                  <td>{k.key.name}</td>
                  <td class="num" data-figure="used">
                    {count(k.used, 'token')}
                  </td>
                  <td class="num">
                    {k.limit === null ? 'no limit' : count(k.limit, 'token')} {sourceTag(k.resolved.sources.dailyTokens)}
                  </td>
                  <td class="num">{k.left === null ? 'n/a' : count(k.left, 'token')}</td>
                  <td>
                    {k.percent === null ? (
                      <span class="muted">no limit</span>
                    ) : (
                      <>
                        <progress class={`l${k.level}`} max="100" value={Math.min(100, k.percent).toFixed(1)}></progress>
                        <span class={`tag l${k.level}`}>{k.percent.toFixed(1)} %</span>
                      </>
                    )}
                  </td>
                  {limitCell(k.resolved.limits.rpm, k.resolved.sources.rpm, 'req/min')}
                  {limitCell(k.resolved.limits.tpm, k.resolved.sources.tpm, 'tokens/min')}
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
      <p class="muted">
        <span class="tag ok">key</span> the key's own limit, <span class="tag">default</span> the server's default (gateway limits set --default), <span class="tag">built-in</span> the gateway's built-in default.
        Used counts the tokens of today's answered requests, as GET /usage reports them.
      </p>
    </>
  )
}

export function ErrorsView(props: { range: UsageRangeView; query: Query; e: ErrorView }) {
  const { range, query, e } = props
  return (
    <>
      <h1>Errors</h1>
      <RangePicker path="/dashboard/errors" query={query} range={range} />
      {e.codes.length === 0 ? (
        <section class="panel">
          <Empty>No errors in {range.label}: every request was answered with a 2xx or 3xx.</Empty>
        </section>
      ) : (
        <>
          <section class="panel">
            <h2>Errors over time</h2>
            <BarChart
              title="Errors over time"
              unit="requests"
              labels={range.buckets}
              series={[
                { name: '4xx', className: 's5', values: e.series.map((s) => s.clientErrors) },
                { name: '429', className: 'warn', values: e.series.map((s) => s.rateLimited) },
                { name: '5xx', className: 'bad', values: e.series.map((s) => s.serverErrors) },
              ]}
            />
            <Legend series={[{ name: '4xx (not 429)', className: 's5' }, { name: '429 rate limited', className: 'warn' }, { name: '5xx', className: 'bad' }]} />
          </section>
          <section class="panel">
            <h2>By status and code</h2>
            <table id="errors-table">
              <thead>
                <tr>
                  <th>Status</th>
                  <th>Code</th>
                  <th class="num">Requests</th>
                  <th></th>
                </tr>
              </thead>
              <tbody>
                {e.codes.map((c) => (
                  <tr>
                    <td>{c.status}</td>
                    <td>{c.errorCode ?? '-'}</td>
                    <td class="num">{count(c.total, 'req', 'req')}</td>
                    <td>
                      <a href={href('/dashboard/log', { range: query.range, from: query.from, to: query.to, status: String(c.status) })}>Show in log</a>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </section>
        </>
      )}
    </>
  )
}

export function LogView(props: { range: UsageRangeView; query: Query; rows: LoggedRequest[]; next: string | null; keys: ApiKey[]; detail: { id: number; row: RequestRow } | null; logBodies: boolean }) {
  const { range, query, rows, next, keys, detail } = props
  return (
    <>
      <h1>Request log</h1>
      <RangePicker path="/dashboard/log" query={query} range={range} />
      <form class="filters" method="get" action="/dashboard/log">
        {['range', 'from', 'to'].filter((k) => query[k]).map((k) => (
          <input type="hidden" name={k} value={query[k]} />
        ))}
        <label>
          Key
          <select name="key">
            <option value="">any</option>
            {keys.map((k) => (
              <option value={k.id} selected={query.key === k.id}>
                {k.name}
              </option>
            ))}
          </select>
        </label>
        <label>
          Model
          <input name="model" value={query.model ?? ''} placeholder="any" />
        </label>
        <label>
          Status
          <input name="status" value={query.status ?? ''} placeholder="any" inputmode="numeric" size={5} />
        </label>
        <label>
          Route
          <input name="route" value={query.route ?? ''} placeholder="any" />
        </label>
        <button type="submit">Filter</button>
        <a class="button quiet" href={href('/dashboard/log', { range: query.range, from: query.from, to: query.to })}>
          Clear
        </a>
        <a class="button" id="export-csv" href={href('/dashboard/log.csv', query, { before: undefined, id: undefined })}>
          Export CSV
        </a>
      </form>
      {detail ? <Detail id={detail.id} row={detail.row} logBodies={props.logBodies} /> : null}
      <section class="panel">
        {rows.length === 0 ? (
          <Empty>No requests match these filters in {range.label}. Widen the range or clear the filters.</Empty>
        ) : (
          <table id="log-table">
            <thead>
              <tr>
                <th>Time (UTC)</th>
                <th>Key</th>
                <th>Route</th>
                <th>Model</th>
                <th class="num">Status</th>
                <th class="num">Tokens</th>
                <th class="num">Latency</th>
                <th class="num">Cost</th>
              </tr>
            </thead>
            <tbody>
              {rows.map(({ id, row }) => (
                <tr class={detail?.id === id ? 'sel' : ''} data-status={row.status}>
                  <td>
                    <a href={href('/dashboard/log', query, { id: String(id) })}>{row.timestamp.slice(0, 19).replace('T', ' ')}</a>
                  </td>
                  <td>{row.keyName ?? '-'}</td>
                  <td>{row.route}</td>
                  <td>{row.model ?? '-'}</td>
                  <td class="num">
                    <span class={row.status >= 400 ? 'tag bad' : 'tag ok'}>{row.status}</span>
                  </td>
                  <td class="num">{count(row.totalTokens, 'token')}</td>
                  <td class="num">{ms(row.latencyMs)}</td>
                  <td class="num">{usd(costUsd(row.costMicros))}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
        <div class="pager">
          {query.before ? <a href={href('/dashboard/log', query, { before: undefined, id: undefined })}>Newest</a> : null}
          {next !== null ? (
            <a id="older" href={href('/dashboard/log', query, { before: next, id: undefined })}>
              Older →
            </a>
          ) : null}
        </div>
      </section>
    </>
  )
}

function Detail(props: { id: number; row: RequestRow; logBodies: boolean }) {
  const r = props.row
  const fields: [string, string][] = [
    ['Time', when(r.timestamp)],
    ['Request id', r.requestId],
    ['Key', r.keyName ? `${r.keyName} (${r.keyId})` : '-'],
    ['Client IP', r.ip],
    ['Method and route', `${r.method} ${r.route}`],
    ['Model', r.model ?? '-'],
    ['Upstream', r.upstream ? `${r.upstream}${r.servedModel && r.servedModel !== r.model ? ` (as ${r.servedModel})` : ''}, ${count(r.attempts, 'attempt')}` : 'none called'],
    ['Status', `${r.status}${r.errorCode ? ` ${r.errorCode}` : ''}`],
    ['Tokens', `${num(r.promptTokens)} prompt + ${num(r.completionTokens)} completion = ${count(r.totalTokens, 'token')}${r.estimated ? ' (estimated)' : ''}`],
    ['Latency', `${ms(r.latencyMs)} total, ${ms(r.upstreamMs)} upstream, ${ms(r.queuedMs)} queued`],
    ['Streamed', r.streamed ? 'yes' : 'no'],
    ['Cost', usd(costUsd(r.costMicros))],
    ['User agent', r.userAgent ?? '-'],
    ['Budget day', r.day],
  ]
  return (
    <section class="panel" id="detail">
      <h2>Request #{props.id}</h2>
      <dl class="detail">
        {fields.map(([k, v]) => (
          <>
            <dt>{k}</dt>
            <dd>{v}</dd>
          </>
        ))}
      </dl>
      {props.logBodies && (r.requestBody || r.responseBody) ? (
        <>
          <h2>Request body</h2>
          <pre>{r.requestBody ?? '-'}</pre>
          <h2>Response body</h2>
          <pre>{r.responseBody ?? '-'}</pre>
        </>
      ) : (
        <p class="muted">Prompt and answer text are not shown: the gateway stores them only with --log-bodies.</p>
      )}
    </section>
  )
}

export interface KeysMessage {
  kind: 'ok' | 'error'
  text: string
  /** A new secret: shown in this one response, never again. */
  secret?: string
}

export function KeysView(props: { keys: ApiKey[]; secrets: Map<string, LiveSecret[]>; csrf: string; now: number; message: KeysMessage | null }) {
  const { keys, secrets, csrf, now, message } = props
  const Csrf = () => <input type="hidden" name="csrf" value={csrf} />
  return (
    <>
      <h1>Keys</h1>
      {message ? (
        <div class={`msg ${message.kind}`} role={message.kind === 'error' ? 'alert' : 'status'}>
          {message.text}
          {message.secret ? (
            <>
              <p>Copy it now: it is shown this once and cannot be shown again.</p>
              <div class="secret" id="new-secret">
                {message.secret}
              </div>
            </>
          ) : null}
        </div>
      ) : null}
      <section class="panel">
        <h2>Create a key</h2>
        <form method="post" action="/dashboard/keys" class="filters" id="create-key">
          <Csrf />
          <label>
            Name
            <input name="name" required maxlength={200} />
          </label>
          <label>
            Daily tokens
            <input name="dailyTokens" placeholder="default" size={10} />
          </label>
          <label>
            Requests/min
            <input name="rpm" placeholder="default" size={8} />
          </label>
          <label>
            Tokens/min
            <input name="tpm" placeholder="default" size={8} />
          </label>
          <label>
            Admin
            <input type="checkbox" name="admin" value="1" />
          </label>
          <button type="submit">Create key</button>
        </form>
        <p class="muted">Limits: a number, "off" for none, or empty to follow the defaults.</p>
      </section>
      <section class="panel">
        {keys.length === 0 ? (
          <Empty>No keys yet: create one above (or with gateway keys create --name NAME).</Empty>
        ) : (
          <table id="keys-table">
            <thead>
              <tr>
                <th>Name</th>
                <th>Prefix</th>
                <th>Role</th>
                <th>Status</th>
                <th>Created</th>
                <th>Limits (this key)</th>
                <th>Actions</th>
              </tr>
            </thead>
            <tbody>
              {keys.map((k) => {
                const status = keyStatus(k, now)
                return (
                  <tr data-key={k.id}>
                    <td>
                      {k.name}
                      <div class="muted">{k.id}</div>
                    </td>
                    <td>{(secrets.get(k.id) ?? []).map((secret) => `${secret.prefix}…`).join(' ') || '-'}</td>
                    <td>{k.admin ? 'admin' : 'user'}</td>
                    <td>
                      <span class={status === 'active' ? 'tag ok' : 'tag bad'}>{status}</span>
                    </td>
                    <td>{when(k.createdAt).slice(0, 10)}</td>
                    <td class="wrap">{limitsText(k) || <span class="muted">defaults</span>}</td>
                    <td>
                      {status === 'active' ? (
                        <div class="actions">
                          <form method="post" action={`/dashboard/keys/${k.id}/rotate`} class="inline">
                            <Csrf />
                            <select name="grace" class="small" aria-label="old secret stops">
                              <option value="0">old one stops now</option>
                              <option value="3600000">old one: 1 h more</option>
                              <option value="86400000">old one: 24 h more</option>
                            </select>
                            <button class="quiet" type="submit">
                              Rotate
                            </button>
                          </form>
                          <form method="post" action={`/dashboard/keys/${k.id}/revoke`} class="inline">
                            <Csrf />
                            <button class="danger" type="submit">
                              Revoke
                            </button>
                          </form>
                          <details>
                            <summary>Set limits</summary>
                            <form method="post" action={`/dashboard/keys/${k.id}/limits`} class="inline">
                              <Csrf />
                              <input name="dailyTokens" placeholder="daily tokens" size={9} aria-label="daily tokens" />
                              <input name="rpm" placeholder="rpm" size={5} aria-label="requests per minute" />
                              <input name="tpm" placeholder="tpm" size={6} aria-label="tokens per minute" />
                              <button class="quiet" type="submit">
                                Save
                              </button>
                            </form>
                          </details>
                        </div>
                      ) : (
                        <span class="muted">-</span>
                      )}
                    </td>
                  </tr>
                )
              })}
            </tbody>
          </table>
        )}
      </section>
      <p class="muted">Set limits: a number, "off" for no limit, "default" to follow the defaults again; empty fields stay as they are.</p>
    </>
  )
}

const LIMIT_UNITS: Record<string, string> = { dailyTokens: 'tokens/day', rpm: 'req/min', tpm: 'tokens/min', concurrency: 'in flight', maxTokens: 'max_tokens', maxInputChars: 'input chars' }

/** A key's own limits, with units: `2,000,000 tokens/day · 600 req/min`. */
function limitsText(k: ApiKey): string {
  return Object.entries(k.limits)
    .map(([name, v]) => (typeof v === 'string' ? `${v} when short` : `${v === null || v === undefined ? 'no' : num(v)} ${LIMIT_UNITS[name] ?? name}`))
    .join(' · ')
}

export function LoginView(props: { error: string | null }) {
  return (
    <div class="login">
      <section class="panel">
        <h1>LLM gateway dashboard</h1>
        <p class="sub">Log in with an admin API key. The key is checked once and never stored in the browser; a session cookie is.</p>
        {props.error ? (
          <div class="msg error" role="alert">
            {props.error}
          </div>
        ) : null}
        <form method="post" action="/dashboard/login">
          <label>
            Admin API key
            <input type="password" name="key" autocomplete="off" required autofocus />
          </label>
          <button type="submit">Log in</button>
        </form>
        <p class="muted">
          No admin key? Create one with <code>gateway keys create --name admin --admin</code>.
        </p>
      </section>
    </div>
  )
}
