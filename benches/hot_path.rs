//! Micro-benchmarks of the per-request hot path: token check, session cache hit, header
//! sanitize + inject (the general path's header maps, and the fast path's head in and head
//! out), route match. `cargo bench --bench hot_path`. Speed is measured here, never asserted
//! in tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderName, HeaderValue};
use portcullis::session::User;
use portcullis::session::backend::Store;
use portcullis::session::cache::{CacheSettings, Found, SessionSettings, Sessions};
use portcullis::session::memory::MemoryStore;
use portcullis::session::token::{Parsed, TokenKeys};
use std::hint::black_box;
use std::time::Duration;

fn keys() -> TokenKeys {
    TokenKeys::new(&[b"bench-key-0123456789abcdef0123456789abcdef".as_slice()])
}

fn token_check(c: &mut Criterion) {
    let keys = keys();
    let token = keys.mint().unwrap().token;
    let forged = format!("{}A", &token[..token.len() - 1]);
    c.bench_function("token: full verify (shape, tag, secret hash)", |b| {
        b.iter(|| keys.verify(black_box(&token)))
    });
    c.bench_function("token: shape + secret hash (cache-hit path)", |b| {
        b.iter(|| Parsed::new(black_box(&token)).map(|p| p.secret_hash()))
    });
    c.bench_function("token: forged tag rejected", |b| {
        b.iter(|| keys.verify(black_box(&forged)))
    });
}

fn cache_hit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sessions = Sessions::new(
        Store::Memory(MemoryStore::new()),
        keys(),
        CacheSettings {
            max_entries: 100_000,
            ttl: Duration::from_secs(300),
            negative_ttl: Duration::from_secs(5),
        },
        SessionSettings {
            ttl: Duration::from_secs(3600),
            pending_ttl: Duration::from_secs(600),
            reissue_ttl: Duration::from_secs(3600),
            reissue_grace: Duration::from_secs(3),
            idle_ttl: None,
        },
        &portcullis::metrics::Metrics::new(),
    );
    let user = User {
        id: 1,
        username: "alice".into(),
        uuid: "11111111-1111-4111-8111-111111111111".into(),
        roles: vec!["admin".into()],
        provider: None,
    };
    let token = rt
        .block_on(sessions.create_active(&user, None, Default::default()))
        .unwrap()
        .token;
    assert!(matches!(
        rt.block_on(sessions.authenticate(&token)),
        Ok(Found::Active(_))
    ));
    c.bench_function("session: authenticate, cache hit", |b| {
        b.iter(|| rt.block_on(sessions.authenticate(black_box(&token))))
    });
}

fn headers(c: &mut Criterion) {
    let identity: Vec<HeaderName> = [
        "x-auth-user",
        "x-auth-user-id",
        "x-auth-user-uuid",
        "x-auth-roles",
        "x-auth-session-id",
        "x-auth-session-expires",
        "x-auth-jwt",
    ]
    .iter()
    .map(|n| HeaderName::from_static(n))
    .collect();
    let mut request = HeaderMap::new();
    for (k, v) in [
        ("host", "app.example.com"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) bench"),
        ("accept", "text/html,application/xhtml+xml"),
        ("accept-encoding", "gzip, deflate, br"),
        (
            "authorization",
            "Bearer pc1_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        ),
        ("cookie", "theme=dark; lang=en"),
        ("connection", "keep-alive"),
    ] {
        request.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    let peer = HeaderValue::from_static("192.0.2.10");
    let rid = HeaderValue::from_static("0123456789abcdef0123456789abcdef");
    c.bench_function(
        "headers: sanitize + forwarding headers + credential removal",
        |b| {
            b.iter(|| {
                let mut h = request.clone();
                portcullis::proxy::headers::sanitize_request(&mut h, &identity, false);
                portcullis::auth::remove_credentials(&mut h, "__Host-portcullis");
                let host = h.get("host").cloned();
                portcullis::proxy::headers::add_forwarding(
                    &mut h,
                    &peer,
                    false,
                    "https",
                    host.as_ref(),
                    &rid,
                );
                black_box(h)
            })
        },
    );
}

fn fast_path_heads(c: &mut Criterion) {
    let identity: Vec<HeaderName> = ["x-auth-user", "x-auth-user-id", "x-auth-roles", "x-auth-jwt"]
        .iter()
        .map(|n| HeaderName::from_static(n))
        .collect();
    let head = b"GET /api/v2/users/42?full=1 HTTP/1.1\r\nHost: app.example.com\r\n\
        User-Agent: Mozilla/5.0 (X11; Linux x86_64) bench\r\nAccept: text/html,application/xhtml+xml\r\n\
        Accept-Encoding: gzip, deflate, br\r\n\
        Authorization: Bearer pc1_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n\
        Cookie: theme=dark; lang=en\r\nConnection: keep-alive\r\n\r\n";
    let user = HeaderName::from_static("x-auth-user");
    let peer = HeaderValue::from_static("192.0.2.10");
    let mut out = Vec::with_capacity(4096);
    c.bench_function("h1: parse + inspect + write the upstream head (7 headers)", |b| {
        b.iter(|| {
            let mut headers = [httparse::EMPTY_HEADER; portcullis::h1::request::MAX_HEADERS];
            let mut req = httparse::Request::new(&mut headers);
            req.parse(black_box(head)).unwrap();
            let seen = portcullis::h1::request::inspect(&req, &identity, false).unwrap();
            let add = portcullis::phase::inject::Plan {
                path: seen.path.into(),
                identity: portcullis::phase::inject::Injection::one(&user, HeaderValue::from_static("alice")),
                strip_credentials: Some("__Host-portcullis"),
                peer_ip: &peer,
                proto: "https",
                request_id: b"0123456789abcdef0123456789abcdef",
                preserve_host: true,
            };
            portcullis::h1::request::write_head(&mut out, &req, &seen, &add);
            black_box(out.len())
        })
    });
    let response = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sun, 29 Nov 2026 17:00:00 GMT\r\n\
        Content-Type: text/plain\r\nContent-Length: 20\r\nConnection: keep-alive\r\n\r\nhello from upstream\n";
    let now = std::time::Instant::now();
    c.bench_function("h1: parse + rewrite an upstream response head (5 headers)", |b| {
        b.iter(|| {
            let extra = portcullis::h1::response::Extra {
                request_id: b"0123456789abcdef0123456789abcdef",
                head_request: false,
                close: false,
                now,
            };
            black_box(portcullis::h1::response::parse(black_box(response), &mut out, &extra).is_ok())
        })
    });
}

fn routes(c: &mut Criterion) {
    let prefixes = [
        "/",
        "/api",
        "/api/v1",
        "/api/v2/users",
        "/static",
        "/admin",
        "/auth",
        "/ws",
    ];
    let mut spec: Vec<(Option<&str>, &str)> = prefixes.iter().map(|p| (None, *p)).collect();
    spec.push((Some("app.example.com"), "/"));
    spec.push((Some("*.example.com"), "/w"));
    let table = portcullis::route::RouteTable::new(spec);
    c.bench_function("route: normalize + match (10 routes)", |b| {
        b.iter(|| {
            let path = portcullis::route::normalize_path(black_box("/api/v2/users/42/orders")).unwrap();
            table.find(black_box("other.host"), &path)
        })
    });
    c.bench_function("route: normalize a path with dot segments", |b| {
        b.iter(|| portcullis::route::normalize_path(black_box("/api/./v2//users/../users/%34%32")))
    });
}

criterion_group!(benches, token_check, cache_hit, headers, fast_path_heads, routes);
criterion_main!(benches);
