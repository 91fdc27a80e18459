//! One conformance suite, run against every store: memory, embedded (a redb file in a temp
//! dir) and redis (a real redis-server started for the test; a real Redis Cluster of six
//! nodes; a real Sentinel deployment).
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use portcullis::session::backend::Store;
use portcullis::session::embedded::EmbeddedStore;
use portcullis::session::memory::MemoryStore;
use portcullis::session::redis::RedisStore;
use portcullis::session::{Session, State, User, now};
use std::sync::Arc;
use std::time::Duration;

fn user(name: &str) -> User {
    User {
        id: name.len() as u64,
        username: name.to_string(),
        uuid: format!("uuid-{name}"),
        roles: vec!["r".into()],
        provider: None,
    }
}

fn session(id: u8, user_name: Option<&str>, expires: u64) -> Session {
    let now = now();
    Session {
        id: format!("{id:02x}").repeat(16),
        secret_hash: "ab".repeat(32),
        state: if user_name.is_some() {
            State::Active
        } else {
            State::Pending
        },
        user: user_name.map(user),
        device_uuid: Some("device-1".into()),
        created: now,
        last_used: now,
        expires,
        idle_ttl: None,
        ip: Some("127.0.0.1".into()),
        user_agent: Some("test".into()),
        extra: [("k".to_string(), serde_json::json!({"nested": [1, 2]}))]
            .into_iter()
            .collect(),
        version: 1,
        reissue_hash: Some("cd".repeat(32)),
        reissue_expires: expires,
        ..Session::default()
    }
}

/// Compare-and-set: writes only over the version read, and of many concurrent writers over
/// one version exactly one wins.
async fn swap_conformance(store: Arc<Store>) {
    let kind = store.kind();
    let fresh = session(20, Some("dave"), now() + 3600);
    assert!(
        !store.swap(&fresh, Some(1)).await.unwrap(),
        "{kind}: no session to swap over"
    );
    assert!(
        store.swap(&fresh, None).await.unwrap(),
        "{kind}: create if absent"
    );
    assert!(
        !store.swap(&fresh, None).await.unwrap(),
        "{kind}: create-if-absent over an existing session"
    );
    let mut stale = fresh.clone();
    stale.version = 3;
    assert!(
        !store.swap(&stale, Some(2)).await.unwrap(),
        "{kind}: wrong version"
    );
    assert_eq!(store.get(&fresh.id).await.unwrap().unwrap().version, 1);

    let mut tasks = Vec::new();
    for i in 0..16u64 {
        let store = store.clone();
        let mut next = fresh.clone();
        next.version = 2;
        next.last_used = fresh.last_used + i + 1;
        tasks.push(tokio::spawn(
            async move { store.swap(&next, Some(1)).await.unwrap() },
        ));
    }
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.unwrap());
    }
    assert_eq!(winners, 1, "{kind}: concurrent swaps over one version");
    let stored = store.get(&fresh.id).await.unwrap().unwrap();
    assert_eq!(stored.version, 2, "{kind}: the winner's write is stored");
    assert_eq!(
        store.list_user("dave").await.unwrap().len(),
        1,
        "{kind}: index kept by swap"
    );
    store.delete(&fresh.id).await.unwrap();
}

async fn conformance(store: Store) {
    let store = Arc::new(store);
    swap_conformance(store.clone()).await;
    let kind = store.kind();
    let later = now() + 3600;
    store.ping().await.unwrap();
    assert_eq!(
        store.get(&"00".repeat(16)).await.unwrap(),
        None,
        "{kind}: unknown id"
    );

    let a1 = session(1, Some("alice"), later);
    let a2 = session(2, Some("alice"), later);
    let b1 = session(3, Some("bob"), later);
    let pending = session(4, None, later);
    for s in [&a1, &a2, &b1, &pending] {
        store.put(s).await.unwrap();
    }
    assert_eq!(
        store.get(&a1.id).await.unwrap().as_ref(),
        Some(&a1),
        "{kind}: round trip"
    );
    assert_eq!(
        store.get(&pending.id).await.unwrap().as_ref(),
        Some(&pending),
        "{kind}: pending"
    );

    let mut alice: Vec<String> = store
        .list_user("alice")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    alice.sort();
    assert_eq!(
        alice,
        vec![a1.id.clone(), a2.id.clone()],
        "{kind}: per-user index"
    );
    assert!(store.list_user("nobody").await.unwrap().is_empty());

    // Replacing keeps one record and a consistent index (the pending session gets a user).
    let mut activated = pending.clone();
    activated.state = State::Active;
    activated.user = Some(user("bob"));
    store.put(&activated).await.unwrap();
    assert_eq!(
        store.get(&pending.id).await.unwrap().as_ref(),
        Some(&activated),
        "{kind}: replace"
    );
    assert_eq!(
        store.list_user("bob").await.unwrap().len(),
        2,
        "{kind}: index after replace"
    );

    // Ended sessions are never returned.
    let ended = session(5, Some("carol"), now().saturating_sub(1));
    store.put(&ended).await.unwrap();
    assert_eq!(store.get(&ended.id).await.unwrap(), None, "{kind}: ended session");
    assert!(
        store.list_user("carol").await.unwrap().is_empty(),
        "{kind}: ended session listed"
    );
    let mut idle = session(6, Some("carol"), later);
    idle.idle_ttl = Some(60);
    idle.last_used = now() - 120;
    store.put(&idle).await.unwrap();
    assert_eq!(
        store.get(&idle.id).await.unwrap(),
        None,
        "{kind}: idle-expired session"
    );
    let swept = store.sweep(now()).await.unwrap();
    if kind != "redis" {
        assert!(swept >= 1, "{kind}: sweep removed {swept}");
    }

    // Delete returns what it removed, once.
    assert_eq!(
        store.delete(&a1.id).await.unwrap().as_ref(),
        Some(&a1),
        "{kind}: delete"
    );
    assert_eq!(store.delete(&a1.id).await.unwrap(), None, "{kind}: second delete");
    assert_eq!(store.get(&a1.id).await.unwrap(), None);
    assert_eq!(store.list_user("alice").await.unwrap().len(), 1);

    // Log out everywhere touches only that user.
    let removed = store.delete_user("bob").await.unwrap();
    assert_eq!(removed.len(), 2, "{kind}: delete_user");
    assert!(store.list_user("bob").await.unwrap().is_empty());
    assert_eq!(
        store.get(&a2.id).await.unwrap().as_ref(),
        Some(&a2),
        "{kind}: other users untouched"
    );
}

