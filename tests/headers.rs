//! Header hygiene end to end: hop-by-hop and Connection-named headers, spoofed identity headers
//! in every spelling, forwarding headers from untrusted and trusted peers, ambiguous framing.
//! Every test runs on both HTTP/1.1 paths (`PATHS`: the fast path, then hyper's).
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use common::*;

#[tokio::test]
async fn hop_by_hop_and_spoofed_headers_never_reach_the_upstream() {
    let (up, _stop) = upstream::whoami().await;
    for fast in PATHS {
        println!("http1_fast_path = {fast}");
        hop_by_hop_and_spoofed(up, fast).await;
    }
}

async fn hop_by_hop_and_spoofed(up: std::net::SocketAddr, fast: bool) {
    let gw = Gateway::start(&on_path(&(base_toml() + &route("app", "/", &[up], "")), fast));
    let spoof = "X-Auth-User: eve\r\n\
        X_Auth_User: eve\r\n\
        x-auth-user-id: 1\r\n\
        X-AUTH-ROLES: admin\r\n\
        X_Auth_Session_Id: s\r\n\
        X-Auth-Jwt: forged\r\n\
        X-Auth-User-Uuid: u\r\n\
        X-Auth-Session-Expires: 9999999999\r\n\
        Forwarded: for=6.6.6.6\r\n\
        X-Forwarded-For: 6.6.6.6\r\n\
        X_Forwarded_Host: evil.example\r\n\
        X-Forwarded-Proto: https\r\n\
        X-Real-IP: 6.6.6.6\r\n\
        X-Request-Id: chosen-by-client\r\n\
        Keep-Alive: timeout=99\r\n\
        TE: trailers\r\n\
        Proxy-Authorization: Basic Zm9vOmJhcg==\r\n\
        Proxy-Connection: keep-alive\r\n\
        X-Custom: named-in-connection\r\n\
        X-Kept: yes\r\n";
    // The Connection attack: naming the gateway's own headers must not remove what it sets.
    let req = format!(
        "GET /h HTTP/1.1\r\nHost: localhost\r\n{spoof}Connection: close, X-Forwarded-For, X-Auth-User, X-Request-Id, X-Custom\r\n\r\n"
    );
    let resp = raw(gw.http, req.as_bytes()).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    let seen = json_of(&resp);
    let headers = seen["headers"].as_object().unwrap();
    for name in headers.keys() {
        let n = name.replace('_', "-");
        assert!(
            !n.starts_with("x-auth-"),
            "identity header {name} reached the upstream"
        );
        assert!(
            ![
                "forwarded",
                "x-real-ip",
                "keep-alive",
                "te",
                "proxy-authorization",
                "proxy-connection",
                "x-custom"
            ]
            .contains(&n.as_str()),
            "{name} reached the upstream"
        );
    }
    assert_eq!(
        seen["headers"]["x-forwarded-for"], "127.0.0.1",
        "set by the gateway, not the client"
    );
    assert_eq!(seen["headers"]["x-forwarded-proto"], "http");
    assert_eq!(seen["headers"]["x-forwarded-host"], "localhost");
    assert_ne!(seen["headers"]["x-request-id"], "chosen-by-client");
    assert_eq!(seen["headers"]["x-request-id"].as_str().unwrap().len(), 32);
    assert_eq!(seen["headers"]["x-kept"], "yes");
    gw.stop().await;
}

#[tokio::test]
async fn trusted_proxies_extend_the_forwarding_chain() {
    let (up, _stop) = upstream::whoami().await;
    for fast in PATHS {
        println!("http1_fast_path = {fast}");
        let toml = base_toml().replace("workers = 1", "workers = 1\ntrusted_proxies = [\"127.0.0.0/8\"]")
            + &route("app", "/", &[up], "");
        trusted_chain(&on_path(&toml, fast)).await;
    }
}

async fn trusted_chain(toml: &str) {
    let gw = Gateway::start(toml);
    let resp = get_raw(
        gw.http,
        "/t",
        "X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: public.example\r\nX-Request-Id: edge-42\r\nX_Auth_User: eve\r\n",
    )
    .await;
    let seen = json_of(&resp);
    assert_eq!(seen["headers"]["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https");
    assert_eq!(seen["headers"]["x-forwarded-host"], "public.example");
    assert_eq!(seen["headers"]["x-request-id"], "edge-42");
    assert!(
        seen["headers"].get("x_auth_user").is_none(),
        "identity headers are stripped even from trusted proxies"
    );
    gw.stop().await;
}

#[tokio::test]
async fn ambiguous_framing_is_never_forwarded_ambiguously() {
    // hyper's parser drops Content-Length when Transfer-Encoding is present (RFC 9112 §6.3),
    // decodes the chunked body, and closes the connection after answering, so a request
    // smuggled behind the body is never read, let alone forwarded.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    let up = upstream::scripted(move |req: hyper::Request<hyper::body::Incoming>| {
        let log = log.clone();
        async move {
            let cl = req
                .headers()
                .get("content-length")
                .map(|v| v.to_str().unwrap().to_string());
            log.lock()
                .unwrap()
                .push(format!("{} cl={cl:?}", req.uri().path()));
            hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from("reached")))
        }
    })
    .await;
    for fast in PATHS {
        println!("http1_fast_path = {fast}");
        seen.lock().unwrap().clear();
        smuggled_once(&seen, up, fast).await;
    }
}

async fn smuggled_once(seen: &std::sync::Mutex<Vec<String>>, up: std::net::SocketAddr, fast: bool) {
    let gw = Gateway::start(&on_path(&(base_toml() + &route("app", "/", &[up], "")), fast));
    let smuggle = "POST /x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let resp = raw(gw.http, smuggle.as_bytes()).await;
    assert_eq!(
        resp.matches("HTTP/1.1 ").count(),
        1,
        "one answer, then the connection closes: {resp}"
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec!["/x cl=None".to_string()],
        "only the first request, without Content-Length"
    );
    gw.stop().await;
}

#[tokio::test]
async fn upstream_hop_by_hop_response_headers_are_removed() {
    let up = upstream::scripted(|_req| async {
        hyper::Response::builder()
            .header("connection", "x-internal")
            .header("x-internal", "secret-topology")
            .header("keep-alive", "timeout=1")
            .header("x-app", "1")
            .body(http_body_util::Full::new(bytes::Bytes::from("ok")))
            .unwrap()
    })
    .await;
    for fast in PATHS {
        println!("http1_fast_path = {fast}");
        let toml = base_toml() + &route("app", "/", &[up], "preserve_host = false");
        let gw = Gateway::start(&on_path(&toml, fast));
        let a = http_request(gw.http, get("/r")).await;
        assert_eq!(a.status, 200);
        assert!(a.headers.get("x-internal").is_none());
        assert!(a.headers.get("keep-alive").is_none());
        assert_eq!(a.headers.get("x-app").unwrap(), "1");
        gw.stop().await;
    }
}

#[tokio::test]
async fn preserve_host_false_sends_the_upstream_authority() {
    let (up, _stop) = upstream::whoami().await;
    for fast in PATHS {
        println!("http1_fast_path = {fast}");
        let toml = base_toml() + &route("app", "/", &[up], "preserve_host = false");
        let gw = Gateway::start(&on_path(&toml, fast));
        let seen = json_of(&get_raw(gw.http, "/p", "").await);
        assert_eq!(seen["headers"]["host"], up.to_string());
        assert_eq!(seen["headers"]["x-forwarded-host"], "localhost");
        gw.stop().await;
    }
}
