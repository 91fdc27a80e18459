//! The hostile client's cases, by family. Where they come from: PortSwigger's request
//! smuggling research (CL.TE, TE.CL, TE.TE obfuscations; "HTTP/1.1 must die", 2025: 0.CL and
//! Expect-based desyncs), the HTTP Garden's findings (chunk-size and whitespace parser
//! disagreements, bare LF and CR, obs-fold), and advisories of hyper (chunk extensions,
//! RUSTSEC-2021-0079), Pingora (CVE-2025-4366, request smuggling via cache and 0-length
//! bodies), nginx and Envoy (h2c upgrades past authorization, CVE-2019-9900 NUL bytes).
//!
//! `SMUGGLED` names a request that exists only if some parser is fooled; `TOKEN` is a valid
//! bearer token of alice's; `eve` marks a spoofed identity.

use super::Case;

const H: &str = "Host: localhost\r\n";
pub const SMUGGLED: &str = "GET /SMUGGLED HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// Bytes from text, with `<XX>` standing for the byte 0xXX.
pub fn b(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'<'
            && i + 3 < bytes.len()
            && bytes[i + 3] == b'>'
            && let Ok(v) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

pub fn all() -> Vec<Case> {
    let mut cases = Vec::new();
    smuggling(&mut cases);
    content_lengths(&mut cases);
    chunks(&mut cases);
    early_answers(&mut cases);
    expectations(&mut cases);
    upgrades(&mut cases);
    connect(&mut cases);
    hosts(&mut cases);
    head_oddities(&mut cases);
    targets(&mut cases);
    identities(&mut cases);
    pipelining(&mut cases);
    forwarding(&mut cases);
    second_round(&mut cases);
    cases
}

/// What a second hostile look found (after the first fixes): path spellings lenient origins
/// serve under a protected prefix, path-override headers, the gateway's own token in a second
/// `Authorization` line, 20-digit lengths, and origins that answer before reading the body.
fn second_round(cases: &mut Vec<Case>) {
    for (name, target) in [
        ("path parameter", "/private;x/y"),
        ("jsessionid", "/private;jsessionid=1/y"),
        ("upper case", "/PRIVATE/y"),
        ("trailing dot", "/private./y"),
        ("trailing %20", "/private%20/y"),
        ("trailing %2e", "/private%2e/y"),
        ("parameter and case", "/Private;a=b"),
    ] {
        let raw = format!("GET {target} HTTP/1.1\r\n{H}\r\n");
        cases.push(
            Case::new("lenient path", format!("{name} on a protected prefix"), raw)
                .status(&[401])
                .forwarded(0),
        );
    }
    cases.push(
        Case::new(
            "lenient path",
            "parameter on a role prefix, with a token",
            format!("GET /ops;a=b/x HTTP/1.1\r\n{H}Authorization: Bearer TOKEN\r\n\r\n"),
        )
        .status(&[403])
        .forwarded(0),
    );
    // A public carve-out beneath a role prefix, reached with a lenient spelling: the policy
    // is the carve-out's, so the origin must be asked for the carve-out's path, never for the
    // spelling a case-sensitive origin serves under the role prefix.
    for (name, target) in [
        ("upper case", "/ops/Open/x"),
        ("trailing dot", "/ops/open./x"),
        ("parameter", "/ops/open;a/x"),
        ("both segments", "/OPS;b/OPEN%20/x"),
    ] {
        let raw = format!("GET {target} HTTP/1.1\r\n{H}Authorization: Bearer TOKEN\r\n\r\n");
        cases.push(
            Case::new(
                "lenient path",
                format!("{name} on a public carve-out of a role prefix"),
                raw,
            )
            .status(&[200])
            .forwarded(1)
            .check(as_the_route_spells_it),
        );
    }
    for header in [
        "X-Original-URL: /private/x",
        "X-Rewrite-URL: /private/x",
        "x_original_url: /private/x",
    ] {
        let raw = format!("GET / HTTP/1.1\r\n{H}{header}\r\n\r\n");
        cases.push(Case::new("path override", header.to_string(), raw).status(&[200]));
    }
    for (name, lines) in [
        (
            "Basic, then the gateway's Bearer",
            "Authorization: Basic Zm9v\r\nAuthorization: Bearer TOKEN\r\n",
        ),
        ("Bearer and a tab", "Authorization: Bearer\tTOKEN\r\n"),
        (
            "lower-case scheme, many spaces",
            "Authorization: bearer    TOKEN\r\n",
        ),
        (
            "the gateway's Bearer with junk, and its cookie",
            "Authorization: Bearer TOKEN<ff>\r\nCookie: portcullis=TOKEN\r\n",
        ),
    ] {
        let raw = format!("GET / HTTP/1.1\r\n{H}{lines}\r\n");
        cases.push(Case::new("own credential", name, b(&raw)).status(&[200]));
    }
    let n = SMUGGLED.len();
    cases.push(
        Case::new(
            "content-length",
            "20 digits",
            format!("POST / HTTP/1.1\r\n{H}Content-Length: {n:020}\r\n\r\n{SMUGGLED}"),
        )
        .status(&[200]),
    );
    cases.push(
        Case::new(
            "content-length",
            "19 digits over max_body",
            format!("POST /small HTTP/1.1\r\n{H}Content-Length: 1000000000000000000\r\n\r\nabcd"),
        )
        .status(&[413])
        .forwarded(0),
    );
    let early = |target: &str| {
        format!("POST {target} HTTP/1.1\r\n{H}X-Answer-Early: 1\r\nContent-Length: {n}\r\n\r\n")
    };
    cases.push(
        Case::new(
            "early origin",
            "complete answer before the body, then the body",
            early("/e"),
        )
        .then(SMUGGLED)
        .status(&[200]),
    );
    cases.push(
        Case::new(
            "early origin",
            "partial answer, then the client stalls",
            format!("POST /stall HTTP/1.1\r\n{H}X-Answer-Early: 1\r\nContent-Length: 10\r\n\r\nhello"),
        )
        .script(std::sync::Arc::new(|req: &super::upstream::Recorded| {
            (req.target == "/stall")
                .then(|| super::upstream::Reply::keep("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello"))
        }))
        .answers(0..=1)
        .may_cut()
        .check(|o| closed(o, "a stalled exchange")),
    );
}

/// CL.TE and TE.CL with every Transfer-Encoding obfuscation: whatever the gateway makes of
/// the framing, the request hidden in the body never reaches the upstream as a request.
fn smuggling(cases: &mut Vec<Case>) {
    // (name, header lines, is a Transfer-Encoding header to RFC 9112)
    let variants: &[(&str, &str, bool)] = &[
        ("plain", "Transfer-Encoding: chunked\r\n", true),
        ("upper case value", "Transfer-Encoding: CHUNKED\r\n", true),
        ("lower case name", "transfer-encoding: chunked\r\n", true),
        ("xchunked", "Transfer-Encoding: xchunked\r\n", true),
        (
            "chunked, identity",
            "Transfer-Encoding: chunked, identity\r\n",
            true,
        ),
        (
            "identity, chunked",
            "Transfer-Encoding: identity, chunked\r\n",
            true,
        ),
        ("gzip, chunked", "Transfer-Encoding: gzip, chunked\r\n", true),
        (
            "two lines, chunked first",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
            true,
        ),
        (
            "two lines, chunked last",
            "Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n",
            true,
        ),
        ("no space", "Transfer-Encoding:chunked\r\n", true),
        ("tab before value", "Transfer-Encoding:\tchunked\r\n", true),
        ("tab after value", "Transfer-Encoding: chunked\t\r\n", true),
        ("space before colon", "Transfer-Encoding : chunked\r\n", true),
        ("quoted", "Transfer-Encoding: \"chunked\"\r\n", true),
        ("chunk", "Transfer-Encoding: chunk\r\n", true),
        ("obs-fold", "Transfer-Encoding:\r\n chunked\r\n", true),
        ("vertical tab", "Transfer-Encoding: <0b>chunked\r\n", true),
        ("form feed", "Transfer-Encoding: <0c>chunked\r\n", true),
        ("NUL after", "Transfer-Encoding: chunked<00>\r\n", true),
        ("bare LF", "Transfer-Encoding: chunked\n", true),
        ("leading comma", "Transfer-Encoding: ,chunked\r\n", true),
        ("non-ASCII after", "Transfer-Encoding: chunked<c3><a9>\r\n", true),
        ("underscore name", "Transfer_Encoding: chunked\r\n", false),
        ("prefixed name", "X-Transfer-Encoding: chunked\r\n", false),
        ("Content-Encoding", "Content-Encoding: chunked\r\n", false),
    ];
    for (name, te, is_te) in variants {
        // CL.TE: by its length the body holds it all; by its chunks, a request follows.
        let body = format!("0\r\n\r\n{SMUGGLED}");
        let raw = format!(
            "POST / HTTP/1.1\r\n{H}Content-Length: {}\r\n{te}\r\n{body}",
            body.len()
        );
        cases.push(Case::new("smuggling CL.TE", *name, b(&raw)));
        // TE.CL: by its chunks the body holds it all; by its length, a request follows.
        let inner_target = if *is_te { "/SMUGGLED" } else { "/pipelined" };
        let inner = format!("GET {inner_target} HTTP/1.1\r\n{H}Content-Length: 7\r\n\r\n");
        let size = format!("{:x}\r\n", inner.len());
        let raw = format!(
            "POST / HTTP/1.1\r\n{H}{te}Content-Length: {}\r\n\r\n{size}{inner}\r\n0\r\n\r\n",
            size.len()
        );
        let case = Case::new("smuggling TE.CL", *name, b(&raw));
        cases.push(if *is_te {
            case
        } else {
            case.answers(1..=2).forwarded(2)
        });
    }
    let plain = "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    cases.push(
        Case::new(
            "smuggling CL.TE",
            "TE and CL: chunked wins, connection closed",
            plain,
        )
        .status(&[200])
        .check(|o| closed(o, "TE + CL")),
    );
}

