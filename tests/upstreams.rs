//! Upstream behaviour: 502 when nothing answers, 504 on timeout, round robin, a refusing target
//! skipped with one retry on another, and `https://` upstreams verified against a given CA.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use common::*;
use std::collections::HashMap;
use std::time::Duration;

#[tokio::test]
async fn nothing_listening_is_502_and_slow_is_504() {
    let slow = upstream::scripted(|_req| async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from("late")))
    })
    .await;
    let dead = upstream::dead_address();
    let toml = base_toml()
        + &route("dead", "/dead", &[dead], "")
        + &route("slow", "/slow", &[slow], "timeout = \"200ms\"");
    let gw = Gateway::start(&toml);
    let resp = get_raw(gw.http, "/dead", "").await;
    assert_eq!(status_of(&resp), 502, "{resp}");
    assert_eq!(json_of(&resp)["error"], "upstream_unavailable");
    let resp = get_raw(gw.http, "/slow", "").await;
    assert_eq!(status_of(&resp), 504, "{resp}");
    assert_eq!(json_of(&resp)["error"], "upstream_timeout");
    gw.stop().await;
}

async fn named(name: &'static str) -> std::net::SocketAddr {
    upstream::scripted(move |_req| async move {
        hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(name)))
    })
    .await
}

#[tokio::test]
async fn round_robin_spreads_requests() {
    let (a, b, c) = (named("a").await, named("b").await, named("c").await);
    let gw = Gateway::start(&(base_toml() + &route("rr", "/", &[a, b, c], "")));
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..30 {
        let ans = http_request(gw.http, get("/")).await;
        *counts
            .entry(String::from_utf8_lossy(&ans.body).into_owned())
            .or_default() += 1;
    }
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.values().all(|&n| n == 10), "{counts:?}");
    gw.stop().await;
}

#[tokio::test]
async fn a_refusing_target_is_retried_elsewhere_then_skipped() {
    let live = named("live").await;
    let dead = upstream::dead_address();
    let gw = Gateway::start(&(base_toml() + &route("rr", "/", &[dead, live], "cooldown = \"1m\"")));
    for _ in 0..10 {
        let ans = http_request(gw.http, get("/")).await;
        assert_eq!(ans.status, 200);
        assert_eq!(&ans.body[..], b"live");
    }
    // A POST with a body is not retried, but the dead target is cooling down and not picked.
    let post = http::Request::post("/")
        .header("host", "localhost")
        .body(http_body_util::Full::new(bytes::Bytes::from("payload")))
        .unwrap();
    let ans = http_request(gw.http, post).await;
    assert_eq!(ans.status, 200);
    gw.stop().await;
}

#[tokio::test]
async fn connect_failures_are_retried_for_every_method() {
    // Nothing was sent when a connection cannot be opened, so even a POST is safe to retry.
    let live = named("live").await;
    let dead = upstream::dead_address();
    // Cooldown zero: the dead target stays in rotation, so half the first attempts hit it.
    let gw = Gateway::start(&(base_toml() + &route("rr", "/", &[dead, live], "cooldown = \"0s\"")));
    for _ in 0..6 {
        let post = http::Request::post("/")
            .header("host", "localhost")
            .body(http_body_util::Full::new(bytes::Bytes::from("payload")))
            .unwrap();
        let ans = http_request(gw.http, post).await;
        assert_eq!(ans.status, 200);
        assert_eq!(&ans.body[..], b"live");
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_request_that_was_sent_is_never_retried() {
    // Target "drop" reads the request and hangs up without answering.
    let dropper = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let drop_addr = dropper.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = dropper.accept().await else {
                return;
            };
            let mut buf = [0u8; 4096];
            let _ = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await;
            drop(s);
        }
    });
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    let live = upstream::scripted(move |_req| {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async { hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from("live"))) }
    })
    .await;
    let gw = Gateway::start(&(base_toml() + &route("rr", "/", &[drop_addr, live], "cooldown = \"0s\"")));
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(http_request(gw.http, get("/")).await.status);
    }
    assert_eq!(statuses.iter().filter(|&&s| s == 502).count(), 2, "{statuses:?}");
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "the failed ones were not replayed"
    );
    gw.stop().await;
}

/// A request of each shape: without a body, with `Content-Length`, chunked.
fn shaped(shape: &str, i: usize) -> hyper::Request<http_body_util::Full<bytes::Bytes>> {
    let b = hyper::Request::builder()
        .uri(format!("/{i}"))
        .header("host", "localhost");
    let b = match shape {
        "GET" => b.method("GET"),
        "POST with Content-Length" => b.method("POST"),
        _ => b.method("POST").header("transfer-encoding", "chunked"),
    };
    let body = if shape == "GET" { "" } else { "hello" };
    b.body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap()
}

#[tokio::test]
async fn pooled_connections_are_reused_after_every_body_shape() {
    // Count the upstream's TCP connections: many requests, few connections.
    let conns = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (echo, _stop) = upstream::whoami().await;
    let counting = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = counting.local_addr().unwrap();
    let seen = conns.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = counting.accept().await else {
                return;
            };
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut server = tokio::net::TcpStream::connect(echo).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    for fast in [true, false] {
        let toml = base_toml().replace("workers = 1", &format!("workers = 1\nhttp1_fast_path = {fast}"))
            + &route("app", "/", &[addr], "");
        let gw = Gateway::start(&toml);
        // A body that ends with its last piece (Content-Length) must end the exchange as
        // cleanly as one that ends with an empty chunk.
        for shape in ["GET", "POST with Content-Length", "POST chunked"] {
            let before = conns.load(std::sync::atomic::Ordering::SeqCst);
            for i in 0..20 {
                let ans = http_request(gw.http, shaped(shape, i)).await;
                assert_eq!(ans.status, 200, "{shape}");
            }
            let used = conns.load(std::sync::atomic::Ordering::SeqCst) - before;
            assert!(
                used <= 2,
                "fast path {fast}: 20 sequential {shape} requests used {used} upstream connections"
            );
        }
        gw.stop().await;
    }
}

#[tokio::test]
async fn https_upstreams_are_verified_against_upstream_ca() {
    // The upstream is a second gateway terminating TLS with the development certificate.
    let (echo, _stop) = upstream::whoami().await;
    let inner = Gateway::start(&(base_toml() + &route("inner", "/", &[echo], "")));
    let https_route = |ca: &str| {
        format!(
            "\n[[routes]]\nname = \"tls\"\npath_prefix = \"/\"\nupstreams = [\"https://localhost:{}\"]\npolicy = \"public\"\npreserve_host = false\n{ca}\n",
            inner.tls.port()
        )
    };
    let ca = format!("upstream_ca = \"{}\"", repo_path("certs/ca.pem").display());
    let outer = Gateway::start(&(base_toml() + &https_route(&ca)));
    let ans = http_request(outer.http, get("/via-tls")).await;
    assert_eq!(ans.status, 200, "{:?}", ans.body);
    assert_eq!(ans.json()["path"], "/via-tls");
    assert_eq!(
        ans.json()["headers"]["x-forwarded-proto"],
        "https",
        "the inner gateway saw TLS"
    );

    // Without the CA (system roots only) the development certificate is refused: 502.
    let untrusting = Gateway::start(&(base_toml() + &https_route("")));
    let ans = http_request(untrusting.http, get("/via-tls")).await;
    assert_eq!(ans.status, 502);
    outer.stop().await;
    untrusting.stop().await;
    inner.stop().await;
}
