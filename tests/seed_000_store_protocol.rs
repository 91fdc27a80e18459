//! Seed 000 (the store protocol) walked step by step against portcullis, on the embedded store
//! and on redis with two gateway instances (the browser logs in on one, the device's status
//! socket listens on the other): `POST /sessions` with no body, `GET /users/me` → 401 with the
//! login page's address, the status web socket, the HTML login page confirming the code, the
//! pushed `OK`, the API with the same token, `POST /sessions/renew`, and a restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use common::*;
use futures_util::StreamExt;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn config(backing: &Backing, up: std::net::SocketAddr, extra: &str) -> String {
    backing.base_toml()
        + extra
        + USERS
        + &route("app", "/app", &[up], "").replace("policy = \"public\"", "policy = \"authenticated\"")
}

/// The next text frame as JSON (bounded wait, so a missing push fails instead of hanging).
async fn frame(ws: &mut Socket) -> serde_json::Value {
    let next = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("a frame within 10 s")
        .expect("the socket is open")
        .expect("a well-formed frame");
    match next {
        Message::Text(t) => serde_json::from_str(t.as_str()).unwrap(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// After the last status, the server closes normally.
async fn closed(ws: &mut Socket) {
    let next = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("the close within 5 s");
    match next {
        Some(Ok(Message::Close(Some(f)))) => assert_eq!(u16::from(f.code), 1000),
        None => {}
        other => panic!("expected a normal close, got {other:?}"),
    }
}

async fn status_socket(addr: std::net::SocketAddr, token: &str) -> Socket {
    let (ws, resp) = tokio_tungstenite::connect_async(format!("ws://{addr}/auth/status?token={token}"))
        .await
        .expect("the status socket upgrades");
    assert_eq!(resp.status(), 101);
    ws
}

fn form(path: &str, body: &str) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    let mut req = request(
        "POST",
        path,
        Some("application/x-www-form-urlencoded"),
        body.to_string(),
    );
    req.headers_mut()
        .insert("origin", "http://localhost".parse().unwrap());
    req
}

async fn walk(backing: Backing) {
    let kind = backing.name();
    let (up, _stop) = upstream::whoami().await;
    let toml = config(&backing, up, "");
    let browser_side = Gateway::start(&toml);
    // With redis a second instance holds the device's socket; the embedded store is one node.
    let device_side = backing.shared().then(|| Gateway::start(&toml));
    let device = device_side.as_ref().unwrap_or(&browser_side).http;

    // 1-2. POST /sessions (no body) → an unauthenticated token.
    let a = http_request(device, request("POST", "/sessions", None, "")).await;
    assert_eq!(a.status, 201, "{kind}: {:?}", a.body);
    let created = a.json();
    let token = created["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("pc1_"), "{kind}");
    assert_eq!(created["status"], "pending");
    let code = created["user_code"].as_str().unwrap().to_string();
    assert!(
        code.len() == 9 && code.as_bytes()[4] == b'-',
        "{kind}: user code {code}"
    );
    let login_url = created["login_url"].as_str().unwrap().to_string();
    assert_eq!(login_url, format!("/auth/login?code={code}"));
    let exp = created["exp"].as_u64().unwrap();
    let now = portcullis::session::now();
    assert!(
        (now + 590..=now + 610).contains(&exp),
        "{kind}: pending_ttl is 10m by default"
    );

    // 3. GET /users/me → 401 with the login form's location.
    let a = http_request(device, bearer(get("/users/me"), &token)).await;
    assert_eq!(a.status, 401, "{kind}");
    assert_eq!(a.headers["location"], login_url.as_str());
    assert_eq!(a.json()["error"], "login_required");
    assert_eq!(a.json()["login_url"], login_url.as_str());
    // The API refuses the pending token like no token.
    let a = http_request(device, bearer(get("/app/x"), &token)).await;
    assert_eq!(a.status, 401, "{kind}: a pending token opens nothing");

    // 3.2. The status socket says pending at once.
    let mut ws = status_socket(device, &token).await;
    assert_eq!(frame(&mut ws).await, serde_json::json!({"status": "pending"}));

    // 3.1. The browser opens the login page: a form, the code shown, no script.
    let a = http_request(browser_side.http, get(&login_url)).await;
    assert_eq!(a.status, 200, "{kind}");
    assert!(
        a.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = String::from_utf8_lossy(&a.body);
    assert!(page.contains(&code), "{kind}: the page shows the code");
    assert!(page.contains("<form method=\"post\" action=\"/auth/login\">"));
    assert!(!page.contains("<script"), "works without JavaScript");
    assert!(
        a.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );

    // A wrong password leaves the session pending.
    let a = http_request(
        browser_side.http,
        form(
            "/auth/login",
            &format!("username=alice&password=wrong&code={code}"),
        ),
    )
    .await;
    assert_eq!(a.status, 401, "{kind}");
    assert!(String::from_utf8_lossy(&a.body).contains("Wrong username or password"));

    // The login with the code.
    let a = http_request(
        browser_side.http,
        form(
            "/auth/login",
            &format!("username=alice&password=alice-password&code={code}"),
        ),
    )
    .await;
    assert_eq!(a.status, 200, "{kind}: {}", String::from_utf8_lossy(&a.body));
    assert!(String::from_utf8_lossy(&a.body).contains("is now signed in as alice"));

    // 3.2. Pushed over the socket (on the other instance with redis), then a normal close.
    let ok = frame(&mut ws).await;
    assert_eq!(ok["status"], "OK", "{kind}: {ok}");
    assert_eq!(ok["user"]["username"], "alice");
    assert_eq!(ok["user"]["user_id"], 1);
    closed(&mut ws).await;

    // 3.3. GET /users/me → the user information object.
    let a = http_request(device, bearer(get("/users/me"), &token)).await;
    assert_eq!(a.status, 200, "{kind}: {:?}", a.body);
    let me = a.json();
    assert_eq!(me["username"], "alice");
    assert_eq!(me["user_uuid"], "11111111-1111-4111-8111-111111111111");
    assert_eq!(me["roles"], serde_json::json!(["admin", "dev"]));
    assert_eq!(me["session"]["id"].as_str().unwrap().len(), 32);
    assert!(
        me["session"]["exp"].as_u64().unwrap() > now + 13 * 86400,
        "{kind}: 14d"
    );

    // 4. The client uses the API with the same token.
    let a = http_request(device, bearer(get("/app/x"), &token)).await;
    assert_eq!(a.status, 200, "{kind}");
    assert_eq!(a.json()["headers"]["x-auth-user"], "alice");

    // The login code is spent.
    let a = http_request(
        browser_side.http,
        form(
            "/auth/login",
            &format!("username=alice&password=alice-password&code={code}"),
        ),
    )
    .await;
    assert_eq!(a.status, 404, "{kind}: a code logs in once");
    assert!(String::from_utf8_lossy(&a.body).contains("unknown or has expired"));

    // 6. POST /sessions/renew → a new token; the old one stops working (on both instances).
    let a = http_request(
        device,
        bearer(request("POST", "/sessions/renew", None, ""), &token),
    )
    .await;
    assert_eq!(a.status, 201, "{kind}: {:?}", a.body);
    let renewed = a.json();
    let fresh = renewed["auth_token"].as_str().unwrap().to_string();
    assert_ne!(fresh, token);
    assert!(renewed["reissue_token"].as_str().unwrap().starts_with("pcr_"));
    assert_eq!(renewed["username"], "alice");
    assert_eq!(renewed["user_id"], 1);
    assert_eq!(renewed["user_uuid"], "11111111-1111-4111-8111-111111111111");
    assert!(renewed["exp"].as_u64().unwrap() > now);
    for gw in [Some(&browser_side), device_side.as_ref()].into_iter().flatten() {
        let a = http_request(gw.http, bearer(get("/users/me"), &token)).await;
        assert_eq!(a.status, 401, "{kind}: the old token is dead");
        assert_eq!(a.json()["error"], "invalid_token");
        assert_eq!(a.headers["location"], "/auth/login");
        let a = http_request(gw.http, bearer(get("/users/me"), &fresh)).await;
        assert_eq!(a.status, 200, "{kind}: the new token works");
    }

    // 5. Sessions are persistent: a restarted gateway still knows the token.
    browser_side.stop().await;
    if let Some(d) = device_side {
        d.stop().await;
    }
    let again = Gateway::start(&toml);
    let a = http_request(again.http, bearer(get("/users/me"), &fresh)).await;
    assert_eq!(a.status, 200, "{kind}: survives a restart");
    again.stop().await;
}

#[tokio::test]
async fn seed_000_on_the_embedded_store() {
    walk(Backing::embedded()).await;
}

#[tokio::test]
async fn seed_000_on_redis_across_two_instances() {
    walk(Backing::redis()).await;
}

/// On a Redis Cluster (3 masters, 3 replicas) through one seed node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_000_on_a_redis_cluster() {
    walk(Backing::cluster()).await;
}

#[tokio::test]
async fn the_status_socket_reports_invalid_and_expired() {
    let backing = Backing::embedded();
    let (up, _stop) = upstream::whoami().await;
    let gw = Gateway::start(&config(&backing, up, "\n[sessions]\npending_ttl = \"2s\"\n"));

    let mut ws = status_socket(gw.http, "pc1_not-a-token").await;
    assert_eq!(frame(&mut ws).await, serde_json::json!({"status": "invalid"}));
    closed(&mut ws).await;

    let a = http_request(gw.http, request("POST", "/sessions", None, "")).await;
    let token = a.json()["token"].as_str().unwrap().to_string();
    let mut ws = status_socket(gw.http, &token).await;
    assert_eq!(frame(&mut ws).await["status"], "pending");
    assert_eq!(
        frame(&mut ws).await,
        serde_json::json!({"status": "expired"}),
        "the pending session ended unclaimed"
    );
    closed(&mut ws).await;

    // Without an upgrade the endpoint says what it wants.
    let a = http_request(gw.http, bearer(get("/auth/status"), &token)).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json()["error"], "websocket_required");
}

#[tokio::test]
async fn the_login_page_escapes_and_signs_browsers_in() {
    let (up, _stop) = upstream::whoami().await;
    let gw = Gateway::start(&(base_toml() + USERS + &route("app", "/app", &[up], "")));

    let a = http_request(gw.http, get("/auth/login?rd=%22%3E%3Cimg%20src=x%3E")).await;
    assert_eq!(a.status, 200);
    let page = String::from_utf8_lossy(&a.body);
    assert!(!page.contains("<img"), "{page}");
    assert!(page.contains("&quot;&gt;&lt;img"), "{page}");
    assert_eq!(a.headers["x-frame-options"], "DENY");
    // An unknown code is said at once, before any password is asked, and never echoed.
    let a = http_request(gw.http, get("/auth/login?code=%3Cscript%3Ealert(1)%3C/script%3E")).await;
    assert_eq!(a.status, 404);
    let page = String::from_utf8_lossy(&a.body);
    assert!(
        !page.contains("<script>alert") && !page.contains("type=\"password\""),
        "{page}"
    );
    assert!(page.contains("unknown or has expired"), "{page}");

    // Without a code: a cookie session and 303 to a safe rd (never off-site).
    for (rd, to) in [("/app/home", "/app/home"), ("//evil.example", "/")] {
        let a = http_request(
            gw.http,
            form(
                "/auth/login",
                &format!("username=alice&password=alice-password&rd={rd}"),
            ),
        )
        .await;
        assert_eq!(a.status, 303, "{:?}", a.body);
        assert_eq!(a.headers["location"], to);
        let cookie = a.headers["set-cookie"].to_str().unwrap();
        assert!(cookie.starts_with("portcullis=pc1_"), "{cookie}");
    }

    // A cross-site post is refused (login CSRF).
    let mut req = form("/auth/login", "username=alice&password=alice-password");
    req.headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    assert_eq!(http_request(gw.http, req).await.status, 403);
}

#[tokio::test]
async fn single_user_mode_needs_no_credentials() {
    let (up, _stop) = upstream::whoami().await;
    let gw = Gateway::start(
        &(base_toml().replace("[server]", "mode = \"single-user\"\n[server]")
            + USERS
            + &route("app", "/app", &[up], "").replace("policy = \"public\"", "policy = \"authenticated\"")),
    );
    let a = http_request(gw.http, get("/users/me")).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.json()["username"], "alice", "the first [[users]] entry");

    let a = http_request(gw.http, request("POST", "/sessions", None, "")).await;
    assert_eq!(a.status, 201);
    assert_eq!(a.json()["status"], "active");
    let token = a.json()["token"].as_str().unwrap().to_string();
    let a = http_request(gw.http, bearer(get("/users/me"), &token)).await;
    assert_eq!(a.json()["username"], "alice");

    let a = http_request(gw.http, get("/app/x")).await;
    assert_eq!(a.status, 200, "proxied without a credential");
    assert_eq!(a.json()["headers"]["x-auth-user"], "alice");
    assert_eq!(a.json()["headers"]["x-auth-user-id"], "1");
}

#[tokio::test]
async fn the_api_prefix_moves_every_endpoint() {
    let (up, _stop) = upstream::whoami().await;
    let gw = Gateway::start(
        &(base_toml()
            + "\n[api]\nprefix = \"/_auth/\"\n"
            + USERS
            + &route("app", "/", &[up], "").replace("policy = \"public\"", "policy = \"authenticated\"")),
    );
    let a = http_request(gw.http, request("POST", "/_auth/sessions", None, "")).await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    let login_url = a.json()["login_url"].as_str().unwrap().to_string();
    assert!(login_url.starts_with("/_auth/auth/login?code="), "{login_url}");
    let token = a.json()["token"].as_str().unwrap().to_string();
    let a = http_request(gw.http, bearer(get("/_auth/users/me"), &token)).await;
    assert_eq!(a.headers["location"], login_url.as_str());

    let a = http_request(gw.http, get(&login_url)).await;
    assert!(String::from_utf8_lossy(&a.body).contains("action=\"/_auth/auth/login\""));

    // The unprefixed paths belong to the upstream now (here: behind the route's policy).
    let mut nav = get("/users/me");
    nav.headers_mut().insert("accept", "text/html".parse().unwrap());
    nav.headers_mut()
        .insert("sec-fetch-mode", "navigate".parse().unwrap());
    let a = http_request(gw.http, nav).await;
    assert_eq!(a.status, 302);
    assert_eq!(a.headers["location"], "/_auth/auth/login?rd=/users/me");
    let minted = mint(gw.admin, "alice", 1).await.remove(0);
    let a = http_request(gw.http, bearer(get("/sessions"), &minted)).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["path"], "/sessions", "answered by the upstream");
}

