import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type BrowserContext, type Page } from 'playwright-core'

export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic']

export interface TestBrowser {
  context: BrowserContext
  /** A new page whose console errors, page errors and CSP violations land in `problems`. */
  page(): Promise<Page>
  /** Everything that went wrong in any page: a browser test ends by expecting it empty. */
  problems: string[]
  /** Removes the problems matching `pattern` (an answer the test expects, e.g. a 401 page) and says how many there were. */
  take(pattern: RegExp): number
  close(): Promise<void>
}

/** Debian's chromium, headless, in a fresh profile. */
export async function openBrowser(options: { viewport?: { width: number; height: number } } = {}): Promise<TestBrowser> {
  const dir = mkdtempSync(join(tmpdir(), 'gw-chromium-'))
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: '/usr/bin/chromium',
    args: CHROMIUM_ARGS,
    headless: true,
    locale: 'en-US',
    viewport: options.viewport ?? { width: 1280, height: 800 },
  })
  context.setDefaultTimeout(10_000) // a missing element fails the test with its name, before vitest's timeout
  const problems: string[] = []
  // A CSP violation also reaches the console, but the event says so plainly, whatever the page does.
  await context.addInitScript({ content: "document.addEventListener('securitypolicyviolation', (e) => console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI))" })
  return {
    context,
    problems,
    take(pattern) {
      const before = problems.length
      problems.splice(0, problems.length, ...problems.filter((p) => !pattern.test(p)))
      return before - problems.length
    },
    async page() {
      const page = await context.newPage()
      page.on('console', (m) => {
        if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`)
      })
      page.on('pageerror', (e) => problems.push(`page error: ${e.message}`))
      return page
    },
    async close() {
      await context.close()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
