//! The `memory` store: a map behind a mutex. For tests and single-process experiments; every
//! session is lost on restart.

use super::Session;
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<String, Session>,
    by_user: HashMap<String, BTreeSet<String>>,
}

impl Inner {
    fn insert(&mut self, session: &Session) {
        if let Some(old) = self.sessions.insert(session.id.clone(), session.clone()) {
            self.unlink(&old);
        }
        if let Some(u) = &session.user {
            self.by_user
                .entry(u.index_key().into_owned())
                .or_default()
                .insert(session.id.clone());
        }
    }

    fn unlink(&mut self, s: &Session) {
        if let Some(u) = &s.user
            && let Some(set) = self.by_user.get_mut(u.index_key().as_ref())
        {
            set.remove(&s.id);
            if set.is_empty() {
                self.by_user.remove(u.index_key().as_ref());
            }
        }
    }
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than refusing service would, so a poisoned lock is used as is.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, id: &str) -> Option<Session> {
        let now = super::now();
        self.lock().sessions.get(id).filter(|s| s.is_live(now)).cloned()
    }

    pub fn put(&self, session: &Session) {
        self.lock().insert(session);
    }

    pub fn swap(&self, session: &Session, expected: Option<u64>) -> bool {
        let now = super::now();
        let mut inner = self.lock();
        let current = inner
            .sessions
            .get(&session.id)
            .filter(|s| s.is_live(now))
            .map(|s| s.version);
        if current != expected {
            return false;
        }
        inner.insert(session);
        true
    }

    pub fn delete(&self, id: &str) -> Option<Session> {
        let mut inner = self.lock();
        let old = inner.sessions.remove(id)?;
        inner.unlink(&old);
        Some(old)
    }

    pub fn list_user(&self, username: &str) -> Vec<Session> {
        let now = super::now();
        let inner = self.lock();
        inner
            .by_user
            .get(username)
            .into_iter()
            .flatten()
            .filter_map(|id| inner.sessions.get(id))
            .filter(|s| s.is_live(now))
            .cloned()
            .collect()
    }

    pub fn sweep(&self, now: u64) -> usize {
        let mut inner = self.lock();
        let dead: Vec<Session> = inner
            .sessions
            .values()
            .filter(|s| !s.is_live(now))
            .cloned()
            .collect();
        for s in &dead {
            inner.sessions.remove(&s.id);
            inner.unlink(s);
        }
        dead.len()
    }
}
