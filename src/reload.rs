//! Reloading the configuration without dropping traffic (SIGHUP, `POST /admin/reload`).
//!
//! The new file is checked completely first; if it fails, the reason is logged and returned and
//! the running configuration keeps serving. If it passes, one atomic store swaps in a new
//! `GatewayState` (routes, upstreams, policies, users and passwords, identity headers, cookie name,
//! assertion key, JWT issuers, trusted proxies, mode, API prefix) and, with TLS, the TLS config
//! the next handshake uses (certificates). Requests in flight finish on the configuration they
//! started with; open connections stay open and take the new one from their next request.
//!
//! Listener addresses, worker count, the admin listener, the store, the cache and session
//! lifetimes are fixed for the life of the process: a change to them is reported (log and
//! answer) as needing a restart, and the rest of the new file is applied.

use crate::config::Config;
use crate::gateway::{Current, GatewayState, ProcessState};
use crate::metrics::Metrics;
use arc_swap::ArcSwap;
use std::path::PathBuf;
use std::sync::Arc;

/// The settings only a restart changes, as text to compare and to name.
fn fixed(config: &Config) -> Vec<(&'static str, String)> {
    vec![
        (
            "server.listen",
            format!("{:?}", config.server.tls.as_ref().map(|(a, _)| a)),
        ),
        ("server.http_listen", format!("{:?}", config.server.http_listen)),
        ("server.workers", config.server.workers.to_string()),
        (
            "server.http1_fast_path",
            config.server.http1_fast_path.to_string(),
        ),
        (
            "server (timeouts, header limit)",
            format!(
                "{:?} {:?} {} {:?}",
                config.server.header_read_timeout,
                config.server.idle_timeout,
                config.server.max_header_bytes,
                config.server.shutdown_grace
            ),
        ),
        (
            "admin",
            format!("{} {:?}", config.admin.listen, config.admin.allow_from),
        ),
        (
            "admin.token",
            format!("{:?}", config.admin.token.as_deref().map(fingerprint)),
        ),
        ("store", format!("{:?}", config.store)),
        ("cache", format!("{:?}", config.cache)),
        ("sessions", format!("{:?}", config.sessions)),
        (
            "tokens.secrets",
            format!(
                "{:?}",
                config
                    .token_secrets
                    .iter()
                    .map(|s| fingerprint_bytes(s))
                    .collect::<Vec<_>>()
            ),
        ),
        (
            "demo",
            format!("{:?}", config.demo.as_ref().map(|d| d.whoami_listen)),
        ),
    ]
}

/// Secrets are compared by a digest, never kept or logged as they are.
fn fingerprint(secret: &str) -> String {
    fingerprint_bytes(secret.as_bytes())
}

fn fingerprint_bytes(secret: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret);
    crate::session::token::hex(&d.as_ref()[..8])
}

pub struct Reloader {
    current: Current,
    process: ProcessState,
    tls: Option<Arc<ArcSwap<rustls::ServerConfig>>>,
    source: Option<PathBuf>,
    started_with: Vec<(&'static str, String)>,
    /// One reload at a time, from reading the file to the last revocation.
    lock: tokio::sync::Mutex<()>,
}

/// What a successful reload did.
#[derive(Debug)]
pub struct Reloaded {
    pub routes: usize,
    pub users: usize,
    /// Keys whose change only a restart applies.
    pub needs_restart: Vec<&'static str>,
    /// Users removed from the configuration or whose id, uuid or roles changed: their sessions
    /// were ended (they carried the old identity), so they log in again as configured now.
    pub users_logged_out: Vec<String>,
}

impl Reloader {
    pub fn new(
        config: &Config,
        current: Current,
        process: ProcessState,
        tls: Option<Arc<ArcSwap<rustls::ServerConfig>>>,
    ) -> Reloader {
        Reloader {
            current,
            process,
            tls,
            source: config.source.clone(),
            started_with: fixed(config),
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The shared state requests start on now.
    pub fn current(&self) -> Arc<GatewayState> {
        self.current.load_full()
    }

    /// Re-reads the file the gateway was started with and applies it.
    pub async fn reload(&self) -> Result<Reloaded, String> {
        let _one_at_a_time = self.lock.lock().await;
        let outcome = match self.source.clone() {
            None => Err("the gateway was not started from a file; nothing to reload".to_string()),
            // Reading files and building TLS and key material is blocking work.
            Some(path) => match tokio::task::spawn_blocking(move || {
                Config::load(&path).map_err(|e| format!("{}: {e}", path.display()))
            })
            .await
            {
                Ok(Ok(config)) => self.apply(&config).await,
                Ok(Err(e)) => Err(e),
                Err(e) => Err(format!("the reload task failed: {e}")),
            },
        };
        let metrics = &self.process.metrics;
        match &outcome {
            Ok(done) => {
                Metrics::count(&metrics.reloads, "succeeded");
                tracing::info!(
                    routes = done.routes,
                    users = done.users,
                    needs_restart = ?done.needs_restart,
                    users_logged_out = ?done.users_logged_out,
                    "configuration reloaded"
                );
            }
            Err(e) => {
                Metrics::count(&metrics.reloads, "failed");
                tracing::error!(error = %e, "configuration reload refused; the running configuration stays");
            }
        }
        outcome
    }

    /// Swaps in a checked configuration, then ends the sessions of users it removed or changed.
    async fn apply(&self, config: &Config) -> Result<Reloaded, String> {
        let shared = GatewayState::new(config, &self.process)?;
        let before = self.current.load_full();
        let users_logged_out: Vec<String> = before
            .api
            .users()
            .filter(|old| shared.api.user(&old.username) != Some(*old))
            .map(|old| old.username.clone())
            .collect();
        let needs_restart: Vec<&'static str> = fixed(config)
            .into_iter()
            .zip(&self.started_with)
            .filter(|(new, old)| new.1 != old.1)
            .map(|(new, _)| new.0)
            .collect();
        for key in &needs_restart {
            tracing::warn!(key, "changed in the file; takes effect after a restart");
        }
        if let (Some(swap), Some((_, tls))) = (&self.tls, &config.server.tls) {
            swap.store(tls.clone());
        }
        self.current.store(Arc::new(shared));
        self.process.sessions.admit(crate::oidc::admission(&config.oidc));
        crate::access_log::set_buffer(config.log.buffer);
        for username in &users_logged_out {
            if let Err(e) = self.process.sessions.revoke_user(username).await {
                // The configuration is applied; the old sessions end with their lifetime or
                // the next successful revocation.
                tracing::warn!(user = %username, error = %e, "reload: cannot end the sessions of a changed user");
            }
        }
        Ok(Reloaded {
            routes: config.routes.len(),
            users: config.users.len(),
            needs_restart,
            users_logged_out,
        })
    }
}
