//! Sessions on the proxy path (memory store): the policy matrix, identity headers, the token
//! never forwarded, spoofed identity never forwarded, forged and oversized tokens refused with
//! zero store lookups, revocation, and the cookie credential. Every test runs on both HTTP/1.1
//! paths (`PATHS`: the fast path, then hyper's).
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use common::*;

async fn gateway(fast: bool) -> (Gateway, tokio_util::sync::CancellationToken) {
    let (up, stop) = upstream::whoami().await;
    let toml = base_toml()
        + USERS
        + &route("public", "/", &[up], "")
        + &route("app", "/app", &[up], "").replace("policy = \"public\"", "policy = \"authenticated\"")
        + &route("admin", "/admin", &[up], "roles = [\"admin\"]")
            .replace("policy = \"public\"", "policy = \"roles\"")
        + &route("raw", "/raw", &[up], "forward_credentials = true")
            .replace("policy = \"public\"", "policy = \"authenticated\"");
    (Gateway::start(&on_path(&toml, fast)), stop)
}

#[tokio::test]
async fn policy_matrix_and_identity_headers() {
    for fast in PATHS {
        println!("http1_fast_path = {fast}");
        let (gw, _stop) = gateway(fast).await;
        let alice = mint(gw.admin, "alice", 1).await.remove(0);
        let bob = mint(gw.admin, "bob", 1).await.remove(0);

        // (path, token, status)
        let table: [(&str, Option<&str>, u16); 9] = [
            ("/", None, 200),
            ("/", Some(&alice), 200),
            ("/app/x", None, 401),
            ("/app/x", Some(&alice), 200),
            ("/app/x", Some(&bob), 200),
            ("/admin/x", None, 401),
            ("/admin/x", Some(&alice), 200),
            ("/admin/x", Some(&bob), 403),
            ("/app/x", Some("pc1_not-a-real-token"), 401),
        ];
        for (path, token, status) in table {
            let resp = match token {
                Some(t) => get_with_token(gw.http, path, t).await,
                None => get_raw(gw.http, path, "").await,
            };
            assert_eq!(status_of(&resp), status, "{path} {token:?}: {resp}");
            let body = json_of(&resp);
            match status {
                401 => {
                    assert!(
                        resp.to_ascii_lowercase().contains("www-authenticate: bearer"),
                        "{resp}"
                    );
                    let want = if token.is_some() {
                        "invalid_token"
                    } else {
                        "unauthorized"
                    };
                    assert_eq!(body["error"], want);
                }
                403 => assert_eq!(body["error"], "forbidden"),
                _ => {}
            }
        }

        // What alice's upstream sees.
        let seen = json_of(&get_with_token(gw.http, "/app/me", &alice).await);
        let h = &seen["headers"];
        assert_eq!(h["x-auth-user"], "alice");
        assert_eq!(h["x-auth-user-id"], "1");
        assert_eq!(h["x-auth-user-uuid"], "11111111-1111-4111-8111-111111111111");
        assert_eq!(h["x-auth-roles"], "admin,dev");
        assert_eq!(h["x-auth-session-id"].as_str().unwrap().len(), 32);
        let expires: u64 = h["x-auth-session-expires"].as_str().unwrap().parse().unwrap();
        assert!(
            expires > portcullis::session::now() + 13 * 86_400,
            "default ttl is 14 days"
        );
        assert!(h.get("authorization").is_none(), "the token is never forwarded");
        assert!(
            !seen.to_string().contains(&alice),
            "the token appears nowhere upstream"
        );

        // A public route adds identity when a valid token is present, and none without.
        let seen = json_of(&get_with_token(gw.http, "/pub", &alice).await);
        assert_eq!(seen["headers"]["x-auth-user"], "alice");
        let seen = json_of(&get_raw(gw.http, "/pub", "").await);
        assert!(seen["headers"].get("x-auth-user").is_none());

        // forward_credentials = true keeps it.
        let seen = json_of(&get_with_token(gw.http, "/raw", &alice).await);
        assert_eq!(seen["headers"]["authorization"], format!("Bearer {alice}"));
        gw.stop().await;
    }
}

#[tokio::test]
async fn spoofed_identity_never_reaches_the_upstream() {
    for fast in PATHS {
        println!("http1_fast_path = {fast}");
        let (gw, _stop) = gateway(fast).await;
        let bob = mint(gw.admin, "bob", 1).await.remove(0);
        let spoof = format!(
            "Authorization: Bearer {bob}\r\nX-Auth-User: alice\r\nX_Auth_Roles: admin\r\nX-Auth-User-Id: 1\r\nConnection: X-Auth-User\r\n"
        );
        let resp = get_raw(gw.http, "/app/x", &spoof).await;
        let h = &json_of(&resp)["headers"];
        assert_eq!(h["x-auth-user"], "bob");
        assert_eq!(h["x-auth-user-id"], "2");
        assert_eq!(h["x-auth-roles"], "");
        assert!(h.get("x_auth_roles").is_none());
        // And the roles route still says no: the spoofed role counts for nothing.
        let resp = get_raw(gw.http, "/admin/x", &spoof).await;
        assert_eq!(status_of(&resp), 403);
        gw.stop().await;
    }
}

