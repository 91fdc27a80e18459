// A real OpenID Provider (node-oidc-provider) for portcullis's OpenID Connect tests, started by tests/common/oidc.rs.
//
// Configuration (environment):
//   PORT     listen on 127.0.0.1:PORT; the issuer is exactly http://127.0.0.1:PORT
//   CLIENTS  a JSON array of client metadata objects, passed as they are to oidc-provider's `clients`
//
// Every start makes a fresh RS256 signing key with a random kid (a restarted provider signs with a
// key the gateway has never seen, so the gateway must refetch the JWKS) and fresh cookie keys.
// Authorization code flow with PKCE (S256 only, required); back-channel logout and RP-initiated
// logout are on; the developer interactions are off and replaced by the scripted sign-in below.
//
// Deliberate: conformIdTokenClaims keeps the library's default (on), so with the code flow the ID
// token carries only `sub` and protocol claims (iss, aud, exp, iat, nonce, sid; no auth_time unless
// asked for with max_age); name, preferred_username, email and groups come only from UserInfo (/me).
// The gateway must read them there.
//
// Accounts: any username signs in. alice → groups [admin, staff], bob → [staff], anyone else → [].
// Claims: sub = preferred_username = the username, name = Capitalized, email = <id>@example.test,
// email_verified = true. `nameless` has no preferred_username claim at all. The username `refuse`
// ends the interaction with error=access_denied.
//
// Sign-in: GET /interaction/:uid shows a form (#username, #signin) posting to
// /interaction/:uid/login, which grants every requested scope and claim (no consent page); any
// consent prompt is granted when its page is loaded.
//
// Test control (JSON):
//   GET  /test/sids?sub=<id>   the sid claims of the ID tokens issued so far for <id>, oldest first
//   POST /test/backchannel     {"client_id", "sub", "sid"?}: the provider sends its real Back-Channel
//                              Logout request to that client's backchannel_logout_uri; 200 {"ok":true}
//                              when the RP answered 200/204, else 502 {"ok":false,"error","status"?}
//
// Prints exactly one line `listening <issuer>` to stdout when it accepts connections; everything
// else (including the library's notices) goes to stderr.

import { generateKeyPairSync, randomBytes } from 'node:crypto';

import Provider from 'oidc-provider';

// The library prints its notices with console.info (stdout); stdout is kept for the ready line.
console.info = (...args) => console.error(...args);

function fail(message) {
  console.error(`provider.mjs: ${message}`);
  process.exit(2);
}

const port = Number(process.env.PORT);
if (!process.env.PORT || !Number.isInteger(port) || port < 1 || port > 65535) {
  fail(`PORT must be a TCP port number (1-65535), got ${JSON.stringify(process.env.PORT)}`);
}

let clients;
try {
  clients = JSON.parse(process.env.CLIENTS ?? '');
} catch (err) {
  fail(`CLIENTS must be a JSON array of client metadata objects: ${err.message}`);
}
if (!Array.isArray(clients) || clients.length === 0
  || !clients.every((c) => c && typeof c === 'object' && !Array.isArray(c) && typeof c.client_id === 'string')) {
  fail('CLIENTS must be a non-empty JSON array of client metadata objects, each with a client_id');
}

const issuer = `http://127.0.0.1:${port}`;

// A new signing key (and kid) at every start.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = {
  ...privateKey.export({ format: 'jwk' }),
  kid: randomBytes(12).toString('base64url'),
  alg: 'RS256',
  use: 'sig',
};

const GROUPS = { alice: ['admin', 'staff'], bob: ['staff'], carol: [] };

function accountClaims(id) {
  const claims = {
    sub: id,
    preferred_username: id,
    name: id.charAt(0).toUpperCase() + id.slice(1),
    email: `${id}@example.test`,
    email_verified: true,
    groups: GROUPS[id] ?? [],
  };
  if (id === 'nameless') delete claims.preferred_username;
  return claims;
}

