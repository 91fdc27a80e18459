//! The hostile-input suite (issue #12): every case is sent by a hostile client to two gateways
//! with the same config, one on each HTTP/1.1 path (`http1_fast_path = true` and `false`), each
//! in front of its own strict recording upstream. A case fails when:
//! - the upstream parsed a request the client did not send (a `SMUGGLED` target, or bytes a
//!   strict origin could not read as a request);
//! - the upstream saw an identity header the gateway did not inject for a valid token, or a
//!   header the gateway must never forward (`Expect`, `HTTP2-Settings`, a refused `Upgrade`);
//! - the client's connection hung, or got a number of final answers (or an answer) that a
//!   correct proxy would not give, or an answer it could not frame;
//! - the two paths sent the upstream different bytes (request id, session-specific values and
//!   header order aside) or answered the client with different statuses.
//!
//! `cases.rs` holds the client cases, `misbehaving.rs` the upstream's misbehaviours; the
//! closing table of each test prints the counts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cases;
mod client;
#[path = "../common/mod.rs"]
mod common;
mod findings;
mod h2;
mod misbehaving;
mod second_look;
mod upstream;

use client::Exchange;
use common::*;
use std::ops::RangeInclusive;
use upstream::{Event, Script, Strict};

/// Where a case connects from: the untrusted client, or the configured trusted proxy.
pub const UNTRUSTED: [u8; 4] = [127, 0, 0, 1];
pub const TRUSTED: [u8; 4] = [127, 0, 0, 2];

/// A case's own check of one path's outcome.
pub type Check = fn(&Outcome) -> Result<(), String>;

/// One hostile exchange and what a correct gateway does with it.
pub struct Case {
    pub family: &'static str,
    pub name: String,
    /// Written in order with a pause between; `TOKEN` becomes a valid bearer token of alice's.
    pub parts: Vec<Vec<u8>>,
    /// Per expected answer: was it to a HEAD request?
    pub heads: Vec<bool>,
    /// Final answers a correct gateway gives (a close may come after them).
    pub answers: RangeInclusive<usize>,
    /// The statuses of the first answers, when the rule pins them.
    pub statuses: Vec<u16>,
    /// Requests the upstream may see at most.
    pub forwarded: usize,
    /// The upstream may see an `Upgrade` and tunnel (an allowed protocol).
    pub tunnel: bool,
    pub source: [u8; 4],
    /// The upstream's answers, if not the default ones.
    pub script: Option<Script>,
    /// The answer may be cut off (a body broken after its head went out).
    pub may_cut: bool,
    /// A check of its own, on one path's outcome.
    pub check: Option<Check>,
}

impl Case {
    pub fn new(family: &'static str, name: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Case {
        Case {
            family,
            name: name.into(),
            parts: vec![bytes.into()],
            heads: Vec::new(),
            answers: 1..=1,
            statuses: Vec::new(),
            forwarded: 1,
            tunnel: false,
            source: UNTRUSTED,
            script: None,
            may_cut: false,
            check: None,
        }
    }

    /// Another part, written after a pause.
    pub fn then(mut self, bytes: impl Into<Vec<u8>>) -> Case {
        self.parts.push(bytes.into());
        self
    }

    pub fn answers(mut self, range: RangeInclusive<usize>) -> Case {
        self.answers = range;
        self
    }

    pub fn status(mut self, statuses: &[u16]) -> Case {
        self.statuses = statuses.to_vec();
        self
    }

    pub fn forwarded(mut self, n: usize) -> Case {
        self.forwarded = n;
        self
    }

    pub fn heads(mut self, heads: &[bool]) -> Case {
        self.heads = heads.to_vec();
        self
    }

    pub fn tunnel(mut self) -> Case {
        self.tunnel = true;
        self
    }

    pub fn trusted(mut self) -> Case {
        self.source = TRUSTED;
        self
    }

    pub fn script(mut self, script: Script) -> Case {
        self.script = Some(script);
        self
    }

    pub fn may_cut(mut self) -> Case {
        self.may_cut = true;
        self
    }

    pub fn check(mut self, f: Check) -> Case {
        self.check = Some(f);
        self
    }
}

/// What one path did with a case.
pub struct Outcome {
    pub exchange: Exchange,
    pub events: Vec<Event>,
}

impl Outcome {
    pub fn requests(&self) -> impl Iterator<Item = &upstream::Recorded> {
        self.events.iter().filter_map(|e| match e {
            Event::Request(r) => Some(r),
            _ => None,
        })
    }
}

/// One gateway (one path) with its own strict upstream and a token of alice's.
pub struct Side {
    pub name: &'static str,
    pub gateway: Gateway,
    pub upstream: Strict,
    pub token: String,
}

