//! The config file as written: serde structs that mirror the TOML, `deny_unknown_fields` on
//! every table, defaults filled in. Nothing here is checked beyond its type; the `validate`
//! module beside this one turns these into the `Config` the gateway runs on (this module
//! depends on nothing of it).

use super::units::RawSize;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default = "default_mode")]
    pub mode: String,
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub headers: RawHeaders,
    #[serde(default)]
    pub log: RawLog,
    pub demo: Option<RawDemo>,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub cache: RawCache,
    #[serde(default)]
    pub sessions: RawSessions,
    #[serde(default)]
    pub api: RawApi,
    #[serde(default)]
    pub ui: RawUi,
    #[serde(default)]
    pub cookie: RawCookie,
    #[serde(default)]
    pub tokens: RawTokens,
    #[serde(default)]
    pub users: Vec<RawUser>,
    pub users_file: Option<String>,
    pub assertion: Option<RawAssertion>,
    #[serde(default)]
    pub login: RawLogin,
    #[serde(default)]
    pub jwt_issuers: Vec<RawJwtIssuer>,
    #[serde(default)]
    pub oidc: Vec<RawOidc>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStore {
    pub kind: String,
    pub path: String,
    pub url: Option<String>,
    pub prefix: String,
    /// Replicas that must hold a write before it is acknowledged (redis).
    pub replicas: Option<u32>,
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            kind: "embedded".into(),
            path: "data/sessions.redb".into(),
            url: None,
            prefix: "portcullis".into(),
            replicas: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCache {
    pub max_entries: u64,
    pub ttl: String,
    pub negative_ttl: String,
}

impl Default for RawCache {
    fn default() -> Self {
        RawCache {
            max_entries: 1_000_000,
            ttl: "30s".into(),
            negative_ttl: "5s".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSessions {
    pub ttl: String,
    pub pending_ttl: String,
    pub reissue_ttl: String,
    pub reissue_grace: String,
    pub idle_ttl: Option<String>,
}

impl Default for RawSessions {
    fn default() -> Self {
        RawSessions {
            ttl: "14d".into(),
            pending_ttl: "10m".into(),
            reissue_ttl: "14d".into(),
            reissue_grace: "3s".into(),
            idle_ttl: None,
        }
    }
}

fn default_mode() -> String {
    "multi-user".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCookie {
    pub name: String,
}

impl Default for RawCookie {
    fn default() -> Self {
        RawCookie {
            name: "__Host-portcullis".into(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTokens {
    pub secrets: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLogin {
    pub per_user: u32,
    pub per_address: u32,
    pub window: String,
}

impl Default for RawLogin {
    fn default() -> Self {
        RawLogin {
            per_user: 10,
            per_address: 50,
            window: "1m".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAssertion {
    #[serde(default = "default_assertion_algorithm")]
    pub algorithm: String,
    pub key: String,
    #[serde(default = "default_assertion_ttl")]
    pub ttl: String,
    #[serde(default = "default_assertion_issuer")]
    pub issuer: String,
}

fn default_assertion_algorithm() -> String {
    "EdDSA".into()
}
fn default_assertion_ttl() -> String {
    "60s".into()
}
fn default_assertion_issuer() -> String {
    "portcullis".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwtIssuer {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<String>,
    #[serde(default)]
    pub keys: Vec<String>,
    pub jwks_file: Option<String>,
    #[serde(default = "default_leeway")]
    pub leeway: String,
}

fn default_leeway() -> String {
    "30s".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub username: String,
    pub password_hash: Option<String>,
    pub user_id: u64,
    pub user_uuid: String,
    #[serde(default)]
    pub roles: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    pub listen: Option<String>,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    pub http_listen: Option<String>,
    pub trusted_proxies: Vec<String>,
    pub workers: Option<usize>,
    pub header_read_timeout: String,
    pub idle_timeout: String,
    pub max_header_bytes: RawSize,
    pub shutdown_grace: String,
    pub http1_fast_path: bool,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: None,
            tls_cert: None,
            tls_key: None,
            http_listen: None,
            trusted_proxies: Vec::new(),
            workers: None,
            header_read_timeout: "10s".into(),
            idle_timeout: "60s".into(),
            max_header_bytes: RawSize::Text("32KiB".into()),
            shutdown_grace: "10s".into(),
            http1_fast_path: true,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    pub listen: String,
    pub token: Option<String>,
    pub token_env: Option<String>,
    pub allow_from: Vec<String>,
}

impl Default for RawAdmin {
    fn default() -> Self {
        RawAdmin {
            listen: "127.0.0.1:9901".into(),
            token: None,
            token_env: None,
            allow_from: Vec::new(),
        }
    }
}

/// Names of the identity headers the gateway injects (and strips from clients).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHeaders {
    pub user: String,
    pub user_id: String,
    pub user_uuid: String,
    pub roles: String,
    pub session_id: String,
    pub session_expires: String,
    pub jwt: String,
}

impl Default for RawHeaders {
    fn default() -> Self {
        RawHeaders {
            user: "X-Auth-User".into(),
            user_id: "X-Auth-User-Id".into(),
            user_uuid: "X-Auth-User-Uuid".into(),
            roles: "X-Auth-Roles".into(),
            session_id: "X-Auth-Session-Id".into(),
            session_expires: "X-Auth-Session-Expires".into(),
            jwt: "X-Auth-Jwt".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    pub access: bool,
    pub buffer: Option<RawSize>,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            access: true,
            buffer: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDemo {
    pub whoami_listen: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: String,
    pub host: Option<String>,
    #[serde(default = "default_prefix")]
    pub path_prefix: String,
    pub upstreams: Vec<String>,
    #[serde(default = "default_policy")]
    pub policy: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub strip_prefix: bool,
    #[serde(default)]
    pub forward_credentials: bool,
    #[serde(default = "default_preserve_host")]
    pub preserve_host: bool,
    #[serde(default = "default_max_body")]
    pub max_body: RawSize,
    #[serde(default = "default_timeout")]
    pub timeout: String,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: String,
    #[serde(default = "default_cooldown")]
    pub cooldown: String,
    pub upstream_ca: Option<String>,
    #[serde(default = "default_upgrades")]
    pub upgrades: Vec<String>,
}

fn default_upgrades() -> Vec<String> {
    vec!["websocket".into()]
}

fn default_prefix() -> String {
    "/".into()
}
fn default_policy() -> String {
    "authenticated".into()
}
fn default_preserve_host() -> bool {
    true
}
fn default_max_body() -> RawSize {
    RawSize::Text("10MiB".into())
}
fn default_timeout() -> String {
    "60s".into()
}
fn default_connect_timeout() -> String {
    "5s".into()
}
fn default_cooldown() -> String {
    "10s".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUi {
    /// The site's name on every page the gateway shows.
    pub title: String,
}

impl Default for RawUi {
    fn default() -> Self {
        RawUi {
            title: "portcullis".into(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawApi {
    /// Where the session API is mounted ("" = at the root).
    pub prefix: String,
}

/// One `[[oidc]]` provider (SPEC §4a). `display_name`, `redirect_uri`, `ca_file` and
/// `algorithms` go beyond SPEC (README: "Signing in through an identity provider").
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOidc {
    pub name: String,
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub client_secret_env: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub username_claim: Option<String>,
    pub roles_claim: Option<String>,
    pub allowed_roles: Option<Vec<String>>,
    pub token_auth: Option<String>,
    pub display_name: Option<String>,
    pub redirect_uri: Option<String>,
    pub ca_file: Option<String>,
    pub algorithms: Option<Vec<String>>,
}
