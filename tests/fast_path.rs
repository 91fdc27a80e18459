//! The HTTP/1.1 fast path (`src/h1`) against the general path (hyper): the same requests reach
//! the upstream the same way on both; pipelining; handing a connection to hyper mid-way; every
//! response framing an upstream may use, relayed exactly; pooled connections that died while
//! idle; upstreams that answer before the body is sent; heads that arrive in pieces; mangled
//! input. The metrics say which path served what, so a test can
//! tell that the fast path really was taken.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use common::*;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const FAST: &str = "portcullis_fast_path_requests_total";

fn handovers(reason: &str) -> String {
    format!("portcullis_fast_path_handovers_total{{kind=\"{reason}\"}}")
}

fn routes(up: SocketAddr) -> String {
    route("app", "/", &[up], "")
        + &route("private", "/private", &[up], "").replace("\"public\"", "\"authenticated\"")
        + &route("strip", "/strip", &[up], "strip_prefix = true")
}

/// The upstream's view of a request (whoami's JSON) without the per-request id.
fn seen_upstream(resp: &str) -> serde_json::Value {
    let mut json = json_of(resp);
    let headers = json["headers"].as_object_mut().unwrap();
    assert!(headers.remove("x-request-id").is_some(), "{resp}");
    json.as_object_mut().unwrap().remove("remote");
    json
}

/// The client's view: status line and headers but `date` and `x-request-id`, lower-cased and
/// sorted; the body.
fn seen_client(resp: &str) -> (Vec<String>, String) {
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().to_string();
    let mut headers: Vec<String> = lines
        .map(str::to_ascii_lowercase)
        .filter(|l| !l.starts_with("date:") && !l.starts_with("x-request-id:"))
        .collect();
    headers.sort();
    headers.insert(0, status);
    (headers, body.to_string())
}

