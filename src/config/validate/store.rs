//! Where sessions live and for how long: `[store]` (memory, embedded or redis), `[cache]` and
//! `[sessions]`.

use super::parse::{duration, positive, resolve};
use crate::config::model::{CacheConfig, ConfigError, SessionsConfig, StoreConfig};
use crate::config::raw::{RawCache, RawSessions, RawStore, RawTokens};
use std::path::Path;
use std::time::Duration;

/// `tokens` only for its check that redis has shared secrets (`tokens::secrets` checks them).
pub(super) fn store(store: RawStore, tokens: &RawTokens, base: &Path) -> Result<StoreConfig, ConfigError> {
    Ok(match store.kind.as_str() {
        "memory" => StoreConfig::Memory,
        "embedded" => StoreConfig::Embedded {
            path: resolve(base, &store.path),
        },
        "redis" => {
            let Some(url) = store.url else {
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
            let replicas = store
                .replicas
                .unwrap_or_else(|| crate::session::redis::RedisStore::default_replicas(&url));
            if tokens.secrets.is_empty() {
                return Err(ConfigError::new(
                    "tokens.secrets",
                    "required with the redis store: every instance must tag and check tokens with the same keys",
                ));
            }
            let prefix = store.prefix;
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
    })
}

pub(super) fn cache(cache: &RawCache) -> Result<CacheConfig, ConfigError> {
    if cache.max_entries == 0 {
        return Err(ConfigError::new("cache.max_entries", "must be at least 1"));
    }
    Ok(CacheConfig {
        max_entries: cache.max_entries,
        ttl: positive("cache.ttl", &cache.ttl)?,
        negative_ttl: duration("cache.negative_ttl", &cache.negative_ttl)?,
    })
}

pub(super) fn sessions(raw: &RawSessions) -> Result<SessionsConfig, ConfigError> {
    let sessions = SessionsConfig {
        ttl: positive("sessions.ttl", &raw.ttl)?,
        pending_ttl: positive("sessions.pending_ttl", &raw.pending_ttl)?,
        reissue_ttl: positive("sessions.reissue_ttl", &raw.reissue_ttl)?,
        reissue_grace: duration("sessions.reissue_grace", &raw.reissue_grace)?,
        idle_ttl: match &raw.idle_ttl {
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
    Ok(sessions)
}
