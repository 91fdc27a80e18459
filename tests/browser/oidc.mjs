// Sign-in through an OpenID Provider (SPEC §4a) in a real Chromium (Debian's /usr/bin/chromium),
// driven by Playwright, against a gateway that tests/browser.rs started on its TLS listener and
// node-oidc-provider (tests/oidc/provider.mjs) on plain http. The browser goes where a person's
// goes: the gateway's login page, the provider's page, back through the callback (a cross-site
// top-level redirect that the SameSite=Lax sign-in cookie must survive). Every step asserts what
// a person (or the upstream) would see; each scenario has a context of its own, so neither the
// gateway's cookies nor the provider's session carry over.
//
// Environment: GATEWAY (https://localhost:PORT), IDP (the provider's issuer, http://127.0.0.1:PORT),
// SCREENSHOTS (a folder), CHROMIUM (optional).

import assert from 'node:assert/strict';
import { base, browser, desktop, finish, shot, step } from './steps.mjs';

const idp = process.env.IDP;
assert.ok(idp, 'IDP is set');

/// The gateway's cookies in this context: the session's (`__Host-portcullis`) and sign-ins'
/// (`__Host-portcullis-oidc-<state>`).
const gatewayCookies = async (ctx) => (await ctx.cookies(base)).filter((c) => c.name.startsWith('__Host-portcullis'));
const signInCookies = async (ctx) => (await gatewayCookies(ctx)).filter((c) => c.name.includes('-oidc-'));

/// Clicks the gateway's provider button `label` and waits for the provider's sign-in page.
async function toProvider(page, label, role = 'link') {
  const button = page.getByRole(role, { name: label, exact: true });
  await Promise.all([page.waitForURL((u) => u.href.startsWith(`${idp}/`)), button.click()]);
  const at = page.url();
  assert.ok(at.startsWith(`${idp}/interaction/`), `not the provider's sign-in: ${at}\n${await page.textContent('body')}`);
  assert.equal(await page.textContent('h1'), 'Test IdP sign-in');
}

/// Signs in at the provider's page as `user`; returns the gateway's answer to the callback of
/// provider entry `name` once the page it leads to has loaded.
async function signInAtProvider(page, name, user) {
  await page.fill('#username', user);
  const callback = page.waitForResponse((r) => r.url().startsWith(`${base}/auth/oidc/${name}/callback?`));
  await page.click('#signin');
  const answer = await callback;
  await page.waitForLoadState();
  return answer;
}

/// A failure page of the gateway: HTML, the status, a heading, and the words a person reads.
async function assertFailurePage(page, answer, status, heading, says) {
  const seen = `${answer.url()} answered ${answer.status()}, the page shows ${page.url()}: ${await page.textContent('body')}`;
  assert.equal(answer.status(), status, seen);
  assert.match(answer.headers()['content-type'], /^text\/html/);
  assert.ok(page.url().startsWith(`${base}/auth/oidc/`), page.url());
  assert.equal(await page.textContent('h1'), heading);
  assert.match(await page.textContent('main'), says);
}

await step('a protected page → the login page → the provider → back, signed in as alice', async () => {
  const ctx = await browser.newContext(desktop);
  const page = await ctx.newPage();
  await page.goto(`${base}/app/x`);
  assert.match(page.url(), /\/auth\/login\?rd=\/app\/x$/);
  const button = page.getByRole('link', { name: 'Sign in with Test IdP', exact: true });
  assert.ok(await button.isVisible(), 'the provider has a button');
  assert.equal(await button.getAttribute('href'), '/auth/oidc/idp/start?rd=%2Fapp%2Fx');
  assert.ok(await page.getByRole('link', { name: 'Sign in with Staff IdP', exact: true }).isVisible());
  await shot(page, 'oidc-login');
  await toProvider(page, 'Sign in with Test IdP');
  const started = await signInCookies(ctx);
  assert.equal(started.length, 1, `one sign-in cookie while at the provider: ${JSON.stringify(started)}`);
  assert.equal(started[0].sameSite, 'Lax');
  assert.equal(started[0].secure, true);
  assert.equal(started[0].httpOnly, true);
  await shot(page, 'oidc-provider');
  await page.fill('#username', 'alice');
  await Promise.all([page.waitForURL(`${base}/app/x`), page.click('#signin')]);
  const seen = JSON.parse(await page.textContent('body'));
  assert.equal(seen.path, '/app/x');
  assert.equal(seen.headers['x-auth-user'], 'alice', 'the provider\'s person reached the upstream');
  assert.equal(seen.headers['x-auth-roles'], 'admin,staff', 'roles from the groups claim');
  assert.equal(seen.headers['x-auth-user-id'], undefined, 'a provider\'s user has no user id');
  const cookies = await gatewayCookies(ctx);
  assert.deepEqual(cookies.map((c) => c.name), ['__Host-portcullis'], 'the session, and the sign-in cookie spent');
  assert.match(cookies[0].value, /^pc1_/);
  await ctx.close();
});

