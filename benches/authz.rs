//! Forward authentication's two wires on one machine (issue #16): Envoy's `ext_authz` `Check`
//! over gRPC (one HTTP/2 connection, many streams, as Envoy keeps one) against `GET
//! /auth/verify` over HTTP/1.1 keep-alive connections (as nginx `auth_request` asks), the same
//! session, route and number of requests in flight. The gateway runs in this process on its
//! own worker thread; this load generator on one more. Loopback only, bounded in time.
//! `cargo bench --bench authz` (env `SECONDS`, default 5; `IN_FLIGHT`, default 32).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use envoy_types::ext_authz::v3::pb::CheckRequest;
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use http_body_util::{BodyExt, Empty};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(upstream: std::net::SocketAddr) -> portcullis::config::Config {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let toml = format!(
        r#"
[server]
http_listen = "127.0.0.1:0"
workers = 1
trusted_proxies = ["127.0.0.1/32"]
[admin]
listen = "127.0.0.1:0"
token = "bench-admin-token-0123456789"
[store]
kind = "memory"
[[users]]
username = "bench"
user_id = 1
user_uuid = "00000000-0000-4000-8000-000000000001"
roles = ["user"]
[[routes]]
name = "app"
path_prefix = "/"
upstreams = ["http://{upstream}"]
policy = "authenticated"
"#
    );
    portcullis::config::Config::from_toml(&toml, &root).unwrap()
}

/// Calls per second and the 50th and 99th percentile latency of `calls` made by `in_flight`
/// workers for `seconds`.
fn report(name: &str, mut latencies: Vec<Duration>, elapsed: Duration) -> f64 {
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    let rate = latencies.len() as f64 / elapsed.as_secs_f64();
    println!(
        "{name}: {:.0} calls/s, p50 {:.2} ms, p99 {:.2} ms ({} calls)",
        rate,
        at(0.50).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        latencies.len()
    );
    rate
}

async fn check_load(
    addr: std::net::SocketAddr,
    token: &str,
    in_flight: u64,
    until: Instant,
) -> Vec<Duration> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let request = CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    host: "app.example".into(),
                    path: "/x".into(),
                    scheme: "http".into(),
                    headers: [("authorization".to_string(), format!("Bearer {token}"))].into(),
                    ..HttpRequest::default()
                }),
                ..Request::default()
            }),
            ..AttributeContext::default()
        }),
    };
    let mut tasks = Vec::new();
    for _ in 0..in_flight {
        let (mut client, request) = (AuthorizationClient::new(channel.clone()), request.clone());
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while Instant::now() < until {
                let t = Instant::now();
                let answer = client.check(request.clone()).await.unwrap().into_inner();
                assert_eq!(answer.status.map_or(0, |s| s.code), 0, "Check refused");
                seen.push(t.elapsed());
            }
            seen
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

async fn verify_load(
    addr: std::net::SocketAddr,
    token: &str,
    in_flight: u64,
    until: Instant,
) -> Vec<Duration> {
    let mut tasks = Vec::new();
    for _ in 0..in_flight {
        let token = token.to_string();
        tasks.push(tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .unwrap();
            tokio::spawn(conn);
            let mut seen = Vec::new();
            while Instant::now() < until {
                let req = http::Request::get("/auth/verify")
                    .header("host", "gateway")
                    .header("authorization", format!("Bearer {token}"))
                    .header("x-forwarded-method", "GET")
                    .header("x-forwarded-host", "app.example")
                    .header("x-forwarded-uri", "/x")
                    .body(Empty::<bytes::Bytes>::new())
                    .unwrap();
                let t = Instant::now();
                let resp = send.send_request(req).await.unwrap();
                assert_eq!(resp.status(), 200, "/auth/verify refused");
                resp.into_body().collect().await.unwrap();
                seen.push(t.elapsed());
            }
            seen
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

fn main() {
    let seconds = env("SECONDS", 5);
    let in_flight = env("IN_FLIGHT", 32);
    // An upstream address the route names; neither wire ever sends to it.
    let running = portcullis::start(&config("127.0.0.1:9".parse().unwrap())).unwrap();
    let addr = running.http_addr.unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let sessions: Arc<_> = running.sessions.clone();
    let token = rt.block_on(async move {
        let user = portcullis::session::User {
            id: 1,
            username: "bench".into(),
            uuid: "00000000-0000-4000-8000-000000000001".into(),
            roles: vec!["user".into()],
            provider: None,
        };
        sessions
            .create_active(&user, None, Default::default())
            .await
            .unwrap()
            .token
    });
    println!("in flight: {in_flight}; {seconds} s per run; each wire twice, alternating");
    let mut rates = [0.0f64; 2];
    for round in 0..2 {
        for (i, name) in ["ext_authz Check (gRPC, HTTP/2)", "/auth/verify (HTTP/1.1)"]
            .iter()
            .enumerate()
        {
            let start = Instant::now();
            let until = start + Duration::from_secs(seconds);
            let latencies = if i == 0 {
                rt.block_on(check_load(addr, &token, in_flight, until))
            } else {
                rt.block_on(verify_load(addr, &token, in_flight, until))
            };
            let rate = report(&format!("round {round}, {name}"), latencies, start.elapsed());
            rates[i] = rates[i].max(rate);
        }
    }
    println!("best Check / best /auth/verify: {:.2}", rates[0] / rates[1]);
    running.shutdown();
}