/// The suite's config: routes for every early answer the gateway gives.
pub fn config(up: std::net::SocketAddr, fast: bool) -> String {
    let base = base_toml().replace(
        "workers = 1",
        &format!(
            "workers = 1\nhttp1_fast_path = {fast}\ntrusted_proxies = [\"127.0.0.2/32\"]\nheader_read_timeout = \"2s\""
        ),
    );
    let r = |name: &str, prefix: &str, extra: &str| {
        route(name, prefix, &[up], &format!("timeout = \"1500ms\"\n{extra}"))
    };
    base + USERS
        + &r("app", "/", "")
        + &r("private", "/private", "").replace("\"public\"", "\"authenticated\"")
        + &r("ops", "/ops", "roles = [\"ops\"]").replace("\"public\"", "\"roles\"")
        + &r("open", "/ops/open", "")
        + &r("small", "/small", "max_body = 16")
        + &r("ws", "/ws", "upgrades = [\"websocket\"]")
        + &r("noup", "/noup", "upgrades = []")
        + &r("hosted", "/only", "host = \"hosted.example\"")
}

impl Side {
    pub async fn start(name: &'static str, fast: bool) -> Side {
        let upstream = Strict::start().await;
        let gateway = Gateway::start(&config(upstream.addr, fast));
        let token = mint(gateway.admin, "alice", 1).await.remove(0);
        Side {
            name,
            gateway,
            upstream,
            token,
        }
    }

    pub async fn run(&self, case: &Case) -> Outcome {
        if let Some(s) = &case.script {
            self.upstream.script(s.clone());
        }
        let parts: Vec<Vec<u8>> = case
            .parts
            .iter()
            .map(|p| replace(p, b"TOKEN", self.token.as_bytes()))
            .collect();
        let want = *case.answers.end();
        let exchange = client::exchange(self.gateway.http, case.source, &parts, &case.heads, want).await;
        let events = self.upstream.reset();
        // The next case starts once the gateway has seen the upstream's connections close (as
        // an idle upstream connection's close is seen in life, before it is reused).
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        Outcome { exchange, events }
    }
}

fn replace(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// The identity headers the gateway injects (SPEC §1.7 defaults).
const IDENTITY: [&str; 7] = [
    "x-auth-user",
    "x-auth-user-id",
    "x-auth-user-uuid",
    "x-auth-roles",
    "x-auth-session-id",
    "x-auth-session-expires",
    "x-auth-jwt",
];

fn identity_name(name: &str) -> Option<&'static str> {
    let norm = name.to_ascii_lowercase().replace('_', "-");
    IDENTITY.iter().find(|n| **n == norm).copied()
}

/// The rules every outcome obeys, whatever the case.
fn check_one(case: &Case, side: &str, out: &Outcome) -> Vec<String> {
    let mut bad = Vec::new();
    let ex = &out.exchange;
    if ex.hung {
        bad.push(format!(
            "{side}: the connection hung ({} answers)",
            ex.answers.len()
        ));
    }
    if let Some(g) = &ex.garbage
        && !case.may_cut
    {
        bad.push(format!("{side}: unreadable answer: {g}"));
    }
    let n = ex.answers.len();
    // Cut off: the body broke after its head went out, or the connection closed before the
    // head did (hyper writes a head with its first body bytes).
    let cut = case.may_cut && (ex.garbage.is_some() || (n == 0 && ex.closed));
    if !(case.answers.contains(&n) || cut && n < *case.answers.start()) {
        bad.push(format!(
            "{side}: {n} answers, want {:?}: {:?}",
            case.answers,
            ex.statuses()
        ));
    }
    for (i, want) in case.statuses.iter().enumerate() {
        match ex.answers.get(i) {
            Some(a) if a.status == *want => {}
            Some(a) => bad.push(format!("{side}: answer {i} is {}, want {want}", a.status)),
            None if cut => {}
            None => bad.push(format!("{side}: no answer {i}, want {want}")),
        }
    }
    if ex.switched && !case.tunnel {
        bad.push(format!("{side}: the client's connection switched protocols"));
    }
    let mut forwarded = 0;
    for e in &out.events {
        match e {
            Event::Garbage { why, bytes } => bad.push(format!(
                "{side}: the upstream could not read what it got ({why}): {:?}",
                String::from_utf8_lossy(bytes)
            )),
            Event::Tunnelled(bytes) if !case.tunnel => bad.push(format!(
                "{side}: bytes tunnelled to the upstream: {:?}",
                String::from_utf8_lossy(bytes)
            )),
            Event::Tunnelled(_) | Event::Truncated(_) => {}
            Event::Request(r) => {
                forwarded += 1;
                if r.target.to_ascii_lowercase().contains("smuggled") {
                    bad.push(format!(
                        "{side}: the upstream got a smuggled request: {} {}",
                        r.method, r.target
                    ));
                }
                for (name, value) in r.headers.iter().chain(r.trailers.iter()) {
                    let lower = name.to_ascii_lowercase();
                    if matches!(
                        lower.replace('_', "-").as_str(),
                        "expect" | "http2-settings" | "x-original-url" | "x-rewrite-url"
                    ) {
                        bad.push(format!("{side}: `{name}` reached the upstream"));
                    }
                    let text = String::from_utf8_lossy(value).to_ascii_lowercase();
                    if text.contains("bearer pc1_")
                        || text.contains("bearer\tpc1_")
                        || text.contains("portcullis=")
                    {
                        bad.push(format!(
                            "{side}: the gateway's own credential reached the upstream in `{name}`"
                        ));
                    }
                    if lower == "upgrade" && !case.tunnel {
                        bad.push(format!(
                            "{side}: `Upgrade: {}` reached the upstream",
                            String::from_utf8_lossy(value)
                        ));
                    }
                    if let Some(id) = identity_name(name) {
                        let text = String::from_utf8_lossy(value);
                        if name != id || text.contains("eve") {
                            bad.push(format!(
                                "{side}: identity header `{name}: {text}` reached the upstream"
                            ));
                        }
                        if id == "x-auth-user" && text != "alice" {
                            bad.push(format!("{side}: X-Auth-User is `{text}`"));
                        }
                    }
                }
                for id in IDENTITY {
                    let count = r
                        .headers
                        .iter()
                        .filter(|(n, _)| identity_name(n) == Some(id))
                        .count();
                    if count > 1 {
                        bad.push(format!("{side}: {count} `{id}` headers upstream"));
                    }
                }
                if !r.trailers.is_empty() {
                    bad.push(format!(
                        "{side}: request trailers reached the upstream: {:?}",
                        r.trailers
                    ));
                }
            }
        }
    }
    if forwarded > case.forwarded {
        bad.push(format!(
            "{side}: {forwarded} requests upstream, at most {}",
            case.forwarded
        ));
    }
    if let Some(f) = case.check
        && let Err(why) = f(out)
    {
        bad.push(format!("{side}: {why}"));
    }
    bad
}

