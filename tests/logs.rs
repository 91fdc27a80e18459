//! The access log: one JSON line per request with method, route, path, status, upstream,
//! latency and request id — and never a query string, a token or a cookie.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use common::*;
use std::time::Duration;

#[tokio::test]
async fn one_access_line_per_request_without_secrets() {
    let (up, _stop) = upstream::whoami().await;
    let http = free_port();
    let admin = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("portcullis.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nhttp_listen = \"127.0.0.1:{http}\"\nworkers = 1\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n{}",
            route("app", "/", &[up], "")
        ),
    )
    .unwrap();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["--log-format", "json", "run", "-c"])
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr = wait_listening(http).await;
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
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
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
