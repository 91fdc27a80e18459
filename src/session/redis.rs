//! The `redis` store, for any number of gateway instances sharing sessions (Redis Cluster too).
//!
//! Key layout (every session key carries its id as a hash tag, so a session's operations stay
//! in one slot):
//! - `<prefix>:s:{<id>}` — the session as JSON, expiring (`EXAT`) when the session ends;
//! - `<prefix>:u:{<user key>}` (`User::index_key`) — sorted set of the user's session ids scored by their end,
//!   pruned of ended ones on every write, expiring with the last of them;
//! - `<prefix>:revoke` — pub/sub channel carrying ids of revoked sessions to every instance.
//!
//! Deployments (`redis_url`): one server, Redis Cluster (one seed is enough), Sentinel.
//! Availability rules (SPEC §3):
//! - Commands fail fast where the client has no connection, so one master down refuses only
//!   the sessions whose slots it served (no all-or-nothing readiness gate); a lookup gives up
//!   after `redis_url::LOOKUP_TIMEOUT` in all (a node that died unnoticed stalls nothing for
//!   long).
//! - The clients reconnect by themselves, through every node learned (cluster) or the
//!   sentinels' current master (Sentinel), from their first connection on: no restart is ever
//!   needed, and a gateway may start before Redis does.
//! - Each server gets two connections (`redis_url::Pair`): lookups never wait behind a write.
//! - With replicas (`store.replicas`, default 1 for Cluster and Sentinel), a write is
//!   confirmed only once that many replicas hold it (`WAIT`), so a failover loses no confirmed
//!   session and brings back no revoked one. A write that landed on the master but was not
//!   confirmed in time is `StoreError::NotReplicated` (the caller answers 503 and still drops
//!   the session from every cache); a revocation is never refused for it, and an idle touch
//!   does not wait. `WAIT` counts the writes of its own connection: after a reconnection
//!   between a write and its `WAIT`, that write is not counted (reported as not replicated,
//!   never the reverse).

use super::Session;
use super::redis_shards::{self, Shards};
use super::redis_url::{self, Deployment, LOOKUP_TIMEOUT, Pair, Role, command_options};
use super::store::{Revocation, StoreError, decode, encode};
use fred::clients::WithOptions;
use fred::prelude::*;
use fred::types::{ClusterHash, CustomCommand, Expiration, ExpireOptions};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// How long a write may wait on its master.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a write waits for its replicas.
const REPLICA_WAIT_MS: i64 = 500;

/// Where commands go: one server's clients (a server, or Sentinel's master), or a master's own
/// clients per slot (Cluster, `redis_shards`).
#[derive(Clone)]
enum Backend {
    Plain(Pair),
    Sharded(Arc<Shards>),
}

#[derive(Clone)]
pub struct RedisStore {
    backend: Backend,
    prefix: String,
    /// Replicas that must hold a write before it is confirmed (0: none).
    replicas: i64,
}

/// The fred config for a URL, with the gateway's timeouts and reconnect policy.
fn builder(url: &str) -> Result<Builder, String> {
    let (config, _) = redis_url::config(url)?;
    Ok(redis_url::client_builder(config))
}

/// A client of `role`, with that role's time limit.
type Conn = WithOptions<Client>;

fn with_role(pair: &Pair, role: Role) -> Conn {
    let timeout = match role {
        Role::Read => LOOKUP_TIMEOUT,
        Role::Write => WRITE_TIMEOUT,
    };
    pair.client(role).with_options(&command_options(timeout))
}

/// Whether a write must wait for its replicas.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Durability {
    Confirmed,
    /// Losing it in a failover only shortens a session (an idle touch).
    BestEffort,
}

impl RedisStore {
    /// Starts the clients (on the caller's runtime) and waits up to `wait` for a first
    /// connection; if Redis is down they keep trying in the background. `replicas`: see
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
            let pair = Pair::connect(&config)?;
            if !pair.wait_for_connect(wait).await {
                tracing::warn!("redis is not reachable yet; the gateway starts and keeps trying");
            }
            Backend::Plain(pair)
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

