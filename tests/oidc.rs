//! Sign-in through an identity provider (SPEC §4a, issue #17) against a real, certified OpenID
//! Provider: node-oidc-provider (`tests/oidc/provider.mjs`, started per test). The gateway is
//! started first (it discovers the provider on first use), the provider second, registered
//! with the gateway's callback and back-channel logout addresses. Over real sockets: the code
//! flow with PKCE on both HTTP/1.1 paths, identity headers upstream, `client_secret_post`,
//! `allowed_roles`, every failure as a page that makes no session, a provider down while
//! password sign-in works, a key rotation, back-channel logout across two instances on one
//! redis, and a device approved through the provider.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use common::oidc::{CLIENT_SECRET, Provider, ProviderJar};
use common::*;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;

/// An answer read off the socket: status, head lines, body.
struct Raw {
    status: u16,
    head: String,
    body: String,
}

impl Raw {
    fn headers(&self, name: &str) -> Vec<String> {
        self.head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers(name).into_iter().next()
    }

    /// The `name=value` pairs of `Set-Cookie`, attributes dropped.
    fn set_cookies(&self) -> Vec<(String, String)> {
        self.headers("set-cookie")
            .iter()
            .filter_map(|c| c.split(';').next()?.split_once('='))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect()
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One HTTP/1.1 request to the gateway with `Host: 127.0.0.1:<port>` (so the redirect URI it
/// makes is the one registered at the provider).
async fn call(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> Raw {
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    let text = raw(addr, req.as_bytes()).await;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Raw {
        status: status_of(&text),
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// The path and query of an absolute URL on `addr`.
fn path_of(url: &str, addr: SocketAddr) -> String {
    let prefix = format!("http://{addr}");
    url.strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{url} is not on {prefix}"))
        .to_string()
}

/// The provider's registration of one gateway's client, for every gateway listener given.
fn client(client_id: &str, auth: &str, gateways: &[SocketAddr], name: &str, logout_to: SocketAddr) -> Value {
    let redirects: Vec<String> = gateways
        .iter()
        .map(|g| format!("http://{g}/auth/oidc/{name}/callback"))
        .collect();
    let logout = format!("http://{logout_to}/auth/oidc/{name}/backchannel-logout");
    common::oidc::client_registration(client_id, auth, &redirects, &logout)
}

/// The providers of `common::oidc::providers_toml` and `strict` (ES256 only, while the
/// provider signs RS256).
fn oidc_toml(port: u16) -> String {
    common::oidc::providers_toml(port)
        + &format!(
            "[[oidc]]\nname = \"strict\"\nissuer = \"http://127.0.0.1:{port}\"\nclient_id = \"strict\"\n\
             client_secret = \"{CLIENT_SECRET}\"\nalgorithms = [\"ES256\"]\n"
        )
}

fn clients(gateways: &[SocketAddr], logout_to: SocketAddr) -> Value {
    json!([
        client("portcullis", "client_secret_basic", gateways, "idp", logout_to),
        client("staff-only", "client_secret_post", gateways, "staff", logout_to),
        client("strict", "client_secret_basic", gateways, "strict", logout_to),
    ])
}

/// The gateway's config: local users (alice is an admin there too), `/app` for anyone signed
/// in, `/admin` for admins, and the test provider.
fn gateway_toml(base: &str, up: SocketAddr, idp_port: u16) -> String {
    let assertion = format!(
        "\n[assertion]\nalgorithm = \"EdDSA\"\nkey = \"{}\"\nttl = \"60s\"\n",
        repo_path("certs/assertion-key.pem").display()
    );
    base.to_string()
        + &assertion
        + USERS
        + &route("app", "/app", &[up], "").replace("\"public\"", "\"authenticated\"")
        + &route("admin", "/admin", &[up], "roles = [\"admin\"]").replace("\"public\"", "\"roles\"")
        + &oidc_toml(idp_port)
}

/// A browser's sign-in through provider `name` as `username`, ending on the gateway's answer
/// to the callback (with the sign-in's cookie sent, as a browser does).
async fn browser_sign_in(
    gw: SocketAddr,
    idp: &Provider,
    jar: &mut ProviderJar,
    name: &str,
    query: &str,
    username: &str,
) -> (Raw, String, String) {
    let start = call(gw, "GET", &format!("/auth/oidc/{name}/start{query}"), &[], "").await;
    complete_sign_in(gw, idp, jar, start, username).await
}

/// The rest of a sign-in after the gateway's answer to `start`.
async fn complete_sign_in(
    gw: SocketAddr,
    idp: &Provider,
    jar: &mut ProviderJar,
    start: Raw,
    username: &str,
) -> (Raw, String, String) {
    // A 302, or (answering the device page's form) a page that sends the browser on.
    let to_idp = match start.status {
        302 => start.header("location").unwrap(),
        200 => {
            let refresh = start.header("refresh").expect("a Refresh header");
            let url = refresh.strip_prefix("0;url=").unwrap().to_string();
            assert!(start.body.contains("Continue to Test IdP"), "{}", start.body);
            url
        }
        _ => panic!("start: {}\n{}", start.head, start.body),
    };
    assert!(to_idp.starts_with(&idp.issuer()), "{to_idp}");
    for needed in [
        "code_challenge_method=S256",
        "code_challenge=",
        "state=",
        "nonce=",
        "scope=openid",
    ] {
        assert!(to_idp.contains(needed), "{needed} missing from {to_idp}");
    }
    let (cookie_name, cookie_value) = start.set_cookies().into_iter().next().expect("a sign-in cookie");
    assert!(cookie_name.contains("-oidc-"), "{cookie_name}");
    let set = start.header("set-cookie").unwrap();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Lax"), "{set}");
    let back = idp.sign_in(jar, &to_idp, username).await;
    let cookie = format!("{cookie_name}={cookie_value}");
    let answer = call(gw, "GET", &path_of(&back, gw), &[("Cookie", &cookie)], "").await;
    (answer, back, cookie)
}

/// The session cookie a successful callback set (`portcullis` on the plain listener).
fn session_cookie(answer: &Raw) -> String {
    answer
        .set_cookies()
        .into_iter()
        .find(|(n, v)| !n.contains("-oidc-") && !v.is_empty())
        .map(|(n, v)| format!("{n}={v}"))
        .unwrap_or_else(|| panic!("no session cookie: {}\n{}", answer.head, answer.body))
}

/// What the upstream saw for a request with `cookie`.
async fn upstream_sees(gw: SocketAddr, path: &str, cookie: &str) -> Raw {
    call(gw, "GET", path, &[("Cookie", cookie)], "").await
}

/// The status `cookie` gets on `gw`, once it is `want` or 3 s have passed: a revocation made
/// on another instance arrives through Redis pub/sub, a moment later.
async fn status_soon(gw: SocketAddr, cookie: &str, want: u16) -> u16 {
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        let status = upstream_sees(gw, "/app/x", cookie).await.status;
        if status == want || std::time::Instant::now() > deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A failure: an HTML page (never a 500), the sign-in cookie cleared, no session made.
fn assert_failure_page(answer: &Raw, status: u16, says: &str) {
    assert_eq!(answer.status, status, "{}\n{}", answer.head, answer.body);
    assert!(
        answer
            .header("content-type")
            .unwrap_or_default()
            .starts_with("text/html"),
        "{}",
        answer.head
    );
    assert!(
        answer.body.contains(says),
        "page does not say {says:?}: {}",
        answer.body
    );
    for (name, value) in answer.set_cookies() {
        assert!(
            name.contains("-oidc-") && value.is_empty(),
            "a failure set cookie {name}={value}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signs_in_through_the_provider_on_both_paths() {
    let (up, _stop) = upstream::whoami().await;
    for fast in [true, false] {
        let idp_port = free_port();
        let gw = Gateway::start(&on_path(&gateway_toml(&base_toml(), up, idp_port), fast));
        let idp = Provider::start(idp_port, clients(&[gw.http], gw.http));
        let mut jar = ProviderJar::default();

        // The login page offers the provider, carrying rd along.
        let login = call(gw.http, "GET", "/auth/login?rd=/app/after", &[], "").await;
        assert!(
            login.body.contains("/auth/oidc/idp/start?rd=%2Fapp%2Fafter")
                && login.body.contains("Sign in with Test IdP"),
            "{}",
            login.body
        );

        let (answer, back, state_cookie) =
            browser_sign_in(gw.http, &idp, &mut jar, "idp", "?rd=/app/after", "alice").await;
        assert!(back.contains("code=") && back.contains("state="), "{back}");
        assert_eq!(
            answer.status, 303,
            "fast={fast}: {}\n{}",
            answer.head, answer.body
        );
        assert_eq!(answer.header("location").as_deref(), Some("/app/after"));
        let cookie = session_cookie(&answer);
        assert!(
            answer
                .headers("set-cookie")
                .iter()
                .any(|c| c.contains("-oidc-") && c.contains("Max-Age=0")),
            "the sign-in cookie is cleared: {}",
            answer.head
        );

        // Upstream: the provider's person, with roles from UserInfo's groups, no user id.
        let seen = upstream_sees(gw.http, "/app/x", &cookie).await;
        assert_eq!(seen.status, 200, "fast={fast}: {}", seen.body);
        let h = &seen.json()["headers"];
        assert_eq!(h["x-auth-user"], "alice", "fast={fast}: {h}");
        assert_eq!(h["x-auth-user-uuid"], "alice", "sub");
        assert_eq!(h["x-auth-roles"], "admin,staff");
        assert!(h.get("x-auth-user-id").is_none(), "fast={fast}: no user id: {h}");
        // The assertion names the provider: a sub is unique only within it.
        let jwt = h["x-auth-jwt"].as_str().unwrap();
        let payload = jwt.split('.').nth(1).unwrap();
        let claims: Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).unwrap(),
        )
        .unwrap();
        assert_eq!(
            (claims["sub"].as_str(), claims["idp"].as_str()),
            (Some("alice"), Some("idp"))
        );
        assert!(h["x-auth-session-id"].as_str().unwrap().len() == 32);
        assert_eq!(upstream_sees(gw.http, "/admin/x", &cookie).await.status, 200);
        let me = upstream_sees(gw.http, "/users/me", &cookie).await;
        assert_eq!(me.json()["username"], "alice");
        assert_eq!(me.json()["user_id"], Value::Null);
        assert_eq!(me.json()["provider"], "idp");

        // A client spelling the user id is not believed (removed, not forwarded).
        let spoof = call(
            gw.http,
            "GET",
            "/app/x",
            &[("Cookie", &cookie), ("X-Auth-User-Id", "1")],
            "",
        )
        .await;
        assert!(spoof.json()["headers"].get("x-auth-user-id").is_none());

        // The same callback again (a replayed code, the sign-in cookie kept): refused, no session.
        let replay = call(
            gw.http,
            "GET",
            &path_of(&back, gw.http),
            &[("Cookie", &state_cookie)],
            "",
        )
        .await;
        assert_failure_page(&replay, 400, "no longer accepts this sign-in");

        // bob has only staff: not an admin here; through `staff` (client_secret_post) he may.
        let (answer, _, _) =
            browser_sign_in(gw.http, &idp, &mut ProviderJar::default(), "staff", "", "bob").await;
        assert_eq!(answer.status, 303, "{}", answer.body);
        assert_eq!(answer.header("location").as_deref(), Some("/"));
        let bob = session_cookie(&answer);
        assert_eq!(upstream_sees(gw.http, "/admin/x", &bob).await.status, 403);
        assert_eq!(
            upstream_sees(gw.http, "/app/x", &bob).await.json()["headers"]["x-auth-roles"],
            "staff"
        );
        gw.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_is_a_page_and_makes_no_session() {
    let (up, _stop) = upstream::whoami().await;
    let idp_port = free_port();
    let gw = Gateway::start(&gateway_toml(&base_toml(), up, idp_port));
    let mut idp = Provider::start(idp_port, clients(&[gw.http], gw.http));

    // No sign-in cookie, or another sign-in's: the state does not match.
    let start = call(gw.http, "GET", "/auth/oidc/idp/start", &[], "").await;
    let to_idp = start.header("location").unwrap();
    let back = idp.sign_in(&mut ProviderJar::default(), &to_idp, "alice").await;
    let bare = call(gw.http, "GET", &path_of(&back, gw.http), &[], "").await;
    assert_failure_page(&bare, 400, "did not start in this browser");
    let other = call(gw.http, "GET", "/auth/oidc/idp/start", &[], "").await;
    let (n, v) = other.set_cookies().remove(0);
    let wrong_state = path_of(&back, gw.http).replace("state=", "state=x");
    let mixed = call(
        gw.http,
        "GET",
        &wrong_state,
        &[("Cookie", &format!("{n}={v}"))],
        "",
    )
    .await;
    assert_failure_page(&mixed, 400, "did not start in this browser");
    let forged = call(
        gw.http,
        "GET",
        &path_of(&back, gw.http),
        &[("Cookie", &format!("{n}=AAAA.BBBB"))],
        "",
    )
    .await;
    assert_failure_page(&forged, 400, "did not start in this browser");

    // The person refuses at the provider.
    let (refused, _, _) =
        browser_sign_in(gw.http, &idp, &mut ProviderJar::default(), "idp", "", "refuse").await;
    assert_failure_page(&refused, 403, "the person refused");

    // No username claim anywhere (ID token or UserInfo).
    let (nameless, _, _) =
        browser_sign_in(gw.http, &idp, &mut ProviderJar::default(), "idp", "", "nameless").await;
    assert_failure_page(&nameless, 502, "no preferred_username claim");

    // allowed_roles: carol has no staff role.
    let (carol, _, _) =
        browser_sign_in(gw.http, &idp, &mut ProviderJar::default(), "staff", "", "carol").await;
    assert_failure_page(&carol, 403, "admits only people with the role staff");

    // An ID token signed with an algorithm this provider entry does not accept.
    let (strict, _, _) =
        browser_sign_in(gw.http, &idp, &mut ProviderJar::default(), "strict", "", "alice").await;
    assert_failure_page(&strict, 502, "could not be verified");

    // Each failure after the provider was asked is counted.
    let metrics = scrape(gw.admin).await;
    assert!(
        value(&metrics, "portcullis_logins_total{kind=\"oidc_failed\"}") >= 4.0,
        "{metrics}"
    );

    // Unknown provider, wrong method, hostile input: pages, not 500s.
    let unknown = call(gw.http, "GET", "/auth/oidc/nope/start", &[], "").await;
    assert_failure_page(&unknown, 404, "no sign-in provider named");
    let wrong = call(gw.http, "PUT", "/auth/oidc/idp/start", &[], "").await;
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.header("allow").as_deref(), Some("GET, POST"));
    let junk = format!("/auth/oidc/idp/callback?state={}&code=%00%ff", "A".repeat(3000));
    assert_failure_page(&call(gw.http, "GET", &junk, &[], "").await, 400, "did not start");

    // The provider down: its button says so; password sign-in still works.
    idp.stop();
    let down = call(gw.http, "GET", "/auth/oidc/idp/start", &[], "").await;
    // Discovery was cached: the start still goes out; the callback then cannot exchange.
    assert_eq!(down.status, 302, "{}", down.body);
    let fresh = Gateway::start(&gateway_toml(&base_toml(), up, idp_port));
    let down = call(fresh.http, "GET", "/auth/oidc/idp/start", &[], "").await;
    assert_failure_page(&down, 502, "cannot be reached right now");
    assert!(
        !down.body.contains("127.0.0.1"),
        "the page names no host: {}",
        down.body
    );
    let password = call(
        fresh.http,
        "POST",
        "/auth/signin",
        &[("Content-Type", "application/json")],
        r#"{"username":"alice","password":"alice-password"}"#,
    )
    .await;
    assert_eq!(password.status, 200, "{}", password.body);
    fresh.stop().await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_signing_key_is_fetched_when_an_id_token_names_it() {
    let (up, _stop) = upstream::whoami().await;
    let idp_port = free_port();
    let gw = Gateway::start(&gateway_toml(&base_toml(), up, idp_port));
    let mut idp = Provider::start(idp_port, clients(&[gw.http], gw.http));
    let (first, _, _) = browser_sign_in(gw.http, &idp, &mut ProviderJar::default(), "idp", "", "alice").await;
    assert_eq!(first.status, 303, "{}", first.body);
    // A new key and kid; the gateway still holds the old key set.
    idp.restart();
    // Key sets are fetched again at most every 5 s (a flood of made-up kids costs nothing).
    tokio::time::sleep(Duration::from_millis(5200)).await;
    let (second, _, _) =
        browser_sign_in(gw.http, &idp, &mut ProviderJar::default(), "idp", "", "alice").await;
    assert_eq!(
        second.status,
        303,
        "{}\nprovider log:\n{}",
        second.body,
        idp.log_tail(20)
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backchannel_logout_ends_that_persons_sessions_on_every_instance() {
    let (up, _stop) = upstream::whoami().await;
    let store = Backing::redis();
    let idp_port = free_port();
    let a = Gateway::start(&gateway_toml(&store.base_toml(), up, idp_port));
    let b = Gateway::start(&gateway_toml(&store.base_toml(), up, idp_port));
    // People sign in on b; the provider's logouts go to a.
    let idp = Provider::start(idp_port, clients(&[b.http], a.http));

    let mut jar1 = ProviderJar::default();
    let mut jar2 = ProviderJar::default();
    let (s1, _, _) = browser_sign_in(b.http, &idp, &mut jar1, "idp", "", "alice").await;
    let (s2, _, _) = browser_sign_in(b.http, &idp, &mut jar2, "idp", "", "alice").await;
    let (s3, _, _) = browser_sign_in(b.http, &idp, &mut ProviderJar::default(), "idp", "", "bob").await;
    let (alice1, alice2, idp_bob) = (session_cookie(&s1), session_cookie(&s2), session_cookie(&s3));
    // The config's own alice, signed in with her password on b.
    let local = call(
        b.http,
        "POST",
        "/auth/signin",
        &[("Content-Type", "application/json")],
        r#"{"username":"alice","password":"alice-password"}"#,
    )
    .await;
    let local_alice = session_cookie(&local);
    for c in [&alice1, &alice2, &idp_bob, &local_alice] {
        assert_eq!(upstream_sees(b.http, "/app/x", c).await.status, 200);
    }
    let sids = idp.sids("alice").await;
    assert_eq!(sids.len(), 2, "{sids:?}");
    assert_ne!(sids[0], sids[1]);

    // One provider session of alice's ends: only its portcullis session.
    let (status, body) = idp.backchannel("portcullis", "alice", Some(&sids[0])).await;
    assert_eq!(status, 200, "{body}\n{}", idp.log_tail(20));
    assert_eq!(status_soon(b.http, &alice1, 401).await, 401);
    assert_eq!(upstream_sees(b.http, "/app/x", &alice2).await.status, 200);

    // All of alice's: her other session ends; the config's alice and the provider's bob stay.
    let (status, body) = idp.backchannel("portcullis", "alice", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(status_soon(b.http, &alice2, 401).await, 401);
    assert_eq!(upstream_sees(b.http, "/app/x", &local_alice).await.status, 200);
    assert_eq!(upstream_sees(b.http, "/app/x", &idp_bob).await.status, 200);

    // What is not a valid logout token is refused with a JSON error, and ends nothing.
    let form = "application/x-www-form-urlencoded";
    for body in [
        "".to_string(),
        "logout_token=".to_string(),
        "logout_token=a.b.c".to_string(),
        format!("logout_token={}", "x".repeat(20_000)),
        // A token of the right shape, signed by nobody the provider knows.
        "logout_token=eyJhbGciOiJSUzI1NiIsImtpZCI6Im5vcGUifQ.eyJzdWIiOiJib2IifQ.c2ln".to_string(),
        // `none` is never an algorithm.
        "logout_token=eyJhbGciOiJub25lIn0.eyJzdWIiOiJib2IifQ.".to_string(),
    ] {
        let r = call(
            a.http,
            "POST",
            "/auth/oidc/idp/backchannel-logout",
            &[("Content-Type", form)],
            &body,
        )
        .await;
        if body.len() > 16 * 1024 {
            assert_eq!(r.status, 413, "{}", r.body);
            continue;
        }
        assert_eq!(r.status, 400, "{body:.60}: {}", r.body);
        assert_eq!(r.json()["error"], "invalid_request");
    }
    assert_eq!(upstream_sees(b.http, "/app/x", &idp_bob).await.status, 200);

    // An operator finds and ends a provider's user by their key, oidc:<provider>:<sub>.
    let listed = admin_call(a.admin, "GET", "/admin/sessions?user=oidc%3Aidp%3Abob").await;
    assert_eq!(
        json_of(&listed)["sessions"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    let local = admin_call(a.admin, "GET", "/admin/sessions?user=alice").await;
    assert_eq!(
        json_of(&local)["sessions"].as_array().map(Vec::len),
        Some(1),
        "{local}"
    );
    let revoked = admin_call(a.admin, "DELETE", "/admin/users/oidc%3Aidp%3Abob/sessions").await;
    assert_eq!(
        json_of(&revoked)["revoked"].as_array().map(Vec::len),
        Some(1),
        "{revoked}"
    );
    assert_eq!(status_soon(b.http, &idp_bob, 401).await, 401);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_is_approved_through_the_provider() {
    let (up, _stop) = upstream::whoami().await;
    let idp_port = free_port();
    let gw = Gateway::start(&gateway_toml(&base_toml(), up, idp_port));
    let idp = Provider::start(idp_port, clients(&[gw.http], gw.http));
    let created = call(gw.http, "POST", "/sessions", &[], "").await;
    assert_eq!(created.status, 201, "{}", created.body);
    let created = created.json();
    let token = created["token"].as_str().unwrap().to_string();
    let code = created["user_code"].as_str().unwrap().to_string();
    let bearer = format!("Bearer {token}");
    assert_eq!(
        call(gw.http, "GET", "/app/x", &[("Authorization", &bearer)], "")
            .await
            .status,
        401
    );

    let page = call(gw.http, "GET", &format!("/auth/login?code={code}"), &[], "").await;
    assert!(page.body.contains("Approve with Test IdP"), "{}", page.body);
    assert!(
        page.body.contains("action=\"/auth/oidc/idp/start\""),
        "{}",
        page.body
    );

    // A link cannot approve a device: it leads to the page that says which device asks.
    let link = call(
        gw.http,
        "GET",
        &format!("/auth/oidc/idp/start?code={code}"),
        &[],
        "",
    )
    .await;
    assert_eq!(link.status, 303, "{}", link.body);
    assert_eq!(link.header("location"), Some(format!("/auth/login?code={code}")));
    // Nor can another site's form.
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let body = format!("code={code}");
    let cross = [form[0], ("Sec-Fetch-Site", "cross-site")];
    let refused = call(gw.http, "POST", "/auth/oidc/idp/start", &cross, &body).await;
    assert_failure_page(&refused, 403, "from another site is refused");
    let unknown = call(gw.http, "POST", "/auth/oidc/idp/start", &form, "code=BCDF-GHJK").await;
    assert_failure_page(&unknown, 404, "unknown or has expired");

    // The device page's button: this site's form, then the provider.
    let start = call(gw.http, "POST", "/auth/oidc/idp/start", &form, &body).await;
    let (done, _, _) = complete_sign_in(gw.http, &idp, &mut ProviderJar::default(), start, "alice").await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("is now signed in as alice"), "{}", done.body);
    assert!(
        done.set_cookies().iter().all(|(n, _)| n.contains("-oidc-")),
        "no browser session: the device's is the one signed in"
    );
    let seen = call(gw.http, "GET", "/app/x", &[("Authorization", &bearer)], "").await;
    assert_eq!(seen.status, 200, "{}", seen.body);
    assert_eq!(seen.json()["headers"]["x-auth-user"], "alice");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_holds_at_most_three_sign_in_cookies() {
    let (up, _stop) = upstream::whoami().await;
    let idp_port = free_port();
    let gw = Gateway::start(&gateway_toml(&base_toml(), up, idp_port));
    let _idp = Provider::start(idp_port, clients(&[gw.http], gw.http));
    // A page sends the browser to `start` again and again, with a long `rd` (the review's
    // cookie bomb): the browser's jar, kept as a browser keeps it, stays small.
    let mut jar: std::collections::BTreeMap<String, String> = Default::default();
    let rd = format!("/app/{}", "x".repeat(2000));
    for i in 0..12 {
        let cookie: Vec<String> = jar.iter().map(|(n, v)| format!("{n}={v}")).collect();
        let cookie = cookie.join("; ");
        let mut headers = vec![];
        if !cookie.is_empty() {
            headers.push(("Cookie", cookie.as_str()));
        }
        let start = call(
            gw.http,
            "GET",
            &format!("/auth/oidc/idp/start?rd={rd}"),
            &headers,
            "",
        )
        .await;
        assert_eq!(start.status, 302, "start {i}: {}", start.body);
        for (name, value) in start.set_cookies() {
            if value.is_empty() {
                jar.remove(&name);
            } else {
                jar.insert(name, value);
            }
        }
        assert!(
            jar.len() <= 3,
            "after {} starts the browser holds {} sign-in cookies",
            i + 1,
            jar.len()
        );
    }
    let size: usize = jar.iter().map(|(n, v)| n.len() + v.len() + 2).sum();
    assert!(
        size < 2048,
        "the sign-in cookies take {size} bytes of every request"
    );
    let cookie: Vec<String> = jar.iter().map(|(n, v)| format!("{n}={v}")).collect();
    let login = call(
        gw.http,
        "GET",
        "/auth/login",
        &[("Cookie", &cookie.join("; "))],
        "",
    )
    .await;
    assert_eq!(login.status, 200);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_drops_a_provider_or_narrows_its_roles_shuts_its_sessions_out() {
    let (up, _stop) = upstream::whoami().await;
    let idp_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("portcullis.toml");
    let before = gateway_toml(&base_toml(), up, idp_port);
    std::fs::write(&file, &before).unwrap();
    let config = portcullis::config::Config::load(&file).unwrap();
    let running = portcullis::start(&config).unwrap();
    let gw = Gateway {
        tls: running.tls_addr.unwrap(),
        http: running.http_addr.unwrap(),
        admin: running.admin_addr,
        running: Some(running),
    };
    let idp = Provider::start(idp_port, clients(&[gw.http], gw.http));
    let (a, _, _) = browser_sign_in(gw.http, &idp, &mut ProviderJar::default(), "idp", "", "alice").await;
    let (b, _, _) = browser_sign_in(gw.http, &idp, &mut ProviderJar::default(), "idp", "", "bob").await;
    let (alice, bob) = (session_cookie(&a), session_cookie(&b));
    assert_eq!(upstream_sees(gw.http, "/app/x", &bob).await.status, 200);

    // `idp` now admits only admins: bob (staff) is shut out, alice (admin) stays.
    let narrowed = before.replace(
        "roles_claim = \"groups\"\n[[oidc]]\nname = \"staff\"",
        "roles_claim = \"groups\"\nallowed_roles = [\"admin\"]\n[[oidc]]\nname = \"staff\"",
    );
    assert_ne!(narrowed, before);
    std::fs::write(&file, &narrowed).unwrap();
    let reloaded = admin_call(gw.admin, "POST", "/admin/reload").await;
    assert_eq!(status_of(&reloaded), 200, "{reloaded}");
    assert_eq!(upstream_sees(gw.http, "/app/x", &bob).await.status, 401);
    assert_eq!(upstream_sees(gw.http, "/app/x", &alice).await.status, 200);

    // `idp` gone: nobody it signed in gets through.
    let start = narrowed.find("[[oidc]]\nname = \"idp\"").unwrap();
    let end = narrowed.find("[[oidc]]\nname = \"staff\"").unwrap();
    let without = format!("{}{}", &narrowed[..start], &narrowed[end..]);
    std::fs::write(&file, &without).unwrap();
    let reloaded = admin_call(gw.admin, "POST", "/admin/reload").await;
    assert_eq!(status_of(&reloaded), 200, "{reloaded}");
    assert_eq!(upstream_sees(gw.http, "/app/x", &alice).await.status, 401);
    gw.stop().await;
}