await step('a role the staff provider does not admit: a 403 page, and no session', async () => {
  const ctx = await browser.newContext(desktop);
  const page = await ctx.newPage();
  await page.goto(`${base}/auth/login`);
  await toProvider(page, 'Sign in with Staff IdP');
  assert.equal((await signInCookies(ctx)).length, 1, 'the sign-in cookie was set');
  const answer = await signInAtProvider(page, 'staff', 'carol');
  await assertFailurePage(page, answer, 403, 'Not allowed here', /admits only people with the role staff/);
  await shot(page, 'oidc-refused');
  assert.deepEqual(await gatewayCookies(ctx), [], 'no session, and the sign-in cookie cleared');
  const r = await page.goto(`${base}/app/x`);
  assert.match(page.url(), /\/auth\/login\?rd=/, `still signed out (${r.status()})`);
  await ctx.close();
});

await step('the person refuses at the provider: a page that says so', async () => {
  const ctx = await browser.newContext(desktop);
  const page = await ctx.newPage();
  await page.goto(`${base}/auth/login?rd=/app/x`);
  await toProvider(page, 'Sign in with Test IdP');
  const answer = await signInAtProvider(page, 'idp', 'refuse');
  await assertFailurePage(page, answer, 403, 'Sign-in refused', /the person refused/);
  assert.deepEqual(await gatewayCookies(ctx), [], 'no session, and the sign-in cookie cleared');
  await ctx.close();
});

await step('a device approved through the provider: its token then works as bob', async () => {
  const created = await fetch(`${base}/sessions`, { method: 'POST' });
  assert.equal(created.status, 201);
  const { token, user_code: code } = await created.json();
  assert.ok(token && code, 'a token and a user code');
  const bearer = { Authorization: `Bearer ${token}` };
  assert.equal((await fetch(`${base}/app/x`, { headers: bearer })).status, 401, 'pending: not yet');
  const ctx = await browser.newContext(desktop);
  const page = await ctx.newPage();
  await page.goto(`${base}/auth/login?code=${code}`);
  // A form posted from this page, not a link another site could hand out (api/oidc.rs).
  const approve = page.getByRole('button', { name: 'Approve with Test IdP', exact: true });
  const form = approve.locator('xpath=ancestor::form');
  assert.equal(await form.getAttribute('method'), 'post');
  assert.equal(await form.getAttribute('action'), '/auth/oidc/idp/start');
  await shot(page, 'oidc-device');
  await toProvider(page, 'Approve with Test IdP', 'button');
  const answer = await signInAtProvider(page, 'idp', 'bob');
  assert.equal(answer.status(), 200);
  assert.equal(await page.textContent('h1'), 'Device signed in');
  assert.match(await page.textContent('main'), new RegExp(`The device showing ${code} is now signed in as bob`));
  await shot(page, 'oidc-device-done');
  assert.deepEqual(await gatewayCookies(ctx), [], 'the device is signed in, not this browser');
  const seen = await fetch(`${base}/app/x`, { headers: bearer });
  assert.equal(seen.status, 200);
  const headers = (await seen.json()).headers;
  assert.equal(headers['x-auth-user'], 'bob');
  assert.equal(headers['x-auth-roles'], 'staff');
  await ctx.close();
});

await finish();
