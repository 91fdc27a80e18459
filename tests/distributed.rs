//! Sessions across restarts and instances: the embedded store keeps sessions over a restart;
//! two gateways on one real Redis see each other's revocations through pub/sub; a Redis outage
//! keeps cached sessions working, answers 503 (never 401) for the rest, and heals by itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use common::*;
use std::time::{Duration, Instant};

const SECRETS: &str = "\n[tokens]\nsecrets = [\"shared-secret-0123456789abcdef0123456789\"]\n";

fn redis_toml(redis: &common::redis::Redis, up: std::net::SocketAddr) -> String {
    base_toml().replace(
        "kind = \"memory\"",
        &format!("kind = \"redis\"\nurl = \"{}\"", redis.url()),
    ) + SECRETS
        + "\n[cache]\nttl = \"60s\"\nnegative_ttl = \"1s\"\n"
        + USERS
        + &route("public", "/", &[up], "")
        + &route("app", "/app", &[up], "").replace("policy = \"public\"", "policy = \"authenticated\"")
}

async fn status_until(
    addr: std::net::SocketAddr,
    token: &str,
    want: u16,
    limit: Duration,
) -> (u16, Duration) {
    let start = Instant::now();
    loop {
        let got = status_of(&get_with_token(addr, "/app/x", token).await);
        if got == want || start.elapsed() > limit {
            return (got, start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn embedded_sessions_survive_a_restart() {
    let (up, _stop) = upstream::whoami().await;
    let dir = tempfile::tempdir().unwrap();
    let toml = base_toml().replace(
        "kind = \"memory\"",
        &format!(
            "kind = \"embedded\"\npath = \"{}\"",
            dir.path().join("data/sessions.redb").display()
        ),
    ) + USERS
        + &route("app", "/", &[up], "").replace("policy = \"public\"", "policy = \"authenticated\"");
    let gw = Gateway::start(&toml);
    let token = mint(gw.admin, "alice", 1).await.remove(0);
    assert_eq!(status_of(&get_with_token(gw.http, "/x", &token).await), 200);
    gw.stop().await;
    assert!(
        dir.path().join("data/sessions.redb.key").exists(),
        "the token key is kept beside the store"
    );

    let gw = Gateway::start(&toml);
    let resp = get_with_token(gw.http, "/x", &token).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert_eq!(json_of(&resp)["headers"]["x-auth-user"], "alice");
    gw.stop().await;
}

#[tokio::test]
async fn revocation_on_one_instance_reaches_the_other() {
    let redis = common::redis::Redis::start();
    let (up, _stop) = upstream::whoami().await;
    let a = Gateway::start(&redis_toml(&redis, up));
    let b = Gateway::start(&redis_toml(&redis, up));
    let tokens = mint(a.admin, "alice", 2).await;
    for t in &tokens {
        assert_eq!(status_of(&get_with_token(a.http, "/app/x", t).await), 200);
        assert_eq!(
            status_of(&get_with_token(b.http, "/app/x", t).await),
            200,
            "a token minted on A works on B"
        );
    }
    let id = json_of(&get_with_token(b.http, "/app/x", &tokens[0]).await)["headers"]["x-auth-session-id"]
        .as_str()
        .unwrap()
        .to_string();
    // B has the session cached for up to 60 s: only the published revocation can evict it.
    assert_eq!(
        status_of(&admin_call(a.admin, "DELETE", &format!("/admin/sessions/{id}")).await),
        200
    );
    let (status, took) = status_until(b.http, &tokens[0], 401, Duration::from_secs(3)).await;
    assert_eq!(status, 401, "B still serves a session revoked on A");
    eprintln!("revocation reached the other instance within {took:?} (polling, loopback)");
    assert_eq!(
        status_of(&get_with_token(b.http, "/app/x", &tokens[1]).await),
        200
    );

    // "Log out everywhere" from B reaches A.
    assert_eq!(
        status_of(&admin_call(b.admin, "DELETE", "/admin/users/alice/sessions").await),
        200
    );
    let (status, _) = status_until(a.http, &tokens[1], 401, Duration::from_secs(3)).await;
    assert_eq!(status, 401);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_redis_outage_is_503_not_401_and_heals() {
    let mut redis = common::redis::Redis::start();
    let (up, _stop) = upstream::whoami().await;
    let gw = Gateway::start(&redis_toml(&redis, up));
    let cached = mint(gw.admin, "alice", 1).await.remove(0);
    let uncached = mint(gw.admin, "bob", 1).await.remove(0);
    assert_eq!(status_of(&get_with_token(gw.http, "/app/x", &cached).await), 200);
    let ready = admin_call(gw.admin, "GET", "/readyz").await;
    assert_eq!(status_of(&ready), 200, "{ready}");

    redis.stop();
    let resp = get_with_token(gw.http, "/app/x", &uncached).await;
    assert_eq!(status_of(&resp), 503, "{resp}");
    assert_eq!(json_of(&resp)["error"], "session_store_unavailable");
    assert_eq!(
        status_of(&get_with_token(gw.http, "/app/x", &cached).await),
        200,
        "cached sessions keep working"
    );
    assert_eq!(
        status_of(&get_raw(gw.http, "/public", "").await),
        200,
        "public routes keep working"
    );
    assert_eq!(status_of(&admin_call(gw.admin, "GET", "/readyz").await), 503);

    redis.restart();
    let (status, _) = status_until(gw.http, &uncached, 200, Duration::from_secs(10)).await;
    assert_eq!(
        status, 200,
        "the gateway reconnected by itself and nothing was lost"
    );
    assert_eq!(status_of(&get_with_token(gw.http, "/app/x", &cached).await), 200);
    assert_eq!(status_of(&admin_call(gw.admin, "GET", "/readyz").await), 200);
    gw.stop().await;
}

/// Mints one session, retrying while the store cannot take it (503), for up to `limit`.
async fn mint_when_ready(admin: std::net::SocketAddr, limit: Duration) -> Option<String> {
    let start = Instant::now();
    while start.elapsed() < limit {
        let body = r#"{"username":"alice","count":1}"#;
        let resp = admin_call_body(admin, "POST", "/admin/sessions", body).await;
        if status_of(&resp) == 201 {
            return json_of(&resp)["tokens"][0].as_str().map(str::to_string);
        }
        assert_eq!(status_of(&resp), 503, "{resp}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test]
async fn a_gateway_started_before_redis_connects_when_it_comes() {
    let mut redis = common::redis::Redis::start();
    redis.stop();
    let (up, _stop) = upstream::whoami().await;
    let gw = Gateway::start(&redis_toml(&redis, up));
    assert_eq!(status_of(&admin_call(gw.admin, "GET", "/readyz").await), 503);
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.restart();
    let token = mint_when_ready(gw.admin, Duration::from_secs(10))
        .await
        .expect("the gateway connected to a Redis that came after it");
    assert_eq!(status_of(&get_with_token(gw.http, "/app/x", &token).await), 200);
    assert_eq!(status_of(&admin_call(gw.admin, "GET", "/readyz").await), 200);
    gw.stop().await;
}

/// `store.replicas` asks for more than the deployment has: every write lands on the master and
/// is never confirmed. The client hears 503; lookups keep working; a rotation that landed
/// still ends the old token on every instance (it holds on the master).
#[tokio::test]
async fn a_write_no_replica_confirms_is_503_and_still_seen_everywhere() {
    let redis = common::redis::Redis::start();
    let (up, _stop) = upstream::whoami().await;
    let plain = redis_toml(&redis, up);
    let a = Gateway::start(&plain);
    let b = Gateway::start(&plain.replace("kind = \"redis\"", "kind = \"redis\"\nreplicas = 1"));
    let token = mint(a.admin, "alice", 1).await.remove(0);
    assert_eq!(status_of(&get_with_token(a.http, "/app/x", &token).await), 200);
    assert_eq!(
        status_of(&get_with_token(b.http, "/app/x", &token).await),
        200,
        "lookups do not wait for replicas"
    );
    let renew = format!(
        "POST /sessions/renew HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let resp = raw(b.http, renew.as_bytes()).await;
    assert_eq!(status_of(&resp), 503, "{resp}");
    assert_eq!(json_of(&resp)["error"], "session_store_unavailable");
    for gw in [&a, &b] {
        let (status, _) = status_until(gw.http, &token, 401, Duration::from_secs(2)).await;
        assert_eq!(status, 401, "the rotation landed: the old token ends everywhere");
    }
    let minted = admin_call_body(
        b.admin,
        "POST",
        "/admin/sessions",
        r#"{"username":"bob","count":1}"#,
    )
    .await;
    assert_eq!(status_of(&minted), 503, "{minted}");
    a.stop().await;
    b.stop().await;
}
