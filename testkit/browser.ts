// A headless browser for the tests: Debian's chromium (apt-get install chromium; .ci/run
// installs it), driven by puppeteer-core, which brings no browser of its own.
import { execFileSync } from 'node:child_process';
import puppeteer, { type Browser } from 'puppeteer-core';

const INSTALL_HINT = 'install it with `apt-get install -y --no-install-recommends chromium` (.ci/run does)';

/** The chromium on PATH (CHROMIUM_PATH overrides); throws, saying how to install it, when there is none. */
export function chromiumPath(): string {
  if (process.env.CHROMIUM_PATH) return process.env.CHROMIUM_PATH;
  try {
    return execFileSync('sh', ['-c', 'command -v chromium'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    throw new Error(`no chromium on PATH: ${INSTALL_HINT}`);
  }
}

/**
 * Launches chromium headless. The tests run as root, where chromium refuses to start with its
 * sandbox: --no-sandbox. Close it with closeBrowser (or browser.close()).
 */
export async function launchBrowser(extraArgs: string[] = []): Promise<Browser> {
  return puppeteer.launch({
    executablePath: chromiumPath(),
    headless: true,
    args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', ...extraArgs],
  });
}

/** Closes `browser`, killing its process if it does not close within timeoutMs. */
export async function closeBrowser(browser: Browser, timeoutMs = 5_000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const closed = browser.close().then(() => true, () => false);
  const inTime = await Promise.race([closed, new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)))]);
  clearTimeout(timer);
  if (!inTime) browser.process()?.kill('SIGKILL');
}

/** Runs `fn` with a fresh browser, closed afterwards whatever `fn` does. */
export async function withBrowser<T>(fn: (browser: Browser) => Promise<T>): Promise<T> {
  const browser = await launchBrowser();
  try {
    return await fn(browser);
  } finally {
    await closeBrowser(browser);
  }
}