const provider = new Provider(issuer, {
  clients,
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  pkce: { required: () => true }, // the library accepts S256 only (code_challenge_method is required)
  scopes: ['openid', 'profile', 'email', 'groups'],
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
  },
  features: {
    devInteractions: { enabled: false },
    backchannelLogout: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    userinfo: { enabled: true },
  },
  // The library's defaults, as numbers (its default functions print a notice on every first use).
  ttl: {
    AccessToken: 60 * 60,
    AuthorizationCode: 60,
    IdToken: 60 * 60,
    Interaction: 60 * 60,
    Session: 14 * 24 * 60 * 60,
    Grant: 14 * 24 * 60 * 60,
    RefreshToken: 14 * 24 * 60 * 60,
  },
  interactions: {
    url: (_ctx, interaction) => `/interaction/${interaction.uid}`,
  },
  async findAccount(_ctx, id) {
    return {
      accountId: id,
      claims: async () => accountClaims(id),
    };
  },
  // The library's outgoing requests (back-channel logout) refuse special-use addresses such as
  // loopback, to stop SSRF; here every relying party is a test listener on 127.0.0.1, so the
  // guard (the undici dispatcher it passes) is dropped.
  fetch: (url, { dispatcher: _guard, ...options }) => globalThis.fetch(url, options),
  async renderError(ctx, out, error) {
    console.error('provider error page:', out, error?.stack ?? error);
    ctx.type = 'html';
    ctx.body = `<!DOCTYPE html><meta charset="utf-8"><title>Test IdP error</title><pre>${escapeHtml(JSON.stringify(out, null, 2))}</pre>`;
  },
});

provider.on('server_error', (_ctx, err) => console.error('server_error:', err));
provider.on('backchannel.error', (client, err, accountId, sid) => console.error(
  `backchannel.error: client ${client.clientId} sub ${accountId} sid ${sid}:`,
  err.message,
));

// sub -> the sid claims of the ID tokens issued to it, oldest first (read from the token responses).
const sids = new Map();
provider.on('grant.success', (ctx) => {
  const idToken = ctx.body?.id_token;
  if (typeof idToken !== 'string') return;
  try {
    const claims = JSON.parse(Buffer.from(idToken.split('.')[1], 'base64url').toString('utf8'));
    if (typeof claims.sid === 'string') {
      if (!sids.has(claims.sub)) sids.set(claims.sub, []);
      sids.get(claims.sub).push(claims.sid);
    } else {
      console.error(`ID token for ${claims.sub} has no sid claim`);
    }
  } catch (err) {
    console.error('cannot read an issued ID token:', err);
  }
});

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

async function readBody(req, limit = 64 * 1024) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > limit) throw Object.assign(new Error('body too large'), { status: 413 });
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function json(ctx, status, body) {
  ctx.status = status;
  ctx.type = 'application/json';
  ctx.body = JSON.stringify(body);
}

// Grants what the pending consent prompt asks for, as a person clicking "Allow" would.
async function grantConsent(details) {
  const { prompt: { details: missing }, params, session } = details;
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  for (const detail of missing.rar ?? []) grant.addRar(detail);
  const grantId = await grant.save();
  return details.grantId ? {} : { grantId };
}

// The claim names asked for in a `claims` request parameter (both id_token and userinfo).
function requestedClaims(claimsParam) {
  if (!claimsParam) return [];
  try {
    const parsed = typeof claimsParam === 'string' ? JSON.parse(claimsParam) : claimsParam;
    return [...new Set([...Object.keys(parsed.id_token ?? {}), ...Object.keys(parsed.userinfo ?? {})])];
  } catch {
    return [];
  }
}

const LOGIN_PAGE = (uid) => `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Test IdP sign-in</title></head>
<body>
<h1>Test IdP sign-in</h1>
<form method="post" action="/interaction/${escapeHtml(uid)}/login">
<label for="username">Username</label>
<input name="username" id="username" autocomplete="off" autofocus>
<button type="submit" id="signin">Sign in</button>
</form>
</body>
</html>
`;