/// What the upstream saw, comparable across paths: header lines sorted, the request id and
/// the values that differ by session (or by the upstream's own address) left out.
/// A request that broke off is left out: when body bytes went out before the break is a matter
/// of timing, not of what either path decided.
fn comparable(events: &[Event], upstream: std::net::SocketAddr) -> Vec<String> {
    let own = upstream.to_string();
    events
        .iter()
        .filter(|e| !matches!(e, Event::Truncated(_)))
        .map(|e| match e {
            Event::Request(r) => {
                let mut lines: Vec<String> = r
                    .headers
                    .iter()
                    .filter(|(n, _)| !n.eq_ignore_ascii_case("x-request-id"))
                    .map(|(n, v)| {
                        let v = match n.to_ascii_lowercase().as_str() {
                            "x-auth-session-id" | "x-auth-session-expires" | "x-auth-jwt" => "…".into(),
                            _ => String::from_utf8_lossy(v).replace(&own, "<upstream>"),
                        };
                        format!("{n}: {v}")
                    })
                    .collect();
                lines.sort();
                format!(
                    "{} {} chunked={} body={:?} headers={lines:?}",
                    r.method,
                    r.target,
                    r.chunked,
                    String::from_utf8_lossy(&r.body)
                )
            }
            other => format!("{other:?}"),
        })
        .collect()
}

/// Runs `cases` on both paths; panics with every failure found.
pub async fn run_all(title: &str, cases: Vec<Case>) {
    let fast = Side::start("fast path", true).await;
    let general = Side::start("general path", false).await;
    let mut failures = Vec::new();
    let mut families: std::collections::BTreeMap<&str, usize> = Default::default();
    for case in &cases {
        *families.entry(case.family).or_default() += 1;
        let (a, b) = tokio::join!(fast.run(case), general.run(case));
        let mut bad = check_one(case, fast.name, &a);
        bad.extend(check_one(case, general.name, &b));
        let (sa, sb) = (a.exchange.statuses(), b.exchange.statuses());
        let cut = |e: &Exchange| e.garbage.is_some() || (e.answers.is_empty() && e.closed);
        if sa != sb && !(case.may_cut && (cut(&a.exchange) || cut(&b.exchange))) {
            bad.push(format!(
                "the paths answered differently: fast {sa:?}, general {sb:?}"
            ));
        }
        let (mut ua, mut ub) = (
            comparable(&a.events, fast.upstream.addr),
            comparable(&b.events, general.upstream.addr),
        );
        if case.may_cut {
            // Cut off answers close the connection: what follows depends on when the cut came.
            ua.truncate(1);
            ub.truncate(1);
        }
        if ua != ub {
            bad.push(format!(
                "the paths sent the upstream different requests:\nfast:    {ua:#?}\ngeneral: {ub:#?}"
            ));
        }
        if !bad.is_empty() {
            failures.push(format!(
                "[{}] {}:\n  {}",
                case.family,
                case.name,
                bad.join("\n  ")
            ));
        }
    }
    println!("{title}: {} cases on each path", cases.len());
    for (family, n) in &families {
        println!("  {family:<28} {n}");
    }
    fast.gateway.stop().await;
    general.gateway.stop().await;
    assert!(
        failures.is_empty(),
        "{} of {} {title} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_on_both_paths() {
    let mut cases = cases::all();
    cases.extend(second_look::all());
    assert!(cases.len() >= 150, "{} client cases", cases.len());
    run_all("client", cases).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_upstreams_on_both_paths() {
    let cases = misbehaving::all();
    assert!(cases.len() >= 30, "{} upstream cases", cases.len());
    run_all("upstream", cases).await;
}