#[tokio::test]
async fn forged_and_oversized_tokens_cost_no_store_lookup() {
    for fast in PATHS {
        println!("http1_fast_path = {fast}");
        let (gw, _stop) = gateway(fast).await;
        let sessions = gw.running.as_ref().unwrap().sessions.clone();
        let before = sessions.store_lookups();
        let alice = mint(gw.admin, "alice", 1).await.remove(0);
        // Same shape as a real token, tag broken: flip one character in the secret part.
        let mut forged = alice.clone().into_bytes();
        forged[40] = if forged[40] == b'a' { b'b' } else { b'a' };
        let forged = String::from_utf8(forged).unwrap();
        let garbage = [
            forged.as_str(),
            "pc1_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "eyJhbGciOiJub25lIn0.e30.",
            "x",
        ];
        for t in garbage {
            let resp = get_with_token(gw.http, "/app/x", t).await;
            assert_eq!(status_of(&resp), 401, "{t}");
        }
        let huge = "A".repeat(5000);
        let resp = get_with_token(gw.http, "/app/x", &huge).await;
        assert_eq!(status_of(&resp), 401);
        let resp = get_raw(gw.http, "/app/x", &format!("Cookie: portcullis={huge}\r\n")).await;
        assert_eq!(status_of(&resp), 401);
        assert_eq!(sessions.store_lookups(), before, "forgeries reached the store");

        // The real token: one lookup, then served from the cache.
        for _ in 0..5 {
            assert_eq!(status_of(&get_with_token(gw.http, "/app/x", &alice).await), 200);
        }
        assert_eq!(
            sessions.store_lookups(),
            before + 1,
            "one store lookup, then cache hits"
        );
        gw.stop().await;
    }
}

#[tokio::test]
async fn an_altered_tag_is_refused_while_the_session_is_cached() {
    for fast in PATHS {
        println!("http1_fast_path = {fast}");
        let (gw, _stop) = gateway(fast).await;
        let sessions = gw.running.as_ref().unwrap().sessions.clone();
        let before = sessions.store_lookups();
        let alice = mint(gw.admin, "alice", 1).await.remove(0);
        assert_eq!(status_of(&get_with_token(gw.http, "/app/x", &alice).await), 200);
        // Same id and secret, one character of the tag (the last 22 characters) changed.
        let mut altered = alice.clone().into_bytes();
        altered[75] = if altered[75] == b'a' { b'b' } else { b'a' };
        let altered = String::from_utf8(altered).unwrap();
        for _ in 0..3 {
            assert_eq!(status_of(&get_with_token(gw.http, "/app/x", &altered).await), 401);
            assert_eq!(status_of(&get_with_token(gw.http, "/app/x", &alice).await), 200);
        }
        assert_eq!(
            sessions.store_lookups(),
            before + 1,
            "the cached entry served every check"
        );
        gw.stop().await;
    }
}

#[tokio::test]
async fn revocation_takes_effect_at_once() {
    for fast in PATHS {
        println!("http1_fast_path = {fast}");
        let (gw, _stop) = gateway(fast).await;
        let tokens = mint(gw.admin, "alice", 3).await;
        for t in &tokens {
            assert_eq!(status_of(&get_with_token(gw.http, "/app/x", t).await), 200);
        }
        let id =
            json_of(&get_with_token(gw.http, "/app/x", &tokens[0]).await)["headers"]["x-auth-session-id"]
                .as_str()
                .unwrap()
                .to_string();
        let resp = admin_call(gw.admin, "DELETE", &format!("/admin/sessions/{id}")).await;
        assert_eq!(status_of(&resp), 200, "{resp}");
        assert_eq!(
            status_of(&get_with_token(gw.http, "/app/x", &tokens[0]).await),
            401,
            "revoked while cached"
        );
        assert_eq!(
            status_of(&get_with_token(gw.http, "/app/x", &tokens[1]).await),
            200
        );
        assert_eq!(
            status_of(&admin_call(gw.admin, "DELETE", &format!("/admin/sessions/{id}")).await),
            404
        );

        let listed = json_of(&admin_call(gw.admin, "GET", "/admin/sessions?user=alice").await);
        assert_eq!(listed["sessions"].as_array().unwrap().len(), 2);
        let resp = admin_call(gw.admin, "DELETE", "/admin/users/alice/sessions").await;
        assert_eq!(json_of(&resp)["revoked"].as_array().unwrap().len(), 2);
        for t in &tokens {
            assert_eq!(status_of(&get_with_token(gw.http, "/app/x", t).await), 401);
        }
        gw.stop().await;
    }
}

