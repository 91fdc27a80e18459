//! Configuration. The flow is: TOML text → `raw::RawConfig` (serde, `deny_unknown_fields`,
//! defaults) → `validate` → `Config`, the checked form the gateway runs on. Durations are parsed,
//! addresses resolved, certificates and keys loaded here, before any port is bound, and every
//! error names the key it is about (`routes[1].upstreams[0]: invalid URL "htp:/x"`).

mod raw;
mod units;
mod users;

pub use units::parse_duration;

use crate::auth::jwt::{self, AssertionSigner, Issuer};
use crate::tls;
use http::HeaderName;
use ipnet::IpNet;
use raw::{RawConfig, RawRoute, RawUser};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A config problem: the key it is about (empty for the file as a whole) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
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

impl Config {
    /// Reads and validates a config file; relative paths in it are relative to its folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new("", format!("cannot read {}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut config = Config::from_toml(&text, base)?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// Validates config text; relative paths are resolved against `base`.
    pub fn from_toml(text: &str, base: &Path) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| ConfigError::new("", syntax_error(text, &e)))?;
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let key = if key == "." { String::new() } else { key };
            ConfigError::new(key, without_values(e.into_inner().message()))
        })?;
        validate(raw, base)
    }
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

fn validate(raw: RawConfig, base: &Path) -> Result<Config, ConfigError> {
    let s = raw.server;
    let tls = match (&s.listen, &s.tls_cert, &s.tls_key) {
        (Some(listen), Some(cert), Some(key)) => {
            let addr = socket_addr("server.listen", listen)?;
            let config = tls::server_config(&resolve(base, cert), &resolve(base, key))
                .map_err(|e| ConfigError::new("server.tls_cert", e))?;
            Some((addr, Arc::new(config)))
        }
        (Some(_), None, _) => {
            return Err(ConfigError::new(
                "server.tls_cert",
                "required with server.listen (the TLS listener)",
            ));
        }
        (Some(_), _, None) => {
            return Err(ConfigError::new(
                "server.tls_key",
                "required with server.listen (the TLS listener)",
            ));
        }
        (None, Some(_), _) | (None, _, Some(_)) => {
            return Err(ConfigError::new(
                "server.listen",
                "required when tls_cert/tls_key are set",
            ));
        }
        (None, None, None) => None,
    };
    let http_listen = s
        .http_listen
        .as_deref()
        .map(|a| socket_addr("server.http_listen", a))
        .transpose()?;
    if tls.is_none() && http_listen.is_none() {
        return Err(ConfigError::new(
            "server",
            "no listener: set listen (TLS, with tls_cert and tls_key) or http_listen",
        ));
    }
    let trusted_proxies = s
        .trusted_proxies
        .iter()
        .enumerate()
        .map(|(i, p)| cidr(&format!("server.trusted_proxies[{i}]"), p))
        .collect::<Result<_, _>>()?;
    let workers = match s.workers {
        Some(0) => return Err(ConfigError::new("server.workers", "must be at least 1")),
        Some(n) if n > 1024 => return Err(ConfigError::new("server.workers", "must be at most 1024")),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let max_header_bytes = s
        .max_header_bytes
        .bytes()
        .map_err(|e| ConfigError::new("server.max_header_bytes", e))?;
    if !(8192..=1 << 20).contains(&max_header_bytes) {
        return Err(ConfigError::new(
            "server.max_header_bytes",
            "must be between 8KiB and 1MiB",
        ));
    }
    let server = ServerConfig {
        tls,
        http_listen,
        trusted_proxies,
        workers,
        header_read_timeout: positive("server.header_read_timeout", &s.header_read_timeout)?,
        idle_timeout: positive("server.idle_timeout", &s.idle_timeout)?,
        max_header_bytes: max_header_bytes as usize,
        shutdown_grace: duration("server.shutdown_grace", &s.shutdown_grace)?,
        http1_fast_path: s.http1_fast_path,
    };

    let token = match (raw.admin.token, raw.admin.token_env) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                "admin.token",
                "set token or token_env, not both",
            ));
        }
        (Some(t), None) => Some(t),
        (None, Some(var)) => Some(std::env::var(&var).map_err(|_| {
            ConfigError::new(
                "admin.token_env",
                format!("environment variable {var} is not set"),
            )
        })?),
        (None, None) => None,
    };
    if let Some(t) = &token
        && t.len() < 16
    {
        return Err(ConfigError::new("admin.token", "must be at least 16 characters"));
    }
    let admin = AdminConfig {
        listen: socket_addr("admin.listen", &raw.admin.listen)?,
        token,
        allow_from: raw
            .admin
            .allow_from
            .iter()
            .enumerate()
            .map(|(i, p)| cidr(&format!("admin.allow_from[{i}]"), p))
            .collect::<Result<_, _>>()?,
    };

    let h = raw.headers;
    let headers = HeaderNames {
        user: header_name("headers.user", &h.user)?,
        user_id: header_name("headers.user_id", &h.user_id)?,
        user_uuid: header_name("headers.user_uuid", &h.user_uuid)?,
        roles: header_name("headers.roles", &h.roles)?,
        session_id: header_name("headers.session_id", &h.session_id)?,
        session_expires: header_name("headers.session_expires", &h.session_expires)?,
        jwt: header_name("headers.jwt", &h.jwt)?,
    };

    let demo = raw
        .demo
        .map(|d| {
            Ok::<_, ConfigError>(DemoConfig {
                whoami_listen: socket_addr("demo.whoami_listen", &d.whoami_listen)?,
            })
        })
        .transpose()?;

    let store = match raw.store.kind.as_str() {
        "memory" => StoreConfig::Memory,
        "embedded" => StoreConfig::Embedded {
            path: resolve(base, &raw.store.path),
        },
        "redis" => {
            let Some(url) = raw.store.url else {
                return Err(ConfigError::new(
                    "store.url",
                    "required with kind = \"redis\" (e.g. redis://127.0.0.1:6379/0)",
                ));
            };
            if let Err(e) = crate::session::redis_url::config(&url) {
                return Err(ConfigError::new(
                    "store.url",
                    format!(
                        "{e} (redis://, redis-cluster:// or redis-sentinel://; credentials, if any, in the URL)"
                    ),
                ));
            }
            let replicas = raw
                .store
                .replicas
                .unwrap_or_else(|| crate::session::redis::RedisStore::default_replicas(&url));
            if raw.tokens.secrets.is_empty() {
                return Err(ConfigError::new(
                    "tokens.secrets",
                    "required with the redis store: every instance must tag and check tokens with the same keys",
                ));
            }
            let prefix = raw.store.prefix;
            if prefix.is_empty()
                || !prefix
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(ConfigError::new("store.prefix", "letters, digits, - and _ only"));
            }
            StoreConfig::Redis {
                url,
                prefix,
                replicas,
            }
        }
        other => {
            return Err(ConfigError::new(
                "store.kind",
                format!("unknown store \"{other}\" (expected embedded, redis or memory)"),
            ));
        }
    };
    if raw.cache.max_entries == 0 {
        return Err(ConfigError::new("cache.max_entries", "must be at least 1"));
    }
    let cache = CacheConfig {
        max_entries: raw.cache.max_entries,
        ttl: positive("cache.ttl", &raw.cache.ttl)?,
        negative_ttl: duration("cache.negative_ttl", &raw.cache.negative_ttl)?,
    };
    let sessions = SessionsConfig {
        ttl: positive("sessions.ttl", &raw.sessions.ttl)?,
        pending_ttl: positive("sessions.pending_ttl", &raw.sessions.pending_ttl)?,
        reissue_ttl: positive("sessions.reissue_ttl", &raw.sessions.reissue_ttl)?,
        reissue_grace: duration("sessions.reissue_grace", &raw.sessions.reissue_grace)?,
        idle_ttl: match &raw.sessions.idle_ttl {
            Some(t) => Some(positive("sessions.idle_ttl", t)?),
            None => None,
        },
    };
    if sessions.reissue_grace > Duration::from_secs(60) {
        return Err(ConfigError::new(
            "sessions.reissue_grace",
            "must be at most 60s (it is a window for racing retries, not a lifetime)",
        ));
    }
    let cookie_name = raw.cookie.name;
    if cookie_name.is_empty()
        || !cookie_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(ConfigError::new(
            "cookie.name",
            format!("invalid cookie name \"{cookie_name}\""),
        ));
    }
    let mut token_secrets = Vec::new();
    for (i, secret) in raw.tokens.secrets.into_iter().enumerate() {
        if secret.len() < 32 {
            return Err(ConfigError::new(
                format!("tokens.secrets[{i}]"),
                "must be at least 32 characters of random data",
            ));
        }
        token_secrets.push(secret.into_bytes());
    }
    let mut raw_users: Vec<(String, RawUser)> = raw
        .users
        .into_iter()
        .enumerate()
        .map(|(i, u)| (format!("users[{i}]"), u))
        .collect();
    if let Some(file) = &raw.users_file {
        raw_users.extend(users::read_file(&resolve(base, file))?);
    }
    let (users, password_hashes) = users::validate(raw_users)?;
    let api_prefix = raw.api.prefix.trim_end_matches('/').to_string();
    if !api_prefix.is_empty()
        && (!api_prefix.starts_with('/')
            || crate::route::normalize_path(&api_prefix).map_or(true, |p| p != api_prefix.as_str())
            || !api_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.')))
    {
        return Err(ConfigError::new(
            "api.prefix",
            format!(
                "\"{}\" is not a plain absolute path such as \"/_auth\"",
                raw.api.prefix
            ),
        ));
    }
    let ui_title = raw.ui.title.trim().to_string();
    if ui_title.is_empty() || ui_title.chars().count() > 80 || ui_title.chars().any(char::is_control) {
        return Err(ConfigError::new(
            "ui.title",
            "must be 1 to 80 characters, without control characters",
        ));
    }
    let mode = match raw.mode.as_str() {
        "multi-user" => Mode::MultiUser,
        "single-user" => match users.first() {
            Some(u) => Mode::SingleUser(u.clone()),
            None => {
                return Err(ConfigError::new(
                    "mode",
                    "\"single-user\" needs one [[users]] entry: the local user",
                ));
            }
        },
        other => {
            return Err(ConfigError::new(
                "mode",
                format!("unknown mode \"{other}\" (expected multi-user or single-user)"),
            ));
        }
    };

    if raw.login.per_user == 0 || raw.login.per_address == 0 {
        return Err(ConfigError::new(
            "login",
            "per_user and per_address must be at least 1",
        ));
    }
    let login = LoginConfig {
        per_user: raw.login.per_user,
        per_address: raw.login.per_address,
        window: positive("login.window", &raw.login.window)?,
    };
    let assertion = match raw.assertion {
        None => None,
        Some(a) => {
            let ttl = positive("assertion.ttl", &a.ttl)?;
            if ttl > Duration::from_secs(60) {
                return Err(ConfigError::new("assertion.ttl", "must be at most 60s"));
            }
            let signer = AssertionSigner::load(&a.algorithm, &resolve(base, &a.key), &a.issuer, ttl)
                .map_err(|e| ConfigError::new("assertion.key", e))?;
            Some(Arc::new(signer))
        }
    };
    let mut jwt_issuers = Vec::new();
    for (i, raw_issuer) in raw.jwt_issuers.into_iter().enumerate() {
        let key = format!("jwt_issuers[{i}]");
        if raw_issuer.issuer.is_empty() {
            return Err(ConfigError::new(format!("{key}.issuer"), "must not be empty"));
        }
        if raw_issuer.audiences.is_empty() {
            return Err(ConfigError::new(
                format!("{key}.audiences"),
                "at least one audience is needed",
            ));
        }
        if raw_issuer.algorithms.is_empty() {
            return Err(ConfigError::new(
                format!("{key}.algorithms"),
                "list the accepted algorithms, e.g. [\"RS256\"]",
            ));
        }
        let algorithms = raw_issuer
            .algorithms
            .iter()
            .enumerate()
            .map(|(j, a)| {
                jwt::algorithm(a).map_err(|e| ConfigError::new(format!("{key}.algorithms[{j}]"), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let leeway = duration(&format!("{key}.leeway"), &raw_issuer.leeway)?;
        let pem_keys: Vec<PathBuf> = raw_issuer.keys.iter().map(|k| resolve(base, k)).collect();
        let jwks = raw_issuer.jwks_file.as_deref().map(|f| resolve(base, f));
        let issuer = Issuer::load(
            &raw_issuer.issuer,
            &raw_issuer.audiences,
            &algorithms,
            &pem_keys,
            jwks.as_deref(),
            leeway,
        )
        .map_err(|e| ConfigError::new(format!("{key}.keys"), e))?;
        jwt_issuers.push(issuer);
    }

    if raw.routes.is_empty() {
        return Err(ConfigError::new(
            "routes",
            "at least one [[routes]] entry is needed",
        ));
    }
    let mut routes: Vec<RouteConfig> = Vec::with_capacity(raw.routes.len());
    for (i, r) in raw.routes.into_iter().enumerate() {
        let route = route(&format!("routes[{i}]"), r, base)?;
        if route.policy == Policy::Jwt && jwt_issuers.is_empty() {
            return Err(ConfigError::new(
                format!("routes[{i}].policy"),
                "policy = \"jwt\" needs at least one [[jwt_issuers]] entry",
            ));
        }
        if routes.iter().any(|o| o.name == route.name) {
            return Err(ConfigError::new(
                format!("routes[{i}].name"),
                format!("duplicate route name \"{}\"", route.name),
            ));
        }
        if let Some(o) = routes
            .iter()
            .find(|o| o.host == route.host && o.path_prefix == route.path_prefix)
        {
            return Err(ConfigError::new(
                format!("routes[{i}].path_prefix"),
                format!("route \"{}\" already has this host and path_prefix", o.name),
            ));
        }
        routes.push(route);
    }

    Ok(Config {
        source: None,
        mode,
        api_prefix,
        ui_title,
        server,
        admin,
        headers,
        log: LogConfig {
            access: raw.log.access,
        },
        demo,
        store,
        cache,
        sessions,
        cookie_name,
        token_secrets,
        users,
        password_hashes,
        login,
        assertion,
        jwt_issuers: Arc::new(jwt_issuers),
        routes,
    })
}

fn route(key: &str, r: RawRoute, base: &Path) -> Result<RouteConfig, ConfigError> {
    let name_ok = !r.name.is_empty()
        && r.name.len() <= 64
        && r.name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !name_ok {
        return Err(ConfigError::new(
            format!("{key}.name"),
            format!(
                "invalid route name \"{}\" (letters, digits, - and _; at most 64)",
                r.name
            ),
        ));
    }
    let host = r
        .host
        .map(|h| host_pattern(&format!("{key}.host"), &h))
        .transpose()?;
    let path_prefix = match crate::route::normalize_path(&r.path_prefix) {
        Ok(p) if p == r.path_prefix => p.into_owned(),
        _ => {
            return Err(ConfigError::new(
                format!("{key}.path_prefix"),
                format!("\"{}\" is not a normalized path starting with /", r.path_prefix),
            ));
        }
    };
    if r.upstreams.is_empty() {
        return Err(ConfigError::new(
            format!("{key}.upstreams"),
            "at least one upstream URL is needed",
        ));
    }
    let upstreams = r
        .upstreams
        .iter()
        .enumerate()
        .map(|(j, u)| upstream_uri(&format!("{key}.upstreams[{j}]"), u))
        .collect::<Result<Vec<_>, _>>()?;
    let policy = match r.policy.as_str() {
        "public" => Policy::Public,
        "authenticated" => Policy::Authenticated,
        "roles" => {
            if r.roles.is_empty() {
                return Err(ConfigError::new(
                    format!("{key}.roles"),
                    "policy = \"roles\" needs at least one role",
                ));
            }
            Policy::Roles(r.roles.clone())
        }
        "jwt" => Policy::Jwt,
        other => {
            return Err(ConfigError::new(
                format!("{key}.policy"),
                format!("unknown policy \"{other}\" (expected public, authenticated, roles or jwt)"),
            ));
        }
    };
    if !r.roles.is_empty() && !matches!(policy, Policy::Roles(_)) {
        return Err(ConfigError::new(
            format!("{key}.roles"),
            "only used with policy = \"roles\"",
        ));
    }
    let max_body = r
        .max_body
        .bytes()
        .map_err(|e| ConfigError::new(format!("{key}.max_body"), e))?;
    let upstream_tls = tls::client_config(r.upstream_ca.as_deref().map(|p| resolve(base, p)).as_deref())
        .map_err(|e| ConfigError::new(format!("{key}.upstream_ca"), e))?;
    let upgrades = upgrades(&format!("{key}.upgrades"), &r.upgrades)?;
    Ok(RouteConfig {
        name: r.name,
        host,
        path_prefix,
        upstreams,
        policy,
        strip_prefix: r.strip_prefix,
        forward_credentials: r.forward_credentials,
        preserve_host: r.preserve_host,
        upgrades,
        max_body,
        timeout: positive(&format!("{key}.timeout"), &r.timeout)?,
        connect_timeout: positive(&format!("{key}.connect_timeout"), &r.connect_timeout)?,
        cooldown: duration(&format!("{key}.cooldown"), &r.cooldown)?,
        upstream_tls: Arc::new(upstream_tls),
    })
}

/// A route's `upgrades`: protocol tokens (`websocket`, `foo/2`), lower-cased. `h2c` is refused:
/// after its 101 every request on the connection would be HTTP/2 the gateway never sees.
fn upgrades(key: &str, list: &[String]) -> Result<Vec<String>, ConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, p)| {
            let token = |t: &str| !t.is_empty() && t.bytes().all(crate::proxy::framing::is_tchar);
            let ok = match p.split_once('/') {
                Some((name, version)) => token(name) && token(version),
                None => token(p),
            };
            let lower = p.to_ascii_lowercase();
            if !ok {
                Err(ConfigError::new(
                    format!("{key}[{i}]"),
                    format!("\"{p}\" is not an Upgrade protocol name (a token, maybe /version)"),
                ))
            } else if lower == "h2c" || lower.starts_with("http/") {
                Err(ConfigError::new(
                    format!("{key}[{i}]"),
                    format!("\"{p}\" cannot be tunnelled: the gateway would not see the requests inside it"),
                ))
            } else {
                Ok(lower)
            }
        })
        .collect()
}

fn resolve(base: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn socket_addr(key: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse().map_err(|_| {
        ConfigError::new(
            key,
            format!("invalid address \"{text}\" (expected IP:port, e.g. 127.0.0.1:8443 or [::1]:8443)"),
        )
    })
}

fn cidr(key: &str, text: &str) -> Result<IpNet, ConfigError> {
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net);
    }
    text.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
        ConfigError::new(
            key,
            format!("invalid IP or CIDR \"{text}\" (e.g. 10.0.0.0/8 or 192.0.2.1)"),
        )
    })
}