/// Renewing is for the holder of the current token: of concurrent renews with one token
/// exactly one succeeds, so nobody is left holding a dead token they were just given.
#[tokio::test]
async fn concurrent_renews_leave_exactly_one_new_token() {
    for backing in [Backing::embedded(), Backing::redis()] {
        let kind = backing.name();
        let (up, _stop) = upstream::whoami().await;
        let gw = Gateway::start(&config(&backing, up, ""));
        let token = mint(gw.admin, "alice", 1).await.remove(0);
        let racers: Vec<_> = (0..8)
            .map(|_| {
                let (addr, token) = (gw.http, token.clone());
                tokio::spawn(async move {
                    http_request(addr, bearer(request("POST", "/sessions/renew", None, ""), &token)).await
                })
            })
            .collect();
        let mut fresh = Vec::new();
        for r in racers {
            let a = r.await.unwrap();
            assert!(a.status == 201 || a.status == 401, "{kind}: {}", a.status);
            if a.status == 201 {
                fresh.push(a.json()["auth_token"].as_str().unwrap().to_string());
            }
        }
        assert_eq!(fresh.len(), 1, "{kind}: exactly one renew wins");
        let a = http_request(gw.http, bearer(get("/users/me"), &fresh[0])).await;
        assert_eq!(a.status, 200, "{kind}: and its token works");
        gw.stop().await;
    }
}