provider.use(async (ctx, next) => {
  try {
    const interaction = ctx.path.match(/^\/interaction\/([^/]+)(\/login)?$/);
    if (interaction && ctx.method === 'GET' && !interaction[2]) {
      ctx.set('cache-control', 'no-store');
      const details = await provider.interactionDetails(ctx.req, ctx.res);
      if (details.prompt.name === 'login') {
        ctx.type = 'text/html; charset=utf-8';
        ctx.body = LOGIN_PAGE(details.uid);
        return;
      }
      // consent (or anything else): granted at once, never a page to get stuck on.
      const consent = await grantConsent(details);
      await provider.interactionFinished(ctx.req, ctx.res, { consent }, { mergeWithLastSubmission: true });
      ctx.respond = false;
      return;
    }
    if (interaction && ctx.method === 'POST' && interaction[2]) {
      ctx.set('cache-control', 'no-store');
      const details = await provider.interactionDetails(ctx.req, ctx.res);
      const form = new URLSearchParams(await readBody(ctx.req));
      const username = (form.get('username') ?? '').trim();
      if (details.prompt.name !== 'login' || !username) {
        ctx.status = 400;
        ctx.type = 'text/plain; charset=utf-8';
        ctx.body = details.prompt.name !== 'login'
          ? `this interaction asks for ${details.prompt.name}, not login`
          : 'username is required';
        return;
      }
      let result;
      if (username === 'refuse') {
        result = { error: 'access_denied', error_description: 'the person refused' };
      } else {
        const { params } = details;
        const grant = new provider.Grant({ accountId: username, clientId: params.client_id });
        if (params.scope) grant.addOIDCScope(params.scope);
        const claims = requestedClaims(params.claims);
        if (claims.length) grant.addOIDCClaims(claims);
        const grantId = await grant.save();
        result = { login: { accountId: username }, consent: { grantId } };
      }
      await provider.interactionFinished(ctx.req, ctx.res, result, { mergeWithLastSubmission: false });
      ctx.respond = false;
      return;
    }
    if (ctx.path === '/test/sids' && ctx.method === 'GET') {
      const sub = ctx.query.sub;
      if (typeof sub !== 'string' || !sub) {
        json(ctx, 400, { ok: false, error: 'sub is required' });
        return;
      }
      json(ctx, 200, sids.get(sub) ?? []);
      return;
    }
    if (ctx.path === '/test/backchannel' && ctx.method === 'POST') {
      let body;
      try {
        body = JSON.parse(await readBody(ctx.req));
      } catch (err) {
        json(ctx, 400, { ok: false, error: `body is not JSON: ${err.message}` });
        return;
      }
      const { client_id: clientId, sub, sid } = body ?? {};
      if (typeof clientId !== 'string' || typeof sub !== 'string' || (sid !== undefined && sid !== null && typeof sid !== 'string')) {
        json(ctx, 400, { ok: false, error: 'expected {"client_id": string, "sub": string, "sid"?: string}' });
        return;
      }
      const client = await provider.Client.find(clientId);
      if (!client) {
        json(ctx, 404, { ok: false, error: `unknown client ${clientId}` });
        return;
      }
      if (!client.backchannelLogoutUri) {
        json(ctx, 400, { ok: false, error: `client ${clientId} has no backchannel_logout_uri` });
        return;
      }
      try {
        await client.backchannelLogout(sub, sid ?? undefined);
        json(ctx, 200, { ok: true });
      } catch (err) {
        const status = err.response?.status;
        console.error(`back-channel logout to ${client.backchannelLogoutUri} failed:`, err.cause ?? err.message);
        json(ctx, 502, {
          ok: false,
          error: err.cause ? `${err.message}: ${err.cause.message ?? err.cause}` : err.message,
          ...(status ? { status } : {}),
        });
      }
      return;
    }
  } catch (err) {
    console.error(`${ctx.method} ${ctx.path}:`, err);
    ctx.status = err.status ?? err.statusCode ?? 500;
    ctx.type = 'text/plain; charset=utf-8';
    ctx.body = `${err.name}: ${err.message}${err.error_description ? ` (${err.error_description})` : ''}`;
    return;
  }
  await next();
});

const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`listening ${issuer}`);
});
server.on('error', (err) => {
  console.error(`provider.mjs: cannot listen on 127.0.0.1:${port}: ${err.message}`);
  process.exit(1);
});
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
