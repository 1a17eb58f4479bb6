import { Flags } from '@oclif/core'
import { BaseCommand } from '../../cli/base-command.js'
import { gatewayUnreachable } from '../../cli/gateway-client.js'
import { renderTable, toSecond } from '../../cli/table.js'
import { readUpstreamSetup, upstreamsFlag } from '../../cli/upstream-setup.js'
import { GatewayError } from '../../core/errors.js'

interface LiveUpstream {
  name: string
  state: string
  failuresInRow: number
  coolingUntil: string | null
  inflight: number
  lastSuccessAt: string | null
  lastFailure: { at: string; message: string } | null
}

export default class Upstreams extends BaseCommand<typeof Upstreams> {
  static override summary = 'The upstreams, their models and aliases; with --url, each one\'s live state'
  static override description = `Reads the upstreams file (or OPENAI_API_KEY / OPENAI_BASE_URL) as serve does, and shows each upstream, whether its key is set (never the key), and the aliases.
The cooldown state lives in the running gateway's memory: with --url and an admin --key, it is read from its /health?deep=1.`
  static override examples = ['<%= config.bin %> upstreams --upstreams upstreams.yaml', 'GATEWAY_KEY=gw-... <%= config.bin %> upstreams --upstreams upstreams.yaml --url http://127.0.0.1:8080']
  static override flags = {
    upstreams: upstreamsFlag,
    url: Flags.string({ description: 'a running gateway whose live state to show (needs an admin --key)' }),
    key: Flags.string({ description: 'admin key for --url', env: 'GATEWAY_KEY' }),
  }

  async run() {
    const setup = readUpstreamSetup(this.flags.upstreams, process.env, false)
    const live = this.flags.url ? await this.liveState(this.flags.url) : null
    const upstreams = setup.config.upstreams.map((u) => ({
      name: u.name,
      provider: u.provider,
      base_url: u.baseURL,
      models: u.models,
      weight: u.weight,
      max_inflight: u.maxInflight,
      api_key_env: u.apiKeyEnv,
      key_set: u.apiKeyEnv === null ? null : Boolean(process.env[u.apiKeyEnv]?.trim()),
      ...(u.provider === 'azure' ? { api_version: u.apiVersion, deployments: u.deployments } : {}),
      ...(live ? { live: live.get(u.name) ?? null } : {}),
    }))
    this.say(`Upstreams from ${setup.source}:`)
    this.say(
      renderTable(
        ['NAME', 'PROVIDER', 'BASE URL', 'MODELS', 'WEIGHT', 'KEY', ...(live ? ['STATE', 'FAILS', 'COOLING UNTIL', 'IN FLIGHT', 'LAST FAILURE'] : [])],
        upstreams.map((u) => {
          const l = live?.get(u.name)
          return [
            u.name,
            u.provider,
            u.base_url,
            u.models ? u.models.join(', ') : '(its /models)',
            u.weight,
            u.api_key_env === null ? 'none' : `${u.api_key_env} (${u.key_set ? 'set' : 'NOT SET'})`,
            ...(live ? [l?.state ?? 'unknown', l?.failuresInRow ?? null, toSecond(l?.coolingUntil ?? null), l?.inflight ?? null, l?.lastFailure ? `${toSecond(l.lastFailure.at)} ${l.lastFailure.message}` : null] : []),
          ]
        }),
      ),
    )
    const aliases = Object.entries(setup.config.aliases).map(([alias, targets]) => ({ alias, targets }))
    if (aliases.length > 0) {
      this.say('\nAliases (tried in order):')
      this.say(renderTable(['ALIAS', 'UPSTREAM/MODEL'], aliases.map((a) => [a.alias, a.targets.map((t) => `${t.upstream}/${t.model}`).join(' → ')])))
    }
    this.say(`\nCooldown: ${setup.config.cooldown.failures} failures in a row → skipped for ${setup.config.cooldown.ms / 1000}s, then one request tries it.`)
    return { source: setup.source, upstreams, aliases, cooldown: { failures: setup.config.cooldown.failures, seconds: setup.config.cooldown.ms / 1000 } }
  }

  /** Each upstream's routing state as the running gateway reports it. */
  private async liveState(url: string): Promise<Map<string, LiveUpstream>> {
    if (!this.flags.key) throw new GatewayError(400, 'invalid_request_error', 'invalid_request', '--url needs an admin key: --key or GATEWAY_KEY', { param: 'key' })
    let res: Response
    try {
      res = await fetch(new URL('/health?deep=1', url), { headers: { authorization: `Bearer ${this.flags.key}` }, signal: AbortSignal.timeout(10_000) })
    } catch (err) {
      throw gatewayUnreachable(url, err)
    }
    const body = (await res.json().catch(() => null)) as { error?: { message?: string; code?: string }; upstream?: { upstreams?: LiveUpstream[] } } | null
    if (!res.ok) throw new GatewayError(res.status, 'invalid_request_error', 'invalid_request', `The gateway refused: ${body?.error?.message ?? `HTTP ${res.status}`}`, { upstreamCode: body?.error?.code })
    return new Map((body?.upstream?.upstreams ?? []).map((u) => [u.name, u]))
  }
}
