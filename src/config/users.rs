//! Users (SPEC §4): `[[users]]` in the config and, with `users_file`, more of them in a file of
//! the same shape (`[[users]]` tables only), so passwords can live apart from the config. Keys
//! in errors name the file and entry (`users_file[2].password_hash`).

use super::model::{ConfigError, syntax_error, without_values};
use super::raw::RawUser;
use crate::session::User;
use http::HeaderValue;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    users: Vec<RawUser>,
}

/// The `[[users]]` of `path`, each with the key its errors will name.
pub fn read_file(path: &Path) -> Result<Vec<(String, RawUser)>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new("users_file", format!("cannot read {}: {e}", path.display())))?;
    let de = toml::Deserializer::parse(&text).map_err(|e| {
        ConfigError::new(
            "users_file",
            format!("{}: {}", path.display(), syntax_error(&text, &e)),
        )
    })?;
    let file: UsersFile = serde_path_to_error::deserialize(de).map_err(|e| {
        ConfigError::new(
            format!("users_file: {} {}", path.display(), e.path()),
            without_values(e.into_inner().message()),
        )
    })?;
    Ok(file
        .users
        .into_iter()
        .enumerate()
        .map(|(i, u)| (format!("users_file[{i}]"), u))
        .collect())
}

/// Checks every user; returns them and the argon2id hashes of those who may log in.
pub fn validate(raw: Vec<(String, RawUser)>) -> Result<(Vec<User>, HashMap<String, String>), ConfigError> {
    let mut users: Vec<User> = Vec::with_capacity(raw.len());
    let mut password_hashes = HashMap::new();
    for (key, u) in raw {
        let name_ok = !u.username.is_empty()
            && u.username.len() <= 64
            && u.username
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
        if !name_ok {
            return Err(ConfigError::new(
                format!("{key}.username"),
                format!(
                    "invalid username \"{}\" (letters, digits, . _ - @; at most 64)",
                    u.username
                ),
            ));
        }
        if users.iter().any(|o| o.username == u.username) {
            return Err(ConfigError::new(
                format!("{key}.username"),
                format!("duplicate user \"{}\"", u.username),
            ));
        }
        if users.iter().any(|o| o.id == u.user_id) {
            return Err(ConfigError::new(
                format!("{key}.user_id"),
                format!("duplicate user_id {}", u.user_id),
            ));
        }
        if u.user_uuid.is_empty() || u.user_uuid.len() > 64 || HeaderValue::from_str(&u.user_uuid).is_err() {
            return Err(ConfigError::new(
                format!("{key}.user_uuid"),
                "must be 1-64 printable characters",
            ));
        }
        for (j, role) in u.roles.iter().enumerate() {
            if role.is_empty() || role.contains(',') || HeaderValue::from_str(role).is_err() {
                return Err(ConfigError::new(
                    format!("{key}.roles[{j}]"),
                    format!("invalid role \"{role}\""),
                ));
            }
        }
        if let Some(h) = &u.password_hash {
            crate::auth::password::validate(h)
                .map_err(|e| ConfigError::new(format!("{key}.password_hash"), e))?;
            password_hashes.insert(u.username.clone(), h.clone());
        }
        users.push(User {
            id: u.user_id,
            username: u.username,
            uuid: u.user_uuid,
            roles: u.roles,
            provider: None,
        });
    }

    Ok((users, password_hashes))
}
