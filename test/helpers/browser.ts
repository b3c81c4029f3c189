// Headless Chromium for the browser tests: Debian's `chromium` (or $CHROMIUM_PATH) driven by
// puppeteer-core (which downloads no browser), pages served by scripts/web-server.ts.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { startWebServer, type WebServer } from '../../scripts/web-server.js';
import { REPO_ROOT } from './fixture.js';

/** The Chromium binary, or undefined when none is installed. */
export function findChromium(): string | undefined {
  const candidates = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'];
  return candidates.find((p): p is string => !!p && existsSync(p));
}

export interface BrowserSession {
  browser: Browser;
  server: WebServer;
  /** A fresh page at the server's blank test page, with console errors collected. */
  newPage(path?: string): Promise<{ page: Page; errors: string[] }>;
  close(): Promise<void>;
}

/** Serves dist/web at /, models/ at /models/ and test/fixtures at /fixtures/; starts Chromium. */
export async function startBrowserSession(executablePath: string, extraArgs: string[] = []): Promise<BrowserSession> {
  const server = await startWebServer({
    '/': join(REPO_ROOT, 'dist/web'),
    '/models/': join(REPO_ROOT, 'models'),
    '/fixtures/': join(REPO_ROOT, 'test/fixtures'),
  });
  let browser: Browser;
  try {
    browser = await puppeteer.launch({
      executablePath,
      headless: true,
      args: ['--headless=new', '--no-sandbox', '--disable-dev-shm-usage', '--use-angle=swiftshader', '--enable-unsafe-swiftshader', ...extraArgs],
      protocolTimeout: 600_000,
    });
  } catch (e) {
    await server.close();
    throw e;
  }
  return {
    browser,
    server,
    async newPage(path = 'blank.html') {
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(String(e)));
      page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
      page.setDefaultTimeout(600_000);
      await page.goto(server.url + path);
      return { page, errors };
    },
    async close() {
      await browser.close();
      await server.close();
    },
  };
}