fn closed(o: &super::Outcome, why: &str) -> Result<(), String> {
    if o.exchange.closed {
        Ok(())
    } else {
        Err(format!("the connection stayed open after {why}"))
    }
}

fn as_the_route_spells_it(o: &super::Outcome) -> Result<(), String> {
    match o.requests().map(|r| r.target.as_str()).collect::<Vec<_>>()[..] {
        ["/ops/open/x"] => Ok(()),
        ref other => Err(format!("forwarded {other:?}, not /ops/open/x")),
    }
}

/// Content-Length values a lenient parser reads differently; the body is a request.
fn content_lengths(cases: &mut Vec<Case>) {
    let n = SMUGGLED.len();
    let values = [
        format!("{n}"),
        format!("0{n}"),
        format!("+{n}"),
        format!("-{n}"),
        format!("{n} "),
        format!(" {n}"),
        format!("{n},{n}"),
        format!("{n}, {n}"),
        format!("{n}, 0"),
        format!("0x{n:x}"),
        format!("{n}.0"),
        format!("{n}e0"),
        String::new(),
        format!("{n}<00>"),
        "99999999999999999999".into(),
        format!("{n}<0b>"),
        format!("\"{n}\""),
        format!("{n}\r\n Content-Length: 0"),
    ];
    for v in &values {
        let raw = format!("POST / HTTP/1.1\r\n{H}Content-Length: {v}\r\n\r\n{SMUGGLED}");
        cases.push(Case::new(
            "content-length",
            format!("Content-Length: {v:?}"),
            b(&raw),
        ));
    }
    for (a, c) in [(n, n), (n, 0), (0, n)] {
        let raw =
            format!("POST / HTTP/1.1\r\n{H}Content-Length: {a}\r\nContent-Length: {c}\r\n\r\n{SMUGGLED}");
        cases.push(Case::new(
            "content-length",
            format!("two lines: {a} and {c}"),
            raw,
        ));
    }
    // A framing name spelt with `_`: not Content-Length to RFC 9112, so the request has no body
    // and what follows is the client's second request; the lookalike never reaches the upstream.
    let raw = format!("POST / HTTP/1.1\r\n{H}Content_Length: 10\r\n\r\nGET /pipelined HTTP/1.1\r\n{H}\r\n");
    cases.push(
        Case::new("content-length", "Content_Length", raw)
            .answers(2..=2)
            .forwarded(2),
    );
}

