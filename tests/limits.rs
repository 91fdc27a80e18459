//! Limits: per-route body limit (413, declared and streamed), header size cap (431), the
//! header-read timeout against slowloris, and the idle keep-alive timeout.
//! Every test runs on both HTTP/1.1 paths (`PATHS`: the fast path, then hyper's).
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use common::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn bodies_over_the_route_limit_get_413() {
    let (up, _stop) = upstream::whoami().await;
    let toml = base_toml()
        + &route("small", "/small", &[up], "max_body = \"1KiB\"")
        + &route("big", "/", &[up], "max_body = \"64KiB\"");
    for fast in PATHS {
        println!("http1_fast_path = {fast}");
        let gw = Gateway::start(&on_path(&toml, fast));

        let body = "x".repeat(2000);
        let declared = format!(
            "POST /small HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let resp = raw(gw.http, declared.as_bytes()).await;
        assert_eq!(status_of(&resp), 413, "{resp}");
        assert_eq!(json_of(&resp)["error"], "body_too_large");

        // Chunked, no length declared: cut off while streaming.
        let chunk = "y".repeat(1500);
        let chunked = format!(
            "POST /small HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
            chunk.len()
        );
        let resp = raw(gw.http, chunked.as_bytes()).await;
        assert_eq!(status_of(&resp), 413, "{resp}");

        // The same body fits the other route.
        let ok = declared.replace("/small", "/other");
        let resp = raw(gw.http, ok.as_bytes()).await;
        assert_eq!(status_of(&resp), 200, "{resp}");
        assert_eq!(json_of(&resp)["body_bytes"], 2000);
        gw.stop().await;
    }
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let (up, _stop) = upstream::whoami().await;
    let toml = base_toml().replace("workers = 1", "workers = 1\nmax_header_bytes = \"16KiB\"")
        + &route("app", "/", &[up], "");
    for fast in PATHS {
        println!("http1_fast_path = {fast}");
        let gw = Gateway::start(&on_path(&toml, fast));
        let big = format!("X-Big: {}\r\n", "a".repeat(20_000));
        let resp = get_raw(gw.http, "/", &big).await;
        assert_eq!(status_of(&resp), 431, "{resp}");
        let fits = format!("X-Big: {}\r\n", "a".repeat(8_000));
        assert_eq!(status_of(&get_raw(gw.http, "/", &fits).await), 200);
        gw.stop().await;
    }
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    let (up, _stop) = upstream::whoami().await;
    let toml = base_toml().replace("workers = 1", "workers = 1\nheader_read_timeout = \"300ms\"")
        + &route("app", "/", &[up], "");
    for fast in PATHS {
        println!("http1_fast_path = {fast}");
        let gw = Gateway::start(&on_path(&toml, fast));
        let mut s = tokio::net::TcpStream::connect(gw.http).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
            .await
            .unwrap();
        // Dribble a header line every 100 ms; the gateway must close before we ever finish.
        let mut closed = false;
        for i in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if s.write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                closed = true;
                break;
            }
            let mut buf = [0u8; 512];
            if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await {
                // EOF or an error answer (408) both end the slow request.
                let _ = n;
                closed = true;
                break;
            }
        }
        assert!(closed, "a client dribbling headers for 5 s was never cut off");

        // A TLS client that never sends a ClientHello is cut off too.
        let mut t = tokio::net::TcpStream::connect(gw.tls).await.unwrap();
        let mut buf = [0u8; 16];
        let r = tokio::time::timeout(Duration::from_secs(5), t.read(&mut buf)).await;
        assert!(
            matches!(r, Ok(Ok(0)) | Ok(Err(_))),
            "silent TLS connection still open: {r:?}"
        );
        gw.stop().await;
    }
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let (up, _stop) = upstream::whoami().await;
    let toml = base_toml().replace(
        "workers = 1",
        "workers = 1\nidle_timeout = \"200ms\"\nheader_read_timeout = \"10s\"",
    ) + &route("app", "/", &[up], "");
    for fast in PATHS {
        println!("http1_fast_path = {fast}");
        let gw = Gateway::start(&on_path(&toml, fast));
        let mut s = tokio::net::TcpStream::connect(gw.http).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        // Now stay silent: the gateway closes the connection (EOF) on its own.
        let r = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
        assert!(
            matches!(r, Ok(Ok(0)) | Ok(Err(_))),
            "idle connection still open: {r:?}"
        );
        gw.stop().await;
    }
}
