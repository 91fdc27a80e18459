//! Routing end to end: host (exact, wildcard, any), longest prefix, strip_prefix, 404 JSON, and
//! the path normalization table as raw requests: what is matched is what is forwarded.
//! Every test runs on both HTTP/1.1 paths (`PATHS`: the fast path, then hyper's).
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use common::*;

#[tokio::test]
async fn hosts_prefixes_and_strip_prefix() {
    let (up, _stop) = upstream::whoami().await;
    let toml = base_toml()
        + &route("root", "/", &[up], "")
        + &route("api", "/api", &[up], "strip_prefix = true")
        + &route("admin", "/admin", &[up], "")
        + &route("exact", "/", &[up], "host = \"App.Example.com\"")
        + &route("wild", "/w", &[up], "host = \"*.example.com\"");
    for fast in PATHS {
        println!("http1_fast_path = {fast}");
        let gw = Gateway::start(&on_path(&toml, fast));
        // (host, path, expected status, expected forwarded path, expected route in access terms)
        let table = [
            ("localhost", "/x", 200, "/x"),
            ("localhost", "/api", 200, "/"),
            ("localhost", "/api/v1/users", 200, "/v1/users"),
            ("localhost", "/apix", 200, "/apix"),
            ("app.example.com", "/api/v1", 200, "/api/v1"),
            ("APP.EXAMPLE.COM:8443", "/q", 200, "/q"),
            ("z.example.com", "/w/1", 200, "/w/1"),
            ("z.example.com", "/other", 404, ""),
            ("example.com", "/api/x", 200, "/x"),
        ];
        for (host, path, status, forwarded) in table {
            let resp = raw(
                gw.http,
                format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await;
            assert_eq!(status_of(&resp), status, "{host} {path}: {resp}");
            let body = json_of(&resp);
            if status == 200 {
                assert_eq!(body["path"], forwarded, "{host} {path}");
            } else {
                assert_eq!(body["error"], "no_route");
                assert!(body["message"].is_string());
            }
        }
        gw.stop().await;
    }
}

#[tokio::test]
async fn path_normalization_table() {
    let (up, _stop) = upstream::whoami().await;
    let toml = base_toml()
        + &route("public", "/", &[up], "")
        + &route("admin", "/admin", &[up], "strip_prefix = true");
    for fast in PATHS {
        println!("http1_fast_path = {fast}");
        let gw = Gateway::start(&on_path(&toml, fast));
        // (raw path, expected status, forwarded path for 200s)
        let table = [
            ("/a/./b", 200, "/a/b"),
            ("/a//b", 200, "/a/b"),
            ("/a/b/../c", 200, "/a/c"),
            ("/%61dmin/x", 200, "/x"), // decoded before matching: reaches the admin route, not around it
            ("/public/../admin/x", 200, "/x"),
            ("/a%20b", 200, "/a%20b"),
            ("/..", 400, ""),
            ("/a/../../etc/passwd", 400, ""),
            ("/%2e%2e/etc", 400, ""),
            ("/admin%2Fx", 400, ""),
            ("/a%2fb", 400, ""),
            ("/a%5Cb", 400, ""),
            ("/a%00b", 400, ""),
            ("/a\\b", 400, ""),
            ("/a%zz", 400, ""),
            ("/public/..;/admin", 400, ""),
        ];
        for (path, status, forwarded) in table {
            let resp = get_raw(gw.http, path, "").await;
            assert_eq!(status_of(&resp), status, "{path}: {resp}");
            let body = json_of(&resp);
            if status == 200 {
                assert_eq!(body["path"], forwarded, "{path}");
            } else {
                assert_eq!(body["error"], "bad_path", "{path}");
            }
        }
        gw.stop().await;
    }
}
