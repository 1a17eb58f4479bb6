import { badRequest } from '../core/errors.js'

const ON = ['1', 'true', 'yes', 'y', 'on']
const OFF = ['0', 'false', 'no', 'n', 'off', 'none']

/** True when a value given for a path or a switch means "off" (`off`, `none`, `false`, `0`, `no`). */
export function meansOff(text: string | undefined): boolean {
  return text !== undefined && OFF.includes(text.trim().toLowerCase())
}

/** An environment variable's on/off value; anything else is refused rather than read as off. */
export function parseSwitch(text: string, name: string): boolean {
  const t = text.trim().toLowerCase()
  if (ON.includes(t)) return true
  if (OFF.includes(t)) return false
  throw badRequest(`${name}=${text} is not on or off: use 1/true/yes/on or 0/false/no/off`, name)
}
