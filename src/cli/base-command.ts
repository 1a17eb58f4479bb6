import { Command, Flags, type Interfaces } from '@oclif/core'
import { systemClock, type Clock } from '../core/clock.js'
import { GatewayError } from '../core/errors.js'
import { KeyManager } from '../core/keys.js'
import { SqliteStore } from '../storage/sqlite/sqlite-store.js'
import { escapeControl } from './table.js'

export type CommandFlags<T extends typeof Command> = Interfaces.InferredFlags<(typeof BaseCommand)['baseFlags'] & T['flags']>
export type CommandArgs<T extends typeof Command> = Interfaces.InferredArgs<T['args']>

/** Exit codes scripts can rely on (documented in the README). */
export const EXIT = { ok: 0, failure: 1, usage: 2, notFound: 3, conflict: 4, storeBusy: 5 } as const

function exitCodeOf(err: unknown): number {
  if (err instanceof GatewayError) {
    if (err.status === 404) return EXIT.notFound
    if (err.status === 409) return EXIT.conflict
    if (err.status < 500) return EXIT.usage
    return EXIT.failure
  }
  const code = (err as { code?: unknown }).code
  if (typeof code === 'string' && code.startsWith('SQLITE_BUSY')) return EXIT.storeBusy
  const oclifExit = (err as { oclif?: { exit?: number } }).oclif?.exit
  return typeof oclifExit === 'number' ? oclifExit : EXIT.failure
}

/**
 * Shared flags (--db, --json), the store opened once and closed at the end, and every error
 * mapped to an exit code and, with --json, to `{"error":{"message","code"}}` on stdout.
 */
export abstract class BaseCommand<T extends typeof Command> extends Command {
  static override enableJsonFlag = true
  static override baseFlags = {
    db: Flags.string({ description: 'SQLite database file', env: 'GATEWAY_DB', default: './data/gateway.db', helpGroup: 'GLOBAL' }),
  }

  protected flags!: CommandFlags<T>
  protected args!: CommandArgs<T>
  protected clock: Clock = systemClock
  private opened: SqliteStore | null = null
  private keyManager: KeyManager | null = null

  public override async init(): Promise<void> {
    await super.init()
    const { args, flags } = await this.parse({
      flags: this.ctor.flags,
      baseFlags: (super.ctor as typeof BaseCommand).baseFlags,
      enableJsonFlag: this.ctor.enableJsonFlag,
      args: this.ctor.args,
      strict: this.ctor.strict,
    })
    this.flags = flags as CommandFlags<T>
    this.args = args as CommandArgs<T>
  }

  /** The store, opened (and migrated) on first use. */
  protected get store(): SqliteStore {
    this.opened ??= SqliteStore.open(this.flags.db)
    return this.opened
  }

  /** Key management over that store and this command's clock. */
  protected get keys(): KeyManager {
    this.keyManager ??= new KeyManager(this.store, this.clock)
    return this.keyManager
  }

  /** Human output: only when --json is off, with control characters made visible. */
  protected say(text: string): void {
    if (!this.jsonEnabled()) this.log(text)
  }

  protected safe(text: string): string {
    return escapeControl(text)
  }

  protected override async catch(err: Interfaces.CommandError): Promise<void> {
    // The reader of stdout went away (`| head -1`): nothing more to say, and not a failure.
    // (oclif already swallows the stream's own EPIPE event; this is the same error thrown.)
    if ((err as { code?: unknown }).code === 'EPIPE') {
      process.exitCode = EXIT.ok
      return
    }
    const exit = exitCodeOf(err)
    process.exitCode = exit
    const code = err instanceof GatewayError ? err.code : ((err as { code?: string }).code ?? 'error')
    if (this.jsonEnabled()) {
      this.logJson({ error: { message: err.message, code, exit } })
      return
    }
    this.logToStderr(`Error: ${escapeControl(err.message)}`)
  }

  protected override async finally(err: Error | undefined): Promise<void> {
    this.opened?.close()
    await super.finally(err)
  }
}