#[tokio::test]
async fn both_paths_forward_a_request_the_same_way() {
    let (up, _stop) = upstream::whoami().await;
    let fast = Gateway::start(&(base_toml() + USERS + &routes(up)));
    let general = Gateway::start(
        &(base_toml().replace("workers = 1", "workers = 1\nhttp1_fast_path = false") + USERS + &routes(up)),
    );
    let token = mint(fast.admin, "alice", 1).await.remove(0);
    let other = mint(general.admin, "alice", 1).await.remove(0);
    let cases: Vec<(String, bool)> = vec![
        ("GET /a?b=1&c=%20d HTTP/1.1\r\nHost: localhost\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n".into(), true),
        (
            "GET /nominated HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive, X-Custom, X-Forwarded-For\r\n\
             X-Custom: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nProxy-Authorization: Basic eA==\r\nX-Keep: k\r\n\r\n"
                .into(),
            true,
        ),
        (
            "GET /spoof HTTP/1.1\r\nHost: localhost\r\nX-Auth-User: eve\r\nx_auth_user: eve\r\nX-AUTH-ROLES: admin\r\n\
             X-Forwarded-For: 6.6.6.6\r\nForwarded: for=1\r\nX-Real-IP: 1.1.1.1\r\nX-Request-Id: mine\r\n\
             X-Forwarded-Proto: gopher\r\n\r\n"
                .into(),
            true,
        ),
        ("POST /submit HTTP/1.1\r\nHost: localhost\r\nContent-Length: 11\r\n\r\nhello world".into(), true),
        ("HEAD /head HTTP/1.1\r\nHost: localhost\r\n\r\n".into(), true),
        ("GET /x/./y/../z//w/%61dmin HTTP/1.1\r\nHost: localhost\r\n\r\n".into(), true),
        ("GET /strip/inner?q HTTP/1.1\r\nHost: localhost\r\n\r\n".into(), true),
        ("GET /dup HTTP/1.1\r\nHost: localhost\r\nX-Dup: 1\r\nX-Dup: 2\r\n\r\n".into(), true),
        ("GET /basic HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic dTpw\r\n\r\n".into(), true),
        ("GET /private/me HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer TOKEN\r\n\r\n".into(), true),
        (
            "GET /private/c HTTP/1.1\r\nHost: localhost\r\nCookie: a=1; portcullis=TOKEN\r\nCookie: b=2\r\n\r\n".into(),
            true,
        ),
        // Refused by the policy: answered by the fast path as the pipeline answers.
        ("GET /private/no HTTP/1.1\r\nHost: localhost\r\n\r\n".into(), true),
        ("GET /private/no?a=b HTTP/1.1\r\nHost: localhost\r\nAccept: text/html\r\n\r\n".into(), true),
        ("GET /private/f HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer pc1_forged\r\n\r\n".into(), true),
        (
            "POST /private/c HTTP/1.1\r\nHost: localhost\r\nCookie: portcullis=TOKEN\r\nOrigin: http://evil.example\r\n\
             Content-Length: 2\r\n\r\nhi"
                .into(),
            true,
        ),
        // Handed over (and answered by hyper): endpoints, bad paths, odd framing.
        ("GET /users/me HTTP/1.1\r\nHost: localhost\r\n\r\n".into(), false),
        ("GET /%2e%2e/x HTTP/1.1\r\nHost: localhost\r\n\r\n".into(), false),
        (
            "POST /chunked HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".into(),
            false,
        ),
        ("GET /old HTTP/1.0\r\nHost: localhost\r\n\r\n".into(), false),
    ];
    let before = value(&scrape(fast.admin).await, FAST);
    let mut expected_fast = 0.0;
    for (template, is_fast) in &cases {
        // One request per connection; close after it.
        let with_close = |tok: &str| {
            template
                .replace("TOKEN", tok)
                .replacen("\r\n", "\r\nConnection: close\r\n", 1)
        };
        let a = raw(fast.http, with_close(&token).as_bytes()).await;
        let b = raw(general.http, with_close(&other).as_bytes()).await;
        assert_eq!(
            status_of(&a),
            status_of(&b),
            "{template}\nfast: {a}\ngeneral: {b}"
        );
        let (mut ha, mut ba) = seen_client(&a);
        let (mut hb, mut bb) = seen_client(&b);
        if status_of(&a) == 200 && !template.starts_with("HEAD") {
            let (ua, ub) = (seen_upstream(&a), seen_upstream(&b));
            let session_of = |j: &serde_json::Value| j["headers"]["x-auth-session-id"].clone();
            // Two gateways, two sessions: everything else about the identity is the same.
            let (mut ua, mut ub) = (ua.clone(), ub.clone());
            if session_of(&ua).is_string() {
                assert_ne!(session_of(&ua), session_of(&ub));
                for u in [&mut ua, &mut ub] {
                    let h = u["headers"].as_object_mut().unwrap();
                    h.remove("x-auth-session-id");
                    h.remove("x-auth-session-expires");
                }
            }
            assert_eq!(ua, ub, "{template}");
            // The bodies were compared as JSON; their lengths may differ by the session ids.
            for h in [&mut ha, &mut hb] {
                h.retain(|l| !l.starts_with("content-length:"));
            }
            (ba, bb) = (String::new(), String::new());
        }
        assert_eq!(ha, hb, "{template}");
        assert_eq!(ba, bb, "{template}");
        if *is_fast {
            expected_fast += 1.0;
        }
        let now = value(&scrape(fast.admin).await, FAST);
        assert_eq!(
            now - before,
            expected_fast,
            "fast path taken or not as expected: {template}"
        );
    }
    fast.stop().await;
    general.stop().await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let (up, _stop) = upstream::whoami().await;
    let gw = Gateway::start(&(base_toml() + &routes(up)));
    let mut s = TcpStream::connect(gw.http).await.unwrap();
    let three = "GET /one HTTP/1.1\r\nHost: a\r\n\r\nPOST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc\
                 GET /three HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    s.write_all(three.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("closed after the third answer")
        .unwrap();
    let out = String::from_utf8_lossy(&out);
    let paths: Vec<&str> = out
        .match_indices("\"path\":\"")
        .map(|(i, m)| out[i + m.len()..].split('"').next().unwrap())
        .collect();
    assert_eq!(paths, ["/one", "/two", "/three"], "{out}");
    assert!(out.contains("\"body_bytes\":3"), "{out}");
    assert_eq!(value(&scrape(gw.admin).await, FAST), 3.0);
    gw.stop().await;
}

#[tokio::test]
async fn a_connection_handed_to_hyper_keeps_working() {
    let (up, _stop) = upstream::whoami().await;
    let gw = Gateway::start(&(base_toml() + &routes(up)));
    let mut s = TcpStream::connect(gw.http).await.unwrap();
    let mut answer = async |req: &str| -> String {
        s.write_all(req.as_bytes()).await.unwrap();
        read_one(&mut s).await
    };
    let first = answer("GET /fast HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(first.contains("\"/fast\""), "{first}");
    let chunked =
        answer("POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
            .await;
    assert!(chunked.contains("\"body_bytes\":3"), "{chunked}");
    let after = answer("GET /after HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(after.contains("\"/after\""), "{after}");
    let metrics = scrape(gw.admin).await;
    assert_eq!(value(&metrics, FAST), 1.0, "only the first was the fast path's");
    assert_eq!(value(&metrics, &handovers("framing")), 1.0);
    gw.stop().await;
}