/// Chunked bodies with the chunk-size and line-ending tricks parsers disagree on; the
/// client's next request (`/next`) follows. Both paths hand chunked uploads to hyper.
fn chunks(cases: &mut Vec<Case>) {
    let next = format!("GET /next HTTP/1.1\r\n{H}\r\n");
    let smuggle_in_data = format!("0\r\n\r\n{SMUGGLED}");
    let bodies: Vec<(&str, String)> = vec![
        ("valid", "5\r\nhello\r\n0\r\n\r\n".into()),
        ("extension", "5;ext=1\r\nhello\r\n0\r\n\r\n".into()),
        (
            "extension with quoted CRLF",
            "5;a=\"b\r\nc\"\r\nhello\r\n0\r\n\r\n".into(),
        ),
        (
            "long extension",
            format!("5;{}\r\nhello\r\n0\r\n\r\n", "e".repeat(20_000)),
        ),
        ("space before extension", "5 ;e\r\nhello\r\n0\r\n\r\n".into()),
        ("leading zeros", "0005\r\nhello\r\n0\r\n\r\n".into()),
        ("0x size", "0x5\r\nhello\r\n0\r\n\r\n".into()),
        ("plus size", "+5\r\nhello\r\n0\r\n\r\n".into()),
        ("negative size", "-5\r\nhello\r\n0\r\n\r\n".into()),
        (
            "overflowing size",
            "10000000000000005\r\nhello\r\n0\r\n\r\n".into(),
        ),
        ("bare LF lines", "5\nhello\n0\n\n".into()),
        ("bare CR after size", "5\rhello\r\n0\r\n\r\n".into()),
        ("data longer than size", "3\r\nhello\r\n0\r\n\r\n".into()),
        ("no CRLF after data", "5\r\nhello0\r\n\r\n".into()),
        ("empty size line", "\r\n5\r\nhello\r\n0\r\n\r\n".into()),
        ("NUL in size line", "5<00>\r\nhello\r\n0\r\n\r\n".into()),
        (
            "request hidden in data",
            format!("{:x}\r\n{smuggle_in_data}\r\n0\r\n\r\n", smuggle_in_data.len()),
        ),
        (
            "identity trailer",
            "5\r\nhello\r\n0\r\nX-Auth-User: eve\r\nx_auth_roles: eve\r\n\r\n".into(),
        ),
        (
            "framing trailers",
            "5\r\nhello\r\n0\r\nContent-Length: 50\r\nTransfer-Encoding: chunked\r\n\r\n".into(),
        ),
        ("no final CRLF", "5\r\nhello\r\n0\r\n".into()),
        (
            "many tiny chunks",
            format!("{}0\r\n\r\n", "1\r\nx\r\n".repeat(500)),
        ),
    ];
    for (name, body) in bodies {
        let raw = format!(
            "POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n{}{next}",
            b_str(&body)
        );
        cases.push(Case::new("chunks", name, b(&raw)).answers(1..=2).forwarded(2));
    }
    // A size line split across writes.
    let head = format!("POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n1");
    cases.push(
        Case::new("chunks", "size split across writes", head)
            .then("0\r\n0123456789abcdef\r\n0\r\n\r\n")
            .status(&[200]),
    );
}

fn b_str(s: &str) -> &str {
    s
}

