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
pub(super) struct Users(std::sync::Mutex<std::collections::HashMap<String, Arc<UserParts>>>);

impl Users {
    pub(super) fn intern(&self, user: User) -> Arc<UserParts> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
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
        parts
    }
}
