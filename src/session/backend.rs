//! The session store as callers hold it: one enum over the three kinds (`memory`, `embedded`,
//! `redis`), so callers hold a concrete type and every store answers the same operations with
//! the same meaning (`store`'s) — checked by one conformance suite
//! (`tests/store_conformance.rs`) run against all three. Above the stores: it names each of
//! them, and they know nothing of it.

use super::Session;
use super::embedded::EmbeddedStore;
use super::memory::MemoryStore;
use super::redis::RedisStore;
use super::store::StoreError;

pub enum Store {
    Memory(MemoryStore),
    Embedded(EmbeddedStore),
    Redis(RedisStore),
}

impl Store {
    pub fn kind(&self) -> &'static str {
        match self {
            Store::Memory(_) => "memory",
            Store::Embedded(_) => "embedded",
            Store::Redis(_) => "redis",
        }
    }

    /// The live session with this id (32 hex digits), if any.
    pub async fn get(&self, id: &str) -> Result<Option<Session>, StoreError> {
        match self {
            Store::Memory(s) => Ok(s.get(id)),
            Store::Embedded(s) => s.get(id).await,
            Store::Redis(s) => s.get(id).await,
        }
    }

    /// Inserts or replaces a session (and its entry in the user's index).
    pub async fn put(&self, session: &Session) -> Result<(), StoreError> {
        match self {
            Store::Memory(s) => {
                s.put(session);
                Ok(())
            }
            Store::Embedded(s) => s.put(session).await,
            Store::Redis(s) => s.put(session).await,
        }
    }

    /// Writes `session` only if the stored live session with its id has version `expected`
    /// (`None`: only if there is none) — atomically, in every store. Returns whether it wrote;
    /// the caller bumps `session.version` itself.
    pub async fn swap(&self, session: &Session, expected: Option<u64>) -> Result<bool, StoreError> {
        match self {
            Store::Memory(s) => Ok(s.swap(session, expected)),
            Store::Embedded(s) => s.swap(session, expected).await,
            Store::Redis(s) => s.swap(session, expected).await,
        }
    }

    /// `swap` for a write whose loss only shortens a session (an idle touch): Redis does not
    /// wait for replicas to confirm it.
    pub async fn touch(&self, session: &Session, expected: u64) -> Result<bool, StoreError> {
        match self {
            Store::Redis(s) => s.touch(session, expected).await,
            _ => self.swap(session, Some(expected)).await,
        }
    }

    /// Removes a session; returns it if it existed.
    pub async fn delete(&self, id: &str) -> Result<Option<Session>, StoreError> {
        match self {
            Store::Memory(s) => Ok(s.delete(id)),
            Store::Embedded(s) => s.delete(id).await,
            Store::Redis(s) => s.delete(id).await,
        }
    }

    /// The user's live sessions.
    pub async fn list_user(&self, username: &str) -> Result<Vec<Session>, StoreError> {
        match self {
            Store::Memory(s) => Ok(s.list_user(username)),
            Store::Embedded(s) => s.list_user(username).await,
            Store::Redis(s) => s.list_user(username).await,
        }
    }

    /// Removes every session of the user; returns their ids.
    pub async fn delete_user(&self, username: &str) -> Result<Vec<String>, StoreError> {
        let sessions = self.list_user(username).await?;
        let mut removed = Vec::with_capacity(sessions.len());
        for s in sessions {
            if self.delete(&s.id).await?.is_some() {
                removed.push(s.id);
            }
        }
        Ok(removed)
    }

    /// Whether the store answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Memory(_) => Ok(()),
            Store::Embedded(s) => s.ping().await,
            Store::Redis(s) => s.ping().await,
        }
    }

    /// Removes sessions that ended before `now`; returns how many (redis: keys expire by
    /// themselves, 0).
    pub async fn sweep(&self, now: u64) -> Result<usize, StoreError> {
        match self {
            Store::Memory(s) => Ok(s.sweep(now)),
            Store::Embedded(s) => s.sweep(now).await,
            Store::Redis(_) => Ok(0),
        }
    }
}
