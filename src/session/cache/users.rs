//! The users of cached sessions (`Users`): one `UserParts` per user, holding its identity header
//! values, shared by every cached session of that user.

use crate::session::User;
use http::HeaderValue;
use std::sync::Arc;

pub(super) const EMPTY: HeaderValue = HeaderValue::from_static("");
pub(super) static NO_USER: [HeaderValue; 4] = [EMPTY, EMPTY, EMPTY, EMPTY];

/// A user and its identity header values (user, id, uuid, roles), made once and shared by
/// every cached session of that user.
#[derive(Debug)]
pub struct UserParts {
    pub user: User,
    pub(super) values: [HeaderValue; 4],
}

/// The users of cached sessions, by `User::index_key` (a provider's "alice" is not the
/// config's): sessions share one `UserParts` per user instead
/// of each holding copies (issue #5's memory per cached session).
#[derive(Default)]
pub(super) struct Users(std::sync::Mutex<Interned>);

#[derive(Default)]
struct Interned {
    map: std::collections::HashMap<String, Arc<UserParts>>,
    /// The size at which users no cached session holds are dropped (a provider signs in
    /// people without end, the config's users were few): twice the size left by the last drop.
    prune_at: usize,
}

/// The fewest users kept before any is dropped.
const PRUNE_FROM: usize = 4096;

impl Users {
    pub(super) fn intern(&self, user: User) -> Arc<UserParts> {
        let mut interned = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let Interned { map, prune_at } = &mut *interned;
        let key = user.index_key();
        if let Some(parts) = map.get(key.as_ref())
            && parts.user == user
        {
            return parts.clone();
        }
        let key = key.into_owned();
        let value = |s: &str| HeaderValue::from_str(s).unwrap_or(EMPTY);
        // A provider's user has no numeric id: its header is left out (`phase::inject`).
        let id = match user.provider {
            None => value(&user.id.to_string()),
            Some(_) => EMPTY,
        };
        let parts = Arc::new(UserParts {
            values: [
                value(&user.username),
                id,
                value(&user.uuid),
                value(&user.roles.join(",")),
            ],
            user,
        });
        map.insert(key, parts.clone());
        if map.len() >= (*prune_at).max(PRUNE_FROM) {
            map.retain(|_, p| Arc::strong_count(p) > 1);
            *prune_at = map.len() * 2;
        }
        parts
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_no_session_holds_are_dropped_and_held_ones_kept() {
        let users = Users::default();
        let user = |i: usize| User {
            id: 0,
            username: format!("u{i}"),
            uuid: format!("sub-{i}"),
            roles: vec![],
            provider: Some("idp".into()),
        };
        let held: Vec<Arc<UserParts>> = (0..10).map(|i| users.intern(user(i))).collect();
        for i in 10..PRUNE_FROM * 3 {
            drop(users.intern(user(i)));
        }
        assert!(users.len() < PRUNE_FROM, "{} users kept", users.len());
        for (i, parts) in held.iter().enumerate() {
            assert!(
                Arc::ptr_eq(parts, &users.intern(user(i))),
                "a held user is still shared"
            );
        }
    }
}
