//! Upstreams that misbehave: bad framing, interim answers, 101s nobody asked for, bodies where
//! none may be, extra bytes after an answer, closes and silences. The client asks for
//! `/first` (which gets the misbehaviour) and then, on the same connection, for `/second`
//! (which gets an ordinary answer): the second answer must be `/second`'s own, never leftovers
//! of the first, and the first must be relayed with one clear framing or be a 502.

use super::upstream::{After, Reply, Script};
use super::{Case, Outcome};
use std::sync::Arc;

fn on_first(bytes: &'static str, after: After) -> Script {
    Arc::new(move |req| {
        (req.target == "/first").then(|| Reply {
            bytes: bytes.as_bytes().to_vec(),
            after,
        })
    })
}

pub(super) fn on_first_owned(bytes: Vec<u8>, after: After) -> Script {
    Arc::new(move |req| {
        (req.target == "/first").then(|| Reply {
            bytes: bytes.clone(),
            after,
        })
    })
}

const FIRST: &str = "GET /first HTTP/1.1\r\nHost: localhost\r\n\r\n";
const SECOND: &str = "GET /second HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// Whatever the first answer was, a second one is `/second`'s.
fn second_is_its_own(o: &Outcome) -> Result<(), String> {
    match o.exchange.answers.get(1) {
        Some(a) if a.status == 200 && a.body == b"GET /second" => Ok(()),
        Some(a) => Err(format!(
            "the second answer is not /second's: {} {:?}",
            a.status,
            String::from_utf8_lossy(&a.body)
        )),
        None => Ok(()),
    }
}

fn case(name: &str, script: Script, first: u16) -> Case {
    Case::new("upstream", name.to_string(), FIRST)
        .then(SECOND)
        .script(script)
        .answers(1..=2)
        .forwarded(2)
        .status(&[first])
        .check(second_is_its_own)
}

fn with_body(o: &Outcome, want: &[u8]) -> Result<(), String> {
    second_is_its_own(o)?;
    match o.exchange.answers.first() {
        Some(a) if a.body == want => Ok(()),
        Some(a) => Err(format!("first body {:?}", String::from_utf8_lossy(&a.body))),
        None => Err("no first answer".into()),
    }
}

