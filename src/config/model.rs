//! The checked configuration the gateway runs on (`Config` and its sections), and the error
//! that names the key it is about. Made by `validate`; depends on nothing above it.

use crate::auth::jwt::{AssertionSigner, Issuer};
use http::HeaderName;
use ipnet::IpNet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A config problem: the key it is about (empty for the file as a whole) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// The checked configuration.
#[derive(Clone)]
pub struct Config {
    /// The file this came from (`load`), which a reload reads again.
    pub source: Option<PathBuf>,
    pub mode: Mode,
    /// `[api] prefix`: the session API's paths start with this ("" = at the root).
    pub api_prefix: String,
    /// `[ui] title`: the site's name on every page the gateway shows.
    pub ui_title: String,
    pub server: ServerConfig,
    pub admin: AdminConfig,
    pub headers: HeaderNames,
    pub log: LogConfig,
    pub demo: Option<DemoConfig>,
    pub store: StoreConfig,
    pub cache: CacheConfig,
    pub sessions: SessionsConfig,
    pub cookie_name: String,
    /// Token tagging secrets; empty means "generate" (embedded: kept beside the store file;
    /// memory: for this process only). Required with redis.
    pub token_secrets: Vec<Vec<u8>>,
    pub users: Vec<crate::session::User>,
    /// argon2id hashes by username, for users that can log in with a password.
    pub password_hashes: std::collections::HashMap<String, String>,
    pub login: LoginConfig,
    /// Signs `X-Auth-Jwt` when configured.
    pub assertion: Option<Arc<AssertionSigner>>,
    /// External issuers whose JWTs `policy = "jwt"` routes accept.
    pub jwt_issuers: Arc<Vec<Issuer>>,
    /// `[[oidc]]`: identity providers people sign in through (SPEC §4a).
    pub oidc: Vec<Arc<OidcConfig>>,
    pub routes: Vec<RouteConfig>,
}

#[derive(Clone, Debug)]
pub enum StoreConfig {
    Memory,
    Embedded {
        path: PathBuf,
    },
    /// `replicas`: how many replicas must hold a write before it is acknowledged.
    Redis {
        url: String,
        prefix: String,
        replicas: u32,
    },
}

#[derive(Clone, Debug)]
pub struct CacheConfig {
    pub max_entries: u64,
    pub ttl: Duration,
    pub negative_ttl: Duration,
}

#[derive(Clone, Debug)]
pub struct LoginConfig {
    /// Attempts per `window` per username, and per client address.
    pub per_user: u32,
    pub per_address: u32,
    pub window: Duration,
}

#[derive(Clone, Debug)]
pub struct SessionsConfig {
    /// Lifetime of an active session, and how far a reissue or renew moves its end.
    pub ttl: Duration,
    /// Lifetime of a pending session (store protocol) before its login.
    pub pending_ttl: Duration,
    /// A reissue token stops working this long after it was issued.
    pub reissue_ttl: Duration,
    /// A used reissue token presented again within this window gets the same new pair.
    pub reissue_grace: Duration,
    /// With this set, a session unused (and not reissued) for this long ends.
    pub idle_ttl: Option<Duration>,
}

/// `mode`: whether credentials are needed at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    MultiUser,
    /// No credential is needed anywhere; everything is this user (the first `[[users]]`).
    SingleUser(crate::session::User),
}

#[derive(Clone)]
pub struct ServerConfig {
    /// TLS listener address and its rustls config (ALPN h2, http/1.1).
    pub tls: Option<(SocketAddr, Arc<rustls::ServerConfig>)>,
    pub http_listen: Option<SocketAddr>,
    pub trusted_proxies: Vec<IpNet>,
    pub workers: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    pub shutdown_grace: Duration,
    /// Serve plain HTTP/1.1 proxied requests on the fast path (`h1`), handing everything else
    /// to hyper; `false` serves every request with hyper.
    pub http1_fast_path: bool,
}

#[derive(Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    pub token: Option<String>,
    /// Peers besides loopback that may use the admin listener.
    pub allow_from: Vec<IpNet>,
}

