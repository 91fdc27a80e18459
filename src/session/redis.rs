//! The `redis` store, for any number of gateway instances sharing sessions (Redis Cluster too).
//!
//! Key layout (every session key carries its id as a hash tag, so a session's operations stay
//! in one slot):
//! - `<prefix>:s:{<id>}` — the session as JSON, expiring (`EXAT`) when the session ends;
//! - `<prefix>:u:{<username>}` — sorted set of the user's session ids scored by their end,
//!   pruned of ended ones on every write, expiring with the last of them;
//! - `<prefix>:revoke` — pub/sub channel carrying ids of revoked sessions to every instance.
//!
//! Commands fail fast while disconnected (the caller answers 503), and the client reconnects
//! on its own in the background.

use super::Session;
use super::cache::Revocation;
use super::store::{StoreError, decode, encode};
use fred::prelude::*;
use fred::types::{Expiration, ExpireOptions};
use std::time::Duration;

#[derive(Clone)]
pub struct RedisStore {
    client: Client,
    prefix: String,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// The fred config for a URL, with the gateway's timeouts and reconnect policy.
fn builder(url: &str) -> Result<Builder, String> {
    let mut config = Config::from_url(url).map_err(|e| format!("invalid redis URL: {e}"))?;
    config.fail_fast = true;
    let mut b = Builder::from_config(config);
    b.with_connection_config(|c| {
        c.connection_timeout = Duration::from_secs(2);
        c.internal_command_timeout = Duration::from_secs(2);
        c.max_command_attempts = 1;
        c.tcp = TcpConfig {
            nodelay: Some(true),
            ..Default::default()
        };
    })
    .with_performance_config(|p| {
        p.default_command_timeout = Duration::from_secs(2);
    })
    .set_policy(ReconnectPolicy::new_constant(0, 250));
    Ok(b)
}

impl RedisStore {
    /// Starts the client (on the caller's runtime) and waits up to `wait` for a first
    /// connection; if Redis is down it keeps trying in the background.
    pub async fn connect(url: &str, prefix: &str, wait: Duration) -> Result<RedisStore, String> {
        let client = builder(url)?.build().map_err(|e| format!("redis client: {e}"))?;
        client.connect();
        if tokio::time::timeout(wait, client.wait_for_connect())
            .await
            .is_err()
        {
            tracing::warn!("redis is not reachable yet; the gateway starts and keeps trying");
        }
        Ok(RedisStore {
            client,
            prefix: prefix.to_string(),
        })
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

    fn ready(&self) -> Result<(), StoreError> {
        if self.client.is_connected() {
            Ok(())
        } else {
            Err(StoreError::Unavailable("not connected to redis".into()))
        }
    }

    pub async fn get(&self, id: &str) -> Result<Option<Session>, StoreError> {
        self.ready()?;
        let raw: Option<Vec<u8>> = self.client.get(self.session_key(id)).await.map_err(unavailable)?;
        match raw {
            None => Ok(None),
            Some(bytes) => {
                let s = decode(&bytes)?;
                Ok(s.is_live(super::now()).then_some(s))
            }
        }
    }

    pub async fn put(&self, session: &Session) -> Result<(), StoreError> {
        self.ready()?;
        let bytes = encode(session)?;
        let end = session.ends_at() as i64;
        let _: () = self
            .client
            .set(
                self.session_key(&session.id),
                bytes,
                Some(Expiration::EXAT(end)),
                None,
                false,
            )
            .await
            .map_err(unavailable)?;
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
        self.ready()?;
        let bytes = encode(session)?;
        let expected = expected.map(|v| v.to_string()).unwrap_or_default();
        let end = session.ends_at().to_string();
        let written: i64 = self
            .client
            .eval(
                SWAP,
                vec![self.session_key(&session.id)],
                vec![
                    Value::from(expected),
                    Value::Bytes(bytes.into()),
                    Value::from(end),
                ],
            )
            .await
            .map_err(unavailable)?;
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
        if let Some(u) = &session.user {
            let key = self.user_key(&u.username);
            let now = super::now() as f64;
            let _: () = self
                .client
                .zremrangebyscore(&key, f64::NEG_INFINITY, now)
                .await
                .map_err(unavailable)?;
            let _: () = self
                .client
                .zadd(&key, None, None, false, false, (end as f64, session.id.as_str()))
                .await
                .map_err(unavailable)?;
            // NX gives a fresh index its expiry; GT moves it later, never earlier.
            let _: () = self
                .client
                .expire_at(&key, end, Some(ExpireOptions::NX))
                .await
                .map_err(unavailable)?;
            let _: () = self
                .client
                .expire_at(&key, end, Some(ExpireOptions::GT))
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    pub async fn delete(&self, id: &str) -> Result<Option<Session>, StoreError> {
        self.ready()?;
        let raw: Option<Vec<u8>> = self
            .client
            .getdel(self.session_key(id))
            .await
            .map_err(unavailable)?;
        let Some(bytes) = raw else { return Ok(None) };
        let s = decode(&bytes)?;
        if let Some(u) = &s.user {
            let _: () = self
                .client
                .zrem(self.user_key(&u.username), id)
                .await
                .map_err(unavailable)?;
        }
        Ok(Some(s))
    }

    pub async fn list_user(&self, username: &str) -> Result<Vec<Session>, StoreError> {
        self.ready()?;
        let now = super::now();
        let ids: Vec<String> = self
            .client
            .zrangebyscore(self.user_key(username), now as f64, f64::INFINITY, false, None)
            .await
            .map_err(unavailable)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(s) = self.get(&id).await? {
                out.push(s);
            }
        }
        Ok(out)
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.ready()?;
        let _: String = self.client.ping(None).await.map_err(unavailable)?;
        Ok(())
    }

    /// Tells every instance that a session was revoked.
    pub async fn publish_revocation(&self, id: &str) -> Result<(), StoreError> {
        self.ready()?;
        let _: i64 = self
            .client
            .publish(self.revoke_channel(), id)
            .await
            .map_err(unavailable)?;
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