/// Reads one Content-Length-framed answer from `s`.
async fn read_one(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .expect("an answer")
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_string)
                })
                .map_or(0, |v| v.trim().parse().unwrap());
            if body.len() >= len {
                return text;
            }
        }
    }
}

/// An upstream speaking raw HTTP/1.1: for each request head it reads, `answer(path, n)` (n:
/// requests so far on this connection) gives the bytes to write and whether to close after.
/// Counts connections.
async fn raw_upstream(
    answer: impl Fn(&str, usize) -> (Vec<u8>, bool) + Send + Sync + 'static,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let counted = conns.clone();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut n = 0;
                loop {
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        let mut chunk = [0u8; 4096];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => buf.extend_from_slice(&chunk[..k]),
                        }
                    }
                    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    buf.drain(..end);
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                    n += 1;
                    let (bytes, close) = answer(&path, n);
                    if s.write_all(&bytes).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    (addr, conns)
}

#[tokio::test]
async fn every_response_framing_is_relayed_exactly() {
    let (up, _) = raw_upstream(|path, _| {
        let (bytes, close): (&str, bool) = match path {
            "/length" => ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Up: 1\r\n\r\nhello", false),
            "/chunked" => (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
                false,
            ),
            "/until-close" => ("HTTP/1.1 200 OK\r\nX-Up: 1\r\n\r\nall of it", true),
            "/no-content" => ("HTTP/1.1 204 No Content\r\n\r\n", false),
            "/not-modified" => ("HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n", false),
            "/hints" => (
                "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                false,
            ),
            "/both" => ("HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", false),
            "/gzip-chunked" => ("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", false),
            "/two-lengths" => ("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", false),
            "/garbage" => ("HTTP/1.1 200 OK\r\nBad Header\r\n\r\n", false),
            "/bad-chunk" => ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", false),
            "/short" => ("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this", true),
            _ => ("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", false),
        };
        (bytes.as_bytes().to_vec(), close)
    })
    .await;
    let gw = Gateway::start(&(base_toml() + &route("raw", "/", &[up], "")));
    let get = |path: &str, method: &str| {
        format!("{method} {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    };
    let body = |resp: &str| resp.split_once("\r\n\r\n").unwrap().1.to_string();

    let r = raw(gw.http, get("/length", "GET").as_bytes()).await;
    assert!(
        r.starts_with("HTTP/1.1 200 OK\r\n") && r.contains("X-Up: 1\r\n") && body(&r) == "hello",
        "{r}"
    );
    let r = raw(gw.http, get("/chunked", "GET").as_bytes()).await;
    assert!(
        r.to_ascii_lowercase().contains("transfer-encoding: chunked"),
        "{r}"
    );
    assert_eq!(
        body(&r),
        "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n",
        "chunks byte for byte, trailers left out (as on the general path)"
    );
    let r = raw(gw.http, get("/until-close", "GET").as_bytes()).await;
    assert!(
        r.to_ascii_lowercase().contains("transfer-encoding: chunked"),
        "{r}"
    );
    assert_eq!(
        body(&r),
        "9\r\nall of it\r\n0\r\n\r\n",
        "re-framed as chunks: {r}"
    );
    let r = raw(gw.http, get("/no-content", "GET").as_bytes()).await;
    assert!(r.starts_with("HTTP/1.1 204") && body(&r).is_empty(), "{r}");
    let r = raw(gw.http, get("/not-modified", "GET").as_bytes()).await;
    assert!(
        r.starts_with("HTTP/1.1 304") && r.contains("content-length: 99") && body(&r).is_empty(),
        "{r}"
    );
    let r = raw(gw.http, get("/length", "HEAD").as_bytes()).await;
    assert!(
        r.contains("content-length: 5") || r.contains("Content-Length: 5"),
        "{r}"
    );
    assert!(body(&r).is_empty(), "no body for HEAD: {r}");
    let r = raw(gw.http, get("/hints", "GET").as_bytes()).await;
    assert!(
        r.starts_with("HTTP/1.1 200 OK")
            && !r.contains("Early Hints")
            && !r.contains("Link:")
            && body(&r) == "ok",
        "{r}"
    );
    let r = raw(gw.http, get("/both", "GET").as_bytes()).await;
    assert!(
        !r.to_ascii_lowercase().contains("content-length") && body(&r) == "2\r\nok\r\n0\r\n\r\n",
        "chunked wins over the length: {r}"
    );
    for bad in ["/gzip-chunked", "/two-lengths", "/garbage", "/bad-chunk"] {
        let r = raw(gw.http, get(bad, "GET").as_bytes()).await;
        assert_eq!(status_of(&r), 502, "{bad}: {r}");
        assert!(
            !r.contains("Bad Header") && !r.contains("zz"),
            "{bad}: nothing of it forwarded: {r}"
        );
    }
    // A body that breaks off after the head went out: the client sees it short, then EOF.
    let r = raw(gw.http, get("/short", "GET").as_bytes()).await;
    assert!(r.starts_with("HTTP/1.1 200") && body(&r) == "only this", "{r}");
    assert_eq!(value(&scrape(gw.admin).await, FAST), 13.0, "all on the fast path");
    gw.stop().await;
}

#[tokio::test]
async fn a_pooled_connection_closed_under_a_request_is_replaced_only_for_safe_requests() {
    // Every connection answers its first request, then hangs up on the next without answering
    // (an upstream closing an idle keep-alive connection as the gateway reuses it).
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let (up, conns) = raw_upstream(move |_, n| {
        if n > 1 {
            return (Vec::new(), true);
        }
        counter.fetch_add(1, Ordering::SeqCst);
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(), false)
    })
    .await;
    let gw = Gateway::start(&(base_toml() + &route("raw", "/", &[up], "")));
    let mut s = TcpStream::connect(gw.http).await.unwrap();
    for _ in 0..3 {
        s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
        let r = read_one(&mut s).await;
        assert_eq!(status_of(&r), 200, "a GET is sent again on a new connection: {r}");
    }
    assert_eq!(
        conns.load(Ordering::SeqCst),
        3,
        "one new connection per replaced one"
    );
    s.write_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi")
        .await
        .unwrap();
    let r = read_one(&mut s).await;
    assert_eq!(status_of(&r), 502, "a POST with a body is never sent twice: {r}");
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    gw.stop().await;
}

#[tokio::test]
async fn a_head_in_pieces_stays_on_the_fast_path() {
    let (up, _stop) = upstream::whoami().await;
    let gw = Gateway::start(&(base_toml() + &routes(up)));
    let mut s = TcpStream::connect(gw.http).await.unwrap();
    for piece in ["GET /pie", "ces HTTP/1.1\r\nHo", "st: a\r\nX-A: 1\r\n", "\r\n"] {
        s.write_all(piece.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let r = read_one(&mut s).await;
    assert!(r.contains("\"/pieces\"") && r.contains("\"x-a\":\"1\""), "{r}");
    assert_eq!(value(&scrape(gw.admin).await, FAST), 1.0);
    gw.stop().await;
}

#[tokio::test]
async fn an_answer_before_the_whole_body_is_relayed_and_the_connection_closes() {
    // Reads the head only, refuses at once, then reads on and throws the body away (as a
    // server that lingers before closing does).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut chunk).await.unwrap();
            seen.extend_from_slice(&chunk[..n]);
        }
        let refusal = "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\n\r\ntoo big!";
        s.write_all(refusal.as_bytes()).await.unwrap();
        while matches!(s.read(&mut chunk).await, Ok(n) if n > 0) {}
    });
    let gw = Gateway::start(&(base_toml() + &route("raw", "/", &[up], "max_body = \"64MiB\"")));
    let mut s = TcpStream::connect(gw.http).await.unwrap();
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 50000000\r\n\r\n")
        .await
        .unwrap();
    // Some of the body, then the client waits for the answer.
    let _ = s.write_all(&vec![b'x'; 256 * 1024]).await;
    let r = read_one(&mut s).await;
    assert!(r.starts_with("HTTP/1.1 413") && r.ends_with("too big!"), "{r}");
    assert!(
        r.contains("connection: close"),
        "the unsent body ends the connection: {r}"
    );
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(_)) | Ok(Err(_))),
        "closed after the answer"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_header_read_timeout() {
    let (up, _stop) = upstream::whoami().await;
    let toml = base_toml().replace(
        "workers = 1",
        "workers = 1\nheader_read_timeout = \"300ms\"\nidle_timeout = \"60s\"",
    ) + &routes(up);
    let gw = Gateway::start(&toml);
    let mut s = TcpStream::connect(gw.http).await.unwrap();
    let mut buf = [0u8; 16];
    let r = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
    assert!(
        matches!(r, Ok(Ok(0)) | Ok(Err(_))),
        "a connection that never spoke is closed: {r:?}"
    );
    gw.stop().await;
}

