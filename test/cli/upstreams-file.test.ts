/** The upstreams file as `serve --upstreams` reads it: what it accepts, and one line per problem. */
import { describe, expect, it } from 'vitest'
import { parseUpstreams, UpstreamsFileError } from '../../src/cli/upstreams-file.js'

const problems = (text: string): string[] => {
  try {
    parseUpstreams(text, 'u.yaml')
  } catch (err) {
    if (err instanceof UpstreamsFileError) return err.problems
    throw err
  }
  return []
}

describe('the upstreams file', () => {
  it('reads the issue\'s example (YAML) with its defaults', () => {
    const config = parseUpstreams(
      `upstreams:
  - name: openai
    base_url: https://api.openai.com/v1/
    api_key_env: OPENAI_API_KEY
    models: [gpt-4o-mini, gpt-4o]
    weight: 1
    max_inflight: 64
    timeout: 600s
  - name: azure-eu
    provider: azure
    base_url: https://example.openai.azure.com
    api_key_env: AZURE_KEY
    api_version: 2024-10-21
    deployments: {gpt-4o-mini: my-4o-mini-deployment}
  - name: local
    base_url: http://127.0.0.1:11434/v1
    models: [llama3]
models:
  fast:
    - {upstream: local, model: llama3}
    - {upstream: openai, model: gpt-4o-mini}
`,
      'u.yaml',
    )
    expect(config.upstreams.map((u) => [u.name, u.provider, u.baseURL, u.models, u.weight, u.maxInflight, u.timeoutMs, u.apiKeyEnv])).toEqual([
      ['openai', 'openai', 'https://api.openai.com/v1', ['gpt-4o-mini', 'gpt-4o'], 1, 64, 600_000, 'OPENAI_API_KEY'],
      ['azure-eu', 'azure', 'https://example.openai.azure.com', ['gpt-4o-mini'], 1, null, null, 'AZURE_KEY'],
      ['local', 'openai', 'http://127.0.0.1:11434/v1', ['llama3'], 1, null, null, null],
    ])
    expect(config.upstreams[1]).toMatchObject({ apiVersion: '2024-10-21', deployments: { 'gpt-4o-mini': 'my-4o-mini-deployment' } })
    expect(config.aliases).toEqual({ fast: [{ upstream: 'local', model: 'llama3' }, { upstream: 'openai', model: 'gpt-4o-mini' }] })
    expect(config.cooldown).toEqual({ failures: 3, ms: 30_000 })
  })

  it('reads JSON too', () => {
    const config = parseUpstreams(JSON.stringify({ upstreams: [{ name: 'a', base_url: 'http://127.0.0.1:9/v1' }], cooldown: { failures: 5, duration: '1m' } }), 'u.json')
    expect(config.upstreams[0]).toMatchObject({ name: 'a', models: null, weight: 1 })
    expect(config.cooldown).toEqual({ failures: 5, ms: 60_000 })
  })

  it('names the line and the field of each problem, in file order', () => {
    expect(
      problems(`upstreams:
  - name: az
    provider: azure
    base_url: https://x.openai.azure.com
  - name: b
    base_url: http://b/v1
    models: [m]
    wieght: 2
models:
  m: [{upstream: b, model: m}]
  other: [{upstream: b, model: not-listed}]
cooldown: {failures: 0}
`),
    ).toEqual([
      // A missing field: the line of the upstream that lacks it.
      'u.yaml:2: upstreams[0].api_version: an Azure upstream needs api_version, e.g. 2024-10-21',
      'u.yaml:2: upstreams[0]: an Azure upstream needs models or deployments: it has no model list to ask',
      'u.yaml:8: upstreams[1].wieght: unknown field (expected one of: name, provider, base_url, api_key_env, models, weight, max_inflight, timeout, api_version, deployments)',
      'u.yaml:10: models.m: "m" is also a model an upstream serves; an alias needs its own name',
      'u.yaml:11: models.other[0].model: upstream "b" does not list "not-listed" in its models',
      'u.yaml:12: cooldown.failures: must be a whole number of at least 1',
    ])
  })

  it('a YAML syntax error names its line', () => {
    expect(problems('upstreams:\n  - name: a\n    models: [a, b\n')[0]).toMatch(/^u\.yaml:\d+: /)
  })

  it.each([
    ['an api_key field', 'api_key: abc'],
    ['a token field', 'token: abc'],
    ['an OpenAI key as a value', 'models: [sk-proj-0123456789abcdefghij]'],
    ['an Azure key as a value', 'models: [0123456789abcdef0123456789abcdef]'],
  ])('refuses %s', (_name, line) => {
    const found = problems(`upstreams:\n  - name: a\n    base_url: http://a/v1\n    ${line}\n`)
    expect(found).toHaveLength(1)
    expect(found[0]).toMatch(/^u\.yaml:4: upstreams\[0\]\.\w+(\[0\])?: .*(environment|looks like a key)/)
  })

  it('accepts long deployment names (dashes are not key-shaped)', () => {
    expect(problems(`upstreams:\n  - {name: az, provider: azure, base_url: "https://x", api_version: "2024-10-21", deployments: {gpt-4o-mini: gpt-4o-mini-2024-07-18-deployment-west-europe}}\n`)).toEqual([])
  })
})
