//! The `embedded` store: one redb file (ACID, crash-safe: a commit is durable before `put`
//! returns), so sessions survive restarts of a single gateway. redb is synchronous; every call
//! runs on the blocking pool so request workers never wait on the disk. Tables:
//! `sessions` id → JSON, `by_user` (user key: `User::index_key`, id) → (), `by_end` (end, id) → () for the sweep.

use super::Session;
use super::store::{StoreError, decode, encode};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;
use std::sync::Arc;

const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
const BY_USER: TableDefinition<(&str, &str), ()> = TableDefinition::new("by_user");
const BY_END: TableDefinition<(u64, &str), ()> = TableDefinition::new("by_end");

#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl EmbeddedStore {
    /// Opens (or creates) the store file, creating its folder; the error names the path.
    pub fn open(path: &Path) -> Result<EmbeddedStore, String> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let db = Database::create(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let store = EmbeddedStore { db: Arc::new(db) };
        store
            .write(|txn| {
                txn.open_table(SESSIONS)?;
                txn.open_table(BY_USER)?;
                txn.open_table(BY_END)?;
                Ok(())
            })
            .map_err(|e| format!("cannot initialise {}: {e}", path.display()))?;
        Ok(store)
    }

    fn write<T>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, StoreError> {
        let txn = self.db.begin_write().map_err(unavailable)?;
        let out = f(&txn).map_err(unavailable)?;
        txn.commit().map_err(unavailable)?;
        Ok(out)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(EmbeddedStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(me))
            .await
            .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
    }

    pub async fn get(&self, id: &str) -> Result<Option<Session>, StoreError> {
        let id = id.to_string();
        self.blocking(move |me| {
            let txn = me.db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(SESSIONS).map_err(unavailable)?;
            let Some(bytes) = table.get(id.as_str()).map_err(unavailable)? else {
                return Ok(None);
            };
            let session = decode(bytes.value())?;
            Ok(session.is_live(super::now()).then_some(session))
        })
        .await
    }

    pub async fn put(&self, session: &Session) -> Result<(), StoreError> {
        self.write_if(session, None).await.map(|_| ())
    }

    /// redb has one writer at a time, so reading the version and writing inside one write
    /// transaction is atomic.
    pub async fn swap(&self, session: &Session, expected: Option<u64>) -> Result<bool, StoreError> {
        self.write_if(session, Some(expected)).await
    }

    /// Writes `session`; with `check`, only if the stored live version equals it.
    async fn write_if(&self, session: &Session, check: Option<Option<u64>>) -> Result<bool, StoreError> {
        let bytes = encode(session)?;
        let session = session.clone();
        self.blocking(move |me| {
            me.write(|txn| {
                let mut sessions = txn.open_table(SESSIONS)?;
                let mut by_user = txn.open_table(BY_USER)?;
                let mut by_end = txn.open_table(BY_END)?;
                if let Some(expected) = check {
                    let now = super::now();
                    let current = sessions
                        .get(session.id.as_str())?
                        .and_then(|g| decode(g.value()).ok())
                        .filter(|s| s.is_live(now))
                        .map(|s| s.version);
                    if current != expected {
                        return Ok(false);
                    }
                }
                let old = sessions
                    .insert(session.id.as_str(), bytes.as_slice())?
                    .map(|g| decode(g.value()));
                if let Some(Ok(old)) = old {
                    unlink(&mut by_user, &mut by_end, &old)?;
                }
                if let Some(u) = &session.user {
                    by_user.insert((u.index_key().as_ref(), session.id.as_str()), ())?;
                }
                by_end.insert((session.ends_at(), session.id.as_str()), ())?;
                Ok(true)
            })
        })
        .await
    }

    pub async fn delete(&self, id: &str) -> Result<Option<Session>, StoreError> {
        let id = id.to_string();
        self.blocking(move |me| {
            me.write(|txn| {
                let mut sessions = txn.open_table(SESSIONS)?;
                let mut by_user = txn.open_table(BY_USER)?;
                let mut by_end = txn.open_table(BY_END)?;
                let old = sessions.remove(id.as_str())?.map(|g| decode(g.value()));
                match old {
                    Some(Ok(old)) => {
                        unlink(&mut by_user, &mut by_end, &old)?;
                        Ok(Some(old))
                    }
                    _ => Ok(None),
                }
            })
        })
        .await
    }

    pub async fn list_user(&self, username: &str) -> Result<Vec<Session>, StoreError> {
        let username = username.to_string();
        self.blocking(move |me| {
            let txn = me.db.begin_read().map_err(unavailable)?;
            let by_user = txn.open_table(BY_USER).map_err(unavailable)?;
            let sessions = txn.open_table(SESSIONS).map_err(unavailable)?;
            let now = super::now();
            let mut out = Vec::new();
            // Session ids are hex, so every one sorts below "g".
            let range = by_user
                .range((username.as_str(), "")..(username.as_str(), "g"))
                .map_err(unavailable)?;
            for entry in range {
                let (key, _) = entry.map_err(unavailable)?;
                let (_, id) = key.value();
                if let Some(bytes) = sessions.get(id).map_err(unavailable)? {
                    let s = decode(bytes.value())?;
                    if s.is_live(now) {
                        out.push(s);
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.blocking(|me| me.db.begin_read().map(|_| ()).map_err(unavailable))
            .await
    }

    /// Removes every session whose end is before `now`.
    pub async fn sweep(&self, now: u64) -> Result<usize, StoreError> {
        self.blocking(move |me| {
            me.write(|txn| {
                let mut sessions = txn.open_table(SESSIONS)?;
                let mut by_user = txn.open_table(BY_USER)?;
                let mut by_end = txn.open_table(BY_END)?;
                let due: Vec<(u64, String)> = by_end
                    .range((0u64, "")..(now, ""))?
                    .map(|e| e.map(|(k, _)| (k.value().0, k.value().1.to_string())))
                    .collect::<Result<_, _>>()?;
                let mut removed = 0;
                for (end, id) in due {
                    by_end.remove((end, id.as_str()))?;
                    let old = sessions.get(id.as_str())?.map(|g| decode(g.value()));
                    match old {
                        // Touched since the index entry was written: keep it.
                        Some(Ok(s)) if s.is_live(now) => {}
                        Some(Ok(s)) => {
                            sessions.remove(id.as_str())?;
                            if let Some(u) = &s.user {
                                by_user.remove((u.index_key().as_ref(), id.as_str()))?;
                            }
                            removed += 1;
                        }
                        _ => {
                            sessions.remove(id.as_str())?;
                        }
                    }
                }
                Ok(removed)
            })
        })
        .await
    }
}

fn unlink(
    by_user: &mut redb::Table<(&str, &str), ()>,
    by_end: &mut redb::Table<(u64, &str), ()>,
    old: &Session,
) -> Result<(), redb::Error> {
    if let Some(u) = &old.user {
        by_user.remove((u.index_key().as_ref(), old.id.as_str()))?;
    }
    by_end.remove((old.ends_at(), old.id.as_str()))?;
    Ok(())
}