#[tokio::test]
async fn memory_store() {
    conformance(Store::Memory(MemoryStore::new())).await;
}

#[tokio::test]
async fn embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/sessions.redb");
    conformance(Store::Embedded(EmbeddedStore::open(&path).unwrap())).await;
}

#[tokio::test]
async fn redis_store() {
    let redis = common::redis::Redis::start();
    let store = RedisStore::connect(&redis.url(), "conf", Duration::from_secs(5), 0)
        .await
        .unwrap();
    conformance(Store::Redis(store)).await;
}

/// The same suite on a Redis Cluster of 3 masters and 3 replicas, through one seed node, with
/// writes acknowledged once a replica holds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_store() {
    let cluster = common::redis_ha::RedisCluster::start();
    let seed = cluster.ports()[0];
    let store = RedisStore::connect(&cluster.url_with_seed(seed), "conf", Duration::from_secs(5), 1)
        .await
        .unwrap();
    conformance(Store::Redis(store)).await;
}

/// The same suite behind Sentinel (1 master, 1 replica, 3 sentinels).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sentinel_store() {
    let sentinel = common::redis_ha::RedisSentinel::start();
    let store = RedisStore::connect(&sentinel.url(), "conf", Duration::from_secs(5), 1)
        .await
        .unwrap();
    conformance(Store::Redis(store)).await;
}

#[tokio::test]
async fn embedded_store_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.redb");
    let s = session(9, Some("alice"), now() + 3600);
    {
        let store = EmbeddedStore::open(&path).unwrap();
        store.put(&s).await.unwrap();
    }
    let store = EmbeddedStore::open(&path).unwrap();
    assert_eq!(store.get(&s.id).await.unwrap(), Some(s));
}

#[tokio::test]
async fn redis_store_reports_unavailable_then_recovers() {
    let mut redis = common::redis::Redis::start();
    let store = Store::Redis(
        RedisStore::connect(&redis.url(), "out", Duration::from_secs(5), 0)
            .await
            .unwrap(),
    );
    let s = session(7, Some("alice"), now() + 3600);
    store.put(&s).await.unwrap();
    redis.stop();
    let mut saw_error = false;
    for _ in 0..100 {
        if store.get(&s.id).await.is_err() {
            saw_error = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        saw_error,
        "a stopped redis must be reported, not read as 'no session'"
    );
    redis.restart();
    let mut back = None;
    for _ in 0..200 {
        if let Ok(found) = store.get(&s.id).await {
            back = found;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(back, Some(s), "reconnected by itself, nothing lost");
}

#[test]
fn invalid_embedded_path_is_a_clear_error() {
    let err = EmbeddedStore::open(std::path::Path::new("/proc/definitely/not/writable.redb"))
        .err()
        .unwrap();
    assert!(err.contains("/proc/definitely/not"), "{err}");
}

/// Records written before sessions had a version (no `version` field) count as version 0, so
/// a compare-and-set over them works after an upgrade.
#[tokio::test]
async fn redis_swap_accepts_records_without_a_version() {
    use fred::prelude::*;
    let redis = common::redis::Redis::start();
    let store = RedisStore::connect(&redis.url(), "old", Duration::from_secs(5), 0)
        .await
        .unwrap();
    let mut s = session(8, Some("alice"), now() + 3600);
    s.version = 0;
    let mut json = serde_json::to_value(&s).unwrap();
    json.as_object_mut().unwrap().remove("version");
    let client = Builder::from_config(Config::from_url(&redis.url()).unwrap())
        .build()
        .unwrap();
    client.init().await.unwrap();
    let _: () = client
        .set(format!("old:s:{{{}}}", s.id), json.to_string(), None, None, false)
        .await
        .unwrap();
    let store = Store::Redis(store);
    assert_eq!(store.get(&s.id).await.unwrap().unwrap().version, 0);
    let mut next = s.clone();
    next.version = 1;
    assert!(store.swap(&next, Some(0)).await.unwrap());
    assert_eq!(store.get(&s.id).await.unwrap().unwrap().version, 1);
}
