/** `{...a, ...b}` where a property of `b` set to undefined removes it. */
export function overlay<T extends object>(a: T, b: T): T {
  const out = { ...a, ...b } as Record<string, unknown>
  for (const [k, v] of Object.entries(out)) if (v === undefined) delete out[k]
  return out as T
}