pub fn all() -> Vec<Case> {
    use After::{Close, Hang, KeepAlive};
    let mut cases = vec![
        case(
            "Transfer-Encoding and Content-Length",
            on_first("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n", KeepAlive),
            200,
        )
        .check(|o| with_body(o, b"hello")),
        case(
            "Content-Length and Transfer-Encoding",
            on_first("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", KeepAlive),
            200,
        )
        .check(|o| with_body(o, b"hello")),
        case(
            "Content-Length: 5, 5",
            on_first("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello", KeepAlive),
            200,
        )
        .check(|o| with_body(o, b"hello")),
        case(
            "two Content-Length lines, same",
            on_first("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", KeepAlive),
            200,
        ),
        case(
            "two Content-Length lines, different",
            on_first("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", KeepAlive),
            502,
        ),
        case("Content-Length: 5, 6", on_first("HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello!", KeepAlive), 502),
        case("Content-Length: -1", on_first("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nhello", KeepAlive), 502),
        case(
            "Content-Length too large",
            on_first("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\nhello", KeepAlive),
            502,
        ),
        case(
            "Transfer-Encoding: gzip, chunked",
            on_first("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", KeepAlive),
            502,
        ),
        case(
            "Transfer-Encoding: chunked, gzip",
            on_first("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nhello", Close),
            502,
        ),
        case("Transfer-Encoding: identity", on_first("HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\nhello", Close), 502),
        case(
            "two Transfer-Encoding lines",
            on_first(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                KeepAlive,
            ),
            502,
        ),
        case(
            "HTTP/1.0 with Transfer-Encoding",
            on_first("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", Close),
            502,
        ),
        case(
            "204 with a body",
            on_first("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello", KeepAlive),
            204,
        ),
        case(
            "304 with a body",
            on_first("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\nhello", KeepAlive),
            304,
        ),
        case(
            "two answers to one request",
            on_first(
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nSMUGGLED",
                KeepAlive,
            ),
            200,
        )
        .check(|o| with_body(o, b"ok")),
        case("bytes after the body", on_first("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", KeepAlive), 200)
            .check(|o| with_body(o, b"ok")),
        case(
            "100 Continue nobody asked for",
            on_first("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", KeepAlive),
            200,
        ),
        case(
            "103 Early Hints",
            on_first("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", KeepAlive),
            200,
        ),
        case("101 nobody asked for", on_first("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n", KeepAlive), 502),
        case("status 099", on_first("HTTP/1.1 099 Low\r\nContent-Length: 0\r\n\r\n", KeepAlive), 502),
        case("status without a reason", on_first("HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok", KeepAlive), 200),
        case("obs-fold in a header", on_first("HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\nContent-Length: 2\r\n\r\nok", KeepAlive), 502),
        case("bare LF head", on_first("HTTP/1.1 200 OK\nContent-Length: 2\n\nok", KeepAlive), 200),
        case("NUL in a header", on_first("HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 2\r\n\r\nok", KeepAlive), 502),
        case("header without a colon", on_first("HTTP/1.1 200 OK\r\nX-A\r\nContent-Length: 2\r\n\r\nok", KeepAlive), 502),
        case("HTTP/2.0 status line", on_first("HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nok", KeepAlive), 502),
        case("HTTP/1.0 answer", on_first("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", KeepAlive), 200),
        case("no framing, close ends it", on_first("HTTP/1.1 200 OK\r\n\r\nuntil close", Close), 200)
            .check(|o| with_body(o, b"until close")),
        case("closes without answering", on_first("", Close), 502),
        case("closes in the middle of the head", on_first("HTTP/1.1 200 OK\r\nContent-Len", Close), 502),
        case(
            "Connection: close but stays open",
            on_first("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", KeepAlive),
            200,
        ),
        case(
            "Connection names a header",
            on_first("HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nX-Secret: s\r\nContent-Length: 2\r\n\r\nok", KeepAlive),
            200,
        )
        .check(|o| match o.exchange.answers.first() {
            Some(a) if a.header("x-secret").is_none() => second_is_its_own(o),
            _ => Err("a header named in Connection reached the client".into()),
        }),
        case(
            "trailers with framing names",
            on_first(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nContent-Length: 9\r\nX-T: 1\r\n\r\n",
                KeepAlive,
            ),
            200,
        )
        .check(|o| with_body(o, b"ok")),
        case(
            "hangs after the head",
            on_first("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhe", Hang),
            200,
        )
        .may_cut(),
        case("never answers", on_first("", Hang), 504),
        case(
            "closes in the middle of the body",
            on_first("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", Close),
            200,
        )
        .may_cut(),
        case("malformed chunk size", on_first("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", KeepAlive), 502)
            .may_cut(),
        case("bare LF in chunks", on_first("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n", KeepAlive), 502)
            .may_cut(),
        case(
            "overflowing chunk size",
            on_first("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\nhello\r\n0\r\n\r\n", KeepAlive),
            502,
        )
        .may_cut(),
    ];
    let extensions = format!(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;{}\r\nok\r\n0\r\n\r\n",
        "e".repeat(20_000)
    );
    cases.push(
        case(
            "chunk extensions over 16 KiB",
            on_first_owned(extensions.into_bytes(), KeepAlive),
            502,
        )
        .may_cut(),
    );
    let many_interim =
        "HTTP/1.1 100 Continue\r\n\r\n".repeat(50) + "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    cases.push(case(
        "fifty interim answers",
        on_first_owned(many_interim.into_bytes(), KeepAlive),
        200,
    ));
    let huge = format!(
        "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 2\r\n\r\nok",
        "a".repeat(70_000)
    );
    cases.push(case(
        "head over 64 KiB",
        on_first_owned(huge.into_bytes(), KeepAlive),
        502,
    ));
    let many = format!(
        "HTTP/1.1 200 OK\r\n{}Content-Length: 2\r\n\r\nok",
        "X-N: 1\r\n".repeat(101)
    );
    cases.push(case(
        "101 headers",
        on_first_owned(many.into_bytes(), KeepAlive),
        502,
    ));
    // HEAD: a body after the head must not become the next answer.
    cases.push(
        Case::new(
            "upstream",
            "HEAD answered with a body",
            "HEAD /first HTTP/1.1\r\nHost: localhost\r\n\r\n",
        )
        .then(SECOND)
        .script(on_first(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            KeepAlive,
        ))
        .heads(&[true, false])
        .answers(1..=2)
        .forwarded(2)
        .status(&[200])
        .check(second_is_its_own),
    );
    // An upgrade the route allows, answered with another protocol.
    cases.push(
        Case::new(
            "upstream",
            "101 to another protocol than asked",
            "GET /first HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        )
        .script(on_first(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
            KeepAlive,
        ))
        .tunnel()
        .status(&[502]),
    );
    // An answer before the request body was read.
    cases.push(
        Case::new(
            "upstream",
            "answers before the body",
            "POST /first HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nhello",
        )
        .then("world")
        .script(on_first(
            "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            Close,
        ))
        .status(&[413])
        .answers(1..=1),
    );
    cases
}
