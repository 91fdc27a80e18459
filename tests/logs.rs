//! The access log: one JSON line per request with method, route, path, status, upstream,
//! latency and request id — and never a query string, a token or a cookie; every line written
//! through a reload and a stop, on both HTTP/1.1 paths; and a destination that cannot keep up
//! costs lines (counted, and said in the log), never requests.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use common::*;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// Starts the binary with JSON logs on a config of one open route; its stdout is piped (and
/// read by nobody until the test says so).
async fn start(
    extra: &str,
    up: SocketAddr,
) -> (tokio::process::Child, SocketAddr, SocketAddr, tempfile::TempDir) {
    let http = free_port();
    let admin = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("portcullis.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nhttp_listen = \"127.0.0.1:{http}\"\nworkers = 2\n{extra}\n[admin]\nlisten = \"127.0.0.1:{admin}\"\ntoken = \"test-admin-token-0123456789\"\n{}",
            route("app", "/", &[up], "")
        ),
    )
    .unwrap();
    let child = spawn_binary(&config, std::process::Stdio::piped());
    let addr = wait_listening(http).await;
    let admin = wait_listening(admin).await;
    (child, addr, admin, dir)
}

/// Sends `n` GETs over `conns` keep-alive connections; every answer must be a 200. Returns
/// the request ids the gateway gave them.
async fn fire(addr: SocketAddr, n: usize, conns: usize) -> Vec<String> {
    let mut tasks = Vec::new();
    for c in 0..conns {
        tasks.push(tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .unwrap();
            tokio::spawn(conn);
            let mut ids = Vec::new();
            for i in (c..n).step_by(conns) {
                // Bounded: a request held up by the log fails the test rather than hanging it.
                let resp = tokio::time::timeout(
                    Duration::from_secs(10),
                    send.send_request(get(&format!("/r/{i}"))),
                )
                .await
                .expect("a request waited 10 s")
                .unwrap();
                assert_eq!(resp.status(), 200);
                ids.push(resp.headers()["x-request-id"].to_str().unwrap().to_string());
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    ids
}

/// Reads the child's stdout to its end, from now on.
fn read_all(child: &mut tokio::process::Child) -> tokio::task::JoinHandle<String> {
    let mut stdout = child.stdout.take().unwrap();
    tokio::spawn(async move {
        let mut out = Vec::new();
        stdout.read_to_end(&mut out).await.unwrap();
        String::from_utf8(out).unwrap()
    })
}

/// SIGTERM, the exit (within 10 s), and everything the child wrote.
async fn stop(mut child: tokio::process::Child, reader: tokio::task::JoinHandle<String>) -> String {
    signal(&child, "-TERM");
    tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    reader.await.unwrap()
}

/// The JSON lines of `target`.
fn lines_of(stdout: &str, target: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == target)
        .collect()
}

#[tokio::test]
async fn every_line_is_written_through_a_reload_and_a_stop_on_both_paths() {
    let (up, _stop) = upstream::whoami().await;
    for fast in [true, false] {
        let (mut child, addr, _admin, _dir) = start(&format!("http1_fast_path = {fast}"), up).await;
        let reader = read_all(&mut child);
        let mut ids = fire(addr, 300, 4).await;
        signal(&child, "-HUP");
        ids.extend(fire(addr, 300, 4).await);
        // The stop comes at once: lines still in the workers' buffers must not be lost.
        let stdout = stop(child, reader).await;
        let mut logged: Vec<String> = lines_of(&stdout, "portcullis::access")
            .iter()
            .map(|v| v["request_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(logged.len(), 600, "fast path {fast}: lines lost or doubled");
        logged.sort();
        ids.sort();
        assert_eq!(
            logged, ids,
            "fast path {fast}: one line per request, by request id"
        );
        assert!(stdout.contains("SIGHUP: reloading"), "{stdout}");
        assert!(
            stdout.lines().last().unwrap().contains("stopped"),
            "the last line is the stop"
        );
    }
}

#[tokio::test]
async fn a_destination_that_cannot_keep_up_costs_lines_never_requests() {
    let (up, _stop) = upstream::whoami().await;
    // 4 KiB may wait; the pipe nobody reads holds 64 KiB: a few hundred lines fit, then the
    // rest is dropped.
    let (mut child, addr, admin, _dir) = start("[log]\nbuffer = \"4KiB\"", up).await;
    let started = Instant::now();
    let ids = fire(addr, 3000, 4).await;
    assert_eq!(ids.len(), 3000);
    println!("3000 requests in {:?} with a stuck log", started.elapsed());
    let metrics = scrape(admin).await;
    let dropped = value(&metrics, "portcullis_log_dropped_lines_total");
    assert!(dropped > 0.0, "nothing dropped?\n{metrics}");
    // The destination moves again: the drops are said in the log itself.
    let reader = read_all(&mut child);
    // A request after the pipe is read again, so the writer reports before the stop.
    tokio::time::sleep(Duration::from_millis(300)).await;
    fire(addr, 1, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stdout = stop(child, reader).await;
    let written = lines_of(&stdout, "portcullis::access").len();
    let reported: u64 = lines_of(&stdout, "portcullis::log")
        .iter()
        .map(|v| v["dropped"].as_u64().unwrap())
        .sum();
    assert!(reported > 0, "no line says what was dropped");
    // The count covers every log line, so a warning dropped meanwhile may add a few.
    let accounted = written as u64 + reported;
    assert!(
        (3001..=3010).contains(&accounted),
        "every request is either in the log or counted as dropped: {written} written, {reported} dropped"
    );
}

#[tokio::test]
async fn one_access_line_per_request_without_secrets() {
    let (up, _stop) = upstream::whoami().await;
    let (child, addr, _admin, _dir) = start("", up).await;
    let resp = get_raw(
        addr,
        "/secret/path?token=QUERYSECRET&x=1",
        "Authorization: Bearer BEARERSECRET\r\nCookie: __Host-portcullis=COOKIESECRET\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 200);
    let request_id = resp
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .unwrap()
        .trim()
        .to_string();
    signal(&child, "-TERM");
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    for secret in ["QUERYSECRET", "BEARERSECRET", "COOKIESECRET"] {
        assert!(
            !stdout.contains(secret),
            "{secret} leaked into the log:\n{stdout}"
        );
    }
    let access: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "portcullis::access")
        .collect();
    assert_eq!(access.len(), 1, "{stdout}");
    let line = &access[0];
    assert_eq!(line["method"], "GET");
    assert_eq!(line["route"], "app");
    assert_eq!(line["path"], "/secret/path");
    assert_eq!(line["status"], 200);
    assert_eq!(line["upstream"], format!("http://{up}"));
    assert_eq!(line["request_id"], request_id);
    assert!(line["latency_ms"].as_f64().is_some());
}
