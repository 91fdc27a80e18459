//! Redis as operators run it for high availability (issue #14): two gateways on a real Redis
//! Cluster (3 masters, 3 replicas) through one seed node, and on a real Sentinel deployment
//! (1 master, 1 replica, 3 sentinels). The master holding live sessions is killed (SIGKILL)
//! under a bounded request loop; the tests assert that no revoked token is admitted, no valid
//! cached session is refused, no session on a healthy master is refused, no acknowledged
//! session is lost, and that the gateways recover without a restart. They print how long the
//! recovery took (measured, never asserted: docs/sessions.md, Stores).
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use common::redis_ha::{RedisCluster, RedisSentinel};
use common::*;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn config(url: &str, up: SocketAddr) -> String {
    base_toml().replace(
        "kind = \"memory\"",
        &format!(
            "kind = \"redis\"\nurl = \"{url}\"\n[tokens]\nsecrets = [\"ha-test-secret-0123456789abcdef01234567\"]"
        ),
    ) + USERS
        + &route("app", "/app", &[up], "").replace("\"public\"", "\"authenticated\"")
}

/// The status a gateway answers a bearer token with on a protected route.
async fn status(gw: SocketAddr, token: &str) -> u16 {
    status_of(&get_with_token(gw, "/app/x", token).await)
}

async fn session_id(gw: SocketAddr, token: &str) -> String {
    let me = json_of(&get_with_token(gw, "/users/me", token).await);
    me["session"]["id"].as_str().unwrap().to_string()
}

/// What the loop saw, by kind of token.
#[derive(Default, Debug)]
struct Seen {
    revoked_admitted: usize,
    cached_refused: usize,
    healthy_refused: usize,
    /// Fresh (uncached) sessions on the killed master refused while it was being replaced.
    uncached_refused: usize,
    /// The longest such a refusal took to come.
    slowest_refusal: Duration,
    requests: usize,
}

struct Tokens {
    cached: Vec<String>,
    revoked: Vec<String>,
    /// On the dying master, never used before: each is looked up in the store once.
    uncached: Vec<String>,
    /// On healthy masters, never used before: each is looked up in the store once.
    healthy: Vec<String>,
}

/// When (after the kill) a fresh session on the killed master was first served again.
type Recovered = Arc<std::sync::Mutex<Option<Duration>>>;

