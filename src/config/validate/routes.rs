//! `[[routes]]`: each route's name, host, path, upstreams, policy and limits, and the checks
//! across routes (unique names, one route per host and path, `jwt` needs an issuer).

use super::parse::{duration, positive, resolve};
use crate::config::model::{ConfigError, Policy, RouteConfig};
use crate::config::raw::RawRoute;
use crate::tls;
use std::path::Path;
use std::sync::Arc;

/// `has_jwt_issuers`: whether any `[[jwt_issuers]]` is configured (`policy = "jwt"` needs one).
pub(super) fn routes(
    raw: Vec<RawRoute>,
    has_jwt_issuers: bool,
    base: &Path,
) -> Result<Vec<RouteConfig>, ConfigError> {
    if raw.is_empty() {
        return Err(ConfigError::new(
            "routes",
            "at least one [[routes]] entry is needed",
        ));
    }
    let mut routes: Vec<RouteConfig> = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let route = route(&format!("routes[{i}]"), r, base)?;
        if route.policy == Policy::Jwt && !has_jwt_issuers {
            return Err(ConfigError::new(
                format!("routes[{i}].policy"),
                "policy = \"jwt\" needs at least one [[jwt_issuers]] entry",
            ));
        }
        if routes.iter().any(|o| o.name == route.name) {
            return Err(ConfigError::new(
                format!("routes[{i}].name"),
                format!("duplicate route name \"{}\"", route.name),
            ));
        }
        if let Some(o) = routes
            .iter()
            .find(|o| o.host == route.host && o.path_prefix == route.path_prefix)
        {
            return Err(ConfigError::new(
                format!("routes[{i}].path_prefix"),
                format!("route \"{}\" already has this host and path_prefix", o.name),
            ));
        }
        routes.push(route);
    }
    Ok(routes)
}

fn route(key: &str, r: RawRoute, base: &Path) -> Result<RouteConfig, ConfigError> {
    let name_ok = !r.name.is_empty()
        && r.name.len() <= 64
        && r.name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !name_ok {
        return Err(ConfigError::new(
            format!("{key}.name"),
            format!(
                "invalid route name \"{}\" (letters, digits, - and _; at most 64)",
                r.name
            ),
        ));
    }
    let host = r
        .host
        .map(|h| host_pattern(&format!("{key}.host"), &h))
        .transpose()?;
    let path_prefix = match crate::route::normalize_path(&r.path_prefix) {
        Ok(p) if p == r.path_prefix => p.into_owned(),
        _ => {
            return Err(ConfigError::new(
                format!("{key}.path_prefix"),
                format!("\"{}\" is not a normalized path starting with /", r.path_prefix),
            ));
        }
    };
    if r.upstreams.is_empty() {
        return Err(ConfigError::new(
            format!("{key}.upstreams"),
            "at least one upstream URL is needed",
        ));
    }
    let upstreams = r
        .upstreams
        .iter()
        .enumerate()
        .map(|(j, u)| upstream_uri(&format!("{key}.upstreams[{j}]"), u))
        .collect::<Result<Vec<_>, _>>()?;
    let policy = match r.policy.as_str() {
        "public" => Policy::Public,
        "authenticated" => Policy::Authenticated,
        "roles" => {
            if r.roles.is_empty() {
                return Err(ConfigError::new(
                    format!("{key}.roles"),
                    "policy = \"roles\" needs at least one role",
                ));
            }
            Policy::Roles(r.roles.clone())
        }
        "jwt" => Policy::Jwt,
        other => {
            return Err(ConfigError::new(
                format!("{key}.policy"),
                format!("unknown policy \"{other}\" (expected public, authenticated, roles or jwt)"),
            ));
        }
    };
    if !r.roles.is_empty() && !matches!(policy, Policy::Roles(_)) {
        return Err(ConfigError::new(
            format!("{key}.roles"),
            "only used with policy = \"roles\"",
        ));
    }
    let max_body = r
        .max_body
        .bytes()
        .map_err(|e| ConfigError::new(format!("{key}.max_body"), e))?;
    let upstream_tls = tls::client_config(r.upstream_ca.as_deref().map(|p| resolve(base, p)).as_deref())
        .map_err(|e| ConfigError::new(format!("{key}.upstream_ca"), e))?;
    let upgrades = upgrades(&format!("{key}.upgrades"), &r.upgrades)?;
    Ok(RouteConfig {
        name: r.name,
        host,
        path_prefix,
        upstreams,
        policy,
        strip_prefix: r.strip_prefix,
        forward_credentials: r.forward_credentials,
        preserve_host: r.preserve_host,
        upgrades,
        max_body,
        timeout: positive(&format!("{key}.timeout"), &r.timeout)?,
        connect_timeout: positive(&format!("{key}.connect_timeout"), &r.connect_timeout)?,
        cooldown: duration(&format!("{key}.cooldown"), &r.cooldown)?,
        upstream_tls: Arc::new(upstream_tls),
    })
}

/// A route's `upgrades`: protocol tokens (`websocket`, `foo/2`), lower-cased. `h2c` is refused:
/// after its 101 every request on the connection would be HTTP/2 the gateway never sees.
fn upgrades(key: &str, list: &[String]) -> Result<Vec<String>, ConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, p)| {
            let token = |t: &str| !t.is_empty() && t.bytes().all(crate::proxy::framing::is_tchar);
            let ok = match p.split_once('/') {
                Some((name, version)) => token(name) && token(version),
                None => token(p),
            };
            let lower = p.to_ascii_lowercase();
            if !ok {
                Err(ConfigError::new(
                    format!("{key}[{i}]"),
                    format!("\"{p}\" is not an Upgrade protocol name (a token, maybe /version)"),
                ))
            } else if lower == "h2c" || lower.starts_with("http/") {
                Err(ConfigError::new(
                    format!("{key}[{i}]"),
                    format!("\"{p}\" cannot be tunnelled: the gateway would not see the requests inside it"),
                ))
            } else {
                Ok(lower)
            }
        })
        .collect()
}

fn host_pattern(key: &str, text: &str) -> Result<String, ConfigError> {
    let host = text.to_ascii_lowercase();
    let bare = host.strip_prefix("*.").unwrap_or(&host);
    let valid = !bare.is_empty()
        && bare.len() <= 253
        && bare.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !valid {
        return Err(ConfigError::new(
            key,
            format!(
                "invalid host \"{text}\" (expected a name like app.example.com or *.example.com, no port)"
            ),
        ));
    }
    Ok(host)
}

fn upstream_uri(key: &str, text: &str) -> Result<http::Uri, ConfigError> {
    let bad = |why: &str| ConfigError::new(key, format!("invalid URL \"{text}\": {why}"));
    let uri: http::Uri = text.parse().map_err(|_| bad("not a URL"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(bad("expected http:// or https://")),
    }
    if uri.authority().is_none_or(|a| a.host().is_empty()) {
        return Err(bad("no host"));
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(bad("credentials in the URL are not supported"));
    }
    if uri
        .path_and_query()
        .is_some_and(|pq| pq.as_str() != "/" && !pq.as_str().is_empty())
    {
        return Err(bad(
            "must not have a path or query (use the route's strip_prefix to rewrite paths)",
        ));
    }
    Ok(uri)
}
