//! Test harness: starts the gateway in-process on port 0 with the repository's development
//! certificates, real upstreams on port 0, and clients that speak over real sockets (raw TCP for
//! hostile input, hyper over TLS with a chosen ALPN, tokio-tungstenite for WebSockets).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod oidc;
pub mod redis;
pub mod redis_ha;
pub mod upstream;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use portcullis::config::Config;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub fn repo_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The `[server]`/`[admin]` part every test config starts with: TLS and plain listeners on
/// port 0, one worker, the development certificate.
pub fn base_toml() -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"
tls_cert = "{cert}"
tls_key = "{key}"
workers = 1
[admin]
listen = "127.0.0.1:0"
token = "test-admin-token-0123456789"
[store]
kind = "memory"
"#,
        cert = repo_path("certs/localhost.pem").display(),
        key = repo_path("certs/localhost-key.pem").display(),
    )
}

/// A public route to `upstream` with extra `key = value` lines.
pub fn route(name: &str, prefix: &str, upstreams: &[SocketAddr], extra: &str) -> String {
    let list: Vec<String> = upstreams.iter().map(|a| format!("\"http://{a}\"")).collect();
    format!(
        "\n[[routes]]\nname = \"{name}\"\npath_prefix = \"{prefix}\"\nupstreams = [{}]\npolicy = \"public\"\n{extra}\n",
        list.join(", ")
    )
}

pub struct Gateway {
    pub running: Option<portcullis::Running>,
    pub tls: SocketAddr,
    pub http: SocketAddr,
    pub admin: SocketAddr,
}

impl Gateway {
    /// Starts a gateway from config text (usually `base_toml()` plus routes).
    pub fn start(toml: &str) -> Gateway {
        let config =
            Config::from_toml(toml, &repo_path("")).unwrap_or_else(|e| panic!("test config: {e}\n{toml}"));
        let running = portcullis::start(&config).expect("gateway starts");
        Gateway {
            tls: running.tls_addr.expect("tls listener"),
            http: running.http_addr.expect("http listener"),
            admin: running.admin_addr,
            running: Some(running),
        }
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(r) = &self.running {
            r.shutdown();
        }
    }
}

/// Writes `request` bytes and reads the whole answer until the server closes (or 5 s pass).
pub async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of a raw HTTP/1.1 answer.
pub fn status_of(raw: &str) -> u16 {
    raw.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The JSON body of a raw HTTP/1.1 answer (Content-Length framed).
pub fn json_of(raw: &str) -> serde_json::Value {
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {raw}"))
}

/// A GET over plain HTTP/1.1 with extra raw header lines; the connection is closed after.
pub async fn get_raw(addr: SocketAddr, path: &str, headers: &str) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n");
    raw(addr, req.as_bytes()).await
}

pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub version: http::Version,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// A rustls client config that trusts the development CA, offering `alpn`.
pub fn tls_client_config(alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(repo_path("certs/ca.pem")).unwrap();
    for cert in rustls_pemfile_certs(&pem) {
        roots.add(cert).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(portcullis::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

/// Sends one request over a fresh TLS connection offering `alpn` ("h2" or "http/1.1"); returns
/// the answer and the protocol the server picked.
pub async fn tls_request(addr: SocketAddr, alpn: &str, req: Request<Full<Bytes>>) -> (Answer, String) {
    let connector = tokio_rustls::TlsConnector::from(tls_client_config(&[alpn.as_bytes()]));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.expect("TLS handshake");
    let negotiated = tls
        .get_ref()
        .1
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_default();
    let io = TokioIo::new(tls);
    let answer = if negotiated == "h2" {
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                .await
                .unwrap();
        tokio::spawn(conn);
        collect(send.send_request(req).await.unwrap()).await
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        collect(send.send_request(req).await.unwrap()).await
    };
    (answer, negotiated)
}

/// Sends one request over a fresh plain HTTP/1.1 connection.
pub async fn http_request(addr: SocketAddr, req: Request<Full<Bytes>>) -> Answer {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    collect(send.send_request(req).await.unwrap()).await
}

pub async fn collect(resp: hyper::Response<hyper::body::Incoming>) -> Answer {
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
        version: parts.version,
    }
}

/// A GET request for `path` with Host `localhost`.
pub fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// The `portcullis` binary serving `config` with JSON logs on `stdout` (killed if dropped).
pub fn spawn_binary(config: &std::path::Path, stdout: std::process::Stdio) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["--log-format", "json", "run", "-c"])
        .arg(config)
        .stdout(stdout)
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Sends `signal` (`-TERM`, `-HUP`) to a running child.
pub fn signal(child: &tokio::process::Child, signal: &str) {
    let pid = child.id().unwrap().to_string();
    let sent = std::process::Command::new("kill")
        .args([signal, &pid])
        .status()
        .unwrap();
    assert!(sent.success(), "kill {signal} {pid}");
}

/// Both HTTP/1.1 paths, for the suites that run on each from one table: the fast path
/// (`true`) and hyper's (`false`).
pub const PATHS: [bool; 2] = [true, false];

/// `toml` (built on `base_toml()`) on one HTTP/1.1 path (`server.http1_fast_path`).
pub fn on_path(toml: &str, fast: bool) -> String {
    toml.replacen(
        "workers = 1",
        &format!("workers = 1\nhttp1_fast_path = {fast}"),
        1,
    )
}

/// Two users for session tests: alice (admin) and bob (no roles).
pub const USERS: &str = r#"
[[users]]
username = "alice"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$IjIaRFhIs06s5i7QfNqeYQ$2bdcEPILxnbhRXUk0HCuDmSbpTP/huyJDWpEde85wIw"
user_id = 1
user_uuid = "11111111-1111-4111-8111-111111111111"
roles = ["admin", "dev"]
[[users]]
username = "bob"
user_id = 2
user_uuid = "22222222-2222-4222-8222-222222222222"
"#;

/// Mints `count` active sessions for `user` through the admin API.
pub async fn mint(admin: SocketAddr, user: &str, count: u32) -> Vec<String> {
    let body = format!(r#"{{"username":"{user}","count":{count}}}"#);
    let resp = admin_call_body(admin, "POST", "/admin/sessions", &body).await;
    assert_eq!(status_of(&resp), 201, "{resp}");
    json_of(&resp)["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

/// An admin request with the test token; returns the raw answer.
pub async fn admin_call(admin: SocketAddr, method: &str, path: &str) -> String {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer test-admin-token-0123456789\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    raw(admin, req.as_bytes()).await
}

/// An admin call with a JSON body; returns the raw answer.
pub async fn admin_call_body(admin: SocketAddr, method: &str, path: &str, body: &str) -> String {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer test-admin-token-0123456789\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    raw(admin, req.as_bytes()).await
}

/// A GET with a bearer token over plain HTTP; returns the raw answer.
pub async fn get_with_token(addr: SocketAddr, path: &str, token: &str) -> String {
    get_raw(addr, path, &format!("Authorization: Bearer {token}\r\n")).await
}

/// A port nothing listens on right now (bound, then released), for processes started by tests.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (up to 5 s) until something accepts connections on 127.0.0.1:`port`.
pub async fn wait_listening(port: u16) -> SocketAddr {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    for _ in 0..100 {
        if TcpStream::connect(addr).await.is_ok() {
            return addr;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing started listening on {addr}");
}

/// A persistent store for flow tests, which run against both: an embedded redb file in a
/// temp dir, or a real redis-server of the test's own (token secrets shared, as SPEC requires).
pub enum Backing {
    Embedded(tempfile::TempDir),
    Redis(redis::Redis),
    /// A Redis Cluster of 3 masters and 3 replicas, reached through one seed node.
    Cluster(redis_ha::RedisCluster),
}

impl Backing {
    pub fn embedded() -> Backing {
        Backing::Embedded(tempfile::tempdir().unwrap())
    }

    pub fn redis() -> Backing {
        Backing::Redis(redis::Redis::start())
    }

    pub fn cluster() -> Backing {
        Backing::Cluster(redis_ha::RedisCluster::start())
    }

    /// Whether several gateways can share this store (redis, cluster).
    pub fn shared(&self) -> bool {
        !matches!(self, Backing::Embedded(_))
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backing::Embedded(_) => "embedded",
            Backing::Redis(_) => "redis",
            Backing::Cluster(_) => "redis cluster",
        }
    }

    /// `base_toml()` with this store instead of memory.
    pub fn base_toml(&self) -> String {
        let store = match self {
            Backing::Embedded(dir) => format!(
                "kind = \"embedded\"\npath = \"{}\"",
                dir.path().join("sessions.redb").display()
            ),
            Backing::Redis(r) => format!(
                "kind = \"redis\"\nurl = \"{}\"\n[tokens]\nsecrets = [\"flow-test-secret-0123456789abcdef0123\"]",
                r.url()
            ),
            Backing::Cluster(c) => format!(
                "kind = \"redis\"\nurl = \"{}\"\n[tokens]\nsecrets = [\"flow-test-secret-0123456789abcdef0123\"]",
                c.url_with_seed(c.ports()[0])
            ),
        };
        base_toml().replace("kind = \"memory\"", &store)
    }
}

/// A request with a body and a content type (and Host `localhost`).
pub fn request(
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: impl Into<Bytes>,
) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost");
    if let Some(ct) = content_type {
        b = b.header("content-type", ct);
    }
    b.body(Full::new(body.into())).unwrap()
}

/// The same request with `Authorization: Bearer <token>`.
pub fn bearer(mut req: Request<Full<Bytes>>, token: &str) -> Request<Full<Bytes>> {
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

/// `GET /metrics` from the admin listener: the Prometheus text.
pub async fn scrape(admin: SocketAddr) -> String {
    let resp = admin_call(admin, "GET", "/metrics").await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert!(
        resp.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4")
    );
    resp.split_once("\r\n\r\n").unwrap().1.to_string()
}

/// The value of the series `name{labels}` (exactly as exposed), 0 when absent.
pub fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}
