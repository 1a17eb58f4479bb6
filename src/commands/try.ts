import { Args, Flags } from '@oclif/core'
import OpenAI from 'openai'
import { BaseCommand } from '../cli/base-command.js'
import { gatewayUnreachable } from '../cli/gateway-client.js'
import { GatewayError } from '../core/errors.js'

export default class Try extends BaseCommand<typeof Try> {
  static override summary = 'Send a prompt through a running gateway and stream the answer'
  static override description = 'A deployment smoke test: the official openai SDK, pointed at the gateway with a gateway key, streams one chat completion. With --json the answer is returned whole.'
  static override examples = ['GATEWAY_KEY=gw-... <%= config.bin %> try "Say hello"', '<%= config.bin %> try --url http://gateway:8080 --key gw-... --model fast "Say hello"']
  static override args = { prompt: Args.string({ description: 'the user message', required: true }) }
  static override flags = {
    url: Flags.string({ description: 'the gateway', env: 'GATEWAY_URL', default: 'http://127.0.0.1:8080' }),
    key: Flags.string({ description: 'a gateway key', env: 'GATEWAY_KEY', required: true }),
    model: Flags.string({ description: 'model or alias', env: 'GATEWAY_MODEL', default: 'gpt-4o-mini' }),
    'max-tokens': Flags.integer({ description: 'cap on the answer', default: 200, min: 1 }),
  }

  async run() {
    const client = new OpenAI({ apiKey: this.flags.key, baseURL: new URL('/v1', this.flags.url).href, maxRetries: 0, logLevel: 'off' })
    const started = performance.now()
    let content = ''
    let usage: OpenAI.CompletionUsage | null = null
    let requestId: string | null = null
    try {
      const { data: stream, response } = await client.chat.completions
        .create({ model: this.flags.model, messages: [{ role: 'user', content: this.args.prompt }], max_tokens: this.flags['max-tokens'], stream: true, stream_options: { include_usage: true } })
        .withResponse()
      requestId = response.headers.get('x-request-id')
      for await (const chunk of stream) {
        const delta = chunk.choices[0]?.delta?.content ?? ''
        content += delta
        if (delta && !this.jsonEnabled()) process.stdout.write(printable(delta))
        if (chunk.usage) usage = chunk.usage
      }
    } catch (err) {
      throw toGatewayError(err, this.flags.url)
    }
    const ms = Math.round(performance.now() - started)
    if (!this.jsonEnabled()) process.stdout.write('\n')
    this.say(`(${this.flags.model}, ${usage ? `${usage.total_tokens} tokens, ` : ''}${ms} ms${requestId ? `, request ${requestId}` : ''})`)
    return { model: this.flags.model, content, usage, ms, request_id: requestId }
  }
}

/** The gateway's refusal as our error (its status, its code), or "could not reach it". */
function toGatewayError(err: unknown, url: string): GatewayError {
  if (err instanceof OpenAI.APIError && err.status !== undefined) {
    const error = (err.error ?? {}) as { message?: string; code?: string; type?: string }
    return new GatewayError(err.status, 'invalid_request_error', 'invalid_request', `The gateway answered ${err.status}: ${error.message ?? err.message}`, { upstreamCode: error.code ?? undefined })
  }
  if (err instanceof OpenAI.APIError && err.error && typeof err.error === 'object' && 'code' in err.error) {
    // An error event mid-stream (the answer was cut).
    const error = err.error as { message?: string; code?: string }
    return new GatewayError(502, 'upstream_error', 'upstream_error', `The answer broke off: ${error.message ?? err.message}`, { upstreamCode: error.code ?? undefined })
  }
  return gatewayUnreachable(url, err)
}

/** Model text for a terminal: line breaks and tabs kept, other control characters (escape sequences) dropped. */
function printable(text: string): string {
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, '')
}
