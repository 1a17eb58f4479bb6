import { toConfiguredId, type Hook } from '@oclif/core'
import { escapeControl } from '../../core/escape.js'

/** Edits (insert, delete, substitute) from a to b. */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1))
    prev = row
  }
  return prev[b.length]
}

/**
 * `gateway keys lst`: one plain error naming the closest command in space syntax, exit 2.
 * It never prompts (unlike @oclif/plugin-not-found on a terminal), so a script that
 * mistypes a command fails the same way everywhere.
 */
const hook: Hook.CommandNotFound = async function (opts) {
  const { config } = opts
  const ids = config.commands.filter((c) => !c.hidden).flatMap((c) => [c.id, ...c.aliases])
  const typed = escapeControl(toConfiguredId(opts.id, config))
  const ranked = ids.map((id) => ({ id, d: distance(opts.id, id) })).sort((a, b) => a.d - b.d)
  const best = ranked[0] && ranked[0].d <= Math.max(2, Math.floor(opts.id.length / 3)) ? ranked[0].id : null
  const topic = opts.id.split(':')[0]
  const help = `${config.bin} ${config.findTopic(topic) ? `${topic} ` : ''}--help`
  const lines = [`"${config.bin} ${typed}" is not a command.`, ...(best ? [`Did you mean "${config.bin} ${toConfiguredId(best, config)}"?`] : []), `See "${help}" for the list.`]
  // Written as is: this.error would wrap the lines at 80 columns and split the suggestion.
  if (opts.argv?.includes('--json')) process.stdout.write(`${JSON.stringify({ error: { message: lines.join(' '), code: 'command_not_found', exit: 2 } }, null, 2)}\n`)
  else process.stderr.write(`Error: ${lines.join('\n')}\n`)
  this.exit(2)
}

export default hook