/// The identity headers, as configured; all are stripped from clients.
#[derive(Clone, Debug)]
pub struct HeaderNames {
    pub user: HeaderName,
    pub user_id: HeaderName,
    pub user_uuid: HeaderName,
    pub roles: HeaderName,
    pub session_id: HeaderName,
    pub session_expires: HeaderName,
    pub jwt: HeaderName,
}

impl HeaderNames {
    pub fn all(&self) -> [&HeaderName; 7] {
        [
            &self.user,
            &self.user_id,
            &self.user_uuid,
            &self.roles,
            &self.session_id,
            &self.session_expires,
            &self.jwt,
        ]
    }
}

#[derive(Clone, Debug)]
pub struct LogConfig {
    pub access: bool,
    /// Bytes of log that may wait for a slow destination before lines are dropped.
    pub buffer: usize,
}

#[derive(Clone, Debug)]
pub struct DemoConfig {
    pub whoami_listen: SocketAddr,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Anyone; identity headers are added when a valid credential is present.
    Public,
    /// Any active session.
    Authenticated,
    /// An active session whose user has any of these roles.
    Roles(Vec<String>),
    /// An active session, or a valid JWT from one of the `[[jwt_issuers]]`.
    Jwt,
}

#[derive(Clone)]
pub struct RouteConfig {
    pub name: String,
    /// Lower-cased; `*.example.com` for a wildcard; `None` matches any host.
    pub host: Option<String>,
    pub path_prefix: String,
    pub upstreams: Vec<http::Uri>,
    pub policy: Policy,
    pub strip_prefix: bool,
    /// Forward the gateway's own credential (bearer token, session cookie) to the upstream.
    pub forward_credentials: bool,
    pub preserve_host: bool,
    pub max_body: u64,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub cooldown: Duration,
    /// TLS settings for `https://` upstreams (system roots, or `upstream_ca`).
    pub upstream_tls: Arc<rustls::ClientConfig>,
    /// `Upgrade` protocols tunnelled after auth (lower-case tokens); any other is removed.
    pub upgrades: Vec<String>,
}

/// A TOML syntax error as "line L, column C: what" — never the offending line itself, which
/// may hold a secret (a token, a redis password) and ends up in logs and reload answers.
pub(crate) fn syntax_error(text: &str, e: &toml::de::Error) -> String {
    let at = e.span().map(|span| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!(" at line {line}, column {column}")
    });
    format!("invalid TOML{}: {}", at.unwrap_or_default(), e.message().trim())
}

/// serde's message with quoted values blanked: `invalid type: string "…", expected a
/// sequence`. Field names (in backticks) stay; values may be secrets.
pub(crate) fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quoted = false;
    for c in message.trim().chars() {
        if c == '"' {
            if quoted {
                out.push('…');
            }
            quoted = !quoted;
            out.push(c);
        } else if !quoted {
            out.push(c);
        }
    }
    out
}

/// One checked `[[oidc]]` provider.
#[derive(Clone)]
pub struct OidcConfig {
    /// `[a-z0-9_-]{1,32}`: in the paths `/auth/oidc/<name>/…` and in the user's session key.
    pub name: String,
    /// On the login page's button ("Sign in with …"); `name` when not given.
    pub display_name: String,
    /// Exactly as the provider's ID tokens spell `iss`.
    pub issuer: String,
    pub client_id: String,
    /// Never logged or shown: `Debug` is not derived.
    pub client_secret: String,
    pub scopes: Vec<String>,
    pub username_claim: String,
    pub roles_claim: Option<String>,
    pub allowed_roles: Option<Vec<String>>,
    /// `client_secret_post` when true, else `client_secret_basic`.
    pub secret_in_body: bool,
    /// The callback URL registered at the provider; `None`: made from the request's scheme and
    /// `Host` (`<scheme>://<host><prefix>/auth/oidc/<name>/callback`).
    pub redirect_uri: Option<String>,
    /// Accepted ID-token and logout-token signature algorithms (asymmetric only).
    pub algorithms: Vec<String>,
    /// TLS for talking to the provider: the system roots, or `ca_file`.
    pub tls: Arc<rustls::ClientConfig>,
}
