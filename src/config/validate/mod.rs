//! `RawConfig` → `Config`: `validate` checks the sections in a fixed order (the first error
//! found is the one reported, so the order is part of the behaviour), one file per group of
//! sections; the small parsers every section uses (addresses, CIDRs, durations, paths) are
//! `parse`.

mod accounts;
pub mod oidc;
mod parse;
mod routes;
mod server;
mod site;
mod store;
mod tokens;

use super::model::{Config, ConfigError, LogConfig};
use super::raw::RawConfig;
use std::path::Path;
use std::sync::Arc;

pub(super) fn validate(raw: RawConfig, base: &Path) -> Result<Config, ConfigError> {
    let server = server::server(raw.server, base)?;
    let admin = server::admin(raw.admin)?;
    let headers = server::headers(raw.headers)?;
    let demo = server::demo(raw.demo)?;
    let store = store::store(raw.store, &raw.tokens, base)?;
    let cache = store::cache(&raw.cache)?;
    let sessions = store::sessions(&raw.sessions)?;
    let cookie_name = site::cookie_name(raw.cookie.name)?;
    let token_secrets = tokens::secrets(raw.tokens.secrets)?;
    let (users, password_hashes) = accounts::users(raw.users, raw.users_file.as_deref(), base)?;
    let api_prefix = site::api_prefix(&raw.api.prefix)?;
    let ui_title = site::ui_title(&raw.ui.title)?;
    let mode = accounts::mode(&raw.mode, &users)?;
    let login = accounts::login(&raw.login)?;
    let assertion = tokens::assertion(raw.assertion, base)?;
    let jwt_issuers = tokens::jwt_issuers(raw.jwt_issuers, base)?;
    let oidc = oidc::providers(raw.oidc, base)?;
    let routes = routes::routes(raw.routes, !jwt_issuers.is_empty(), base)?;
    let log = log(raw.log)?;

    Ok(Config {
        source: None,
        mode,
        api_prefix,
        ui_title,
        server,
        admin,
        headers,
        log,
        demo,
        store,
        cache,
        sessions,
        cookie_name,
        token_secrets,
        users,
        password_hashes,
        login,
        assertion,
        jwt_issuers: Arc::new(jwt_issuers),
        oidc,
        routes,
    })
}

fn log(raw: super::raw::RawLog) -> Result<LogConfig, ConfigError> {
    let buffer = match &raw.buffer {
        None => crate::access_log::DEFAULT_BUFFER,
        Some(size) => {
            let bytes = size.bytes().map_err(|e| ConfigError::new("log.buffer", e))?;
            if !(1024..=1 << 30).contains(&bytes) {
                return Err(ConfigError::new("log.buffer", "must be between 1KiB and 1GiB"));
            }
            bytes as usize
        }
    };
    Ok(LogConfig {
        access: raw.access,
        buffer,
    })
}
