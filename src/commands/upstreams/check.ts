import { Flags } from '@oclif/core'
import { BaseCommand, EXIT } from '../../cli/base-command.js'
import { parseDuration } from '../../cli/durations.js'
import { renderTable } from '../../cli/table.js'
import { checkUpstream } from '../../cli/upstream-check.js'
import { readUpstreamSetup, upstreamsFlag } from '../../cli/upstream-setup.js'

export default class UpstreamsCheck extends BaseCommand<typeof UpstreamsCheck> {
  static override summary = 'Check each upstream: list its models and send it a 1-token completion'
  static override description = 'Talks to the upstreams directly (not through a gateway) with the official openai SDK, with the keys from the environment, and reports each one\'s latency and errors. Exit 1 when one fails.'
  static override examples = ['<%= config.bin %> upstreams check --upstreams upstreams.yaml', '<%= config.bin %> upstreams check --model gpt-4o-mini --json']
  static override flags = {
    upstreams: upstreamsFlag,
    model: Flags.string({ description: 'model to ask every upstream for (default: the first each serves)' }),
    timeout: Flags.string({ description: 'longest wait per call', default: '30s' }),
  }

  async run() {
    const setup = readUpstreamSetup(this.flags.upstreams, process.env, true)
    const timeoutMs = parseDuration(this.flags.timeout, '--timeout')
    const results = await Promise.all(setup.config.upstreams.map((u) => checkUpstream(u, setup.keys[u.name] ?? '', { model: this.flags.model, timeoutMs })))
    this.say(
      renderTable(
        ['NAME', 'OK', 'MODELS', 'LIST MS', 'MODEL', 'COMPLETION MS', 'ERROR'],
        results.map((r) => [r.name, r.ok ? 'yes' : 'NO', r.models?.length ?? null, r.list_ms, r.model, r.completion_ms, r.list_error ?? r.completion_error ?? (r.model === null ? 'no model to ask' : null)]),
      ),
    )
    if (results.some((r) => !r.ok)) process.exitCode = EXIT.failure
    return { source: setup.source, ok: results.every((r) => r.ok), upstreams: results }
  }
}
