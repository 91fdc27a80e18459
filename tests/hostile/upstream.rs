//! A strict upstream that records every byte the gateway sends it. It parses requests the way a
//! careful origin server would (CRLF only, one framing, strict chunks) and records each as it
//! understood it, so a desync shows as a request the client never sent. It also plays the
//! dangerous origin: it answers `Expect: 100-continue` with an early 417 without reading the
//! body (the 0.CL setup), answers a request carrying `X-Answer-Early` as soon as its head is in
//! (same), and accepts every `Upgrade` with a 101, then echoes (as hypercorn does for h2c). A
//! test can script other answers (`Script`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// One request as the upstream understood it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    pub target: String,
    /// Header lines as received, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(String, Vec<u8>)>,
    pub chunked: bool,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    pub fn has(&self, name: &str) -> bool {
        self.header(name).is_some()
    }
}

/// What the upstream saw, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Request(Recorded),
    /// Bytes it could not read as a request (it closed the connection after them).
    Garbage {
        why: String,
        bytes: Vec<u8>,
    },
    /// A request that broke off: the connection closed in its middle (a client whose body
    /// broke, say). Nothing was parsed out of it.
    Truncated(Vec<u8>),
    /// Bytes received after it switched protocols.
    Tunnelled(Vec<u8>),
}

/// What the upstream does after writing its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    KeepAlive,
    Close,
    /// Switch protocols: from now on echo what arrives.
    Tunnel,
    /// Say nothing more and never read again (a hung upstream).
    Hang,
}

pub struct Reply {
    pub bytes: Vec<u8>,
    pub after: After,
}

impl Reply {
    pub fn keep(bytes: impl Into<Vec<u8>>) -> Reply {
        Reply {
            bytes: bytes.into(),
            after: After::KeepAlive,
        }
    }

    pub fn close(bytes: impl Into<Vec<u8>>) -> Reply {
        Reply {
            bytes: bytes.into(),
            after: After::Close,
        }
    }
}

/// A scripted answer to a request; `None` for the default one.
pub type Script = Arc<dyn Fn(&Recorded) -> Option<Reply> + Send + Sync>;

/// The answer when no script speaks: 101 for upgrades, 417 (early, body unread) for
/// `Expect`, else 200 whose body names the request, so a client can tell answers apart.
pub fn default_reply(req: &Recorded) -> Reply {
    let connection_upgrade = req
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
        .any(|(_, v)| {
            String::from_utf8_lossy(v)
                .to_ascii_lowercase()
                .contains("upgrade")
        });
    if let Some(proto) = req.header("upgrade")
        && connection_upgrade
    {
        let mut bytes = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ".to_vec();
        bytes.extend_from_slice(proto);
        bytes.extend_from_slice(b"\r\n\r\n");
        return Reply {
            bytes,
            after: After::Tunnel,
        };
    }
    if req.has("expect") {
        return Reply::keep("HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n");
    }
    if req.has("x-answer-early") {
        return Reply::keep("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    }
    let body = format!("{} {}", req.method, req.target);
    let mut bytes = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    if req.method != "HEAD" {
        bytes.extend_from_slice(body.as_bytes());
    }
    Reply::keep(bytes)
}

#[derive(Default)]
struct State {
    events: Vec<Event>,
    tasks: Vec<AbortHandle>,
}

pub struct Strict {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    script: Arc<Mutex<Option<Script>>>,
}

impl Strict {
    pub async fn start() -> Strict {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let script: Arc<Mutex<Option<Script>>> = Arc::new(Mutex::new(None));
        let (s, sc) = (state.clone(), script.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let task = tokio::spawn(serve(stream, s.clone(), sc.clone()));
                s.lock().unwrap().tasks.push(task.abort_handle());
            }
        });
        Strict { addr, state, script }
    }

    /// Answers with `script` from now on (until `reset`).
    pub fn script(&self, script: Script) {
        *self.script.lock().unwrap() = Some(script);
    }

    /// Closes every connection and returns what was seen since the last reset.
    pub fn reset(&self) -> Vec<Event> {
        *self.script.lock().unwrap() = None;
        let mut state = self.state.lock().unwrap();
        for t in state.tasks.drain(..) {
            t.abort();
        }
        std::mem::take(&mut state.events)
    }

    /// What was seen since the last reset, without closing anything.
    pub fn events(&self) -> Vec<Event> {
        self.state.lock().unwrap().events.clone()
    }
}

async fn serve(mut stream: TcpStream, state: Arc<Mutex<State>>, script: Arc<Mutex<Option<Script>>>) {
    let record = |e: Event| state.lock().unwrap().events.push(e);
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let parsed = loop {
            match parse_request(&buf) {
                Parse::Partial => {}
                done => break done,
            }
            if !read_more(&mut stream, &mut buf).await {
                if !buf.is_empty() {
                    record(Event::Truncated(std::mem::take(&mut buf)));
                }
                return;
            }
        };
        let (req, used) = match parsed {
            Parse::Bad(why) => {
                record(Event::Garbage {
                    why,
                    bytes: std::mem::take(&mut buf),
                });
                return;
            }
            Parse::Complete(req, used) => (req, used),
            Parse::Partial => return,
        };
        buf.drain(..used);
        let script = script.lock().unwrap().clone();
        let reply = script
            .and_then(|s| s(&req))
            .unwrap_or_else(|| default_reply(&req));
        record(Event::Request(req));
        if stream.write_all(&reply.bytes).await.is_err() {
            return;
        }
        match reply.after {
            After::KeepAlive => {}
            After::Close => return,
            After::Hang => {
                std::future::pending::<()>().await;
            }
            After::Tunnel => {
                if !buf.is_empty() {
                    record(Event::Tunnelled(buf.clone()));
                    let _ = stream.write_all(&buf).await;
                }
                let mut chunk = [0u8; 4096];
                while let Ok(n) = stream.read(&mut chunk).await {
                    if n == 0 {
                        return;
                    }
                    record(Event::Tunnelled(chunk[..n].to_vec()));
                    if stream.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                }
                return;
            }
        }
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 8192];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