fn duration(key: &str, text: &str) -> Result<Duration, ConfigError> {
    parse_duration(text).map_err(|e| ConfigError::new(key, e))
}

fn positive(key: &str, text: &str) -> Result<Duration, ConfigError> {
    let d = duration(key, text)?;
    if d.is_zero() {
        return Err(ConfigError::new(key, "must be greater than zero"));
    }
    Ok(d)
}

fn header_name(key: &str, text: &str) -> Result<HeaderName, ConfigError> {
    HeaderName::from_bytes(text.as_bytes())
        .map_err(|_| ConfigError::new(key, format!("invalid header name \"{text}\"")))
}

fn host_pattern(key: &str, text: &str) -> Result<String, ConfigError> {
    let host = text.to_ascii_lowercase();
    let bare = host.strip_prefix("*.").unwrap_or(&host);
    let valid = !bare.is_empty()
        && bare.len() <= 253
        && bare.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !valid {
        return Err(ConfigError::new(
            key,
            format!(
                "invalid host \"{text}\" (expected a name like app.example.com or *.example.com, no port)"
            ),
        ));
    }
    Ok(host)
}

fn upstream_uri(key: &str, text: &str) -> Result<http::Uri, ConfigError> {
    let bad = |why: &str| ConfigError::new(key, format!("invalid URL \"{text}\": {why}"));
    let uri: http::Uri = text.parse().map_err(|_| bad("not a URL"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(bad("expected http:// or https://")),
    }
    if uri.authority().is_none_or(|a| a.host().is_empty()) {
        return Err(bad("no host"));
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(bad("credentials in the URL are not supported"));
    }
    if uri
        .path_and_query()
        .is_some_and(|pq| pq.as_str() != "/" && !pq.as_str().is_empty())
    {
        return Err(bad(
            "must not have a path or query (use the route's strip_prefix to rewrite paths)",
        ));
    }
    Ok(uri)
}
