//! Generative tests of the fast path's three parsers, each held against an oracle from the
//! hyper project (issue #12): the request head (`request::inspect` against hyper's server),
//! the chunked decoder (`chunked::Chunked` against a decoder built on httparse's
//! `parse_chunk_size`, and hyper's client), the response head (`response::parse` against
//! hyper's client). Inputs come from grammars of the tricks parsers disagree on, plus random
//! byte mutations. The properties: no panic, no hang, and agreement wherever the fast path
//! accepts (it may refuse more than hyper: that is a 502 or a hand-over, never a desync).
//!
//! CI runs `PORTCULLIS_PROP_CASES` cases per property (default 20 000: about half a minute for all four);
//! a long local run: `PORTCULLIS_PROP_CASES=200000 cargo test --release --lib h1::props`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::chunked::Chunked;
use super::request::{self, MAX_HEADERS};
use super::response::{self, Extra, Framing, Parsed};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use proptest::prelude::*;
use proptest::sample::select;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn config() -> ProptestConfig {
    let cases = std::env::var("PORTCULLIS_PROP_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Overwrites or inserts bytes that parsers disagree on, at random places.
fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8, bool)]) -> Vec<u8> {
    for &(at, byte, insert) in edits {
        if bytes.is_empty() {
            break;
        }
        let at = at % bytes.len();
        if insert {
            bytes.insert(at, byte);
        } else {
            bytes[at] = byte;
        }
    }
    bytes
}

/// No edits half the time: most inputs stay close to what the fast path accepts.
fn edits() -> impl Strategy<Value = Vec<(usize, u8, bool)>> {
    let byte = select(vec![
        b'\r', b'\n', 0, b' ', b'\t', b':', b',', b';', 0x0b, 0xff, b'0', b'a', b'-', b'_',
    ]);
    prop_oneof![
        1 => Just(Vec::new()),
        1 => prop::collection::vec((any::<usize>(), byte, any::<bool>()), 1..3),
    ]
}

/// A line end: CRLF mostly, else the bare LF or CR some parsers take.
fn eol() -> impl Strategy<Value = &'static str> {
    prop_oneof![18 => Just("\r\n"), 1 => Just("\n"), 1 => Just("\r")]
}

// ---- request heads ----------------------------------------------------------------------

fn request_head() -> impl Strategy<Value = Vec<u8>> {
    let method = prop_oneof![
        4 => select(vec!["GET", "POST", "HEAD", "PUT", "DELETE"]),
        1 => select(vec!["OPTIONS", "CONNECT", "get", "PATCH", "G T"]),
    ];
    let target = prop_oneof![
        4 => select(vec!["/", "/a?b=1", "/a/../b", "//x", "/x;y", "/a%20b"]),
        1 => select(vec!["/%2e%2e/", "*", "http://h/x", "/a b", "/a\"b"]),
    ];
    let version = prop_oneof![6 => Just("HTTP/1.1"), 1 => select(vec!["HTTP/1.0", "HTTP/1.2", "http/1.1", "HTTP/1.1 "])];
    // One Host line, mostly a good one, somewhere among the others.
    let host = prop_oneof![
        4 => select(vec!["Host: localhost", "host: h:80", "HOST: [::1]:8080", "Host:\tlocalhost"]),
        1 => select(vec!["Host: a b", "Host: u@h", "Host: h:99999", "Host: ", "Host: h/x", "Host: h\r\nHost: h"]),
    ];
    let name = select(vec![
        "Content-Length",
        "content-length",
        "Transfer-Encoding",
        "Transfer_Encoding",
        "Connection",
        "Upgrade",
        "Expect",
        "X-Auth-User",
        "Cookie",
        "Authorization",
        "X-A",
        "Keep-Alive",
        "HTTP2-Settings",
    ]);
    let value = select(vec![
        "5",
        "0",
        "05",
        "+5",
        "5, 5",
        "-1",
        "chunked",
        "gzip, chunked",
        "close",
        "upgrade",
        "Upgrade, HTTP2-Settings",
        "h2c",
        "websocket",
        "100-continue",
        "eve",
        "",
        "a\tb",
        "Bearer pc1_x",
        "a=1; b=2",
    ]);
    let line = (name, value, eol());
    (
        method,
        target,
        version,
        host,
        any::<usize>(),
        prop::collection::vec(line, 0..6),
        eol(),
        prop::collection::vec(any::<u8>(), 0..8),
        edits(),
    )
        .prop_map(|(m, t, v, host, at, lines, end, body, edits)| {
            let mut lines: Vec<String> = lines
                .into_iter()
                .map(|(n, v, e)| format!("{n}: {v}{e}"))
                .collect();
            lines.insert(at % (lines.len() + 1), format!("{host}\r\n"));
            let mut head = format!("{m} {t} {v}\r\n");
            for l in lines {
                head.push_str(&l);
            }
            head.push_str(end);
            let mut bytes = mutate(head.into_bytes(), &edits);
            bytes.extend_from_slice(&body);
            bytes
        })
}