/// 0.CL: every early answer the gateway gives, to a request whose body is a request, sent at
/// once, after a pause, or after a pause behind `Expect: 100-continue`. The body must never
/// become a request of its own, at the gateway or behind it.
fn early_answers(cases: &mut Vec<Case>) {
    let targets: &[(&str, &str, &str, u16)] = &[
        ("401 protected route", "POST /private/x", "", 401),
        (
            "302 browser navigation",
            "GET /private/x",
            "Accept: text/html\r\n",
            302,
        ),
        (
            "403 missing role",
            "POST /ops/x",
            "Authorization: Bearer TOKEN\r\n",
            403,
        ),
        (
            "403 cross-site cookie",
            "POST /private/x",
            "Cookie: portcullis=TOKEN\r\nOrigin: http://evil.example\r\n",
            403,
        ),
        ("413 over max_body", "POST /small/x", "", 413),
        ("400 bad path", "POST /%2e%2e/x", "", 400),
        ("404 no route", "POST /elsewhere", "Host: hosted.example\r\n", 404),
        (
            "401 forged token",
            "POST /private/x",
            "Authorization: Bearer pc1_forged\r\n",
            401,
        ),
        ("API GET /users/me", "GET /users/me", "", 401),
        ("API POST /users/me", "POST /users/me", "", 405),
        ("API destroy", "POST /sessions/destroy", "", 401),
        ("API refresh", "POST /auth/refresh", "", 401),
        (
            "API signin",
            "POST /auth/signin",
            "Content-Type: application/json\r\n",
            400,
        ),
        (
            "API create session",
            "POST /sessions",
            "Content-Type: application/json\r\n",
            400,
        ),
        ("API verify", "GET /auth/verify", "", 401),
        ("API login page", "GET /auth/login", "", 200),
        ("API status socket", "GET /auth/status", "", 400),
        ("API renew", "POST /sessions/renew", "", 401),
        ("API log out everywhere", "DELETE /sessions", "", 401),
        ("API verify PUT", "PUT /auth/verify", "", 405),
    ];
    for (name, line, extra, status) in targets {
        let host = if extra.contains("Host:") { "" } else { H };
        let head = format!(
            "{line} HTTP/1.1\r\n{host}{extra}Content-Length: {}\r\n",
            SMUGGLED.len()
        );
        cases.push(
            Case::new(
                "0.CL early answer",
                format!("{name}, body at once"),
                format!("{head}\r\n{SMUGGLED}"),
            )
            .status(&[*status])
            .forwarded(0),
        );
        cases.push(
            Case::new(
                "0.CL early answer",
                format!("{name}, body later"),
                format!("{head}\r\n"),
            )
            .then(SMUGGLED)
            .status(&[*status])
            .forwarded(0),
        );
        cases.push(
            Case::new(
                "0.CL early answer",
                format!("{name}, Expect"),
                format!("{head}Expect: 100-continue\r\n\r\n"),
            )
            .then(SMUGGLED)
            .status(&[*status])
            .forwarded(0)
            .check(no_continue_before_refusal),
        );
    }
}

/// A refused request never gets a `100 Continue` (SPEC §1.10) — API endpoints that read the
/// body are not refusals of the request, and may.
fn no_continue_before_refusal(o: &super::Outcome) -> Result<(), String> {
    match o.exchange.answers.first() {
        Some(a) if [401, 302, 403, 413].contains(&a.status) && o.exchange.interim.contains(&100) => {
            Err(format!("100 Continue before a {}", a.status))
        }
        _ => Ok(()),
    }
}

/// `Expect` on forwarded routes, behind an origin that answers an expectation early without
/// reading the body: the gateway answers the expectation itself and never forwards it.
fn expectations(cases: &mut Vec<Case>) {
    let n = SMUGGLED.len();
    let with = |expect: &str, target: &str, auth: &str| {
        format!("POST {target} HTTP/1.1\r\n{H}{auth}Expect: {expect}\r\nContent-Length: {n}\r\n\r\n")
    };
    let continued = |o: &super::Outcome| {
        if o.exchange.interim == [100] {
            Ok(())
        } else {
            Err(format!("interim answers {:?}, want one 100", o.exchange.interim))
        }
    };
    cases.push(
        Case::new(
            "expect",
            "100-continue, public route",
            with("100-continue", "/", ""),
        )
        .then(SMUGGLED)
        .status(&[200])
        .check(continued),
    );
    cases.push(
        Case::new(
            "expect",
            "100-Continue, authorized",
            with("100-Continue", "/private/x", "Authorization: Bearer TOKEN\r\n"),
        )
        .then(SMUGGLED)
        .status(&[200])
        .check(continued),
    );
    cases.push(
        Case::new(
            "expect",
            "100-continue, body at once",
            with("100-continue", "/", "") + SMUGGLED,
        )
        .status(&[200]),
    );
    for bad in [
        "100-continue, foo",
        "foo",
        "",
        "100-continue\r\nExpect: 100-continue",
    ] {
        cases.push(
            Case::new("expect", format!("Expect: {bad:?} is 417"), with(bad, "/", ""))
                .then(SMUGGLED)
                .status(&[417])
                .forwarded(0),
        );
    }
    cases.push(
        Case::new(
            "expect",
            "100-continue, no body",
            format!("GET / HTTP/1.1\r\n{H}Expect: 100-continue\r\n\r\n"),
        )
        .status(&[200]),
    );
    cases.push(
        Case::new(
            "expect",
            "100-continue, Content-Length 0",
            format!("POST / HTTP/1.1\r\n{H}Expect: 100-continue\r\nContent-Length: 0\r\n\r\n"),
        )
        .status(&[200]),
    );
    cases.push(
        Case::new(
            "expect",
            "100-continue, chunked body",
            format!("POST / HTTP/1.1\r\n{H}Expect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n"),
        )
        .then("5\r\nhello\r\n0\r\n\r\n")
        .status(&[200]),
    );
    cases.push(
        Case::new(
            "expect",
            "100-continue over max_body",
            format!("POST /small HTTP/1.1\r\n{H}Expect: 100-continue\r\nContent-Length: 100\r\n\r\n"),
        )
        .then("x".repeat(100))
        .status(&[413])
        .forwarded(0)
        .check(no_continue_before_refusal),
    );
    cases.push(
        Case::new(
            "expect",
            "HTTP/1.0 expectation ignored",
            format!("POST / HTTP/1.0\r\n{H}Expect: 100-continue\r\nContent-Length: 5\r\n\r\nhello"),
        )
        .status(&[200]),
    );
    cases.push(
        Case::new(
            "expect",
            "Expect named in Connection",
            format!("POST / HTTP/1.1\r\n{H}Connection: Expect\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"),
        )
        .then("hello")
        .status(&[200]),
    );
}