enum Parse {
    Partial,
    Bad(String),
    /// The request and the bytes it took.
    Complete(Recorded, usize),
}

/// Reads one request strictly: CRLF line ends only, HTTP/1.1, one `Host`, at most one framing
/// header (one `Content-Length` of digits, or one `Transfer-Encoding: chunked`). A request with
/// `Expect` or `X-Answer-Early` is complete at its head (the body is left unread, as an
/// early-answering origin leaves it).
fn parse_request(buf: &[u8]) -> Parse {
    let Some(head_end) = find(buf, b"\r\n\r\n").map(|i| i + 4) else {
        if buf.len() > 64 * 1024 {
            return Parse::Bad("head too large".into());
        }
        return Parse::Partial;
    };
    let head = &buf[..head_end];
    if head.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r') {
        return Parse::Bad("bare LF in the head".into());
    }
    if head.windows(2).any(|w| w[0] == b'\r' && w[1] != b'\n') {
        return Parse::Bad("bare CR in the head".into());
    }
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Parse::Bad("head incomplete at its blank line".into()),
        Err(e) => return Parse::Bad(format!("unparseable head: {e}")),
    }
    if req.version != Some(1) {
        return Parse::Bad("not HTTP/1.1".into());
    }
    let mut rec = Recorded {
        method: req.method.unwrap_or("").to_string(),
        target: req.path.unwrap_or("").to_string(),
        headers: req
            .headers
            .iter()
            .map(|h| (h.name.to_string(), h.value.to_vec()))
            .collect(),
        body: Vec::new(),
        trailers: Vec::new(),
        chunked: false,
    };
    let count = |name: &str| {
        rec.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    };
    if count("host") != 1 {
        return Parse::Bad(format!("{} Host headers", count("host")));
    }
    let (cls, tes) = (count("content-length"), count("transfer-encoding"));
    if cls + tes > 1 {
        return Parse::Bad(format!(
            "{cls} Content-Length and {tes} Transfer-Encoding headers"
        ));
    }
    if rec.has("expect") || rec.has("x-answer-early") {
        return Parse::Complete(rec, head_end);
    }
    let rest = &buf[head_end..];
    if let Some(cl) = rec.header("content-length") {
        let Some(n) = digits(cl) else {
            return Parse::Bad("bad Content-Length".into());
        };
        if (rest.len() as u64) < n {
            return Parse::Partial;
        }
        rec.body = rest[..n as usize].to_vec();
        return Parse::Complete(rec, head_end + n as usize);
    }
    if let Some(te) = rec.header("transfer-encoding") {
        if te != b"chunked" {
            return Parse::Bad("a transfer coding other than chunked".into());
        }
        rec.chunked = true;
        return match dechunk(rest) {
            Dechunked::Partial => Parse::Partial,
            Dechunked::Bad(why) => Parse::Bad(why.into()),
            Dechunked::Done { body, trailers, used } => {
                rec.body = body;
                rec.trailers = trailers;
                Parse::Complete(rec, head_end + used)
            }
        };
    }
    Parse::Complete(rec, head_end)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn digits(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

pub enum Dechunked {
    Partial,
    Bad(&'static str),
    Done {
        body: Vec<u8>,
        trailers: Vec<(String, Vec<u8>)>,
        used: usize,
    },
}

/// A strict chunked decoder: hex sizes, CRLF after each size line and each chunk, trailer
/// fields, a blank line at the end.
pub fn dechunk(buf: &[u8]) -> Dechunked {
    let mut at = 0;
    let mut body = Vec::new();
    loop {
        let Some(eol) = find(&buf[at..], b"\r\n") else {
            return if buf.len() - at > 1024 {
                Dechunked::Bad("size line too long")
            } else {
                Dechunked::Partial
            };
        };
        let line = &buf[at..at + eol];
        let size_text = line.split(|&b| b == b';').next().unwrap_or(b"");
        if size_text.is_empty() || size_text.len() > 15 || !size_text.iter().all(u8::is_ascii_hexdigit) {
            return Dechunked::Bad("bad chunk size");
        }
        if line.iter().any(|&b| b == b'\n' || b == b'\r' || b == 0) {
            return Dechunked::Bad("control byte in a chunk extension");
        }
        let size = u64::from_str_radix(std::str::from_utf8(size_text).unwrap(), 16).unwrap() as usize;
        at += eol + 2;
        if size == 0 {
            break;
        }
        if buf.len() < at + size + 2 {
            return Dechunked::Partial;
        }
        body.extend_from_slice(&buf[at..at + size]);
        if &buf[at + size..at + size + 2] != b"\r\n" {
            return Dechunked::Bad("no CRLF after chunk data");
        }
        at += size + 2;
    }
    let mut trailers = Vec::new();
    loop {
        let Some(eol) = find(&buf[at..], b"\r\n") else {
            return Dechunked::Partial;
        };
        let line = &buf[at..at + eol];
        at += eol + 2;
        if line.is_empty() {
            return Dechunked::Done {
                body,
                trailers,
                used: at,
            };
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Dechunked::Bad("trailer line without a colon");
        };
        let name = String::from_utf8_lossy(&line[..colon]).into_owned();
        trailers.push((name, line[colon + 1..].trim_ascii().to_vec()));
    }
}
