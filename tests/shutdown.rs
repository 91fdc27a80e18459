//! Graceful shutdown: in-flight requests finish, new connections are refused; the binary exits 0
//! on SIGTERM after draining.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use common::*;
use std::time::Duration;

/// An upstream that says when a request has reached it, then takes 1.5 s to answer. Waiting for
/// that word (not for a fixed time) makes "a request is in flight" true before the stop.
async fn slow_upstream() -> (std::net::SocketAddr, tokio::sync::mpsc::UnboundedReceiver<()>) {
    let (arrived, arrivals) = tokio::sync::mpsc::unbounded_channel();
    let addr = upstream::scripted(move |_req| {
        let _ = arrived.send(());
        async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from("finished")))
        }
    })
    .await;
    (addr, arrivals)
}

async fn reached_upstream(arrivals: &mut tokio::sync::mpsc::UnboundedReceiver<()>) {
    tokio::time::timeout(Duration::from_secs(20), arrivals.recv())
        .await
        .expect("the request reaches the upstream")
        .expect("the upstream is running");
}

#[tokio::test]
async fn in_flight_requests_finish_during_shutdown() {
    let (slow, mut arrivals) = slow_upstream().await;
    let mut gw = Gateway::start(&(base_toml() + &route("slow", "/", &[slow], "")));
    let addr = gw.http;
    let in_flight = tokio::spawn(async move { http_request(addr, get("/slow")).await });
    reached_upstream(&mut arrivals).await;
    let running = gw.running.take().unwrap();
    running.shutdown();
    // Each worker drops its listener when it next runs; the request upstream has 1.5 s to go.
    let mut refused = false;
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "new connections are refused once shutdown starts");
    assert!(
        !in_flight.is_finished(),
        "refused while the request was still in flight"
    );
    let ans = in_flight.await.unwrap();
    assert_eq!(ans.status, 200);
    assert_eq!(&ans.body[..], b"finished");
    running.stop().await;
}

/// The binary on a config with one public route to `upstream`, logging to nowhere.
fn spawn_slow_route(dir: &tempfile::TempDir, upstream: std::net::SocketAddr) -> (tokio::process::Child, u16) {
    let (http, admin) = (free_port(), free_port());
    let config = dir.path().join("portcullis.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nhttp_listen = \"127.0.0.1:{http}\"\nworkers = 2\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n{}",
            route("slow", "/", &[upstream], "")
        ),
    )
    .unwrap();
    (spawn_binary(&config, std::process::Stdio::null()), http)
}

async fn exit_code(child: &mut tokio::process::Child) -> Option<i32> {
    tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits after draining")
        .unwrap()
        .code()
}

#[tokio::test]
async fn sigterm_drains_and_exits_zero() {
    let (slow, mut arrivals) = slow_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut child, http) = spawn_slow_route(&dir, slow);
    let addr = wait_listening(http).await;
    let in_flight = tokio::spawn(async move { http_request(addr, get("/slow")).await });
    reached_upstream(&mut arrivals).await;
    signal(&child, "-TERM");
    let ans = in_flight.await.unwrap();
    assert_eq!(ans.status, 200, "the in-flight request finished");
    assert_eq!(exit_code(&mut child).await, Some(0));
}

/// A port that accepts means a stop drains: SIGTERM the moment the port listens (while the store
/// and workers may still be starting) is a clean stop, not the default action's death by signal.
#[tokio::test]
async fn sigterm_while_starting_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, http) = spawn_slow_route(&dir, upstream::dead_address());
    let addr: std::net::SocketAddr = format!("127.0.0.1:{http}").parse().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "nothing started listening");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    signal(&child, "-TERM");
    assert_eq!(exit_code(&mut child).await, Some(0));
}