/// Upgrades: only the route's `upgrades` (default `websocket`) tunnel; everything else is
/// served as an ordinary request, behind an upstream that switches to anything it is offered.
fn upgrades(cases: &mut Vec<Case>) {
    let h2c =
        "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n";
    let ws = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nGET /SMUGGLED HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let refused = |name: &str, target: &str, headers: &str, status: u16| {
        Case::new(
            "upgrade",
            name.to_string(),
            format!("GET {target} HTTP/1.1\r\n{H}{headers}\r\n"),
        )
        .then(preface)
        .status(&[status])
        .answers(1..=2)
    };
    cases.push(refused("h2c on a public route", "/", h2c, 200));
    cases.push(refused(
        "h2c without HTTP2-Settings",
        "/",
        "Connection: Upgrade\r\nUpgrade: h2c\r\n",
        200,
    ));
    cases.push(refused(
        "h2c, lower-case connection",
        "/",
        "connection: upgrade\r\nupgrade: H2C\r\n",
        200,
    ));
    cases.push(refused(
        "h2c with a valid token",
        "/private/x",
        &format!("Authorization: Bearer TOKEN\r\n{h2c}"),
        200,
    ));
    cases.push(refused("h2c without a token", "/private/x", h2c, 401).forwarded(0));
    cases.push(refused("websocket where upgrades = []", "/noup", ws, 200));
    cases.push(refused(
        "websocket, h2c offered together",
        "/",
        "Connection: Upgrade\r\nUpgrade: websocket, h2c\r\n",
        200,
    ));
    cases.push(refused(
        "two Upgrade lines",
        "/",
        "Connection: Upgrade\r\nUpgrade: websocket\r\nUpgrade: h2c\r\n",
        200,
    ));
    cases.push(refused(
        "tls/1.2",
        "/",
        "Connection: Upgrade\r\nUpgrade: TLS/1.2\r\n",
        200,
    ));
    cases.push(refused(
        "HTTP/2.0",
        "/",
        "Connection: Upgrade\r\nUpgrade: HTTP/2.0\r\n",
        200,
    ));
    cases.push(
        refused(
            "websocket on a protected route without a token",
            "/private/x",
            ws,
            401,
        )
        .forwarded(0),
    );
    cases.push(refused(
        "Upgrade without Connection: upgrade",
        "/",
        "Upgrade: websocket\r\n",
        200,
    ));
    cases.push(refused(
        "HTTP2-Settings alone",
        "/",
        "Connection: HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n",
        200,
    ));
    cases.push(
        Case::new(
            "upgrade",
            "h2c on HTTP/1.0",
            format!("GET / HTTP/1.0\r\n{H}{h2c}\r\n"),
        )
        .status(&[200]),
    );
    cases.push(
        Case::new(
            "upgrade",
            "h2c on a POST with a body",
            format!("POST / HTTP/1.1\r\n{H}{h2c}Content-Length: 5\r\n\r\nhello"),
        )
        .then(preface)
        .status(&[200])
        .answers(1..=2),
    );
    // Allowed: the tunnel opens after the 101, and only then.
    let tunnelled = |name: &str, target: &str, headers: &str| {
        Case::new(
            "upgrade",
            name.to_string(),
            format!("GET {target} HTTP/1.1\r\n{H}{headers}\r\n"),
        )
        .tunnel()
        .answers(0..=0)
        .check(|o| {
            if o.exchange.switched {
                Ok(())
            } else {
                Err("the allowed upgrade did not switch".into())
            }
        })
    };
    cases.push(tunnelled("websocket on a public route", "/", ws));
    cases.push(tunnelled(
        "websocket, mixed case",
        "/ws",
        "Connection: keep-alive, UPGRADE\r\nUpgrade: WebSocket\r\n",
    ));
    cases.push(tunnelled(
        "websocket with a valid token",
        "/private/x",
        &format!("Authorization: Bearer TOKEN\r\n{ws}"),
    ));
}

fn connect(cases: &mut Vec<Case>) {
    for (name, raw) in [
        ("origin-form", format!("CONNECT /x HTTP/1.1\r\n{H}\r\n")),
        (
            "authority-form",
            "CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n\r\n".into(),
        ),
        (
            "absolute-form",
            format!("CONNECT http://localhost/ HTTP/1.1\r\n{H}\r\n"),
        ),
        (
            "with a body that is a request",
            format!(
                "CONNECT /x HTTP/1.1\r\n{H}Content-Length: {}\r\n\r\n{SMUGGLED}",
                SMUGGLED.len()
            ),
        ),
        (
            "followed by a request",
            format!("CONNECT /x HTTP/1.1\r\n{H}\r\n{SMUGGLED}"),
        ),
        (
            "with a token",
            format!("CONNECT /private/x HTTP/1.1\r\n{H}Authorization: Bearer TOKEN\r\n\r\n"),
        ),
    ] {
        cases.push(
            Case::new("CONNECT", name, raw)
                .status(&[405])
                .forwarded(0)
                .check(|o| closed(o, "CONNECT")),
        );
    }
    // Methods are case-sensitive: `connect` is some other method, forwarded as it is.
    cases.push(
        Case::new(
            "CONNECT",
            "lower-case method",
            format!("connect /x HTTP/1.1\r\n{H}\r\n"),
        )
        .status(&[200]),
    );
}