#[tokio::test]
async fn the_session_cookie_is_a_credential_and_is_not_forwarded() {
    for fast in PATHS {
        println!("http1_fast_path = {fast}");
        let (gw, _stop) = gateway(fast).await;
        let alice = mint(gw.admin, "alice", 1).await.remove(0);
        let resp = get_raw(
            gw.http,
            "/app/c",
            &format!("Cookie: theme=dark; portcullis={alice}; lang=en\r\n"),
        )
        .await;
        assert_eq!(status_of(&resp), 200, "{resp}");
        let h = &json_of(&resp)["headers"];
        assert_eq!(h["x-auth-user"], "alice");
        assert_eq!(
            h["cookie"], "theme=dark; lang=en",
            "other cookies pass, ours does not"
        );
        gw.stop().await;
    }
}

#[tokio::test]
async fn browser_navigations_are_sent_to_the_login_page() {
    for fast in PATHS {
        println!("http1_fast_path = {fast}");
        let (gw, _stop) = gateway(fast).await;
        let resp = get_raw(
            gw.http,
            "/app/page?tab=2",
            "Accept: text/html,application/xhtml+xml\r\n",
        )
        .await;
        assert_eq!(status_of(&resp), 302, "{resp}");
        assert!(
            resp.contains("location: /auth/login?rd=/app/page%3Ftab%3D2"),
            "{resp}"
        );
        // An API client (no text/html) gets the 401.
        assert_eq!(
            status_of(&get_raw(gw.http, "/app/page", "Accept: application/json\r\n").await),
            401
        );
        gw.stop().await;
    }
}

#[tokio::test]
async fn admin_minting_checks_its_input() {
    for fast in PATHS {
        println!("http1_fast_path = {fast}");
        let (gw, _stop) = gateway(fast).await;
        let post = |body: &'static str| {
            format!(
                "POST /admin/sessions HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer test-admin-token-0123456789\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        };
        for (body, code) in [
            (r#"{"username":"mallory"}"#, "unknown_user"),
            (r#"{"username":"alice","count":0}"#, "invalid_count"),
            (r#"{"username":"alice","count":1000000}"#, "invalid_count"),
            (r#"{"username":"alice","ttl":"soon"}"#, "invalid_ttl"),
            (r#"{"username":"alice""#, "invalid_json"),
            (r#"{"username":"alice","admin":true}"#, "invalid_json"),
        ] {
            let resp = raw(gw.admin, post(body).as_bytes()).await;
            assert_eq!(status_of(&resp), 400, "{body}: {resp}");
            assert_eq!(json_of(&resp)["error"], code, "{body}");
        }
        let resp = raw(
            gw.admin,
            post(r#"{"username":"alice","count":2,"ttl":"1h"}"#).as_bytes(),
        )
        .await;
        assert_eq!(status_of(&resp), 201);
        let token = json_of(&resp)["tokens"][0].as_str().unwrap().to_string();
        let seen = json_of(&get_with_token(gw.http, "/app/x", &token).await);
        let expires: u64 = seen["headers"]["x-auth-session-expires"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(expires <= portcullis::session::now() + 3600);
        gw.stop().await;
    }
}

#[tokio::test]
async fn concurrent_misses_for_one_session_make_one_store_lookup() {
    // The embedded store answers on the blocking pool, so every concurrent miss would reach it
    // if the cache did not make them wait for the first lookup.
    let (up, _stop) = upstream::whoami().await;
    let dir = tempfile::tempdir().unwrap();
    let toml = base_toml().replace("workers = 1", "workers = 2").replace(
        "kind = \"memory\"",
        &format!(
            "kind = \"embedded\"\npath = \"{}\"",
            dir.path().join("s.redb").display()
        ),
    ) + USERS
        + &route("app", "/app", &[up], "").replace("policy = \"public\"", "policy = \"authenticated\"");
    let gw = Gateway::start(&toml);
    let sessions = gw.running.as_ref().unwrap().sessions.clone();
    let token = mint(gw.admin, "alice", 1).await.remove(0);
    let before = sessions.store_lookups();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (addr, t) = (gw.http, token.clone());
        tasks.push(tokio::spawn(async move {
            status_of(&get_with_token(addr, "/app/x", &t).await)
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(sessions.store_lookups(), before + 1);
    gw.stop().await;
}
