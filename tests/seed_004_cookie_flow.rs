//! Seed 004 (a cookie-based server-side session service) walked step by step against
//! portcullis: sign in, a protected page (`/welcome`), refresh, logout — with the cookie
//! attributes, a new session at every sign-in, cross-site refusals, safe `rd` redirects and
//! login rate limiting.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use bytes::Bytes;
use common::*;
use http_body_util::Full;

async fn gateway(extra: &str) -> (Gateway, tokio_util::sync::CancellationToken) {
    let (up, stop) = upstream::whoami().await;
    let toml = base_toml()
        + extra
        + USERS
        + &route("welcome", "/welcome", &[up], "")
            .replace("policy = \"public\"", "policy = \"authenticated\"")
        + &route("app", "/app", &[up], "").replace("policy = \"public\"", "policy = \"authenticated\"");
    (Gateway::start(&toml), stop)
}

fn post(path: &str, content_type: &str, body: &str) -> http::Request<Full<Bytes>> {
    http::Request::post(path)
        .header("host", "localhost")
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn with_cookie(mut req: http::Request<Full<Bytes>>, cookie: &str) -> http::Request<Full<Bytes>> {
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    req
}

/// `name=value` from a Set-Cookie header, and the header itself.
fn set_cookie(a: &Answer) -> (String, String) {
    let header = a
        .headers
        .get("set-cookie")
        .expect("a Set-Cookie header")
        .to_str()
        .unwrap()
        .to_string();
    (header.split(';').next().unwrap().to_string(), header)
}

const ALICE: &str = r#"{"username":"alice","password":"alice-password"}"#;

#[tokio::test]
async fn the_seed_flow_over_tls() {
    let (gw, _stop) = gateway("").await;
    // 1. POST /signin {"username","password"} → cookie.
    let (a, _) = tls_request(
        gw.tls,
        "http/1.1",
        post("/auth/signin", "application/json", ALICE),
    )
    .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let user = a.json();
    assert_eq!(user["username"], "alice");
    assert_eq!(user["user_id"], 1);
    assert_eq!(user["user_uuid"], "11111111-1111-4111-8111-111111111111");
    let (cookie, header) = set_cookie(&a);
    assert!(cookie.starts_with("__Host-portcullis=pc1_"), "{header}");
    for attr in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/", "Max-Age=1209600"] {
        assert!(header.contains(attr), "{attr} missing: {header}");
    }
    assert!(!header.contains("Domain"), "__Host- cookies carry no Domain");

    // 2. GET /welcome with the cookie → the upstream knows alice; without → 401.
    let (a, _) = tls_request(gw.tls, "http/1.1", with_cookie(get("/welcome"), &cookie)).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["headers"]["x-auth-user"], "alice");
    assert!(
        a.json()["headers"].get("cookie").is_none(),
        "our cookie is not forwarded"
    );
    let (a, _) = tls_request(gw.tls, "http/1.1", get("/welcome")).await;
    assert_eq!(a.status, 401);
    let (a, _) = tls_request(
        gw.tls,
        "http/1.1",
        with_cookie(get("/welcome"), "__Host-portcullis=pc1_unknown"),
    )
    .await;
    assert_eq!(a.status, 401);

    // GET /users/me answers with the same user.
    let (a, _) = tls_request(gw.tls, "http/1.1", with_cookie(get("/users/me"), &cookie)).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["username"], "alice");

    // 3. POST /refresh → a new token, renewed expiry; the old one stops working.
    let (a, _) = tls_request(
        gw.tls,
        "http/1.1",
        with_cookie(post("/auth/refresh", "application/json", "{}"), &cookie),
    )
    .await;
    assert_eq!(a.status, 200);
    let (fresh, header) = set_cookie(&a);
    assert_ne!(fresh, cookie);
    assert!(header.contains("Max-Age=1209600"));
    let (a, _) = tls_request(gw.tls, "http/1.1", with_cookie(get("/welcome"), &cookie)).await;
    assert_eq!(a.status, 401, "the refreshed-away token still works");
    let (a, _) = tls_request(gw.tls, "http/1.1", with_cookie(get("/welcome"), &fresh)).await;
    assert_eq!(a.status, 200);

    // A sibling host (or any other site) cannot sign the person out.
    for site in ["same-site", "cross-site"] {
        let mut req = with_cookie(get("/auth/logout"), &fresh);
        req.headers_mut().insert("sec-fetch-site", site.parse().unwrap());
        let (a, _) = tls_request(gw.tls, "http/1.1", req).await;
        assert_eq!(a.status, 403, "{site}");
        assert_eq!(a.json()["error"], "cross_site_request");
    }
    let (a, _) = tls_request(gw.tls, "http/1.1", with_cookie(get("/welcome"), &fresh)).await;
    assert_eq!(a.status, 200, "still signed in");

    // 4. GET /logout → session deleted, cookie cleared.
    let (a, _) = tls_request(gw.tls, "http/1.1", with_cookie(get("/auth/logout"), &fresh)).await;
    assert_eq!(a.status, 200);
    let (_, header) = set_cookie(&a);
    assert!(
        header.starts_with("__Host-portcullis=;") && header.contains("Max-Age=0"),
        "{header}"
    );
    let (a, _) = tls_request(gw.tls, "http/1.1", with_cookie(get("/welcome"), &fresh)).await;
    assert_eq!(a.status, 401);
    gw.stop().await;
}