/// A renew whose compare-and-set keeps losing is a 409 `conflict`, not a store outage (503):
/// the store answers; the session would not hold still. The record is given a version the
/// redis script cannot match (Lua reads JSON numbers as doubles, and 10^15 prints as
/// `1e+15`), so every attempt loses, as under writers that always win the race.
#[tokio::test]
async fn a_renew_that_keeps_losing_its_compare_and_set_is_a_conflict() {
    let backing = Backing::redis();
    let Backing::Redis(redis) = &backing else {
        unreachable!("Backing::redis is a single redis-server")
    };
    let (up, _stop) = upstream::whoami().await;
    let gw = Gateway::start(&config(&backing, up, ""));
    let token = mint(gw.admin, "alice", 1).await.remove(0);
    let script = "local n = 0 for _, k in ipairs(redis.call('KEYS', '*:s:*')) do \
        local v = redis.call('GET', k) \
        redis.call('SET', k, (string.gsub(v, '\"version\":%d+', '\"version\":1000000000000000')), 'KEEPTTL') \
        n = n + 1 end return n";
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "EVAL", script, "0"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1", "{out:?}");
    let a = http_request(
        gw.http,
        bearer(request("POST", "/sessions/renew", None, ""), &token),
    )
    .await;
    assert_eq!(a.status, 409);
    assert_eq!(
        a.json(),
        serde_json::json!({"error": "conflict", "message": "the session changed meanwhile; try again"})
    );
    let a = http_request(gw.http, bearer(get("/users/me"), &token)).await;
    assert_eq!(a.status, 200, "the session is untouched and still works");
    gw.stop().await;
}