/// A small deterministic generator (xorshift), so a failing case can be replayed.
struct Mutator(u64);

impl Mutator {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// `base` with a few bytes flipped, cut, doubled or replaced by framing characters.
    fn mutate(&mut self, base: &[u8]) -> Vec<u8> {
        let mut out = base.to_vec();
        for _ in 0..1 + self.below(4) {
            if out.is_empty() {
                break;
            }
            let at = self.below(out.len());
            match self.below(6) {
                0 => out[at] = self.next() as u8,
                1 => out[at] = b"\r\n:; ,\t\0"[self.below(8)],
                2 => out.truncate(at),
                3 => {
                    let piece = out[at..(at + 1 + self.below(16)).min(out.len())].to_vec();
                    out.splice(at..at, piece);
                }
                4 => out.insert(at, b"\r\n"[self.below(2)]),
                _ => {
                    out.remove(at);
                }
            }
        }
        out
    }
}

#[tokio::test]
async fn mangled_requests_get_an_answer_or_a_close_never_a_hang() {
    let (up, _stop) = upstream::whoami().await;
    let toml =
        base_toml().replace("workers = 1", "workers = 1\nheader_read_timeout = \"1s\"") + USERS + &routes(up);
    let gw = Gateway::start(&toml);
    let token = mint(gw.admin, "alice", 1).await.remove(0);
    let bases = [
        "GET /a?b=1 HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\nConnection: close\r\n\r\n".to_string(),
        format!(
            "GET /private/x HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        ),
        "POST /p HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
            .to_string(),
        "GET /p HTTP/1.1\r\nHost: localhost\r\nConnection: X-A, close\r\nX-A: 1\r\n\r\n".to_string(),
    ];
    let mut m = Mutator(0x9e37_79b9_7f4a_7c15);
    for case in 0..400 {
        let input = m.mutate(bases[case % bases.len()].as_bytes());
        let mut s = TcpStream::connect(gw.http).await.unwrap();
        let _ = s.write_all(&input).await;
        // Half-close: a request cut short is then a request that will never be finished.
        let _ = s.shutdown().await;
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        assert!(
            read.is_ok(),
            "case {case}: no answer and no close within 5 s for {:?}",
            String::from_utf8_lossy(&input)
        );
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 "),
            "case {case}: not an HTTP answer: {text:?} for {:?}",
            String::from_utf8_lossy(&input)
        );
    }
    // Still serving.
    assert_eq!(
        status_of(&get_with_token(gw.http, "/private/after", &token).await),
        200
    );
    gw.stop().await;
}

