//! Who can sign in and how often: `[[users]]` and `users_file` (checked in `config::users`),
//! `mode` (single-user needs a user) and `[login]` (attempt limits).

use super::parse::{positive, resolve};
use crate::config::model::{ConfigError, LoginConfig, Mode};
use crate::config::raw::{RawLogin, RawUser};
use crate::config::users;
use crate::session::User;
use std::collections::HashMap;
use std::path::Path;

/// The `[[users]]` of the config, then those of `users_file`, and their password hashes.
pub(super) fn users(
    from_config: Vec<RawUser>,
    users_file: Option<&str>,
    base: &Path,
) -> Result<(Vec<User>, HashMap<String, String>), ConfigError> {
    let mut raw_users: Vec<(String, RawUser)> = from_config
        .into_iter()
        .enumerate()
        .map(|(i, u)| (format!("users[{i}]"), u))
        .collect();
    if let Some(file) = users_file {
        raw_users.extend(users::read_file(&resolve(base, file))?);
    }
    users::validate(raw_users)
}

pub(super) fn mode(mode: &str, users: &[User]) -> Result<Mode, ConfigError> {
    Ok(match mode {
        "multi-user" => Mode::MultiUser,
        "single-user" => match users.first() {
            Some(u) => Mode::SingleUser(u.clone()),
            None => {
                return Err(ConfigError::new(
                    "mode",
                    "\"single-user\" needs one [[users]] entry: the local user",
                ));
            }
        },
        other => {
            return Err(ConfigError::new(
                "mode",
                format!("unknown mode \"{other}\" (expected multi-user or single-user)"),
            ));
        }
    })
}

pub(super) fn login(login: &RawLogin) -> Result<LoginConfig, ConfigError> {
    if login.per_user == 0 || login.per_address == 0 {
        return Err(ConfigError::new(
            "login",
            "per_user and per_address must be at least 1",
        ));
    }
    Ok(LoginConfig {
        per_user: login.per_user,
        per_address: login.per_address,
        window: positive("login.window", &login.window)?,
    })
}
