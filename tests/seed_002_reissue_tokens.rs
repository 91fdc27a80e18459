//! Seed 002 (single-use relogin keys) against portcullis, on the embedded store and on redis
//! with two instances: a reissue token works once and is replaced; presenting a used one
//! destroys the whole session everywhere (theft detection); racing retries within
//! `reissue_grace` all get the same new pair; outside it, of concurrent reissues exactly one
//! wins; reissue tokens expire after `reissue_ttl`; sessions unused for `idle_ttl` are disposed.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn config(backing: &Backing, sessions: &str) -> String {
    backing.base_toml()
        + &format!("\n[sessions]\n{sessions}\n")
        + USERS
        + &route("app", "/app", &[upstream::dead_address()], "")
}

/// Creates a session for alice: (auth token, reissue token).
async fn create(addr: SocketAddr) -> (String, String) {
    let a = http_request(
        addr,
        request(
            "POST",
            "/sessions",
            Some("application/json"),
            r#"{"username":"alice","password":"alice-password","device_uuid":"d1"}"#,
        ),
    )
    .await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    let j = a.json();
    (
        j["auth_token"].as_str().unwrap().to_string(),
        j["reissue_token"].as_str().unwrap().to_string(),
    )
}

async fn reissue(addr: SocketAddr, token: &str) -> Answer {
    http_request(
        addr,
        request(
            "POST",
            "/sessions/reissue",
            Some("application/json"),
            serde_json::json!({ "reissue_token": token }).to_string(),
        ),
    )
    .await
}

async fn me(addr: SocketAddr, token: &str) -> u16 {
    http_request(addr, bearer(get("/users/me"), token)).await.status
}

/// Polls until `token` is refused on `addr` (a revocation travelling to another instance).
async fn refused_within(addr: SocketAddr, token: &str, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if me(addr, token).await == 401 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

async fn walk(backing: Backing) {
    let kind = backing.name();
    let toml = config(&backing, "reissue_grace = \"1s\"");
    let a = Gateway::start(&toml);
    let b = backing.shared().then(|| Gateway::start(&toml));
    let other = b.as_ref().unwrap_or(&a).http;

    // relogin: the key is used up and a new one issued.
    let (auth, key1) = create(a.http).await;
    let r = reissue(a.http, &key1).await;
    assert_eq!(r.status, 200, "{kind}: {:?}", r.body);
    let auth2 = r.json()["auth_token"].as_str().unwrap().to_string();
    let key2 = r.json()["reissue_token"].as_str().unwrap().to_string();
    assert_eq!(
        me(other, &auth2).await,
        200,
        "{kind}: the new pair works everywhere"
    );
    assert_eq!(me(a.http, &auth).await, 401);

    // A retry of the same key within the grace window: the same pair, nobody logged out.
    let again = reissue(other, &key1).await;
    assert_eq!(again.status, 200, "{kind}: a race is not theft");
    assert_eq!(again.json()["auth_token"], auth2.as_str());
    assert_eq!(again.json()["reissue_token"], key2.as_str());
    assert_eq!(me(a.http, &auth2).await, 200);

    // Outside the grace window the used key is theft: the whole session ends, everywhere.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let stolen = reissue(a.http, &key1).await;
    assert_eq!(stolen.status, 401, "{kind}");
    assert_eq!(stolen.json()["error"], "reissue_token_reused");
    assert_eq!(me(a.http, &auth2).await, 401, "{kind}: destroyed here at once");
    assert!(
        refused_within(other, &auth2, Duration::from_secs(2)).await,
        "{kind}: and on the other instance"
    );
    let r = reissue(other, &key2).await;
    assert_eq!(r.status, 401, "{kind}: the newest key died with the session");

    // Racing clients within the grace window all get one pair.
    let (_, key) = create(a.http).await;
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let addr = if i % 2 == 0 { a.http } else { other };
            let key = key.clone();
            tokio::spawn(async move { reissue(addr, &key).await })
        })
        .collect();
    let mut pairs = std::collections::BTreeSet::new();
    for r in racers {
        let r = r.await.unwrap();
        assert_eq!(r.status, 200, "{kind}: {:?}", r.body);
        pairs.insert((
            r.json()["auth_token"].as_str().unwrap().to_string(),
            r.json()["reissue_token"].as_str().unwrap().to_string(),
        ));
    }
    assert_eq!(pairs.len(), 1, "{kind}: one new pair for every racer");
    let (winner_auth, _) = pairs.into_iter().next().unwrap();
    assert_eq!(me(a.http, &winner_auth).await, 200);

    a.stop().await;
    if let Some(b) = b {
        b.stop().await;
    }

    // Without a grace window, of concurrent reissues exactly one wins (then the others are
    // reuse, and end the session).
    let strict = Gateway::start(&config(&backing, "reissue_grace = \"0s\""));
    let (_, key) = create(strict.http).await;
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let key = key.clone();
            let addr = strict.http;
            tokio::spawn(async move { reissue(addr, &key).await.status })
        })
        .collect();
    let mut ok = 0;
    for r in racers {
        let status = r.await.unwrap();
        assert!(status == 200 || status == 401, "{kind}: {status}");
        ok += usize::from(status == 200);
    }
    assert_eq!(ok, 1, "{kind}: exactly one concurrent reissue wins");
    strict.stop().await;
}

#[tokio::test]
async fn seed_002_on_the_embedded_store() {
    walk(Backing::embedded()).await;
}

#[tokio::test]
async fn seed_002_on_redis_across_two_instances() {
    walk(Backing::redis()).await;
}

/// On a Redis Cluster (3 masters, 3 replicas) through one seed node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_002_on_a_redis_cluster() {
    walk(Backing::cluster()).await;
}

async fn lifetimes(backing: Backing) {
    let kind = backing.name();
    let gw = Gateway::start(&config(&backing, "reissue_ttl = \"1s\"\nidle_ttl = \"3s\""));

    // The reissue key expires; the session itself does not end with it.
    let (auth, key) = create(gw.http).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = reissue(gw.http, &key).await;
    assert_eq!(r.status, 401, "{kind}");
    assert_eq!(r.json()["error"], "reissue_token_expired");
    assert_eq!(me(gw.http, &auth).await, 200, "{kind}: the session lives on");

    // Used regularly, a session outlives its idle limit...
    for _ in 0..12 {
        assert_eq!(me(gw.http, &auth).await, 200, "{kind}: kept alive by use");
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    // ...and, left alone, is disposed.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    assert_eq!(me(gw.http, &auth).await, 401, "{kind}: idle too long");
    gw.stop().await;
}

#[tokio::test]
async fn reissue_ttl_and_idle_ttl_on_the_embedded_store() {
    lifetimes(Backing::embedded()).await;
}

#[tokio::test]
async fn reissue_ttl_and_idle_ttl_on_redis() {
    lifetimes(Backing::redis()).await;
}
