//! Sessions: the model (`Session`, `User`), the token format (`token`), the stores (memory,
//! embedded, redis) over what they share (`store`) and behind one enum (`backend`), and the
//! cache in front of them (`cache`).

pub mod backend;
pub mod cache;
pub mod embedded;
pub mod lifecycle;
pub mod memory;
pub mod redis;
pub mod redis_shards;
pub mod redis_url;
pub mod service;
pub mod store;
pub mod token;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// Unix seconds now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A user as sessions carry it (and as upstreams receive it in headers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: u64,
    pub username: String,
    pub uuid: String,
    #[serde(default)]
    pub roles: Vec<String>,
    /// The `[[oidc]]` provider that signed this user in; `None` for a user of the config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
}

impl User {
    /// What a user's sessions are listed and ended by (`list_user`, `delete_user`): the
    /// username for a user of the config, `oidc:<provider>:<sub>` for one a provider signed in.
    /// No configured username has a `:`, so a provider's "alice" never shares sessions with
    /// the config's, and a back-channel logout (which names `sub`) finds exactly its own.
    pub fn index_key(&self) -> std::borrow::Cow<'_, str> {
        match &self.provider {
            None => std::borrow::Cow::Borrowed(&self.username),
            Some(provider) => std::borrow::Cow::Owned(oidc_key(provider, &self.uuid)),
        }
    }
}

/// The `index_key` of the user `sub` signed in by `provider`.
pub fn oidc_key(provider: &str, sub: &str) -> String {
    format!("oidc:{provider}:{sub}")
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Created without credentials; waits for a browser login (SPEC §2.1).
    #[default]
    Pending,
    Active,
    /// A pending session the person refused on the device page: it opens nothing, and its
    /// status socket says `denied` (kept until it would have expired).
    Denied,
}

/// A server-side session, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// 32 hex digits; not a secret (logged, injected as X-Auth-Session-Id).
    pub id: String,
    /// SHA-256 of the current token's secret, hex.
    pub secret_hash: String,
    pub state: State,
    /// `None` while pending.
    pub user: Option<User>,
    #[serde(default)]
    pub device_uuid: Option<String>,
    pub created: u64,
    pub last_used: u64,
    /// Absolute end, unix seconds.
    pub expires: u64,
    /// With an idle limit, the session ends this many seconds after `last_used`.
    #[serde(default)]
    pub idle_ttl: Option<u64>,
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub user_agent: Option<String>,
    /// Room for attributes an operator or a later feature attaches.
    #[serde(default)]
    pub extra: BTreeMap<String, serde_json::Value>,
    /// Bumped by every change; `Store::swap` writes only over the version it read, so
    /// concurrent changes (two reissues, two logins for one code) cannot both win.
    #[serde(default)]
    pub version: u64,
    /// `created` in milliseconds: orders sessions made within one second (device replacement).
    #[serde(default)]
    pub created_ms: u64,
    /// A pending session's code, shown on the device and on the login page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_code: Option<String>,
    /// SHA-256 of the current single-use reissue token's secret, hex (SPEC §2.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reissue_hash: Option<String>,
    /// When the current reissue token stops working, unix seconds.
    #[serde(default)]
    pub reissue_expires: u64,
    /// The reissue token used last and when (unix milliseconds): presenting it again within
    /// the grace window is a race, later it is theft.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_reissue: Option<UsedReissue>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsedReissue {
    pub hash: String,
    pub used_at_ms: u64,
}

/// When a session ends: its absolute expiry, or earlier by its idle limit.
pub fn ends_at(expires: u64, last_used: u64, idle_ttl: Option<u64>) -> u64 {
    match idle_ttl {
        Some(idle) => expires.min(last_used.saturating_add(idle)),
        None => expires,
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Session {
    /// When the session ends: the absolute expiry, or earlier by the idle limit.
    pub fn ends_at(&self) -> u64 {
        ends_at(self.expires, self.last_used, self.idle_ttl)
    }

    pub fn is_live(&self, now: u64) -> bool {
        now < self.ends_at()
    }

    /// Live and logged in.
    pub fn is_active(&self, now: u64) -> bool {
        self.state == State::Active && self.user.is_some() && self.is_live(now)
    }
}

/// The fields of a session an operator sees (never its secret hash).
pub fn session_json(s: &Session) -> serde_json::Value {
    serde_json::json!({
        "id": s.id,
        "username": s.user.as_ref().map(|u| u.username.as_str()),
        "state": s.state,
        "device_uuid": s.device_uuid,
        "created": s.created,
        "last_used": s.last_used,
        "expires": s.ends_at(),
        "ip": s.ip,
        "user_agent": s.user_agent,
    })
}
