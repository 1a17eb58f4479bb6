import { Agent, fetch as undiciFetch } from 'undici'

/**
 * The upstream transport: undici's fetch over one pooled keep-alive Agent, redirects never
 * followed (an upstream redirect must not move where the gateway connects).
 */
export function createPooledFetch(options: { connections?: number } = {}): { fetch: typeof fetch; close(): Promise<void> } {
  const dispatcher = new Agent({ keepAliveTimeout: 30_000, keepAliveMaxTimeout: 600_000, connections: options.connections ?? 256 })
  const pooled = ((input: Parameters<typeof fetch>[0], init?: RequestInit) =>
    undiciFetch(input as string, { ...(init as object), dispatcher, redirect: 'manual' })) as unknown as typeof fetch
  return { fetch: pooled, close: () => dispatcher.close() }
}
