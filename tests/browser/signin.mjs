// Sign-in in a real Chromium (Debian's /usr/bin/chromium), driven by Playwright, against a
// gateway that tests/browser.rs started on its TLS listener. Every step asserts what a person
// (or the upstream) would see, and takes a screenshot of each page for the README.
//
// Environment: GATEWAY (https://localhost:PORT), SCREENSHOTS (a folder), CHROMIUM (optional).

import WebSocket from 'ws';
import assert from 'node:assert/strict';
import { base, browser, desktop, finish, shot, step } from './steps.mjs';

const focused = (page) => page.evaluate(() => document.activeElement && (document.activeElement.id || document.activeElement.tagName));

async function signIn(page, user, password) {
  await page.fill('#username', user);
  await page.fill('#password', password);
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
}

/// A pending session made the way a device makes one, and its status socket's messages.
async function pendingDevice(agent) {
  const r = await fetch(`${base}/sessions`, { method: 'POST', headers: { 'User-Agent': agent } });
  assert.equal(r.status, 201);
  const created = await r.json();
  const messages = [];
  const ws = new WebSocket(`${base.replace('https', 'wss')}/auth/status?token=${created.token}`, {
    rejectUnauthorized: false,
  });
  ws.on('message', (m) => messages.push(JSON.parse(m.toString())));
  const next = async (status) => {
    for (let i = 0; i < 100; i++) {
      if (messages.some((m) => m.status === status)) return messages.find((m) => m.status === status);
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`the status socket never said ${status}: ${JSON.stringify(messages)}`);
  };
  await next('pending');
  return { created, next, ws };
}

const ctx = await browser.newContext(desktop);
const page = await ctx.newPage();

await step('a protected page sends the browser to sign in, and back to it', async () => {
  await page.goto(`${base}/app/hello?x=1`);
  assert.match(page.url(), /\/auth\/login\?rd=\/app\/hello%3Fx%3D1$/);
  assert.equal(await page.title(), 'Sign in · Example Corp');
  assert.equal(await focused(page), 'username', 'the first field has the focus');
  await shot(page, 'login');
  await signIn(page, 'alice', 'alice-password');
  assert.equal(page.url(), `${base}/app/hello?x=1`);
  const seen = JSON.parse(await page.textContent('body'));
  assert.equal(seen.headers['x-auth-user'], 'alice', 'the identity reached the upstream');
  assert.equal(seen.path, '/app/hello');
});

await step('the cookie as the browser stores it', async () => {
  const cookies = await ctx.cookies(base);
  const c = cookies.find((c) => c.name === '__Host-portcullis');
  assert.ok(c, JSON.stringify(cookies));
  assert.equal(c.httpOnly, true);
  assert.equal(c.secure, true);
  assert.equal(c.sameSite, 'Lax');
  assert.equal(c.path, '/');
  assert.equal(c.domain, 'localhost', 'host-only');
  assert.ok(c.expires > Date.now() / 1000 + 13 * 86400, 'lives sessions.ttl');
  assert.match(c.value, /^pc1_/);
});

await step('browser navigations get pages, API clients JSON', async () => {
  let r = await page.goto(`${base}/nowhere`);
  assert.equal(r.status(), 404);
  assert.equal(await page.textContent('h1'), 'Page not found');
  assert.equal(await page.textContent('.site'), 'Example Corp');
  await shot(page, 'error-404');
  r = await page.goto(`${base}/down/x`);
  assert.equal(r.status(), 502);
  assert.equal(await page.textContent('h1'), 'The application is not answering');
  await shot(page, 'error-502');
  const api = await fetch(`${base}/nowhere`, { headers: { Accept: 'application/json' } });
  assert.equal(api.status, 404);
  assert.equal((await api.json()).error, 'no_route');
});

await step('signing out ends the session, with a page and a way back', async () => {
  const r = await page.goto(`${base}/auth/logout`);
  assert.equal(r.status(), 200);
  assert.equal(await page.textContent('h1'), 'Signed out');
  await shot(page, 'signed-out');
  assert.equal((await ctx.cookies(base)).filter((c) => c.name === '__Host-portcullis').length, 0);
  await Promise.all([page.waitForNavigation(), page.click('a.button')]);
  assert.match(page.url(), /\/auth\/login$/);
  await page.goto(`${base}/app/hello`);
  assert.match(page.url(), /\/auth\/login\?rd=/, 'signed out for real');
});