/// What hyper's server made of a request head: method, target, `Host` values, the body length
/// it will read (its exact size hint), and whether it saw `Transfer-Encoding`.
#[derive(Debug)]
struct HyperRequest {
    method: String,
    target: String,
    hosts: Vec<Vec<u8>>,
    length: Option<u64>,
    chunked: bool,
}

fn hyper_request(rt: &tokio::runtime::Runtime, bytes: &[u8]) -> Option<HyperRequest> {
    rt.block_on(async {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let seen = HyperRequest {
                method: req.method().to_string(),
                target: req.uri().to_string(),
                hosts: req
                    .headers()
                    .get_all(http::header::HOST)
                    .iter()
                    .map(|v| v.as_bytes().to_vec())
                    .collect(),
                length: http_body::Body::size_hint(req.body()).exact(),
                chunked: req.headers().contains_key(http::header::TRANSFER_ENCODING),
            };
            let _ = tx.send(seen);
            async { Ok::<_, std::convert::Infallible>(http::Response::new(Empty::<Bytes>::new())) }
        });
        let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(server), service);
        client.write_all(bytes).await.unwrap();
        let _ = tokio::time::timeout(Duration::from_millis(50), conn).await;
        rx.try_recv().ok()
    })
}

fn check_request(rt: &tokio::runtime::Runtime, bytes: &[u8]) -> Result<(), TestCaseError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = req.parse(bytes) else {
        return Ok(());
    };
    let identity = [http::HeaderName::from_static("x-auth-user")];
    let Ok(seen) = request::inspect(&req, &identity, false) else {
        return Ok(());
    };
    // The fast path would forward this itself: hyper must read it the same way.
    let Some(h) = hyper_request(rt, bytes) else {
        return Err(TestCaseError::fail(format!(
            "the fast path accepts what hyper refuses: {:?}",
            String::from_utf8_lossy(bytes)
        )));
    };
    let target = match seen.query {
        Some(q) => format!("{}?{q}", seen.path),
        None => seen.path.to_string(),
    };
    prop_assert_eq!(&h.method, seen.method);
    prop_assert_eq!(&h.target, &target);
    prop_assert_eq!(h.hosts, vec![seen.host.as_bytes().to_vec()]);
    prop_assert_eq!(h.length, Some(seen.content_length.unwrap_or(0)));
    prop_assert!(!h.chunked);
    Ok(())
}

// ---- chunked bodies ---------------------------------------------------------------------

fn chunked_body() -> impl Strategy<Value = Vec<u8>> {
    let size_text =
        prop_oneof![6 => select(vec!["lower", "upper", "zeros"]), 1 => select(vec!["plus", "space"])];
    let ext = prop_oneof![6 => Just(""), 2 => select(vec![";a=1", ";a=\"b\"", ";\t"]), 1 => Just(" ;x")];
    let chunk = (
        prop::collection::vec(any::<u8>(), 1..12),
        size_text,
        ext,
        eol(),
        eol(),
    );
    let trailer = prop_oneof![
        6 => select(vec!["", "X-T: 1\r\n", "X-T: 1\r\nY: \r\n"]),
        1 => select(vec!["X-T: 1\n", "Bad\r\n", "X-T:\x01\r\n", ": x\r\n"]),
    ];
    (prop::collection::vec(chunk, 0..4), trailer, eol(), edits()).prop_map(|(chunks, trailer, end, edits)| {
        let mut out = Vec::new();
        for (data, style, ext, e1, e2) in chunks {
            let size = match style {
                "upper" => format!("{:X}", data.len()),
                "zeros" => format!("000{:x}", data.len()),
                "plus" => format!("+{:x}", data.len()),
                "space" => format!("{:x} ", data.len()),
                _ => format!("{:x}", data.len()),
            };
            out.extend_from_slice(format!("{size}{ext}{e1}").as_bytes());
            out.extend_from_slice(&data);
            out.extend_from_slice(e2.as_bytes());
        }
        out.extend_from_slice(format!("0\r\n{trailer}{end}").as_bytes());
        let mut out = mutate(out, &edits);
        out.extend_from_slice(b"NEXT");
        out
    })
}