/// Hammers both gateways until `stop`: cached and revoked tokens on both, and fresh tokens
/// (one store lookup each) on the killed master and on healthy ones.
async fn hammer(
    gws: [SocketAddr; 2],
    tokens: Arc<Tokens>,
    stop: Arc<AtomicBool>,
    killed: Arc<std::sync::Mutex<Option<Instant>>>,
    recovered: Recovered,
) -> Seen {
    let mut seen = Seen::default();
    let mut healthy = tokens.healthy.iter();
    // Fresh tokens while they last, then the last one again: a 503 caches nothing, so it
    // stays a store lookup, and a slow recovery is waited for rather than run out of tokens.
    let mut uncached = tokens.uncached.iter();
    let mut last_uncached = None;
    let mut turn = 0;
    while !stop.load(Ordering::Relaxed) {
        for gw in gws {
            for t in &tokens.cached {
                seen.requests += 1;
                if status(gw, t).await != 200 {
                    seen.cached_refused += 1;
                }
            }
            for t in &tokens.revoked {
                seen.requests += 1;
                if status(gw, t).await == 200 {
                    seen.revoked_admitted += 1;
                }
            }
        }
        turn += 1;
        let gw = gws[turn % 2];
        if let Some(t) = healthy.next() {
            seen.requests += 1;
            if status(gw, t).await != 200 {
                seen.healthy_refused += 1;
            }
        }
        let pending = recovered.lock().unwrap().is_none();
        let killed_at = *killed.lock().unwrap();
        if pending
            && let Some(at) = killed_at
            && let Some(t) = uncached.next().or(last_uncached)
        {
            last_uncached = Some(t);
            seen.requests += 1;
            let asked = Instant::now();
            match status(gw, t).await {
                200 => *recovered.lock().unwrap() = Some(at.elapsed()),
                503 => {
                    seen.uncached_refused += 1;
                    seen.slowest_refusal = seen.slowest_refusal.max(asked.elapsed());
                }
                other => panic!("a fresh valid session got {other}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    seen
}

/// Mints alice sessions on `gw` until `want` of them live on `master` (by `master_of`) and
/// `others` live elsewhere; returns (on the master, elsewhere).
async fn sessions_by_master(
    gw: &Gateway,
    master_of: impl Fn(&str) -> u16,
    master: u16,
    want: usize,
    others: usize,
) -> (Vec<String>, Vec<String>) {
    let (mut mine, mut elsewhere) = (Vec::new(), Vec::new());
    for _ in 0..60 {
        for t in mint_confirmed(gw.admin, 50).await {
            // The key the store writes (`<prefix>:s:{id}`), found through /users/me.
            let id = token_id(&t);
            if master_of(&format!("portcullis:s:{{{id}}}")) == master {
                mine.push(t);
            } else {
                elsewhere.push(t);
            }
        }
        if mine.len() >= want && elsewhere.len() >= others {
            return (mine, elsewhere);
        }
    }
    panic!("could not place {want} sessions on master {master}");
}

/// A token's session id, as the store keys it (32 hex digits: the token's first 16 bytes).
fn token_id(token: &str) -> String {
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_start_matches("pc1_"))
        .unwrap();
    raw[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// One failover at a time: each runs a dozen processes and a request loop on two cores, and
/// lookups have 250 ms.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_master_dies_and_one_seed_is_enough() {
    let _alone = ONE_AT_A_TIME.lock().await;
    common::redis_ha::log_warnings();
    let mut cluster = RedisCluster::start();
    let (up, _stop) = upstream::whoami().await;
    // The seed is the very master that will die: the gateways must follow the topology they
    // learned, not the URL.
    let doomed = cluster.masters()[0];
    let url = cluster.url_with_seed(doomed);
    let a = Gateway::start(&config(&url, up));
    let b = Gateway::start(&config(&url, up));
    let (mine, elsewhere) = sessions_by_master(&a, |k| cluster.master_of(k), doomed, 80, 300).await;
    assert_eq!(
        session_id(a.http, &mine[0]).await,
        token_id(&mine[0]),
        "token ids as keys"
    );
    let tokens = Tokens {
        cached: mine[0..2].to_vec(),
        revoked: mine[2..4].to_vec(),
        uncached: mine[5..].to_vec(),
        healthy: elsewhere.clone(),
    };
    let report = failover(&a, &b, tokens, || cluster.kill_and_fail_over(doomed)).await;
    println!("cluster: {report}");

    // Every acknowledged session is still there, on both gateways, without a restart.
    for t in mine
        .iter()
        .filter(|t| !report.revoked.contains(t))
        .chain(&elsewhere)
    {
        assert_eq!(status(a.http, t).await, 200, "an acknowledged session was lost");
        assert_eq!(status(b.http, t).await, 200);
    }
    // The dead node comes back as a replica; writes reach two copies again.
    cluster.restart(doomed);
    after_the_return("cluster", a, b, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_started_while_its_one_seed_is_down_finds_the_cluster() {
    let _alone = ONE_AT_A_TIME.lock().await;
    common::redis_ha::log_warnings();
    let mut cluster = RedisCluster::start();
    let (up, _stop) = upstream::whoami().await;
    let seed = cluster.replicas()[0];
    cluster.kill(seed);
    let gw = Gateway::start(&config(&cluster.url_with_seed(seed), up));
    assert_eq!(status_of(&admin_call(gw.admin, "GET", "/readyz").await), 503);
    cluster.restart(seed);
    let start = Instant::now();
    let body = r#"{"username":"alice","count":20}"#;
    let tokens = loop {
        let resp = admin_call_body(gw.admin, "POST", "/admin/sessions", body).await;
        if status_of(&resp) == 201 {
            break json_of(&resp)["tokens"].as_array().unwrap().clone();
        }
        assert_eq!(status_of(&resp), 503, "{resp}");
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the gateway never found the cluster through its seed: {resp}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("cluster found {:?} after the seed came back", start.elapsed());
    for t in &tokens {
        assert_eq!(status(gw.http, t.as_str().unwrap()).await, 200);
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_master_dies_and_the_gateways_follow() {
    let _alone = ONE_AT_A_TIME.lock().await;
    common::redis_ha::log_warnings();
    let mut sentinel = RedisSentinel::start();
    let (up, _stop) = upstream::whoami().await;
    let url = sentinel.url();
    let a = Gateway::start(&config(&url, up));
    let b = Gateway::start(&config(&url, up));
    let mut mine = Vec::new();
    for _ in 0..8 {
        mine.extend(mint_confirmed(a.admin, 50).await);
    }
    let tokens = Tokens {
        cached: mine[0..2].to_vec(),
        revoked: mine[2..4].to_vec(),
        uncached: mine[5..].to_vec(),
        healthy: Vec::new(),
    };
    let report = failover(&a, &b, tokens, || sentinel.kill_master_and_fail_over()).await;
    println!("sentinel: {report}");
    for t in mine.iter().filter(|t| !report.revoked.contains(t)) {
        assert_eq!(status(a.http, t).await, 200, "an acknowledged session was lost");
        assert_eq!(status(b.http, t).await, 200);
    }
    sentinel.restart_old_master();
    after_the_return("sentinel", a, b, 5).await;
}

/// Once the dead node is back: `fresh` sessions made on `a` are served by `b`, and the
/// revocation p99 across the two is printed; then both stop.
async fn after_the_return(deployment: &str, a: Gateway, b: Gateway, fresh: u32) {
    for t in &mint_confirmed(a.admin, fresh).await {
        assert_eq!(status(b.http, t).await, 200, "a session made after the failover");
    }
    revocation_p99(deployment, &a, &b).await;
    a.stop().await;
    b.stop().await;
}

/// Resharding: the slot of a session (uncached) moves to another master, keys and all; the
/// gateway follows (`MOVED`: the topology is re-learned and the lookup sent again) and writes
/// reach the new master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resharded_slot_is_followed() {
    let _alone = ONE_AT_A_TIME.lock().await;
    common::redis_ha::log_warnings();
    let cluster = RedisCluster::start();
    let (up, _stop) = upstream::whoami().await;
    let gw = Gateway::start(&config(&cluster.url_with_seed(cluster.ports()[0]), up));
    let tokens = mint_confirmed(gw.admin, 3).await;
    // The gateway has a client for every master it wrote to; the moved slot's old master
    // answers MOVED now.
    let key = format!("portcullis:s:{{{}}}", token_id(&tokens[0]));
    let (from, to) = cluster.move_slot_of(&key);
    assert_eq!(cluster.master_of(&key), to, "moved from {from}");
    assert_eq!(status(gw.http, &tokens[0]).await, 200, "a moved session is found");
    let resp = admin_call(
        gw.admin,
        "DELETE",
        &format!("/admin/sessions/{}", token_id(&tokens[0])),
    )
    .await;
    assert_eq!(
        status_of(&resp),
        200,
        "a revocation reaches the new master: {resp}"
    );
    assert_eq!(status(gw.http, &tokens[0]).await, 401);
    for t in &tokens[1..] {
        assert_eq!(status(gw.http, t).await, 200);
    }
    gw.stop().await;
}

struct Report {
    revoked: Vec<String>,
    seen: Seen,
    failover: Duration,
    recovered: Option<Duration>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} requests; master killed → failover done in {:?}; uncached sessions on it served again after {:?} ({} 503s meanwhile, the slowest in {:?})",
            self.seen.requests,
            self.failover,
            self.recovered,
            self.seen.uncached_refused,
            self.seen.slowest_refusal
        )
    }
}

/// Caches `tokens.cached` on both gateways and revokes `tokens.revoked`, then runs the request
/// loop around `kill` (which kills a master and waits for its failover),
/// until a fresh session on it is served again (at most 20 s after the kill), and checks what
/// must never happen.
async fn failover(a: &Gateway, b: &Gateway, tokens: Tokens, kill: impl FnOnce() -> Duration) -> Report {
    // The cached tokens are cached on both gateways; the revoked ones are revoked.
    for t in &tokens.cached {
        assert_eq!(status(a.http, t).await, 200);
        assert_eq!(status(b.http, t).await, 200);
    }
    for t in &tokens.revoked {
        let resp = admin_call(a.admin, "DELETE", &format!("/admin/sessions/{}", token_id(t))).await;
        assert_eq!(status_of(&resp), 200, "{resp}");
    }
    let gws = [a.http, b.http];
    let revoked = tokens.revoked.clone();
    let tokens = Arc::new(tokens);
    let stop = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(std::sync::Mutex::new(None));
    let recovered: Recovered = Arc::default();
    let hammering = tokio::spawn(hammer(
        gws,
        tokens,
        stop.clone(),
        killed.clone(),
        recovered.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    *killed.lock().unwrap() = Some(Instant::now());
    let failover = tokio::task::block_in_place(kill);
    let deadline = Instant::now() + Duration::from_secs(20);
    while recovered.lock().unwrap().is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A little more of the loop after the recovery.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let seen = hammering.await.unwrap();
    let recovered = *recovered.lock().unwrap();
    assert_eq!(seen.revoked_admitted, 0, "revoked tokens admitted: {seen:?}");
    assert_eq!(seen.cached_refused, 0, "valid cached sessions refused: {seen:?}");
    assert_eq!(
        seen.healthy_refused, 0,
        "sessions on healthy masters refused: {seen:?}"
    );
    assert!(
        recovered.is_some(),
        "no recovery within 20 s of the kill: {seen:?}"
    );
    Report {
        revoked,
        seen,
        failover,
        recovered,
    }
}

/// Mints `count` alice sessions once the replicas confirm writes. A replica that just synced
/// (a new deployment, a node back from the dead) is "online" on its master before it is quick
/// to acknowledge (it loads, then rewrites its append-only file; on two busy cores that can
/// take longer than `WAIT`'s half second): such a write is a 503, never acknowledged and never
/// counted as a session, so the minting is tried again, for at most 10 s.
async fn mint_confirmed(admin: SocketAddr, count: u32) -> Vec<String> {
    let body = format!(r#"{{"username":"alice","count":{count}}}"#);
    let start = Instant::now();
    let mut refused = 0;
    loop {
        let resp = admin_call_body(admin, "POST", "/admin/sessions", &body).await;
        if status_of(&resp) == 201 {
            if refused > 0 {
                println!(
                    "writes confirmed again after {:?} ({refused} refused)",
                    start.elapsed()
                );
            }
            let tokens = json_of(&resp)["tokens"].as_array().unwrap().clone();
            return tokens.iter().map(|t| t.as_str().unwrap().to_string()).collect();
        }
        assert_eq!(status_of(&resp), 503, "{resp}");
        refused += 1;
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "writes were not confirmed within 10 s: {resp}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Revocation across gateways: revoked on one, refused by the other; the p99 of 50 (printed).
async fn revocation_p99(deployment: &str, a: &Gateway, b: &Gateway) {
    let tokens = mint_confirmed(a.admin, 50).await;
    let mut took = Vec::new();
    for t in &tokens {
        assert_eq!(status(b.http, t).await, 200);
        let started = Instant::now();
        let resp = admin_call(a.admin, "DELETE", &format!("/admin/sessions/{}", token_id(t))).await;
        assert_eq!(status_of(&resp), 200, "{resp}");
        let end = started + Duration::from_secs(2);
        loop {
            if status(b.http, t).await == 401 {
                break;
            }
            assert!(
                Instant::now() < end,
                "a revocation never reached the other gateway"
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        took.push(started.elapsed());
    }
    took.sort();
    println!(
        "{deployment}: revocation seen by the other gateway: p50 {:?}, p99 {:?}",
        took[took.len() / 2],
        took[took.len() * 99 / 100]
    );
}