#[tokio::test]
async fn an_empty_form_post_is_the_store_protocol_and_cookies_cannot_renew_cross_site() {
    let (up, _stop) = upstream::whoami().await;
    let gw = Gateway::start(&(base_toml() + USERS + &route("app", "/app", &[up], "")));
    // What `curl -d '' -X POST` sends.
    let a = http_request(
        gw.http,
        request("POST", "/sessions", Some("application/x-www-form-urlencoded"), ""),
    )
    .await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    assert_eq!(a.json()["status"], "pending");

    let token = mint(gw.admin, "alice", 1).await.remove(0);
    for path in ["/sessions/renew", "/sessions/destroy"] {
        let mut req = request("POST", path, None, "");
        req.headers_mut()
            .insert("cookie", format!("portcullis={token}").parse().unwrap());
        req.headers_mut()
            .insert("sec-fetch-site", "cross-site".parse().unwrap());
        let a = http_request(gw.http, req).await;
        assert_eq!(a.status, 403, "{path}");
        assert_eq!(a.json()["error"], "cross_site_request");
    }
    assert_eq!(
        http_request(gw.http, bearer(get("/users/me"), &token))
            .await
            .status,
        200,
        "the session is untouched"
    );
}

/// Deny on the device page ends the pending session: its token opens nothing, the status
/// socket says `denied`, the code cannot be approved afterwards. The page named the device.
#[tokio::test]
async fn deny_refuses_the_device_and_the_socket_says_so() {
    let backing = Backing::embedded();
    let (up, _stop) = upstream::whoami().await;
    let gw = Gateway::start(&config(&backing, up, ""));
    let mut create = request("POST", "/sessions", None, "");
    create
        .headers_mut()
        .insert("user-agent", "TV-Remote/1.0 <b>".parse().unwrap());
    let a = http_request(gw.http, create).await;
    let (token, code) = (
        a.json()["token"].as_str().unwrap().to_string(),
        a.json()["user_code"].as_str().unwrap().to_string(),
    );
    let mut ws = status_socket(gw.http, &token).await;
    assert_eq!(frame(&mut ws).await["status"], "pending");

    let page = http_request(gw.http, get(&format!("/auth/login?code={code}"))).await;
    let html = String::from_utf8_lossy(&page.body);
    assert_eq!(page.status, 200);
    assert!(
        html.contains("TV-Remote/1.0 &lt;b&gt;") && html.contains("127.0.0.1"),
        "{html}"
    );
    assert!(
        html.contains("value=\"approve\"") && html.contains("value=\"deny\""),
        "{html}"
    );

    let a = http_request(
        gw.http,
        form("/auth/login", &format!("code={code}&decision=deny")),
    )
    .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert!(String::from_utf8_lossy(&a.body).contains("Request denied"));
    assert_eq!(frame(&mut ws).await, serde_json::json!({"status": "denied"}));
    closed(&mut ws).await;

    let a = http_request(gw.http, bearer(get("/users/me"), &token)).await;
    assert_eq!(a.status, 401, "a denied session opens nothing");
    let a = http_request(
        gw.http,
        form(
            "/auth/login",
            &format!("username=alice&password=alice-password&code={code}&decision=approve"),
        ),
    )
    .await;
    assert_eq!(a.status, 404, "a denied code cannot be approved");
    let mut ws = status_socket(gw.http, &token).await;
    assert_eq!(frame(&mut ws).await, serde_json::json!({"status": "denied"}));
}