/// The oracle: a strict chunked decoder on httparse's `parse_chunk_size` (hyper's chunk-size
/// grammar), CRLF after data, httparse's header grammar for trailers. `(data, end)`.
fn oracle_dechunk(buf: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut at = 0;
    let mut data = Vec::new();
    loop {
        let (used, size) = match httparse::parse_chunk_size(&buf[at..]) {
            Ok(httparse::Status::Complete(x)) => x,
            _ => return None,
        };
        at += used;
        if size == 0 {
            break;
        }
        let size = usize::try_from(size).ok()?;
        if buf.len() < at.checked_add(size)?.checked_add(2)? {
            return None;
        }
        data.extend_from_slice(&buf[at..at + size]);
        if &buf[at + size..at + size + 2] != b"\r\n" {
            return None;
        }
        at += size + 2;
    }
    let mut trailers = [httparse::EMPTY_HEADER; 16];
    match httparse::parse_headers(&buf[at..], &mut trailers) {
        Ok(httparse::Status::Complete((used, _))) => Some((data, at + used)),
        _ => None,
    }
}

/// Ours, fed in `pieces` (split points): where the body ends, or why it was refused.
fn ours_dechunk(buf: &[u8], cuts: &[usize]) -> Result<Option<usize>, &'static str> {
    let mut c = Chunked::default();
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (buf.len() + 1)).collect();
    points.push(buf.len());
    points.sort_unstable();
    let mut at = 0;
    for p in points {
        let fed = c.feed(&buf[at..p]).map_err(|e| e.0)?;
        if c.is_done() {
            return Ok(Some(at + fed.used));
        }
        at = p;
    }
    Ok(None)
}

/// hyper's client reading `body` as a chunked response body: the data, or `None` if it fails.
fn hyper_body(
    rt: &tokio::runtime::Runtime,
    head: &[u8],
    body: &[u8],
    head_request: bool,
) -> Option<(u16, Vec<u8>)> {
    let mut bytes = head.to_vec();
    bytes.extend_from_slice(body);
    rt.block_on(async move {
        let (client, mut server) = tokio::io::duplex(1 << 20);
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(client))
            .await
            .ok()?;
        tokio::spawn(conn);
        tokio::spawn(async move {
            let mut req = Vec::new();
            let mut byte = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match server.read(&mut byte).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => req.extend_from_slice(&byte[..n]),
                }
            }
            let _ = server.write_all(&bytes).await;
            let _ = server.shutdown().await;
        });
        let method = if head_request {
            http::Method::HEAD
        } else {
            http::Method::GET
        };
        let req = http::Request::builder()
            .method(method)
            .uri("/")
            .header("host", "h")
            .body(Empty::<Bytes>::new())
            .ok()?;
        let resp = tokio::time::timeout(Duration::from_millis(500), send.send_request(req))
            .await
            .ok()?
            .ok()?;
        let status = resp.status().as_u16();
        let body = tokio::time::timeout(Duration::from_millis(500), resp.into_body().collect())
            .await
            .ok()?
            .ok()?;
        Some((status, body.to_bytes().to_vec()))
    })
}

const CHUNKED_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

fn check_chunked(rt: &tokio::runtime::Runtime, body: &[u8], cuts: &[usize]) -> Result<(), TestCaseError> {
    let whole = ours_dechunk(body, &[]);
    // However the bytes arrive, the same end (or the same refusal).
    prop_assert_eq!(ours_dechunk(body, cuts), whole);
    let Ok(Some(end)) = whole else {
        return Ok(());
    };
    // Where ours says the body ends, the oracle agrees, and hyper decodes it.
    let Some((data, oracle_end)) = oracle_dechunk(body) else {
        return Err(TestCaseError::fail(format!(
            "the fast path accepts chunks the oracle refuses: {:?}",
            String::from_utf8_lossy(body)
        )));
    };
    prop_assert_eq!(end, oracle_end);
    let decoded = hyper_body(rt, CHUNKED_HEAD, &body[..end], false).map(|(_, b)| b);
    prop_assert_eq!(decoded, Some(data));
    Ok(())
}

