//! Revocation and forgetting: ending sessions in the store, dropping them from this cache,
//! telling other instances (redis publish) and applying what they tell us (`follow`); after a
//! lost message, entries are re-read from the store on their next use (`revalidate`).

use super::{CachedSession, FORGET_SLOTS, Sessions};
use crate::session::backend::Store;
use crate::session::store::{Revocation, StoreError};
use crate::session::token::{self, SessionId};
use std::sync::Arc;
use std::sync::atomic::Ordering;

impl Sessions {
    /// Ends a session everywhere: store, this cache, and (redis) every other instance's cache.
    pub async fn revoke(&self, id: &str) -> Result<bool, StoreError> {
        let removed = self.store.delete(id).await?.is_some();
        if removed {
            self.counters.destroyed.inc();
        }
        self.changed(id).await;
        Ok(removed)
    }

    /// Ends every session of a user; returns their ids.
    pub async fn revoke_user(&self, username: &str) -> Result<Vec<String>, StoreError> {
        let ids = self.store.delete_user(username).await?;
        self.counters.destroyed.inc_by(ids.len() as u64);
        for id in &ids {
            self.changed(id).await;
        }
        Ok(ids)
    }

    /// A stored session changed (revoked, rotated, activated): this instance's cache drops it,
    /// its waiters (`/auth/status`) look again, and other instances hear of it.
    pub(in crate::session) async fn changed(&self, id: &str) {
        self.forget(id).await;
        let _ = self.changes.send(id.into());
        self.publish(id).await;
    }

    /// Ids of sessions that changed, here or (redis) on another instance; `*` means "any".
    pub fn changes(&self) -> tokio::sync::broadcast::Receiver<Arc<str>> {
        self.changes.subscribe()
    }

    async fn publish(&self, id: &str) {
        if let Store::Redis(r) = &self.store {
            match r.publish_revocation(id).await {
                Ok(()) => {
                    self.counters.published.inc();
                }
                // Other instances still drop it within cache.ttl.
                Err(e) => tracing::warn!(session = id, error = %e, "could not publish a revocation"),
            }
        }
    }

    /// The forget counters that concern `id`: its slot and forget_all's.
    pub(super) fn forget_marks(&self, id: &SessionId) -> (u64, u64) {
        (
            self.forgets[usize::from(id[0]) % FORGET_SLOTS].load(Ordering::SeqCst),
            self.forgets[FORGET_SLOTS].load(Ordering::SeqCst),
        )
    }

    /// Drops one session from this instance's cache.
    pub async fn forget(&self, id: &str) {
        if let Some(key) = token::parse_id(id) {
            self.forgets[usize::from(key[0]) % FORGET_SLOTS].fetch_add(1, Ordering::SeqCst);
            self.cache.invalidate(&key).await;
        }
    }

    /// Reads a suspect entry again (see `suspect`): what the store says now replaces it. A
    /// store that cannot answer leaves it as it was — it was valid when read, and refusing
    /// every session of a master that is failing over would be worse than a revocation lost
    /// in the interruption arriving late (bounded by `cache.ttl`, SPEC §3).
    pub(super) async fn revalidate(
        &self,
        id: &SessionId,
        cached: Arc<CachedSession>,
    ) -> Option<Arc<CachedSession>> {
        let generation = self.suspect.load(Ordering::SeqCst);
        let forgets = self.forget_marks(id);
        let found = match self.store.get(&token::id_hex(id)).await {
            Ok(found) => found,
            Err(e) => {
                // Kept, and not asked about again each request while the store is away: a
                // revocation missed meanwhile is bounded by `cache.ttl`, like any missed one.
                tracing::debug!(error = %e, "cannot check a cached session again; it is kept");
                cached.checked.store(generation, Ordering::Relaxed);
                return Some(cached);
            }
        };
        let fresh = found
            .and_then(|s| CachedSession::new(s, &self.users))
            .map(Arc::new);
        match &fresh {
            Some(live) => {
                live.checked.store(generation, Ordering::Relaxed);
                self.cache.insert(*id, Some(live.clone())).await;
            }
            None => self.cache.invalidate(id).await,
        }
        if self.forget_marks(id) != forgets {
            self.cache.invalidate(id).await;
        }
        fresh
    }

    /// Drops every cached session on this instance.
    pub fn forget_all(&self) {
        self.forgets[FORGET_SLOTS].fetch_add(1, Ordering::SeqCst);
        self.cache.invalidate_all();
    }

    /// Applies revocations arriving from other instances until the channel closes.
    pub async fn follow(&self, mut rx: tokio::sync::mpsc::UnboundedReceiver<Revocation>) {
        while let Some(r) = rx.recv().await {
            match r {
                Revocation::One(id) => {
                    self.counters.received.inc();
                    self.forget(&id).await;
                    let _ = self.changes.send(id.into());
                }
                Revocation::All => {
                    // Every cached session is checked against the store on its next use.
                    self.suspect.fetch_add(1, Ordering::SeqCst);
                    let _ = self.changes.send("*".into());
                }
            }
        }
    }
}
