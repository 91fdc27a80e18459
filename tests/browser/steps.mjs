// What both browser scripts (signin.mjs, oidc.mjs) share: Debian's Chromium launched through
// Playwright for a gateway on the repository's development certificate, named steps that
// report ok/FAIL and go on, screenshots into SCREENSHOTS, and the final verdict (exit 1 when a
// step failed).

import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';

export const base = process.env.GATEWAY;
const shots = process.env.SCREENSHOTS;
assert.ok(base && shots, 'GATEWAY and SCREENSHOTS are set');
mkdirSync(shots, { recursive: true });
// The gateway's certificate is the repository's development one.
process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';

export const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
export const desktop = { ignoreHTTPSErrors: true, viewport: { width: 900, height: 720 } };

let failures = 0;
export async function step(name, body) {
  try {
    await body();
    console.log(`ok   ${name}`);
  } catch (e) {
    failures += 1;
    console.log(`FAIL ${name}\n${e.stack || e}`);
  }
}

export async function shot(page, name) {
  await page.screenshot({ path: `${shots}/${name}.png` });
}

/// Closes the browser and exits 1 if any step failed.
export async function finish() {
  await browser.close();
  if (failures > 0) {
    console.log(`${failures} browser step(s) failed`);
    process.exit(1);
  }
  console.log('all browser steps passed');
}
