//! Graceful shutdown: in-flight requests finish, new connections are refused; the binary exits 0
//! on SIGTERM after draining.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use common::*;
use std::time::Duration;

async fn slow_upstream() -> std::net::SocketAddr {
    upstream::scripted(|_req| async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from("finished")))
    })
    .await
}

#[tokio::test]
async fn in_flight_requests_finish_during_shutdown() {
    let slow = slow_upstream().await;
    let mut gw = Gateway::start(&(base_toml() + &route("slow", "/", &[slow], "")));
    let addr = gw.http;
    let in_flight = tokio::spawn(async move { http_request(addr, get("/slow")).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let running = gw.running.take().unwrap();
    running.shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "new connections are refused once shutdown starts"
    );
    let ans = in_flight.await.unwrap();
    assert_eq!(ans.status, 200);
    assert_eq!(&ans.body[..], b"finished");
    running.stop().await;
}

#[tokio::test]
async fn sigterm_drains_and_exits_zero() {
    let slow = slow_upstream().await;
    let (http, admin) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("portcullis.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nhttp_listen = \"127.0.0.1:{http}\"\nworkers = 2\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n{}",
            route("slow", "/", &[slow], "")
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["--log-format", "json", "run", "-c"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr = wait_listening(http).await;
    let in_flight = tokio::spawn(async move { http_request(addr, get("/slow")).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let ans = in_flight.await.unwrap();
    assert_eq!(ans.status, 200, "the in-flight request finished");
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits after draining")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}
