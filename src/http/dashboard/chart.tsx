/**
 * Stacked bar charts drawn on the server as SVG: no script, nothing for the CSP to allow.
 * Colours come from CSS classes (s0..s7, bad, warn), so dark mode restyles them.
 */
export interface ChartSeries {
  name: string
  className: string
  values: number[]
}

const H = 220
const PAD_LEFT = 56
const PAD_BOTTOM = 22

/** `width` is the drawing's own width: about the width it is shown at, so its text keeps its size. */
export function BarChart(props: { labels: string[]; series: ChartSeries[]; unit: string; title: string; width?: number }) {
  const { labels, series, unit, title } = props
  const W = props.width ?? 1100
  const n = labels.length
  const stacked = labels.map((_, i) => series.reduce((a, s) => a + s.values[i], 0))
  const max = Math.max(1, ...stacked)
  const plotW = W - PAD_LEFT - 8
  const plotH = H - PAD_BOTTOM - 8
  const slot = plotW / Math.max(1, n)
  const barW = Math.max(1, slot * 0.75)
  const y = (v: number) => 8 + plotH - (v / max) * plotH
  const every = Math.max(1, Math.ceil(n / 8)) // at most 8 axis labels
  return (
    <svg class="chart" viewBox={`0 0 ${W} ${H}`} role="img" aria-label={title}>
      <line class="axis" x1={PAD_LEFT} y1={8 + plotH} x2={W - 8} y2={8 + plotH} />
      <line class="axis" x1={PAD_LEFT} y1={8} x2={PAD_LEFT} y2={8 + plotH} />
      <text x={PAD_LEFT - 6} y={14} text-anchor="end">{short(max)}</text>
      <text x={PAD_LEFT - 6} y={8 + plotH} text-anchor="end">0</text>
      {labels.map((label, i) => {
        let base = 0
        const x = PAD_LEFT + i * slot + (slot - barW) / 2
        return (
          <g>
            {series.map((s) => {
              const v = s.values[i]
              if (v <= 0) return null
              const top = y(base + v)
              const h = y(base) - top
              base += v
              return (
                <rect class={s.className} x={x.toFixed(1)} y={top.toFixed(1)} width={barW.toFixed(1)} height={Math.max(0.5, h).toFixed(1)}>
                  <title>{`${label} · ${s.name}: ${v.toLocaleString('en-US')} ${unit}`}</title>
                </rect>
              )
            })}
            {i % every === 0 ? (
              <text x={(x + barW / 2).toFixed(1)} y={H - 6} text-anchor="middle">
                {axisLabel(label)}
              </text>
            ) : null}
          </g>
        )
      })}
    </svg>
  )
}

export function Legend(props: { series: { name: string; className: string }[] }) {
  return (
    <div class="legend">
      {props.series.map((s) => (
        <span>
          <span class={`dot ${s.className}`}></span>
          {s.name}
        </span>
      ))}
    </div>
  )
}

/** 12,345 → 12.3k, for the axis only (tables show exact figures). */
function short(v: number): string {
  if (v >= 1e6) return `${(v / 1e6).toFixed(1)}M`
  if (v >= 1e3) return `${(v / 1e3).toFixed(1)}k`
  return String(Math.round(v))
}

/** A day as MM-DD, a time bucket as HH:MM. */
function axisLabel(bucket: string): string {
  return bucket.length === 10 ? bucket.slice(5) : bucket.slice(11, 16)
}
