//! The `redis` store, for any number of gateway instances sharing sessions (Redis Cluster too).
//!
//! Key layout (every session key carries its id as a hash tag, so a session's operations stay
//! in one slot):
//! - `<prefix>:s:{<id>}` — the session as JSON, expiring (`EXAT`) when the session ends;
//! - `<prefix>:u:{<username>}` — sorted set of the user's session ids scored by their end,
//!   pruned of ended ones on every write, expiring with the last of them;
//! - `<prefix>:revoke` — pub/sub channel carrying ids of revoked sessions to every instance.
//!
//! Deployments (`redis_url`): one server, Redis Cluster (one seed is enough), Sentinel.
//! Availability rules (SPEC §3):
//! - Commands fail fast where the client has no connection, so one master down refuses only
//!   the sessions whose slots it served (no all-or-nothing readiness gate); a lookup gives up
//!   after `LOOKUP_TIMEOUT`, so a node that died unnoticed stalls nothing for long.
//! - The client reconnects by itself, through every node it has learned (cluster) or the
//!   sentinels' current master (Sentinel): no restart is ever needed.
//! - With replicas (`store.replicas`, default 1 for Cluster and Sentinel), a write is
//!   acknowledged only once that many replicas hold it (`WAIT`), so a failover loses no
//!   acknowledged session and brings back no revoked one.

use super::Session;
use super::cache::Revocation;
use super::redis_shards::{self, Shards};
use super::redis_url::{self, Deployment};
use super::store::{StoreError, decode, encode};
use fred::prelude::*;
use fred::types::{Expiration, ExpireOptions};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// How long a session lookup (and `/readyz`'s ping) may wait on Redis.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_millis(250);
/// How long a write waits for its replicas.
const REPLICA_WAIT_MS: i64 = 500;

/// Where commands go: one client (a server, or Sentinel's master), or a master's own client
/// per slot (Cluster, `redis_shards`).
#[derive(Clone)]
enum Backend {
    Plain(Client),
    Sharded(Arc<Shards>),
}

#[derive(Clone)]
pub struct RedisStore {
    backend: Backend,
    prefix: String,
    /// Replicas that must hold a write before it is acknowledged (0: none).
    replicas: i64,
}

/// The fred config for a URL, with the gateway's timeouts and reconnect policy.
fn builder(url: &str) -> Result<Builder, String> {
    let (config, _) = redis_url::config(url)?;
    Ok(redis_url::client_builder(config))
}

/// Options of a lookup: bounded by `LOOKUP_TIMEOUT`.
fn quick() -> Options {
    Options {
        timeout: Some(LOOKUP_TIMEOUT),
        ..Options::default()
    }
}

impl RedisStore {
    /// Starts the client (on the caller's runtime) and waits up to `wait` for a first
    /// connection; if Redis is down it keeps trying in the background. `replicas`: see
    /// `default_replicas`.
    pub async fn connect(
        url: &str,
        prefix: &str,
        wait: Duration,
        replicas: u32,
    ) -> Result<RedisStore, String> {
        let (config, kind) = redis_url::config(url)?;
        let backend = if kind == Deployment::Cluster {
            Backend::Sharded(Shards::connect(config, wait).await?)
        } else {
            let client = redis_url::client_builder(config)
                .build()
                .map_err(|e| format!("redis client: {e}"))?;
            client.connect();
            if tokio::time::timeout(wait, client.wait_for_connect())
                .await
                .is_err()
            {
                tracing::warn!("redis is not reachable yet; the gateway starts and keeps trying");
            }
            Backend::Plain(client)
        };
        Ok(RedisStore {
            backend,
            prefix: prefix.to_string(),
            replicas: i64::from(replicas),
        })
    }

    /// `store.replicas` when the config leaves it out: 1 where a failover may promote a
    /// replica (Cluster, Sentinel), else 0.
    pub fn default_replicas(url: &str) -> u32 {
        u32::from(redis_url::deployment(url).is_some_and(Deployment::replicated))
    }

    /// The client that serves `key`.
    async fn node(&self, key: &str) -> Result<Client, StoreError> {
        match &self.backend {
            Backend::Plain(client) => Ok(client.clone()),
            Backend::Sharded(shards) => shards.client_for(key).await,
        }
    }

    /// A failed command: the cluster's topology is re-learned in the background (a node may
    /// have died), and the caller hears that the store is unavailable.
    fn failed(&self, e: Error) -> StoreError {
        if let Backend::Sharded(shards) = &self.backend {
            shards.refresh();
        }
        StoreError::Unavailable(e.to_string())
    }

