// Headless Chromium for the dashboard tests: Debian's /usr/bin/chromium driven by
// playwright-core (a dev dependency, loaded only when asked for). `chromiumSkip` is the
// reason to skip when either is missing, so a machine without them skips instead of failing.
import { existsSync } from 'node:fs';
import type { TestContext } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { waitFor } from './wait-for.js';

export const CHROMIUM = '/usr/bin/chromium';

type Playwright = typeof import('playwright-core');

let playwright: Playwright | null = null;
let missing: string | false = false;
if (!existsSync(CHROMIUM)) missing = `${CHROMIUM} is not installed (apt-get install chromium)`;
else {
  try {
    playwright = await import('playwright-core');
  } catch (err) {
    missing = `playwright-core cannot be loaded (npm ci installs it): ${(err as Error).message}`;
  }
}

/** false when the browser tests can run; otherwise why they are skipped. */
export const chromiumSkip: string | false = missing;

/**
 * A page in a fresh browser, closed in t.after. `problems` collects page errors, console
 * errors (CSP violations among them) and any request to another origin than the node's.
 */
export async function openPage(t: TestContext): Promise<{ page: Page; problems: string[] }> {
  if (playwright === null) throw new Error(`no browser: ${String(missing)}`);
  const browser: Browser = await playwright.chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  t.after(() => browser.close());
  const context = await browser.newContext({ viewport: { width: 1366, height: 900 }, locale: 'en-US' });
  const page = await context.newPage();
  const problems: string[] = [];
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()}`);
  });
  page.on('request', (r) => {
    if (!r.url().startsWith('http://127.0.0.1:') && !r.url().startsWith('data:')) problems.push(`external request: ${r.url()}`);
  });
  return { page, problems };
}

export const testIdText = (page: Page, id: string): Promise<string> => page.getByTestId(id).innerText();

/** Wait until the element's text satisfies `pred`; returns that text. */
export async function waitForTestIdText(page: Page, id: string, pred: (s: string) => boolean, what: string, timeoutMs = 5000): Promise<string> {
  let last = '';
  await waitFor(what, async () => pred((last = await testIdText(page, id))), { timeoutMs, intervalMs: 50, diag: () => `[data-testid=${id}] is ${JSON.stringify(last)}` });
  return last;
}
