//! The session service's own thread: opens the configured store (and, for redis, its client
//! tasks and the revocation subscription live on this thread's runtime), resolves the token
//! keys, then runs the housekeeping — the expiry sweep (memory, embedded) and applying
//! revocations heard from other instances (redis) — until the gateway stops.

use super::backend::Store;
use super::cache::{CacheSettings, SessionSettings, Sessions};
use super::embedded::EmbeddedStore;
use super::memory::MemoryStore;
use super::redis::RedisStore;
use super::token::{TokenKeys, hex, random_bytes};
use crate::config::{Config, StoreConfig};
use crate::metrics::Metrics;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Starts the thread; returns the sessions once the store is open (or the reason it is not).
pub fn start(
    config: &Config,
    cancel: CancellationToken,
    metrics: Arc<Metrics>,
) -> Result<(Arc<Sessions>, JoinHandle<()>), String> {
    let store_config = config.store.clone();
    let secrets = config.token_secrets.clone();
    let settings = CacheSettings {
        max_entries: config.cache.max_entries,
        ttl: config.cache.ttl,
        negative_ttl: config.cache.negative_ttl,
    };
    let lifetimes = SessionSettings::from_config(&config.sessions);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("sessions".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("cannot start the session runtime: {e}")));
                    return;
                }
            };
            runtime.block_on(async move {
                let opened = open(&store_config, secrets, settings, lifetimes, &metrics).await;
                let sessions = match opened {
                    Ok(s) => Arc::new(s),
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                if let StoreConfig::Redis { url, prefix, .. } = &store_config {
                    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                    let channel = format!("{prefix}:revoke");
                    if let Err(e) = RedisStore::subscribe(url, channel, tx).await {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                    let follower = sessions.clone();
                    tokio::spawn(async move { follower.follow(rx).await });
                }
                let _ = ready_tx.send(Ok(sessions.clone()));
                let mut sweep = tokio::time::interval(SWEEP_EVERY);
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = sweep.tick() => {
                            match sessions.store.sweep(super::now()).await {
                                Ok(0) => {}
                                Ok(n) => tracing::debug!(removed = n, "expired sessions swept"),
                                Err(e) => tracing::warn!(error = %e, "session sweep failed"),
                            }
                        }
                    }
                }
            });
        })
        .map_err(|e| format!("cannot start the session thread: {e}"))?;
    match ready_rx.recv() {
        Ok(Ok(sessions)) => Ok((sessions, handle)),
        Ok(Err(e)) => {
            let _ = handle.join();
            Err(e)
        }
        Err(_) => Err("the session thread stopped while starting".into()),
    }
}

async fn open(
    config: &StoreConfig,
    secrets: Vec<Vec<u8>>,
    settings: CacheSettings,
    lifetimes: SessionSettings,
    metrics: &Metrics,
) -> Result<Sessions, String> {
    let (store, secrets) = match config {
        StoreConfig::Memory => (Store::Memory(MemoryStore::new()), or_random(secrets)?),
        StoreConfig::Embedded { path } => {
            let store = EmbeddedStore::open(path).map_err(|e| format!("store.path: {e}"))?;
            let secrets = if secrets.is_empty() {
                vec![kept_secret(path)?]
            } else {
                secrets
            };
            (Store::Embedded(store), secrets)
        }
        StoreConfig::Redis {
            url,
            prefix,
            replicas,
        } => {
            let store = RedisStore::connect(url, prefix, Duration::from_secs(2), *replicas)
                .await
                .map_err(|e| format!("store.url: {e}"))?;
            (Store::Redis(store), secrets)
        }
    };
    Ok(Sessions::new(
        store,
        TokenKeys::new(&secrets),
        settings,
        lifetimes,
        metrics,
    ))
}

fn or_random(secrets: Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>, String> {
    if !secrets.is_empty() {
        return Ok(secrets);
    }
    let mut key = [0u8; 32];
    random_bytes(&mut key).map_err(|e| e.to_string())?;
    Ok(vec![hex(&key).into_bytes()])
}

/// The embedded store's token key, kept beside the store file (`<path>.key`, mode 0600) so
/// tokens survive restarts; made on first start.
fn kept_secret(store_path: &Path) -> Result<Vec<u8>, String> {
    let mut name = store_path.as_os_str().to_owned();
    name.push(".key");
    let path = std::path::PathBuf::from(name);
    match std::fs::read_to_string(&path) {
        Ok(text) if text.trim().len() >= 32 => return Ok(text.trim().as_bytes().to_vec()),
        Ok(_) => {
            return Err(format!(
                "{}: token key is too short; delete it to make a new one",
                path.display()
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    }
    let mut key = [0u8; 32];
    random_bytes(&mut key).map_err(|e| e.to_string())?;
    let text = hex(&key);
    write_private(&path, &text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    tracing::info!(path = %path.display(), "generated the token key for the embedded store");
    Ok(text.into_bytes())
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}
