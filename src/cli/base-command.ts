import { Command, Flags, type Interfaces } from '@oclif/core'
import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { systemClock, type Clock } from '../core/clock.js'
import { GatewayError } from '../core/errors.js'
import { KeyManager } from '../core/keys.js'
import { isBusy } from '../storage/sqlite/open.js'
import { isPostgresUrl } from '../storage/db-url.js'
import { openStore, type OpenedStore } from '../storage/open-store.js'
import { parseSwitch } from './switches.js'
import { translateError } from './system-errors.js'
import { escapeControl } from '../core/escape.js'

export type CommandFlags<T extends typeof Command> = Interfaces.InferredFlags<(typeof BaseCommand)['baseFlags'] & T['flags']>
export type CommandArgs<T extends typeof Command> = Interfaces.InferredArgs<T['args']>

/** Exit codes scripts can rely on (documented in the README). */
export const EXIT = { ok: 0, failure: 1, usage: 2, notFound: 3, conflict: 4, storeBusy: 5, requestsCut: 6 } as const

function exitCodeOf(err: unknown): number {
  if (err instanceof GatewayError) {
    if (err.status === 404) return EXIT.notFound
    if (err.status === 409) return EXIT.conflict
    if (err.status < 500) return EXIT.usage
    return EXIT.failure
  }
  if (isBusy(err)) return EXIT.storeBusy
  const oclifExit = (err as { oclif?: { exit?: number } }).oclif?.exit
  return typeof oclifExit === 'number' ? oclifExit : EXIT.failure
}

/** `text` with the control characters of the values a user gave (argv, environment) made visible, and its own layout kept. */
function escapeGiven(text: string, given: string[]): string {
  const risky = given.filter((v) => v !== escapeControl(v)).sort((a, b) => b.length - a.length)
  return risky.reduce((out, v) => out.split(v).join(escapeControl(v)), text)
}

/**
 * Shared flags (--db, --json), the store opened once and closed at the end, and every error
 * mapped to an exit code and, with --json, to `{"error":{"message","code"}}` on stdout.
 */
export abstract class BaseCommand<T extends typeof Command> extends Command {
  static override enableJsonFlag = true
  static override baseFlags = {
    db: Flags.string({ description: 'SQLite database file, or a postgres://user@host:port/db URL', env: 'GATEWAY_DB', default: './data/gateway.db', helpGroup: 'GLOBAL' }),
  }

  /** Whether this command may create the database when --db names no file (the others exit 3). */
  static createsDatabase = false

  protected flags!: CommandFlags<T>
  protected args!: CommandArgs<T>
  protected clock: Clock = systemClock
  private opened: OpenedStore | null = null
  private keyManager: KeyManager | null = null

  public override async init(): Promise<void> {
    await super.init()
    const { args, flags, raw } = await this.parse({
      flags: this.ctor.flags,
      baseFlags: (super.ctor as typeof BaseCommand).baseFlags,
      enableJsonFlag: this.ctor.enableJsonFlag,
      args: this.ctor.args,
      strict: this.ctor.strict,
    })
    // oclif reads a boolean's environment variable as on only for 1/true/yes/y and as off for
    // anything else; here on/off words both work and a typo is refused.
    const given = new Set(raw.filter((r) => r.type === 'flag').map((r) => (r as { flag: string }).flag))
    for (const [name, flag] of Object.entries({ ...this.ctor.flags, ...this.ctor.baseFlags })) {
      const value = flag.type === 'boolean' && flag.env && !given.has(name) ? process.env[flag.env] : undefined
      if (value) (flags as Record<string, unknown>)[name] = parseSwitch(value, flag.env!)
    }
    this.flags = flags as CommandFlags<T>
    this.args = args as CommandArgs<T>
  }

  /** The store, opened (and migrated) on first use; only a command that may create one makes a new file. */
  protected get store(): OpenedStore {
    const path = this.flags.db
    if (!this.opened && !this.mayCreateDatabase() && path !== ':memory:' && !isPostgresUrl(path) && !existsSync(path)) {
      throw new GatewayError(404, 'not_found_error', 'no_database', `no database at ${resolve(path)}`)
    }
    this.opened ??= openStore(path)
    return this.opened
  }

  /** Key management over that store and this command's clock. */
  protected get keys(): KeyManager {
    this.keyManager ??= new KeyManager(this.store, this.clock)
    return this.keyManager
  }

  /** Whether this run may create the database; a command with a read-only mode narrows it. */
  protected mayCreateDatabase(): boolean {
    return (this.ctor as unknown as typeof BaseCommand).createsDatabase
  }

  /** Human output: only when --json is off. Values in it (names, paths) go through escapeControl first. */
  protected say(text: string): void {
    if (!this.jsonEnabled()) this.log(text)
  }

  protected override async catch(raw: Interfaces.CommandError): Promise<void> {
    // The reader of stdout went away (`| head -1`): nothing more to say, and not a failure.
    // (oclif already swallows the stream's own EPIPE event; this is the same error thrown.)
    if ((raw as { code?: unknown }).code === 'EPIPE') {
      process.exitCode = EXIT.ok
      return
    }
    const err = translateError(raw, (this.flags as Record<string, unknown> | undefined) ?? {}) ?? raw
    const exit = exitCodeOf(err)
    process.exitCode = exit
    const code = err instanceof GatewayError ? err.code : ((err as { code?: string }).code ?? 'error')
    if (this.jsonEnabled()) {
      this.logJson({ error: { message: err.message, code, exit } })
      return
    }
    // Our own messages are one line, so any control character in them came from a value;
    // oclif's (parse errors) have a layout of their own, so only what the user gave is escaped.
    // An error made of several problems (an upstreams file) prints one line each.
    const problems = (err as { problems?: unknown }).problems
    if (Array.isArray(problems)) for (const p of problems) this.logToStderr(`Error: ${escapeControl(String(p))}`)
    else this.logToStderr(`Error: ${err instanceof GatewayError ? escapeControl(err.message) : escapeGiven(err.message, this.givenValues())}`)
  }

  /** What the user typed or set: argv tokens (and what follows a `=`), and this command's environment variables. */
  private givenValues(): string[] {
    const env = Object.values({ ...this.ctor.flags, ...this.ctor.baseFlags }).flatMap((f) => (f.env && process.env[f.env] ? [process.env[f.env]!] : []))
    return [...this.argv, ...this.argv.map((a) => a.slice(a.indexOf('=') + 1)), ...env]
  }

  protected override async finally(err: Error | undefined): Promise<void> {
    await this.opened?.close()
    await super.finally(err)
  }
}
