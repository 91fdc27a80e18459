//! What the browser-facing side is called: `[cookie] name`, `[api] prefix` and `[ui] title`.

use crate::config::model::ConfigError;

pub(super) fn cookie_name(cookie_name: String) -> Result<String, ConfigError> {
    if cookie_name.is_empty()
        || !cookie_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(ConfigError::new(
            "cookie.name",
            format!("invalid cookie name \"{cookie_name}\""),
        ));
    }
    Ok(cookie_name)
}

/// The prefix without its trailing slashes ("" = the API at the root).
pub(super) fn api_prefix(prefix: &str) -> Result<String, ConfigError> {
    let api_prefix = prefix.trim_end_matches('/').to_string();
    if !api_prefix.is_empty()
        && (!api_prefix.starts_with('/')
            || crate::route::normalize_path(&api_prefix).map_or(true, |p| p != api_prefix.as_str())
            || !api_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.')))
    {
        return Err(ConfigError::new(
            "api.prefix",
            format!("\"{prefix}\" is not a plain absolute path such as \"/_auth\""),
        ));
    }
    Ok(api_prefix)
}

pub(super) fn ui_title(title: &str) -> Result<String, ConfigError> {
    let ui_title = title.trim().to_string();
    if ui_title.is_empty() || ui_title.chars().count() > 80 || ui_title.chars().any(char::is_control) {
        return Err(ConfigError::new(
            "ui.title",
            "must be 1 to 80 characters, without control characters",
        ));
    }
    Ok(ui_title)
}