    /// Runs `command` on the client of `key`'s node. A moved slot is re-learned and the command
    /// sent once more (it was refused, so nothing ran twice).
    async fn on<T, F, Fut>(&self, key: &str, command: F) -> Result<T, StoreError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        match command(self.node(key).await?).await {
            Ok(v) => Ok(v),
            Err(e) => match &self.backend {
                Backend::Sharded(shards) if redis_shards::is_redirect(&e) => {
                    shards.resync().await;
                    command(self.node(key).await?).await.map_err(|e| self.failed(e))
                }
                _ => Err(self.failed(e)),
            },
        }
    }

    /// Waits until `replicas` replicas hold every write made so far on `key`'s node (the
    /// same connection as the write: `WAIT` counts that connection's writes).
    async fn replicated(&self, key: &str) -> Result<(), StoreError> {
        if self.replicas == 0 {
            return Ok(());
        }
        let replicas = self.replicas;
        let options = Options {
            timeout: Some(Duration::from_millis(REPLICA_WAIT_MS as u64 + 500)),
            ..Options::default()
        };
        let acked: i64 = self
            .on(key, |c| {
                let options = options.clone();
                async move { c.with_options(&options).wait(replicas, REPLICA_WAIT_MS).await }
            })
            .await?;
        if acked < replicas {
            return Err(StoreError::Unavailable(format!(
                "a write reached {acked} of the {replicas} replicas store.replicas asks for"
            )));
        }
        Ok(())
    }

    fn session_key(&self, id: &str) -> String {
        format!("{}:s:{{{id}}}", self.prefix)
    }

    fn user_key(&self, username: &str) -> String {
        format!("{}:u:{{{username}}}", self.prefix)
    }

    pub fn revoke_channel(&self) -> String {
        format!("{}:revoke", self.prefix)
    }

    pub async fn get(&self, id: &str) -> Result<Option<Session>, StoreError> {
        let key = self.session_key(id);
        let raw: Option<Vec<u8>> = self
            .on(&key, |c| {
                let key = key.clone();
                async move { c.with_options(&quick()).get(key).await }
            })
            .await?;
        match raw {
            None => Ok(None),
            Some(bytes) => {
                let s = decode(&bytes)?;
                Ok(s.is_live(super::now()).then_some(s))
            }
        }
    }

    pub async fn put(&self, session: &Session) -> Result<(), StoreError> {
        let bytes = bytes::Bytes::from(encode(session)?);
        let end = session.ends_at() as i64;
        let key = self.session_key(&session.id);
        self.on(&key, |c| {
            let (key, bytes) = (key.clone(), bytes.clone());
            async move {
                c.set::<(), _, _>(key, bytes, Some(Expiration::EXAT(end)), None, false)
                    .await
            }
        })
        .await?;
        self.replicated(&key).await?;
        self.index(session).await
    }

    /// Compare-and-set in one Lua script (atomic on the server; one key, so Cluster-safe).
    /// The per-user index is updated afterwards: a session never changes user, so only its
    /// score (end) moves, and a lost race there costs at most a stale score.
    pub async fn swap(&self, session: &Session, expected: Option<u64>) -> Result<bool, StoreError> {
        const SWAP: &str = r#"
local current = redis.call('GET', KEYS[1])
if current then
  local ok, decoded = pcall(cjson.decode, current)
  if not ok or ARGV[1] == '' or tostring(decoded.version or 0) ~= ARGV[1] then return 0 end
elseif ARGV[1] ~= '' then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'EXAT', ARGV[3])
return 1
"#;
        let bytes = bytes::Bytes::from(encode(session)?);
        let expected = expected.map(|v| v.to_string()).unwrap_or_default();
        let end = session.ends_at().to_string();
        let key = self.session_key(&session.id);
        let written: i64 = self
            .on(&key, |c| {
                let args = vec![
                    Value::from(expected.clone()),
                    Value::Bytes(bytes.clone()),
                    Value::from(end.clone()),
                ];
                let key = key.clone();
                async move { c.eval(SWAP, vec![key], args).await }
            })
            .await?;
        if written == 1 {
            self.replicated(&key).await?;
        }
        // The session itself is written: a failed index update must not make the caller
        // believe otherwise (it would retry, or answer 503 for a change that happened).
        if written == 1
            && let Err(e) = self.index(session).await
        {
            tracing::warn!(session = %session.id, error = %e, "redis: per-user index not updated");
        }
        Ok(written == 1)
    }

    /// Keeps `<prefix>:u:{user}` in step with a written session.
    async fn index(&self, session: &Session) -> Result<(), StoreError> {
        let end = session.ends_at() as i64;
        let Some(u) = &session.user else {
            return Ok(());
        };
        let key = self.user_key(&u.username);
        let id = session.id.clone();
        let now = super::now() as f64;
        self.on(&key, |c| {
            let (key, id) = (key.clone(), id.clone());
            async move {
                c.zremrangebyscore::<(), _, _, _>(&key, f64::NEG_INFINITY, now)
                    .await?;
                c.zadd::<(), _, _>(&key, None, None, false, false, (end as f64, id.as_str()))
                    .await?;
                // NX gives a fresh index its expiry; GT moves it later, never earlier.
                c.expire_at::<(), _>(&key, end, Some(ExpireOptions::NX)).await?;
                c.expire_at::<(), _>(&key, end, Some(ExpireOptions::GT)).await
            }
        })
        .await
    }

    pub async fn delete(&self, id: &str) -> Result<Option<Session>, StoreError> {
        let key = self.session_key(id);
        let raw: Option<Vec<u8>> = self
            .on(&key, |c| {
                let key = key.clone();
                async move { c.getdel(key).await }
            })
            .await?;
        let Some(bytes) = raw else { return Ok(None) };
        // The session is gone from its master, and the caller must drop it from every cache
        // now: a replica that has not caught up is logged, not answered as a failure.
        if let Err(e) = self.replicated(&key).await {
            tracing::warn!(session = %id, error = %e, "redis: a revocation is not on a replica yet");
        }
        let s = decode(&bytes)?;
        if let Some(u) = &s.user {
            let user_key = self.user_key(&u.username);
            self.on(&user_key, |c| {
                let (user_key, id) = (user_key.clone(), id.to_string());
                async move { c.zrem::<(), _, _>(user_key, id).await }
            })
            .await?;
        }
        Ok(Some(s))
    }

    pub async fn list_user(&self, username: &str) -> Result<Vec<Session>, StoreError> {
        let now = super::now();
        let key = self.user_key(username);
        let ids: Vec<String> = self
            .on(&key, |c| {
                let key = key.clone();
                async move { c.zrangebyscore(key, now as f64, f64::INFINITY, false, None).await }
            })
            .await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(s) = self.get(&id).await? {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// Whether the store answers (`/readyz`); for a cluster, whether any master does.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Plain(client) => {
                let _: String = client
                    .with_options(&quick())
                    .ping(None)
                    .await
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                Ok(())
            }
            Backend::Sharded(shards) => shards.ping().await,
        }
    }

    /// Tells every instance that a session was revoked (in a cluster, any node broadcasts).
    pub async fn publish_revocation(&self, id: &str) -> Result<(), StoreError> {
        let channel = self.revoke_channel();
        self.on(&channel, |c| {
            let (channel, id) = (channel.clone(), id.to_string());
            async move { c.publish::<i64, _, _>(channel, id).await }
        })
        .await?;
        Ok(())
    }

    /// Subscribes to revocations and forwards them to `tx`: each revoked id, and `All` after
    /// every reconnection (messages may have been lost meanwhile). Runs on the caller's runtime.
    pub async fn subscribe(
        url: &str,
        channel: String,
        tx: tokio::sync::mpsc::UnboundedSender<Revocation>,
    ) -> Result<(), String> {
        let subscriber = builder(url)?
            .build_subscriber_client()
            .map_err(|e| format!("redis subscriber: {e}"))?;
        subscriber.connect();
        let _ = tokio::time::timeout(Duration::from_secs(2), subscriber.wait_for_connect()).await;
        let _resubscribe = subscriber.manage_subscriptions();
        let mut messages = subscriber.message_rx();
        let on_message = tx.clone();
        tokio::spawn(async move {
            while let Ok(m) = messages.recv().await {
                if let Some(id) = m.value.as_str()
                    && on_message.send(Revocation::One(id.to_string())).is_err()
                {
                    return;
                }
            }
        });
        let mut reconnects = subscriber.reconnect_rx();
        if let Err(e) = subscriber.subscribe(channel.clone()).await {
            tracing::warn!(error = %e, "redis subscribe failed; retrying on reconnect");
        }
        tokio::spawn(async move {
            while reconnects.recv().await.is_ok() {
                // Messages sent while we were away are lost: forget everything cached, and make
                // sure the subscription exists (it may never have been made).
                if tx.send(Revocation::All).is_err() {
                    return;
                }
                if let Err(e) = subscriber.subscribe(channel.clone()).await {
                    tracing::warn!(error = %e, "redis resubscribe failed");
                }
            }
        });
        Ok(())
    }
}
