//! `[[oidc]]` → `OidcConfig` (SPEC §4a): names, the issuer (`https://`, or `http://` on a
//! loopback address), the client's secret (given, or read from the environment now, so a
//! missing variable stops the start instead of the first sign-in), scopes, claims, roles, the
//! token endpoint's authentication, and the provider's TLS.

use crate::config::model::{ConfigError, OidcConfig};
use crate::config::raw::RawOidc;
use std::path::Path;
use std::sync::Arc;

/// The signature algorithms accepted when `algorithms` is not given: every asymmetric one
/// providers use (HMAC would make the client secret a signing key; `none` is never taken).
pub const DEFAULT_ALGORITHMS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

pub(super) fn providers(raw: Vec<RawOidc>, base: &Path) -> Result<Vec<Arc<OidcConfig>>, ConfigError> {
    let mut out: Vec<Arc<OidcConfig>> = Vec::new();
    for (i, p) in raw.into_iter().enumerate() {
        let key = format!("oidc[{i}]");
        let provider = provider(&key, p, base)?;
        if out.iter().any(|o| o.name == provider.name) {
            return Err(ConfigError::new(
                format!("{key}.name"),
                format!("duplicate provider \"{}\"", provider.name),
            ));
        }
        out.push(Arc::new(provider));
    }
    Ok(out)
}

fn provider(key: &str, p: RawOidc, base: &Path) -> Result<OidcConfig, ConfigError> {
    let err = |field: &str, text: String| ConfigError::new(format!("{key}.{field}"), text);
    let name_ok = !p.name.is_empty()
        && p.name.len() <= 32
        && p.name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !name_ok {
        return Err(err(
            "name",
            format!("\"{}\": 1-32 of a-z, 0-9, - and _ (it is part of URLs)", p.name),
        ));
    }
    check_url(&p.issuer).map_err(|e| err("issuer", e))?;
    if p.client_id.is_empty() || p.client_id.len() > 256 {
        return Err(err("client_id", "must be 1-256 characters".into()));
    }
    let client_secret = match (p.client_secret, p.client_secret_env) {
        (Some(_), Some(_)) => {
            return Err(err(
                "client_secret",
                "give client_secret or client_secret_env, not both".into(),
            ));
        }
        (Some(secret), None) => secret,
        (None, Some(var)) => match std::env::var(&var) {
            Ok(secret) if !secret.is_empty() => secret,
            _ => {
                return Err(err(
                    "client_secret_env",
                    format!("the environment variable {var} is not set (or empty)"),
                ));
            }
        },
        (None, None) => {
            return Err(err(
                "client_secret",
                "needed: client_secret, or client_secret_env naming an environment variable".into(),
            ));
        }
    };
    if client_secret.is_empty() {
        return Err(err("client_secret", "must not be empty".into()));
    }
    let scopes = p
        .scopes
        .unwrap_or_else(|| vec!["openid".into(), "profile".into(), "email".into()]);
    if !scopes.iter().any(|s| s == "openid") {
        return Err(err("scopes", "must include \"openid\"".into()));
    }
    if let Some(bad) = scopes
        .iter()
        .find(|s| s.is_empty() || !s.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\'))
    {
        return Err(err("scopes", format!("\"{bad}\" is not a scope token")));
    }
    let username_claim = p.username_claim.unwrap_or_else(|| "preferred_username".into());
    if username_claim.is_empty() {
        return Err(err("username_claim", "must not be empty".into()));
    }
    if p.roles_claim.as_deref() == Some("") {
        return Err(err("roles_claim", "must not be empty".into()));
    }
    if let Some(roles) = &p.allowed_roles {
        if roles.is_empty() {
            return Err(err(
                "allowed_roles",
                "an empty list would refuse everyone; leave it out to admit everyone".into(),
            ));
        }
        if p.roles_claim.is_none() {
            return Err(err(
                "allowed_roles",
                "needs roles_claim (where the roles are)".into(),
            ));
        }
        if let Some(bad) = roles.iter().find(|r| r.is_empty() || r.contains(',')) {
            return Err(err("allowed_roles", format!("invalid role \"{bad}\"")));
        }
    }
    let secret_in_body = match p.token_auth.as_deref() {
        None | Some("client_secret_basic") => false,
        Some("client_secret_post") => true,
        Some(other) => {
            return Err(err(
                "token_auth",
                format!("\"{other}\": expected client_secret_basic or client_secret_post"),
            ));
        }
    };
    if let Some(uri) = &p.redirect_uri {
        check_url(uri).map_err(|e| err("redirect_uri", e))?;
    }
    let algorithms = match p.algorithms {
        None => DEFAULT_ALGORITHMS.iter().map(|a| a.to_string()).collect(),
        Some(list) if list.is_empty() => {
            return Err(err("algorithms", "at least one algorithm is needed".into()));
        }
        Some(list) => {
            for a in &list {
                crate::auth::jwt::algorithm(a).map_err(|e| err("algorithms", e))?;
            }
            list
        }
    };
    // Relative to the config file (`join` keeps an absolute path as it is).
    let ca = p.ca_file.as_deref().map(|f| base.join(f));
    let tls = crate::tls::client_config(ca.as_deref()).map_err(|e| err("ca_file", e))?;
    Ok(OidcConfig {
        display_name: p.display_name.unwrap_or_else(|| p.name.clone()),
        name: p.name,
        issuer: p.issuer,
        client_id: p.client_id,
        client_secret,
        scopes,
        username_claim,
        roles_claim: p.roles_claim,
        allowed_roles: p.allowed_roles,
        secret_in_body,
        redirect_uri: p.redirect_uri,
        algorithms,
        tls: Arc::new(tls),
    })
}

/// `https://…`, or `http://…` on a loopback address (development and tests): what the gateway
/// may send a client secret to and take identities from.
pub fn check_url(text: &str) -> Result<(), String> {
    let url = openidconnect::url::Url::parse(text).map_err(|e| format!("\"{text}\": {e}"))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("\"{text}\": no query or fragment here"));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&url) => Ok(()),
        "http" => Err(format!(
            "\"{text}\": must be https:// (http:// only on a loopback address)"
        )),
        other => Err(format!("\"{text}\": {other}:// is not http(s)")),
    }
}

/// Whether the URL's host is a loopback address (`localhost`, 127.0.0.0/8, ::1).
pub fn is_loopback(url: &openidconnect::url::Url) -> bool {
    match url.host() {
        Some(openidconnect::url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(openidconnect::url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(openidconnect::url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_issuers() {
        assert!(check_url("https://idp.example.com/realms/x").is_ok());
        assert!(check_url("http://127.0.0.1:8080").is_ok());
        assert!(check_url("http://localhost:8080").is_ok());
        assert!(check_url("http://[::1]:9").is_ok());
        assert!(check_url("http://idp.example.com").is_err());
        assert!(check_url("http://127.0.0.1.example.com").is_err());
        assert!(check_url("ftp://idp.example.com").is_err());
        assert!(check_url("https://idp.example.com/?x=1").is_err());
        assert!(check_url("not a url").is_err());
    }
}