await step('a wrong password is announced, the username kept, the password not', async () => {
  await page.goto(`${base}/auth/login`);
  await page.fill('#username', 'alice');
  await page.fill('#password', 'not-her-password');
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  assert.equal((await page.textContent('[role=alert]')).trim(), 'Wrong username or password.');
  assert.equal(await page.inputValue('#username'), 'alice');
  assert.equal(await page.inputValue('#password'), '');
  assert.equal(await focused(page), 'password', 'the focus is where the person goes on');
  await shot(page, 'login-error');
});

await step('a role the user lacks: a page that says so', async () => {
  const bob = await browser.newContext(desktop);
  const p = await bob.newPage();
  await p.goto(`${base}/admin/panel`);
  await signIn(p, 'bob', 'bob-password');
  assert.equal(await p.textContent('h1'), 'Not allowed');
  await shot(p, 'error-403');
  await bob.close();
});

await step('keyboard only: Tab order and Enter', async () => {
  const kb = await browser.newContext(desktop);
  const p = await kb.newPage();
  await p.goto(`${base}/auth/login?rd=/app/keyboard`);
  assert.equal(await focused(p), 'username');
  await p.keyboard.type('alice');
  await p.keyboard.press('Tab');
  assert.equal(await focused(p), 'password');
  await p.keyboard.type('alice-password');
  await p.keyboard.press('Tab');
  assert.equal(await focused(p), 'BUTTON');
  await Promise.all([p.waitForNavigation(), p.keyboard.press('Enter')]);
  assert.equal(p.url(), `${base}/app/keyboard`);
  await kb.close();
});

await step('a 375 px phone screen: nothing runs past its edge', async () => {
  const phone = await browser.newContext({ ...desktop, viewport: { width: 375, height: 740 }, deviceScaleFactor: 2 });
  const p = await phone.newPage();
  for (const path of ['/auth/login', '/auth/device']) {
    await p.goto(`${base}${path}`);
    assert.ok((await p.evaluate(() => document.documentElement.scrollWidth)) <= 375, path);
    for (const el of await p.$$('input:not([type=hidden]), button')) {
      const box = await el.boundingBox();
      assert.ok(box.x >= 0 && box.x + box.width <= 375, `${path}: ${JSON.stringify(box)}`);
    }
  }
  await p.goto(`${base}/auth/login`);
  await shot(p, 'login-phone');
  await phone.close();
});

await step('a device is approved after typing its code; the status socket is told', async () => {
  const device = await pendingDevice('Living-room TV (portcullis test)');
  const p = await ctx.newPage();
  await p.goto(`${base}/auth/device`);
  assert.equal(await focused(p), 'code');
  await shot(p, 'device-code');
  await p.keyboard.type(device.created.user_code.toLowerCase());
  await Promise.all([p.waitForNavigation(), p.keyboard.press('Enter')]);
  assert.equal((await p.textContent('.code')).trim(), device.created.user_code);
  const info = await p.textContent('dl');
  assert.match(info, /Living-room TV \(portcullis test\)/);
  assert.match(info, /127\.0\.0\.1/);
  assert.match(info, /UTC \(just now\)/);
  await shot(p, 'device-approve');
  await p.fill('#username', 'alice');
  await p.fill('#password', 'alice-password');
  await Promise.all([p.waitForNavigation(), p.click('button[value=approve]')]);
  assert.equal(await p.textContent('h1'), 'Device signed in');
  await shot(p, 'device-done');
  const ok = await device.next('OK');
  assert.equal(ok.user.username, 'alice');
  device.ws.close();
  await p.close();
});

await step('Deny ends the pending session; the socket says so', async () => {
  const device = await pendingDevice('Unknown laptop');
  const p = await ctx.newPage();
  await p.goto(`${base}${device.created.login_url}`);
  await Promise.all([p.waitForNavigation(), p.click('button[value=deny]')]);
  assert.equal(await p.textContent('h1'), 'Request denied');
  await shot(p, 'device-denied');
  await device.next('denied');
  device.ws.close();
  const r = await p.goto(`${base}${device.created.login_url}`);
  assert.equal(r.status(), 404, 'a denied code is gone');
  assert.equal(await p.$('input[type=password]'), null, 'no password is asked for an unknown code');
  await shot(p, 'device-unknown');
  await p.close();
});

await step('a form posted from another site is refused', async () => {
  const p = await ctx.newPage();
  const form = `<form method=post action="${base}/auth/login"><input name=username value=alice>` +
    `<input name=password value=alice-password><button id=go>go</button></form>`;
  await p.goto(`data:text/html,${encodeURIComponent(form)}`);
  const [r] = await Promise.all([p.waitForNavigation(), p.click('#go')]);
  assert.equal(r.status(), 403);
  assert.match(await p.textContent('[role=alert]'), /another site/);
  await p.close();
});

await finish();
