//! A second hostile look, by a tester who had read the first suite (85 cases): 19- and
//! 20-digit lengths, heads at the size limit and split across writes at the hand-over,
//! `Expect` with pipelining, `Connection` naming framing headers, obs-text in credentials,
//! duplicated credentials, absolute- and authority-form targets, HEAD with a body, upstream
//! 101 variants and chunk extensions, and path spellings that lenient origins serve under a
//! protected prefix.
use super::cases::{SMUGGLED, b};
use super::misbehaving::on_first_owned as on_first;
use super::upstream::After;
use super::{Case, Outcome};

const H: &str = "Host: localhost\r\n";

fn cl_is(o: &Outcome, want: &str) -> Result<(), String> {
    for r in o.requests() {
        if let Some(v) = r.header("content-length")
            && v != want.as_bytes()
        {
            return Err(format!(
                "upstream content-length {:?}",
                String::from_utf8_lossy(v)
            ));
        }
    }
    Ok(())
}

pub fn all() -> Vec<Case> {
    let mut c = Vec::new();
    let get = |p: &str| format!("GET {p} HTTP/1.1\r\n{H}\r\n");
    // 19-digit content lengths: hyper takes them, the gateway's rule does not.
    c.push(
        Case::new(
            "second look",
            "CL 19 digits leading zeros",
            format!("POST / HTTP/1.1\r\n{H}Content-Length: 0000000000000000005\r\n\r\nhello") + &get("/b"),
        )
        .answers(1..=2)
        .forwarded(2)
        .status(&[200])
        .check(|o| cl_is(o, "5")),
    );
    c.push(
        Case::new(
            "second look",
            "CL 19 digits over max_body",
            format!("POST /small HTTP/1.1\r\n{H}Content-Length: 1000000000000000000\r\n\r\n0123"),
        )
        .answers(1..=1)
        .forwarded(0)
        .status(&[413])
        .may_cut(),
    );
    c.push(
        Case::new(
            "second look",
            "CL 20 digits leading zeros",
            format!("POST / HTTP/1.1\r\n{H}Content-Length: 00000000000000000005\r\n\r\nhello"),
        )
        .answers(1..=1)
        .status(&[200])
        .check(|o| cl_is(o, "5")),
    );
    // Head exactly at, under, over max_header_bytes (32 KiB by default).
    for (name, delta) in [("head max-1", -1i64), ("head max", 0), ("head max+1", 1)] {
        let base = format!("GET / HTTP/1.1\r\n{H}X-Pad: \r\n\r\n");
        let pad = (32768 + delta - base.len() as i64) as usize;
        let raw = format!("GET / HTTP/1.1\r\n{H}X-Pad: {}\r\n\r\n", "a".repeat(pad));
        assert_eq!(raw.len() as i64, 32768 + delta);
        c.push(
            Case::new(
                "second look",
                format!("{name}, at once, then GET"),
                raw.clone() + &get("/b"),
            )
            .answers(1..=2)
            .forwarded(2),
        );
        let (x, y) = raw.split_at(20000);
        c.push(
            Case::new("second look", format!("{name}, split"), x.to_string())
                .then(y.to_string() + &get("/b"))
                .answers(1..=2)
                .forwarded(2),
        );
    }
    // Pipelining with the hand-over boundary inside a head split across writes.
    c.push(
        Case::new(
            "second look",
            "fast, API head split, fast",
            get("/a") + "GET /users/me HTTP/1.1\r\nHo",
        )
        .then("st: localhost\r\n\r\n".to_string() + &get("/b"))
        .answers(3..=3)
        .forwarded(2)
        .status(&[200, 401, 200]),
    );
    c.push(
        Case::new(
            "second look",
            "fast, chunked split in head, fast",
            get("/a") + "POST /c HTTP/1.1\r\nHost: localhost\r\nTransfer-Enc",
        )
        .then("oding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_string() + &get("/b"))
        .answers(3..=3)
        .forwarded(3)
        .status(&[200, 200, 200]),
    );
    c.push(
        Case::new(
            "second look",
            "fast, h2 preface after served",
            get("/a") + "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        )
        .answers(1..=2)
        .forwarded(1),
    );
    // Expect + pipelined requests.
    c.push(
        Case::new(
            "second look",
            "Expect, body and next at once",
            format!("POST / HTTP/1.1\r\n{H}Expect: 100-continue\r\nContent-Length: 5\r\n\r\nhello")
                + &get("/b"),
        )
        .answers(2..=2)
        .forwarded(2)
        .status(&[200, 200]),
    );
    c.push(
        Case::new(
            "second look",
            "Expect, then body+next",
            format!("POST / HTTP/1.1\r\n{H}Expect: 100-continue\r\nContent-Length: 5\r\n\r\n"),
        )
        .then("hello".to_string() + &get("/b"))
        .answers(2..=2)
        .forwarded(2)
        .status(&[200, 200]),
    );
    c.push(
        Case::new(
            "second look",
            "Expect on 401, next request after pause",
            format!(
                "POST /private/x HTTP/1.1\r\n{H}Expect: 100-continue\r\nContent-Length: {}\r\n\r\n",
                SMUGGLED.len()
            ),
        )
        .then(SMUGGLED)
        .answers(1..=2)
        .forwarded(0)
        .status(&[401]),
    );
    c.push(Case::new("second look", "Expect on websocket route tunnel",
        format!("GET /ws HTTP/1.1\r\n{H}Connection: Upgrade\r\nUpgrade: websocket\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"))
        .then("hello").tunnel().answers(0..=1));
    // Connection nominating framing / routing headers.
    let n = SMUGGLED.len();
    for nom in [
        "Content-Length",
        "content-length, x",
        "Host",
        "Transfer-Encoding",
        "Keep-Alive, Content-Length",
    ] {
        c.push(
            Case::new(
                "second look",
                format!("Connection: {nom}"),
                format!("POST / HTTP/1.1\r\n{H}Connection: {nom}\r\nContent-Length: {n}\r\n\r\n{SMUGGLED}"),
            )
            .status(&[200]),
        );
    }
    c.push(
        Case::new(
            "second look",
            "Connection: Cookie on private",
            format!("GET /private/x HTTP/1.1\r\n{H}Connection: Cookie\r\nCookie: portcullis=TOKEN\r\n\r\n"),
        )
        .status(&[401])
        .forwarded(0),
    );
    c.push(Case::new("second look", "Connection obs-text naming X-Auth-User", b(&format!("GET /private/x HTTP/1.1\r\n{H}Authorization: Bearer TOKEN\r\nConnection: x-a, <ff>\r\nX-A: 1\r\n\r\n"))).status(&[200]));
    c.push(Case::new("second look", "Connection obs-text naming Authorization", b(&format!("GET /private/x HTTP/1.1\r\n{H}Authorization: Bearer TOKEN\r\nConnection: authorization, <ff>\r\n\r\n"))).status(&[200]));
    // obs-text in credentials.
    c.push(
        Case::new(
            "second look",
            "cookie with obs-text",
            b(&format!(
                "GET /private/x HTTP/1.1\r\n{H}Cookie: portcullis=TOKEN; x=<ff>\r\n\r\n"
            )),
        )
        .answers(1..=1)
        .forwarded(1),
    );
    c.push(Case::new("second look", "bearer with obs-text then cookie", b(&format!("GET /private/x HTTP/1.1\r\n{H}Authorization: Bearer TOKEN<ff>\r\nCookie: portcullis=TOKEN\r\n\r\n"))).answers(1..=1).forwarded(1));
    // Duplicated credentials.
    for (name, lines) in [
        (
            "basic then bearer",
            "Authorization: Basic Zm9vOmJhcg==\r\nAuthorization: Bearer TOKEN\r\n",
        ),
        (
            "bearer then bogus",
            "Authorization: Bearer TOKEN\r\nAuthorization: Bearer pc1_evil\r\n",
        ),
        (
            "bogus then bearer",
            "Authorization: Bearer pc1_evil\r\nAuthorization: Bearer TOKEN\r\n",
        ),
        (
            "two cookies bad first",
            "Cookie: portcullis=pc1_bad\r\nCookie: portcullis=TOKEN\r\n",
        ),
        (
            "two cookies good first",
            "Cookie: portcullis=TOKEN\r\nCookie: portcullis=pc1_bad\r\n",
        ),
        (
            "one cookie two values",
            "Cookie: portcullis=pc1_bad; portcullis=TOKEN\r\n",
        ),
        (
            "empty bearer then cookie",
            "Authorization: Bearer \r\nCookie: portcullis=TOKEN\r\n",
        ),
        ("bearer lower then cookie", "Authorization: bearer TOKEN\r\n"),
        ("bearer tab", "Authorization: Bearer\tTOKEN\r\n"),
        ("bearer two spaces", "Authorization: Bearer  TOKEN\r\n"),
    ] {
        c.push(
            Case::new(
                "second look",
                format!("creds: {name}"),
                format!("GET /private/x HTTP/1.1\r\n{H}{lines}\r\n"),
            )
            .answers(1..=1),
        );
        c.push(
            Case::new(
                "second look",
                format!("creds public: {name}"),
                format!("GET / HTTP/1.1\r\n{H}{lines}\r\n"),
            )
            .answers(1..=1),
        );
    }
    // Targets.
    for (name, line) in [
        ("authority-form GET", "GET localhost:80 HTTP/1.1"),
        ("absolute no path", "GET http://localhost HTTP/1.1"),
        ("absolute https", "GET https://localhost/ HTTP/1.1"),
        ("absolute upper", "GET HTTP://LOCALHOST/private/x HTTP/1.1"),
        ("absolute ftp", "GET ftp://localhost/ HTTP/1.1"),
        ("absolute other host", "GET http://hosted.example/only HTTP/1.1"),
        ("absolute dotdot", "GET http://localhost/a/../private/x HTTP/1.1"),
        ("absolute ipv6", "GET http://[::1]/ HTTP/1.1"),
        ("absolute with query only", "GET http://localhost?x=1 HTTP/1.1"),
        ("absolute api", "GET http://localhost/users/me HTTP/1.1"),
        ("absolute port bad", "GET http://localhost:99999/ HTTP/1.1"),
        ("absolute empty host", "GET http:///x HTTP/1.1"),
        ("double-slash authority-ish", "GET //hosted.example/only HTTP/1.1"),
        ("star GET", "GET * HTTP/1.1"),
    ] {
        c.push(
            Case::new(
                "second look",
                format!("target: {name}"),
                format!("{line}\r\n{H}\r\n"),
            )
            .answers(1..=1),
        );
    }
    // HEAD with a body, then GET.
    c.push(
        Case::new(
            "second look",
            "HEAD with body then GET",
            format!("HEAD /a HTTP/1.1\r\n{H}Content-Length: 5\r\n\r\nhello") + &get("/b"),
        )
        .heads(&[true, false])
        .answers(2..=2)
        .forwarded(2)
        .status(&[200, 200]),
    );
    c.push(
        Case::new(
            "second look",
            "HTTP/1.0 with TE",
            format!("POST / HTTP/1.0\r\n{H}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        )
        .answers(0..=1),
    );
    c.push(
        Case::new(
            "second look",
            "HTTP/1.0 keep-alive CL then more",
            format!("POST / HTTP/1.0\r\n{H}Connection: keep-alive\r\nContent-Length: 5\r\n\r\nhello")
                + &get("/b"),
        )
        .answers(1..=2)
        .forwarded(2),
    );
    // Misbehaving upstreams.
    let first = format!("GET /first HTTP/1.1\r\n{H}\r\n");
    let ws_first = format!("GET /first HTTP/1.1\r\n{H}Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    c.push(Case::new("second look", "upstream 100 then 101 to websocket", ws_first.clone())
        .script(on_first(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n".to_vec(), After::Tunnel))
        .tunnel().answers(0..=1));
    c.push(Case::new("second look", "upstream 101 with CL body", ws_first.clone())
        .script(on_first(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 5\r\n\r\nhello".to_vec(), After::Tunnel))
        .tunnel().answers(0..=1));
    c.push(
        Case::new("second look", "upstream 101 HTTP/1.0", ws_first.clone())
            .script(on_first(
                b"HTTP/1.0 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
                    .to_vec(),
                After::Tunnel,
            ))
            .tunnel()
            .answers(0..=1),
    );
    c.push(
        Case::new("second look", "upstream 101 without Upgrade", ws_first.clone())
            .script(on_first(
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n".to_vec(),
                After::Tunnel,
            ))
            .tunnel()
            .answers(0..=1)
            .status(&[502]),
    );
    let ext = format!(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;{}\r\nok\r\n0\r\n\r\n",
        "e".repeat(20_000)
    );
    c.push(
        Case::new("second look", "upstream huge chunk extension", first.clone())
            .script(on_first(ext.into_bytes(), After::KeepAlive))
            .answers(1..=1)
            .may_cut(),
    );
    let ext =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;a=\"\xff\"\r\nok\r\n0\r\n\r\n".to_vec();
    c.push(
        Case::new(
            "second look",
            "upstream chunk extension quoted obs",
            first.clone(),
        )
        .script(on_first(ext, After::KeepAlive))
        .answers(1..=1)
        .may_cut(),
    );
    c.push(
        Case::new(
            "second look",
            "upstream HEAD chunked with body",
            format!("HEAD /first HTTP/1.1\r\n{H}\r\n"),
        )
        .then(get("/second"))
        .script(on_first(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec(),
            After::KeepAlive,
        ))
        .heads(&[true, false])
        .answers(1..=2)
        .forwarded(2),
    );
    for (name, line) in [
        ("semicolon on prefix segment", "GET /private;x/y HTTP/1.1"),
        ("semicolon jsessionid", "GET /private;jsessionid=1/y HTTP/1.1"),
        ("semicolon end of prefix", "GET /private; HTTP/1.1"),
        ("upper-case prefix", "GET /PRIVATE/y HTTP/1.1"),
        ("trailing dot segment", "GET /private./y HTTP/1.1"),
        ("encoded dot", "GET /private%2e/y HTTP/1.1"),
        ("encoded semicolon", "GET /private%3b/y HTTP/1.1"),
        ("trailing space enc", "GET /private%20/y HTTP/1.1"),
        ("exact prefix", "GET /private HTTP/1.1"),
        ("ops via semicolon", "GET /ops;a=b/x HTTP/1.1"),
        ("backslash enc", "GET /private%5c..%5cy HTTP/1.1"),
        ("dot-semicolon", "GET /x/.;/private/y HTTP/1.1"),
        ("semicolon dotdot", "GET /x/..;/private/y HTTP/1.1"),
        ("double-encoded slash", "GET /private%252fy HTTP/1.1"),
        ("overlong utf8 slash", "GET /private%c0%af HTTP/1.1"),
    ] {
        c.push(
            Case::new(
                "second look",
                format!("path: {name}"),
                format!("{line}\r\n{H}\r\n"),
            )
            .answers(1..=1),
        );
    }
    c
}
