//! What every session store shares, below the stores themselves (`memory`, `embedded`,
//! `redis`; it uses none of them): the errors they answer (`StoreError`), the revocations they
//! hear (`Revocation`) and the record codec of the stores that keep bytes (`encode`,
//! `decode`). The one enum over the stores that callers hold is `backend::Store`.
//!
//! Meaning shared by every store: `get` never returns a session past its end; `put` inserts or
//! replaces and keeps the per-user index; deletes return what they removed; expired sessions
//! are removed eventually (memory/embedded: `sweep`; redis: key expiry).

use super::Session;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached now (redis down, disk failing); a retry may work.
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    /// A write landed on the Redis master but `store.replicas` replicas did not confirm it in
    /// time: it holds now, and a failover may undo it.
    #[error("session store did not confirm a write on its replicas: {0}")]
    NotReplicated(String),
    /// A stored record could not be read back.
    #[error("session store returned an unreadable record: {0}")]
    Corrupt(String),
}

/// A revocation heard from another instance (redis publishes them; `Sessions::follow`
/// applies them to the cache).
#[derive(Debug)]
pub enum Revocation {
    One(String),
    /// The subscription was interrupted: every cached session is to be checked again.
    All,
}

/// Encodes a session for stores that keep bytes.
pub fn encode(session: &Session) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(session).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub fn decode(bytes: &[u8]) -> Result<Session, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}