    /// The clients of the server that serves `key`. Without a topology yet, one is asked for.
    async fn node(&self, key: &str) -> Result<Pair, StoreError> {
        match &self.backend {
            Backend::Plain(pair) => Ok(pair.clone()),
            Backend::Sharded(shards) => shards.client_for(key).await.inspect_err(|_| shards.refresh()),
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

    /// Runs `command` on the `role` connection of `key`'s node. A moved slot is re-learned and
    /// the command sent once more (it was refused, so nothing ran twice).
    async fn on<T, F, Fut>(&self, key: &str, role: Role, command: F) -> Result<T, StoreError>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        match command(with_role(&self.node(key).await?, role)).await {
            Ok(v) => Ok(v),
            Err(e) => match &self.backend {
                Backend::Sharded(shards) if redis_shards::is_redirect(&e) => {
                    shards.resync().await;
                    command(with_role(&self.node(key).await?, role))
                        .await
                        .map_err(|e| self.failed(e))
                }
                _ => Err(self.failed(e)),
            },
        }
    }

    /// Waits until `replicas` replicas hold every write made so far on `key`'s node (on the
    /// write connection, as the write: `WAIT` counts that connection's writes). The write
    /// itself landed: any shortfall is `NotReplicated`.
    async fn replicated(&self, key: &str) -> Result<(), StoreError> {
        if self.replicas == 0 {
            return Ok(());
        }
        let replicas = self.replicas;
        let options = command_options(Duration::from_millis(REPLICA_WAIT_MS as u64 + 500));
        let acked = async {
            let pair = self.node(key).await?;
            pair.client(Role::Write)
                .with_options(&options)
                .wait::<i64>(replicas, REPLICA_WAIT_MS)
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))
        };
        match acked.await {
            Ok(acked) if acked >= replicas => Ok(()),
            Ok(acked) => Err(StoreError::NotReplicated(format!(
                "{acked} of the {replicas} replicas store.replicas asks for confirmed it"
            ))),
            Err(e) => Err(StoreError::NotReplicated(e.to_string())),
        }
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
        let read = self.on(&key, Role::Read, |c| {
            let key = key.clone();
            async move { c.get::<Option<Vec<u8>>, _>(key).await }
        });
        // One bound for the whole lookup, a re-learned topology and second try included.
        let raw = tokio::time::timeout(LOOKUP_TIMEOUT, read)
            .await
            .map_err(|_| StoreError::Unavailable("redis did not answer a lookup in time".into()))??;
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
        self.on(&key, Role::Write, |c| {
            let (key, bytes) = (key.clone(), bytes.clone());
            async move {
                c.set::<(), _, _>(key, bytes, Some(Expiration::EXAT(end)), None, false)
                    .await
            }
        })
        .await?;
        let replicated = self.replicated(&key).await;
        self.index(session).await;
        replicated
    }

    /// Compare-and-set (`Store::swap`), its write confirmed by the replicas.
    pub async fn swap(&self, session: &Session, expected: Option<u64>) -> Result<bool, StoreError> {
        self.swap_with(session, expected, Durability::Confirmed).await
    }

    /// Compare-and-set without waiting for replicas (`Store::touch`).
    pub async fn touch(&self, session: &Session, expected: u64) -> Result<bool, StoreError> {
        self.swap_with(session, Some(expected), Durability::BestEffort)
            .await
    }

    /// Compare-and-set in one Lua script (atomic on the server; one key, so Cluster-safe).
    /// The per-user index is updated afterwards: a session never changes user, so only its
    /// score (end) moves, and a lost race there costs at most a stale score.
    async fn swap_with(
        &self,
        session: &Session,
        expected: Option<u64>,
        durability: Durability,
    ) -> Result<bool, StoreError> {
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
            .on(&key, Role::Write, |c| {
                let args = vec![
                    Value::from(SWAP),
                    Value::from(1),
                    Value::from(key.clone()),
                    Value::from(expected.clone()),
                    Value::Bytes(bytes.clone()),
                    Value::from(end.clone()),
                ];
                let eval = CustomCommand::new_static("EVAL", ClusterHash::FirstKey, false);
                async move { c.custom(eval, args).await }
            })
            .await?;
        if written != 1 {
            return Ok(false);
        }
        let replicated = match durability {
            Durability::Confirmed => self.replicated(&key).await,
            Durability::BestEffort => Ok(()),
        };
        self.index(session).await;
        replicated.map(|()| true)
    }

    /// Keeps `<prefix>:u:{user}` in step with a written session. The session itself is
    /// written: a failure here (the index may live on another master) is logged, never made
    /// the caller's (it would retry, or answer 503 for a change that happened). Listings
    /// read each session again, so a stale index entry only costs a lookup.
    async fn index(&self, session: &Session) {
        let end = session.ends_at() as i64;
        let Some(u) = &session.user else {
            return;
        };
        let key = self.user_key(&u.index_key());
        let id = session.id.clone();
        let now = super::now() as f64;
        let indexed = self
            .on(&key, Role::Write, |c| {
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
            .await;
        if let Err(e) = indexed {
            tracing::warn!(session = %session.id, error = %e, "redis: per-user index not updated");
        }
    }

    pub async fn delete(&self, id: &str) -> Result<Option<Session>, StoreError> {
        let key = self.session_key(id);
        let raw: Option<Vec<u8>> = self
            .on(&key, Role::Write, |c| {
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
            let user_key = self.user_key(&u.index_key());
            let unindexed = self
                .on(&user_key, Role::Write, |c| {
                    let (user_key, id) = (user_key.clone(), id.to_string());
                    async move { c.zrem::<(), _, _>(user_key, id).await }
                })
                .await;
            if let Err(e) = unindexed {
                tracing::warn!(session = %id, error = %e, "redis: per-user index keeps a revoked id");
            }
        }
        Ok(Some(s))
    }

    pub async fn list_user(&self, username: &str) -> Result<Vec<Session>, StoreError> {
        let now = super::now();
        let key = self.user_key(username);
        let ids: Vec<String> = self
            .on(&key, Role::Read, |c| {
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
            Backend::Plain(pair) => {
                let _: String = with_role(pair, Role::Read)
                    .ping(None)
                    .await
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                Ok(())
            }
            Backend::Sharded(shards) => shards.ping().await,
        }
    }

    /// Tells every instance that a session was revoked. In a cluster any master broadcasts
    /// to all nodes: each is tried until one takes it.
    pub async fn publish_revocation(&self, id: &str) -> Result<(), StoreError> {
        let channel = self.revoke_channel();
        let pairs = match &self.backend {
            Backend::Plain(pair) => vec![pair.clone()],
            Backend::Sharded(shards) => shards.primaries().await,
        };
        let mut last = StoreError::Unavailable("no cluster master is known".into());
        for pair in pairs {
            let published = with_role(&pair, Role::Write)
                .publish::<i64, _, _>(channel.as_str(), id)
                .await;
            match published {
                Ok(_) => return Ok(()),
                Err(e) => last = self.failed(e),
            }
        }
        Err(last)
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
