//! What the gateway knows of a provider: its discovery document and key set, fetched on first
//! use (a gateway starts while its provider is down), kept for an hour, and fetched again
//! after that or, for the key set alone, when a token names a key it does not hold (a key
//! rotation), at most once per `JWKS_MIN_INTERVAL` whether it worked or not, since anyone can
//! post a logout token naming a made-up key. ID tokens (from the token endpoint, which only
//! the provider answers) and logout tokens (from anyone) have a budget each, so a flood of the
//! latter cannot make a real sign-in miss a rotated key. A failed discovery is not tried again
//! for `RETRY_AFTER_FAILURE`; while a refresh fails, the last good document is used.

use super::client::{Http, chain};
use crate::config::OidcConfig;
use arc_swap::ArcSwapOption;
use openidconnect::IssuerUrl;
use openidconnect::core::{CoreJsonWebKeySet, CoreProviderMetadata};
use std::sync::Arc;
use std::time::{Duration, Instant};

const REFRESH: Duration = Duration::from_secs(3600);
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);
pub const JWKS_MIN_INTERVAL: Duration = Duration::from_secs(5);

/// A provider's discovery document with its key set, and when each was fetched.
pub struct Discovered {
    pub metadata: CoreProviderMetadata,
    at: Instant,
    jwks_at: Instant,
}

pub struct Discovery {
    current: ArcSwapOption<Discovered>,
    /// Held while fetching (one fetch at a time).
    fetching: tokio::sync::Mutex<Attempts>,
}

/// When fetches were last tried.
#[derive(Default)]
struct Attempts {
    /// The last discovery that failed.
    failed: Option<Instant>,
    /// The last key set fetch asked for by an ID token, and by a logout token.
    keys: [Option<Instant>; 2],
}

/// Who asks for the key set again.
#[derive(Clone, Copy)]
pub enum Asker {
    IdToken = 0,
    LogoutToken = 1,
}

impl Default for Discovery {
    fn default() -> Discovery {
        Discovery::new()
    }
}

impl Discovery {
    pub fn new() -> Discovery {
        Discovery {
            current: ArcSwapOption::empty(),
            fetching: tokio::sync::Mutex::new(Attempts::default()),
        }
    }

    /// The provider's current document, fetched if there is none or it is old.
    pub async fn get(&self, config: &OidcConfig, http: &Http) -> Result<Arc<Discovered>, String> {
        if let Some(d) = self.current.load_full()
            && d.at.elapsed() < REFRESH
        {
            return Ok(d);
        }
        let mut attempts = self.fetching.lock().await;
        let stale = self.current.load_full();
        if let Some(d) = &stale
            && d.at.elapsed() < REFRESH
        {
            return Ok(d.clone());
        }
        if let Some(at) = attempts.failed
            && at.elapsed() < RETRY_AFTER_FAILURE
        {
            return stale.ok_or_else(|| "the last attempt failed moments ago".to_string());
        }
        match discover(config, http).await {
            Ok(metadata) => {
                let now = Instant::now();
                let d = Arc::new(Discovered {
                    metadata,
                    at: now,
                    jwks_at: now,
                });
                self.current.store(Some(d.clone()));
                attempts.failed = None;
                tracing::info!(provider = %config.name, issuer = %config.issuer, "oidc: provider discovered");
                Ok(d)
            }
            Err(e) => {
                attempts.failed = Some(Instant::now());
                tracing::warn!(provider = %config.name, issuer = %config.issuer, error = %e, "oidc: discovery failed");
                match stale {
                    Some(d) => Ok(d),
                    None => Err(e),
                }
            }
        }
    }

    /// After a token named a key `seen` does not hold: the key set fetched again, unless
    /// `asker` had it tried less than `JWKS_MIN_INTERVAL` ago (then `None`). A newer key set
    /// fetched meanwhile by another request is returned as it is.
    pub async fn refetch_keys(
        &self,
        seen: &Discovered,
        asker: Asker,
        config: &OidcConfig,
        http: &Http,
    ) -> Option<Arc<Discovered>> {
        let mut attempts = self.fetching.lock().await;
        let current = self.current.load_full()?;
        if current.jwks_at > seen.jwks_at {
            return Some(current);
        }
        let tried = &mut attempts.keys[asker as usize];
        let last = tried.map_or(current.jwks_at, |t| t.max(current.jwks_at));
        if last.elapsed() < JWKS_MIN_INTERVAL {
            return None;
        }
        *tried = Some(Instant::now());
        match CoreJsonWebKeySet::fetch_async(current.metadata.jwks_uri(), http).await {
            Ok(jwks) => {
                let d = Arc::new(Discovered {
                    metadata: current.metadata.clone().set_jwks(jwks),
                    at: current.at,
                    jwks_at: Instant::now(),
                });
                self.current.store(Some(d.clone()));
                tracing::info!(provider = %config.name, "oidc: key set fetched again (a token named an unknown key)");
                Some(d)
            }
            Err(e) => {
                tracing::warn!(provider = %config.name, error = %chain(&e), "oidc: key set not fetched");
                None
            }
        }
    }
}

async fn discover(config: &OidcConfig, http: &Http) -> Result<CoreProviderMetadata, String> {
    let issuer = IssuerUrl::new(config.issuer.clone()).map_err(|e| format!("issuer: {e}"))?;
    let metadata = CoreProviderMetadata::discover_async(issuer, http)
        .await
        .map_err(|e| chain(&e))?;
    // The secret and the identities travel to and from these: https, as the issuer is
    // (a loopback issuer is for development, and its endpoints may be plain too).
    let issuer_is_loopback = openidconnect::url::Url::parse(&config.issuer)
        .map(|u| crate::config::is_loopback(&u))
        .unwrap_or(false);
    let endpoints = [
        Some(metadata.authorization_endpoint().url()),
        Some(metadata.jwks_uri().url()),
        metadata.token_endpoint().map(|u| u.url()),
        metadata.userinfo_endpoint().map(|u| u.url()),
    ];
    for url in endpoints.into_iter().flatten() {
        if url.scheme() != "https" && !(issuer_is_loopback && crate::config::is_loopback(url)) {
            return Err(format!("the provider's endpoint {url} is not https://"));
        }
    }
    if metadata.token_endpoint().is_none() {
        return Err("the provider's discovery document has no token_endpoint".into());
    }
    Ok(metadata)
}