#[tokio::test]
async fn an_upstream_answering_as_it_reads_gets_the_whole_body() {
    // Answers at once, then echoes the body as chunks while it reads it (full duplex).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 16 * 1024];
        let end = loop {
            let n = s.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| {
                l.strip_prefix("content-length: ")
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap();
        s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        let mut echoed = buf.len() - end;
        if echoed > 0 {
            let first = buf[end..].to_vec();
            s.write_all(format!("{:x}\r\n", first.len()).as_bytes())
                .await
                .unwrap();
            s.write_all(&first).await.unwrap();
            s.write_all(b"\r\n").await.unwrap();
        }
        while echoed < len {
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the body stopped at {echoed} of {len}");
            s.write_all(format!("{n:x}\r\n").as_bytes()).await.unwrap();
            s.write_all(&chunk[..n]).await.unwrap();
            s.write_all(b"\r\n").await.unwrap();
            echoed += n;
        }
        s.write_all(b"0\r\n\r\n").await.unwrap();
    });
    let gw = Gateway::start(&(base_toml() + &route("echo", "/", &[up], "max_body = \"1MiB\"")));
    let body: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut s = TcpStream::connect(gw.http).await.unwrap();
    let head = format!(
        "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let sender = {
        let body = body.clone();
        tokio::spawn(async move {
            for piece in body.chunks(7_000) {
                wr.write_all(piece).await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            wr
        })
    };
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), rd.read_to_end(&mut out))
        .await
        .expect("the whole echo within 10 s")
        .unwrap();
    let _ = sender.await;
    let text = String::from_utf8_lossy(&out);
    let (head, mut rest) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // Undo the chunks.
    let mut echoed = Vec::new();
    loop {
        let (size, after) = rest.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size, 16).unwrap();
        if size == 0 {
            break;
        }
        echoed.extend_from_slice(&after.as_bytes()[..size]);
        rest = &after[size + 2..];
    }
    assert_eq!(echoed.len(), body.len());
    assert!(echoed == body, "the echo is the body");
    gw.stop().await;
}
