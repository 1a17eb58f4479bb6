/** Secrets this short are not searched for: they would match ordinary text (and "" matches everywhere). */
const MIN_SECRET = 4

/**
 * An upstream's message made safe to show or log: each of `secrets` and anything key-shaped
 * (`sk-…`, `gw-…`) replaced by [redacted], control characters by spaces, cut at `max` characters.
 */
export function scrubSecrets(text: string, secrets: readonly string[], max: number): string {
  let out = text
  for (const s of secrets) if (s.length >= MIN_SECRET) out = out.split(s).join('[redacted]')
  return out
    .replace(/\b(sk|gw)-[A-Za-z0-9_*.-]{4,}/g, '[redacted]')
    .replace(/[\u0000-\u001f\u007f]/g, ' ')
    .slice(0, max)
}