// ---- response heads ---------------------------------------------------------------------

fn response_head() -> impl Strategy<Value = (Vec<u8>, bool)> {
    let version = prop_oneof![6 => Just("HTTP/1.1"), 1 => select(vec!["HTTP/1.0", "HTTP/2.0"])];
    let status = prop_oneof![
        6 => select(vec!["200 OK", "404 Nope", "500 Oops", "200"]),
        2 => select(vec!["204 No Content", "304 Not Modified"]),
        1 => select(vec!["103 Early", "099 Low", "999 X"]),
    ];
    let line = select(vec![
        "Content-Length: 5",
        "Content-Length: 5, 5",
        "Content-Length: 5, 6",
        "Content-Length: 3",
        "Content-Length: -1",
        "Content-Length: abc",
        "Transfer-Encoding: chunked",
        "Transfer-Encoding: gzip, chunked",
        "Transfer-Encoding: identity",
        "Connection: close",
        "Connection: keep-alive, X-A",
        "X-A: b",
        "X-B: c\r\n d",
    ]);
    let body = select(vec![
        "hello",
        "5\r\nhello\r\n0\r\n\r\n",
        "5\r\nhello\r\n0\r\n\r\n",
        "",
        "helloEXTRA",
    ]);
    (
        version,
        status,
        prop::collection::vec((line, eol()), 0..5),
        eol(),
        body,
        any::<bool>(),
        edits(),
    )
        .prop_map(|(v, s, lines, end, body, head, edits)| {
            let mut text = format!("{v} {s}\r\n");
            for (l, e) in lines {
                text.push_str(&format!("{l}{e}"));
            }
            text.push_str(end);
            let mut bytes = mutate(text.into_bytes(), &edits);
            bytes.extend_from_slice(body.as_bytes());
            (bytes, head)
        })
}

fn check_response(
    rt: &tokio::runtime::Runtime,
    bytes: &[u8],
    head_request: bool,
) -> Result<(), TestCaseError> {
    let extra = Extra {
        request_id: b"r",
        head_request,
        close: false,
        now: std::time::Instant::now(),
    };
    let mut out = Vec::new();
    let Ok(Parsed::Final(head)) = response::parse(bytes, &mut out, &extra) else {
        return Ok(());
    };
    let rest = &bytes[head.len..];
    let whole = match head.framing {
        Framing::Length(n) => rest.len() as u64 >= n,
        Framing::Chunked => matches!(ours_dechunk(rest, &[]), Ok(Some(_))),
        Framing::Empty | Framing::UntilClose => true,
    };
    if !whole {
        // A body the fast path breaks off (or answers 502 for): nothing to compare.
        return Ok(());
    }
    // The fast path relays this response: hyper's client must read it the same way.
    let Some((status, body)) = hyper_body(rt, &[], bytes, head_request) else {
        return Err(TestCaseError::fail(format!(
            "the fast path accepts a response hyper refuses: {:?}",
            String::from_utf8_lossy(bytes)
        )));
    };
    prop_assert_eq!(status, head.status);
    match head.framing {
        Framing::Empty => prop_assert!(body.is_empty()),
        Framing::Length(n) => {
            if let Some(want) = rest.get(..n as usize) {
                prop_assert_eq!(&body[..], want);
            }
        }
        Framing::Chunked => {
            if let Some((data, _)) = oracle_dechunk(rest) {
                prop_assert_eq!(body, data);
            }
        }
        Framing::UntilClose => prop_assert_eq!(&body[..], rest),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn request_heads_agree_with_hyper(bytes in request_head()) {
        let rt = runtime();
        check_request(&rt, &bytes)?;
    }

    #[test]
    fn request_heads_of_random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let rt = runtime();
        check_request(&rt, &bytes)?;
    }

    #[test]
    fn chunked_bodies_agree_with_the_oracle_and_hyper(
        body in chunked_body(),
        cuts in prop::collection::vec(any::<usize>(), 0..4),
    ) {
        let rt = runtime();
        check_chunked(&rt, &body, &cuts)?;
    }

    #[test]
    fn response_heads_agree_with_hyper((bytes, head) in response_head()) {
        let rt = runtime();
        check_response(&rt, &bytes, head)?;
    }
}
