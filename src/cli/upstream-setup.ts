import { Flags } from '@oclif/core'
import type { LoadedUpstreams, UpstreamSpec } from '../core/routing/config.js'
import { DEFAULT_COOLDOWN } from '../core/routing/config.js'
import { checkBaseUrl } from '../upstream/check.js'
import { DEFAULT_BASE_URL, DEFAULT_UPSTREAM_NAME } from '../upstream/create.js'
import { loadUpstreamsFile } from './upstreams-file.js'

export const upstreamsFlag = Flags.string({ description: 'upstreams file, as `serve --upstreams` takes it (default: the one upstream of OPENAI_API_KEY / OPENAI_BASE_URL)', env: 'GATEWAY_UPSTREAMS' })

/** The upstreams `serve` would use with these settings: the file's, or the one of OPENAI_API_KEY / OPENAI_BASE_URL. */
export function readUpstreamSetup(file: string | undefined, env: NodeJS.ProcessEnv, needKeys: boolean): LoadedUpstreams & { source: string } {
  if (file) return { ...loadUpstreamsFile(file, env, { needKeys }), source: file }
  const key = env.OPENAI_API_KEY?.trim()
  const spec: UpstreamSpec = {
    name: DEFAULT_UPSTREAM_NAME,
    provider: 'openai',
    baseURL: checkBaseUrl(env.OPENAI_BASE_URL) ?? DEFAULT_BASE_URL,
    apiKeyEnv: 'OPENAI_API_KEY',
    models: null,
    weight: 1,
    maxInflight: null,
    timeoutMs: null,
    apiVersion: null,
    deployments: {},
  }
  return { config: { upstreams: [spec], aliases: {}, cooldown: DEFAULT_COOLDOWN }, keys: key ? { [spec.name]: key } : {}, source: 'environment (OPENAI_API_KEY, OPENAI_BASE_URL)' }
}
