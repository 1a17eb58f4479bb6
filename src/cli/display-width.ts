/**
 * Terminal columns a string takes: East Asian wide and fullwidth characters and emoji take
 * two, combining marks, zero-width joiners and variation selectors none, the rest one.
 * A small table instead of a dependency (string-width needs Node 22).
 */
const ZERO = /[\p{Mn}\p{Me}\u200b-\u200f\u2060\ufe00-\ufe0f]|\p{Cf}/u
const EMOJI = /\p{Emoji_Presentation}/u

/** Wide and fullwidth ranges of Unicode's EastAsianWidth.txt (W and F), merged. */
const WIDE: [number, number][] = [
  [0x1100, 0x115f],
  [0x231a, 0x231b],
  [0x2329, 0x232a],
  [0x2e80, 0x303e],
  [0x3041, 0x33ff],
  [0x3400, 0x4dbf],
  [0x4e00, 0x9fff],
  [0xa000, 0xa4cf],
  [0xa960, 0xa97f],
  [0xac00, 0xd7a3],
  [0xf900, 0xfaff],
  [0xfe10, 0xfe19],
  [0xfe30, 0xfe6f],
  [0xff00, 0xff60],
  [0xffe0, 0xffe6],
  [0x16fe0, 0x18cff],
  [0x1b000, 0x1b2ff],
  [0x1f200, 0x1f2ff],
  [0x20000, 0x3fffd],
]

function charWidth(ch: string): number {
  if (ZERO.test(ch)) return 0
  if (EMOJI.test(ch)) return 2
  const cp = ch.codePointAt(0)!
  for (const [lo, hi] of WIDE) {
    if (cp < lo) return 1
    if (cp <= hi) return 2
  }
  return 1
}

export function displayWidth(text: string): number {
  let width = 0
  for (const ch of text) width += charWidth(ch)
  return width
}