fn hosts(cases: &mut Vec<Case>) {
    let bad: &[(&str, &str)] = &[
        ("missing", ""),
        ("two, same", "Host: localhost\r\nHost: localhost\r\n"),
        ("two, different", "Host: localhost\r\nHost: hosted.example\r\n"),
        ("empty", "Host: \r\n"),
        ("space inside", "Host: local host\r\n"),
        ("userinfo", "Host: eve@localhost\r\n"),
        ("slash", "Host: localhost/x\r\n"),
        ("port out of range", "Host: localhost:99999\r\n"),
        ("port not a number", "Host: localhost:x\r\n"),
        ("non-ASCII", "Host: l<c3><b6>calhost\r\n"),
        ("NUL", "Host: localhost<00>\r\n"),
        ("underscore name only", "Host_: localhost\r\n"),
    ];
    for (name, lines) in bad {
        let raw = format!("GET / HTTP/1.1\r\n{lines}\r\n{SMUGGLED}");
        cases.push(
            Case::new("host", *name, b(&raw))
                .status(&[400])
                .forwarded(0)
                .check(|o| closed(o, "a bad Host")),
        );
    }
    let good: &[(&str, &str)] = &[
        ("HTTP/1.0 without Host", "GET / HTTP/1.0\r\n\r\n"),
        ("with a port", "GET / HTTP/1.1\r\nHost: localhost:8080\r\n\r\n"),
        ("IPv6 literal", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"),
        ("tab before value", "GET / HTTP/1.1\r\nHost:\tlocalhost\r\n\r\n"),
        (
            "absolute-form target wins",
            "GET http://hosted.example/only HTTP/1.1\r\nHost: localhost\r\n\r\n",
        ),
        (
            "host-specific route",
            "GET /only HTTP/1.1\r\nHost: HOSTED.example\r\n\r\n",
        ),
    ];
    for (name, raw) in good {
        cases.push(Case::new("host", *name, *raw).status(&[200]));
    }
}

/// Heads that parsers disagree on: obs-fold, bare LF and CR, NUL, odd request lines.
fn head_oddities(cases: &mut Vec<Case>) {
    let list: &[(&str, &str)] = &[
        (
            "obs-fold",
            "GET / HTTP/1.1\r\nHost: localhost\r\nX-A: 1\r\n 2\r\n\r\n",
        ),
        (
            "obs-fold into an identity header",
            "GET / HTTP/1.1\r\nHost: localhost\r\nX-A: 1\r\n X-Auth-User: eve\r\n\r\n",
        ),
        (
            "bare LF everywhere",
            "GET / HTTP/1.1\nHost: localhost\nX-A: 1\n\n",
        ),
        (
            "bare LF in one line",
            "GET / HTTP/1.1\r\nHost: localhost\nX-A: 1\r\n\r\n",
        ),
        (
            "bare LF hiding a header",
            "GET / HTTP/1.1\r\nHost: localhost\r\nX-A: 1\nX-Auth-User: eve\r\n\r\n",
        ),
        (
            "bare CR in a value",
            "GET / HTTP/1.1\r\nHost: localhost\r\nX-A: a\rX-Auth-User: eve\r\n\r\n",
        ),
        ("CR line ends", "GET / HTTP/1.1\rHost: localhost\r\r"),
        (
            "NUL in a value",
            "GET / HTTP/1.1\r\nHost: localhost\r\nX-A: a<00>b\r\n\r\n",
        ),
        (
            "NUL in a name",
            "GET / HTTP/1.1\r\nHost: localhost\r\nX<00>A: b\r\n\r\n",
        ),
        (
            "space in a name",
            "GET / HTTP/1.1\r\nHost: localhost\r\nX A: b\r\n\r\n",
        ),
        ("empty name", "GET / HTTP/1.1\r\nHost: localhost\r\n: b\r\n\r\n"),
        (
            "space before colon",
            "GET / HTTP/1.1\r\nHost: localhost\r\nX-A : b\r\n\r\n",
        ),
        (
            "DEL in a value",
            "GET / HTTP/1.1\r\nHost: localhost\r\nX-A: a<7f>b\r\n\r\n",
        ),
        (
            "non-ASCII value",
            "GET / HTTP/1.1\r\nHost: localhost\r\nX-A: caf<c3><a9>\r\n\r\n",
        ),
        (
            "two spaces after method",
            "GET  / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        ),
        ("tab separators", "GET\t/\tHTTP/1.1\r\nHost: localhost\r\n\r\n"),
        (
            "trailing space after version",
            "GET / HTTP/1.1 \r\nHost: localhost\r\n\r\n",
        ),
        ("lower-case version", "GET / http/1.1\r\nHost: localhost\r\n\r\n"),
        ("HTTP/1.2", "GET / HTTP/1.2\r\nHost: localhost\r\n\r\n"),
        ("HTTP/2.0 on HTTP/1", "GET / HTTP/2.0\r\nHost: localhost\r\n\r\n"),
        ("HTTP/0.9", "GET /\r\n\r\n"),
        (
            "leading empty lines",
            "\r\n\r\nGET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        ),
        ("method with a slash", "G/T / HTTP/1.1\r\nHost: localhost\r\n\r\n"),
        ("lower-case method", "get / HTTP/1.1\r\nHost: localhost\r\n\r\n"),
        (
            "long method",
            "GETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        ),
        ("65 headers", ""),
        ("101 headers", ""),
        ("head over the size limit", ""),
        (
            "no blank line, then close",
            "GET / HTTP/1.1\r\nHost: localhost\r\n",
        ),
    ];
    for (name, raw) in list {
        let raw = match *name {
            "65 headers" => format!("GET / HTTP/1.1\r\n{H}{}\r\n", "X-N: 1\r\n".repeat(64)),
            "101 headers" => format!("GET / HTTP/1.1\r\n{H}{}\r\n", "X-N: 1\r\n".repeat(100)),
            "head over the size limit" => {
                format!("GET / HTTP/1.1\r\n{H}X-Big: {}\r\n\r\n", "a".repeat(70_000))
            }
            _ => raw.to_string(),
        };
        let case = Case::new("head oddity", *name, b(&raw)).answers(0..=1);
        cases.push(if *name == "no blank line, then close" {
            case.answers(0..=1).forwarded(0)
        } else {
            case
        });
    }
}

fn targets(cases: &mut Vec<Case>) {
    let list: &[(&str, &str, u16)] = &[
        ("asterisk", "OPTIONS * HTTP/1.1", 400),
        // hyper's URI parser drops a fragment: `/a` is routed and forwarded.
        ("fragment", "GET /a#frag HTTP/1.1", 200),
        ("encoded slash", "GET /a%2Fb HTTP/1.1", 400),
        ("encoded backslash", "GET /a%5cb HTTP/1.1", 400),
        ("climbing dot segments", "GET /a/../../b HTTP/1.1", 400),
        ("encoded dot segments", "GET /%2e%2e/b HTTP/1.1", 400),
        ("encoded NUL", "GET /a%00b HTTP/1.1", 400),
        ("double slash", "GET //private/x HTTP/1.1", 401),
        (
            "dot segments into a protected route",
            "GET /a/../private/x HTTP/1.1",
            401,
        ),
        ("raw non-ASCII", "GET /caf<c3><a9> HTTP/1.1", 200),
        ("raw DEL", "GET /a<7f> HTTP/1.1", 400),
        (
            "absolute-form with userinfo",
            "GET http://eve@localhost/ HTTP/1.1",
            400,
        ),
        ("bad percent escape in the query", "GET /?a=%zz HTTP/1.1", 200),
        (
            "query with a slash and dots",
            "GET /?a=/../../private HTTP/1.1",
            200,
        ),
    ];
    for (name, line, status) in list {
        let raw = format!("{line}\r\n{H}\r\n");
        cases.push(
            Case::new("target", *name, b(&raw))
                .status(&[*status])
                .answers(1..=1),
        );
    }
}

/// Identity headers in every spelling, with and without a valid token: the upstream sees
/// only what the gateway injected.
fn identities(cases: &mut Vec<Case>) {
    let spellings = [
        "X-Auth-User: eve",
        "x-auth-user: eve",
        "X_AUTH_USER: eve",
        "X-Auth_User: eve",
        "X-Auth-Roles: eve-admin",
        "x_auth_roles: eve-admin",
        "X-Auth-User-Id: eve",
        "X-Auth-User-Uuid: eve",
        "X-Auth-Session-Id: eve",
        "X-Auth-Session-Expires: eve",
        "X-Auth-Jwt: eve",
        "X-Auth-User: eve\r\nX-Auth-User: eve2",
        "Connection: X-Auth-User\r\nX-Auth-User: eve",
        "X-AUTH-USER:eve",
    ];
    for s in spellings {
        for (with, auth) in [
            ("without a token", ""),
            ("with a valid token", "Authorization: Bearer TOKEN\r\n"),
        ] {
            let raw = format!("GET /private/x HTTP/1.1\r\n{H}{auth}{s}\r\n\r\n");
            let status = if auth.is_empty() { 401 } else { 200 };
            cases.push(
                Case::new("identity", format!("{s:?} {with}"), raw.clone())
                    .status(&[status])
                    .forwarded(usize::from(!auth.is_empty())),
            );
            let public = raw.replace("/private/x", "/");
            cases.push(Case::new("identity", format!("{s:?} {with}, public route"), public).status(&[200]));
        }
    }
}

/// Requests pipelined across the fast path's hand-over to hyper, and back.
fn pipelining(cases: &mut Vec<Case>) {
    let get = |p: &str| format!("GET {p} HTTP/1.1\r\n{H}\r\n");
    let chunked =
        format!("POST /chunked HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    let list: Vec<(&str, String, usize, Vec<u16>)> = vec![
        (
            "fast, chunked, fast",
            get("/a") + &chunked + &get("/b"),
            3,
            vec![200, 200, 200],
        ),
        (
            "fast, API, fast",
            get("/a") + &get("/users/me") + &get("/b"),
            3,
            vec![200, 401, 200],
        ),
        (
            "fast, HTTP/1.0, fast",
            get("/a") + "GET /old HTTP/1.0\r\n\r\n" + &get("/b"),
            2,
            vec![200, 200],
        ),
        (
            "fast, malformed, fast",
            get("/a") + "GET / HTTP/1.1\r\nX A: b\r\n\r\n" + &get("/b"),
            2,
            vec![200, 400],
        ),
        (
            "fast, h2c offer, fast",
            get("/a")
                + &format!("GET /h HTTP/1.1\r\n{H}Connection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
                + &get("/b"),
            3,
            vec![200, 200, 200],
        ),
        (
            "fast, CONNECT, fast",
            get("/a") + &format!("CONNECT /x HTTP/1.1\r\n{H}\r\n") + &get("/SMUGGLED"),
            2,
            vec![200, 405],
        ),
        (
            "fast, missing Host, fast",
            get("/a") + "GET /x HTTP/1.1\r\n\r\n" + &get("/SMUGGLED"),
            2,
            vec![200, 400],
        ),
        (
            "body with a request, then fast",
            format!(
                "POST /a HTTP/1.1\r\n{H}Content-Length: {}\r\n\r\n{SMUGGLED}",
                SMUGGLED.len()
            ) + &get("/b"),
            2,
            vec![200, 200],
        ),
        (
            "Connection: close, then more",
            format!("GET /a HTTP/1.1\r\n{H}Connection: close\r\n\r\n") + SMUGGLED,
            1,
            vec![200],
        ),
        (
            "refused with a body, then more",
            format!(
                "POST /private/x HTTP/1.1\r\n{H}Content-Length: {}\r\n\r\n{SMUGGLED}",
                SMUGGLED.len()
            ) + &get("/b"),
            2,
            vec![401],
        ),
        (
            "TE + CL, then more",
            format!(
                "POST /a HTTP/1.1\r\n{H}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            ) + SMUGGLED,
            1,
            vec![200],
        ),
        (
            "HEAD, then fast",
            format!("HEAD /a HTTP/1.1\r\n{H}\r\n") + &get("/b"),
            2,
            vec![200, 200],
        ),
    ];
    for (name, raw, n, statuses) in list {
        let forwarded = n;
        let mut case = Case::new("pipelining", name, raw)
            .answers(statuses.len()..=n)
            .status(&statuses)
            .forwarded(forwarded);
        if name.starts_with("HEAD") {
            case = case.heads(&[true, false]);
        }
        cases.push(case);
    }
}

/// Forwarding headers from untrusted and trusted peers, and the rules the two paths once
/// applied differently (issue #12, finding 7).
fn forwarding(cases: &mut Vec<Case>) {
    let spoof = "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: evil.example\r\nX-Forwarded-Proto: gopher\r\n\
                 Forwarded: for=6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nX-Request-Id: eve\r\nX_Forwarded_For: 6.6.6.6\r\n";
    cases.push(
        Case::new(
            "forwarding",
            "untrusted peer's forwarding headers",
            format!("GET / HTTP/1.1\r\n{H}{spoof}\r\n"),
        )
        .status(&[200])
        .check(|o| {
            let r = o.requests().next().ok_or("nothing forwarded")?;
            let spoofed = r
                .headers
                .iter()
                .any(|(_, v)| String::from_utf8_lossy(v).contains("6.6.6.6"));
            if spoofed || r.header("x-forwarded-host") != Some(b"localhost") {
                return Err(format!(
                    "spoofed forwarding headers reached the upstream: {:?}",
                    r.headers
                ));
            }
            Ok(())
        }),
    );
    cases.push(
        Case::new(
            "forwarding",
            "trusted proxy's chain with a non-ASCII line",
            b(&format!(
                "GET / HTTP/1.1\r\n{H}X-Forwarded-For: 198.51.100.7\r\nX-Forwarded-For: <ff><fe>\r\nX-Forwarded-For: \r\n\r\n"
            )),
        )
        .trusted()
        .status(&[200])
        .check(|o| {
            let r = o.requests().next().ok_or("nothing forwarded")?;
            match r.header("x-forwarded-for") {
                Some(v) if v == b"198.51.100.7, 127.0.0.2" => Ok(()),
                other => Err(format!("X-Forwarded-For {:?}", other.map(String::from_utf8_lossy))),
            }
        }),
    );
    cases.push(
        Case::new(
            "forwarding",
            "trusted proxy's forwarding headers kept",
            format!("GET / HTTP/1.1\r\n{H}X-Forwarded-Proto: https\r\nX-Forwarded-Host: app.example\r\nX-Request-Id: abc-123\r\n\r\n"),
        )
        .trusted()
        .status(&[200]),
    );
    let cookie_post = |extra: &str| {
        format!(
            "POST /private/x HTTP/1.1\r\n{H}Cookie: portcullis=TOKEN\r\n{extra}Content-Length: 2\r\n\r\nhi"
        )
    };
    // `TOKEN` is a bearer token; as a cookie it is the same session.
    for (name, extra, status) in [
        (
            "Sec-Fetch-Site same-origin then cross-site",
            "Sec-Fetch-Site: same-origin\r\nSec-Fetch-Site: cross-site\r\n",
            403,
        ),
        (
            "Sec-Fetch-Site cross-site then same-origin",
            "Sec-Fetch-Site: cross-site\r\nSec-Fetch-Site: same-origin\r\n",
            403,
        ),
        (
            "Origin ours then foreign",
            "Origin: http://localhost\r\nOrigin: http://evil.example\r\n",
            403,
        ),
        ("Origin null", "Origin: null\r\n", 403),
        ("Origin ours", "Origin: http://localhost\r\n", 200),
        // Chromium under `Referrer-Policy: no-referrer`: its own form, same origin.
        (
            "Sec-Fetch-Site same-origin, Origin null",
            "Sec-Fetch-Site: same-origin\r\nOrigin: null\r\n",
            200,
        ),
        (
            "Sec-Fetch-Site same-site",
            "Sec-Fetch-Site: same-site\r\nOrigin: http://localhost\r\n",
            403,
        ),
        ("Sec-Fetch-Site none", "Sec-Fetch-Site: none\r\n", 200),
        ("Origin not text", "Origin: http://l<ff>calhost\r\n", 403),
    ] {
        cases.push(
            Case::new(
                "forwarding",
                format!("cookie POST, {name}"),
                b(&cookie_post(extra)),
            )
            .status(&[status]),
        );
    }
    // Forward auth: X-Forwarded-* choose the route only for trusted proxies (SPEC §2.5).
    let verify = |auth: &str| {
        format!(
            "GET /auth/verify HTTP/1.1\r\n{H}X-Forwarded-Host: localhost\r\nX-Forwarded-Uri: /public\r\n{auth}\r\n"
        )
    };
    cases.push(
        Case::new(
            "forwarding",
            "verify: untrusted caller naming a public route",
            verify(""),
        )
        .status(&[403])
        .forwarded(0),
    );
    cases.push(
        Case::new(
            "forwarding",
            "verify: untrusted caller naming no route",
            format!("GET /auth/verify HTTP/1.1\r\n{H}Authorization: Bearer TOKEN\r\n\r\n"),
        )
        .status(&[200])
        .forwarded(0),
    );
    cases.push(
        Case::new(
            "forwarding",
            "verify: trusted proxy naming a public route",
            verify(""),
        )
        .trusted()
        .status(&[200])
        .forwarded(0),
    );
    cases.push(
        Case::new(
            "forwarding",
            "verify: untrusted caller with a token naming a role route",
            verify("Authorization: Bearer TOKEN\r\n").replace("/public", "/ops/x"),
        )
        .status(&[403])
        .forwarded(0),
    );
    cases.push(
        Case::new(
            "forwarding",
            "verify: trusted proxy naming a role route",
            verify("Authorization: Bearer TOKEN\r\n").replace("/public", "/ops/x"),
        )
        .trusted()
        .status(&[403])
        .forwarded(0),
    );
}