#[tokio::test]
async fn every_sign_in_is_a_new_session_and_forms_work() {
    let (gw, _stop) = gateway("").await;
    let mut ids = Vec::new();
    for body in [
        ALICE.to_string(),
        "username=alice&password=alice-password".to_string(),
    ] {
        let ct = if body.starts_with('{') {
            "application/json"
        } else {
            "application/x-www-form-urlencoded"
        };
        let a = http_request(gw.http, post("/auth/signin", ct, &body)).await;
        assert_eq!(a.status, 200, "{ct}");
        let (cookie, header) = set_cookie(&a);
        assert!(
            cookie.starts_with("portcullis=pc1_"),
            "plain listener: no __Host- prefix: {header}"
        );
        assert!(!header.contains("Secure"), "{header}");
        ids.push(a.json()["session"]["id"].as_str().unwrap().to_string());
    }
    assert_ne!(ids[0], ids[1], "no session fixation: a new session each time");
    gw.stop().await;
}

#[tokio::test]
async fn bad_sign_ins_say_nothing_about_which_users_exist() {
    let (gw, _stop) = gateway("").await;
    let wrong = http_request(
        gw.http,
        post(
            "/auth/signin",
            "application/json",
            r#"{"username":"alice","password":"nope"}"#,
        ),
    )
    .await;
    let unknown = http_request(
        gw.http,
        post(
            "/auth/signin",
            "application/json",
            r#"{"username":"mallory","password":"nope"}"#,
        ),
    )
    .await;
    let no_hash = http_request(
        gw.http,
        post(
            "/auth/signin",
            "application/json",
            r#"{"username":"bob","password":"x"}"#,
        ),
    )
    .await;
    for a in [&wrong, &unknown, &no_hash] {
        assert_eq!(a.status, 401);
        assert!(a.headers.get("set-cookie").is_none());
    }
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(wrong.body, no_hash.body);
    assert_eq!(wrong.json()["error"], "invalid_credentials");

    let a = http_request(gw.http, post("/auth/signin", "text/plain", ALICE)).await;
    assert_eq!(a.status, 415);
    let a = http_request(
        gw.http,
        post("/auth/signin", "application/json", r#"{"username":"alice"}"#),
    )
    .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json()["message"], "password: required");
    let a = http_request(
        gw.http,
        post(
            "/auth/signin",
            "application/json",
            r#"{"username":"alice","password":"#,
        ),
    )
    .await;
    assert_eq!(a.status, 400);
    let a = http_request(
        gw.http,
        post("/auth/signin", "application/json", &"x".repeat(20_000)),
    )
    .await;
    assert_eq!(a.status, 413);
    let long = format!(r#"{{"username":"alice","password":"{}"}}"#, "p".repeat(200));
    assert_eq!(
        http_request(gw.http, post("/auth/signin", "application/json", &long))
            .await
            .status,
        401
    );
    gw.stop().await;
}

#[tokio::test]
async fn cross_site_changes_with_a_cookie_are_refused() {
    let (gw, _stop) = gateway("").await;
    let a = http_request(gw.http, post("/auth/signin", "application/json", ALICE)).await;
    let (cookie, _) = set_cookie(&a);
    let change = |extra: Option<(&str, &str)>| {
        let mut req = with_cookie(post("/app/orders", "application/json", "{}"), &cookie);
        if let Some((k, v)) = extra {
            req.headers_mut().insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        req
    };
    assert_eq!(
        http_request(gw.http, change(Some(("sec-fetch-site", "cross-site"))))
            .await
            .status,
        403
    );
    assert_eq!(
        http_request(gw.http, change(Some(("origin", "https://evil.example"))))
            .await
            .status,
        403
    );
    assert_eq!(
        http_request(gw.http, change(Some(("origin", "http://localhost"))))
            .await
            .status,
        200
    );
    assert_eq!(
        http_request(gw.http, change(Some(("sec-fetch-site", "same-origin"))))
            .await
            .status,
        200
    );
    assert_eq!(http_request(gw.http, change(None)).await.status, 200);
    // Safe methods are not changes.
    let mut read = with_cookie(get("/app/orders"), &cookie);
    read.headers_mut()
        .insert("sec-fetch-site", "cross-site".parse().unwrap());
    assert_eq!(http_request(gw.http, read).await.status, 200);
    // A cross-site sign-in is refused too (login CSRF).
    let mut signin = post("/auth/signin", "application/json", ALICE);
    signin
        .headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    assert_eq!(http_request(gw.http, signin).await.status, 403);
    gw.stop().await;
}

#[tokio::test]
async fn logout_redirects_only_to_safe_places() {
    let (gw, _stop) = gateway("").await;
    let cases = [
        ("/bye", "/bye"),
        ("/app/page%3Ftab%3D2", "/app/page?tab=2"),
        ("//evil.example", "/"),
        ("/%5Cevil.example", "/"),
        ("/%09/evil.example", "/"),
        ("https%3A%2F%2Fevil.example", "/"),
        ("%2F%2Fevil.example", "/"),
        ("javascript%3Aalert(1)", "/"),
    ];
    for (rd, want) in cases {
        let resp = get_raw(gw.http, &format!("/auth/logout?rd={rd}"), "").await;
        assert_eq!(status_of(&resp), 303, "{rd}: {resp}");
        let location = resp
            .lines()
            .find_map(|l| l.strip_prefix("location: "))
            .unwrap()
            .trim();
        assert_eq!(location, want, "{rd}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn sign_ins_are_rate_limited() {
    let (gw, _stop) = gateway("\n[login]\nper_user = 3\nper_address = 5\nwindow = \"1m\"\n").await;
    let wrong = r#"{"username":"alice","password":"nope"}"#;
    for _ in 0..3 {
        assert_eq!(
            http_request(gw.http, post("/auth/signin", "application/json", wrong))
                .await
                .status,
            401
        );
    }
    let a = http_request(gw.http, post("/auth/signin", "application/json", ALICE)).await;
    assert_eq!(a.status, 429, "the 4th attempt for alice within the window");
    let retry: u64 = a
        .headers
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(a.json()["error"], "rate_limited");
    // Per address: the 6th attempt from this address, whatever the user.
    assert_eq!(
        http_request(
            gw.http,
            post(
                "/auth/signin",
                "application/json",
                r#"{"username":"bob","password":"x"}"#
            )
        )
        .await
        .status,
        401
    );
    let a = http_request(
        gw.http,
        post(
            "/auth/signin",
            "application/json",
            r#"{"username":"bob","password":"x"}"#,
        ),
    )
    .await;
    assert_eq!(a.status, 429);
    gw.stop().await;
}

#[tokio::test]
async fn users_me_without_a_session_points_to_the_login_page() {
    let (gw, _stop) = gateway("").await;
    let a = http_request(gw.http, get("/users/me")).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.headers.get("location").unwrap(), "/auth/login");
    assert_eq!(a.json()["error"], "invalid_token");
    gw.stop().await;
}

/// Device codes are short enough to guess (20^8): every code looked up, on the page or in a
/// decision, counts against the per-address limit, before the code is looked up.
#[tokio::test]
async fn device_codes_cannot_be_enumerated() {
    let (gw, _stop) = gateway("\n[login]\nper_user = 100\nper_address = 4\nwindow = \"1m\"\n").await;
    let mut statuses = Vec::new();
    for i in 0..3 {
        statuses.push(
            http_request(gw.http, get(&format!("/auth/login?code=BCDF-GH{i:02}")))
                .await
                .status,
        );
    }
    for decision in ["deny", "approve"] {
        let form = format!("code=BCDF-GHJK&decision={decision}&username=alice&password=x");
        let mut req = post("/auth/login", "application/x-www-form-urlencoded", &form);
        req.headers_mut()
            .insert("sec-fetch-site", "same-origin".parse().unwrap());
        statuses.push(http_request(gw.http, req).await.status);
    }
    assert_eq!(
        statuses,
        [404, 404, 404, 404, 429],
        "unknown codes, then the limit"
    );
    let a = http_request(gw.http, get("/auth/login?code=BCDF-GHJK")).await;
    assert_eq!(a.status, 429);
    assert!(a.headers.get("retry-after").is_some());
    gw.stop().await;
}
