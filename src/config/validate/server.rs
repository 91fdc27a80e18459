//! What the gateway listens on and says on the wire: `[server]` (listeners, TLS, limits),
//! `[admin]`, `[headers]` (identity header names) and `[demo]`.

use super::parse::{cidr, duration, positive, resolve, socket_addr};
use crate::config::model::{AdminConfig, ConfigError, DemoConfig, HeaderNames, ServerConfig};
use crate::config::raw::{RawAdmin, RawDemo, RawHeaders, RawServer};
use crate::tls;
use http::HeaderName;
use std::path::Path;
use std::sync::Arc;

pub(super) fn server(s: RawServer, base: &Path) -> Result<ServerConfig, ConfigError> {
    let tls = match (&s.listen, &s.tls_cert, &s.tls_key) {
        (Some(listen), Some(cert), Some(key)) => {
            let addr = socket_addr("server.listen", listen)?;
            let config = tls::server_config(&resolve(base, cert), &resolve(base, key))
                .map_err(|e| ConfigError::new("server.tls_cert", e))?;
            Some((addr, Arc::new(config)))
        }
        (Some(_), None, _) => {
            return Err(ConfigError::new(
                "server.tls_cert",
                "required with server.listen (the TLS listener)",
            ));
        }
        (Some(_), _, None) => {
            return Err(ConfigError::new(
                "server.tls_key",
                "required with server.listen (the TLS listener)",
            ));
        }
        (None, Some(_), _) | (None, _, Some(_)) => {
            return Err(ConfigError::new(
                "server.listen",
                "required when tls_cert/tls_key are set",
            ));
        }
        (None, None, None) => None,
    };
    let http_listen = s
        .http_listen
        .as_deref()
        .map(|a| socket_addr("server.http_listen", a))
        .transpose()?;
    if tls.is_none() && http_listen.is_none() {
        return Err(ConfigError::new(
            "server",
            "no listener: set listen (TLS, with tls_cert and tls_key) or http_listen",
        ));
    }
    let trusted_proxies = s
        .trusted_proxies
        .iter()
        .enumerate()
        .map(|(i, p)| cidr(&format!("server.trusted_proxies[{i}]"), p))
        .collect::<Result<_, _>>()?;
    let workers = match s.workers {
        Some(0) => return Err(ConfigError::new("server.workers", "must be at least 1")),
        Some(n) if n > 1024 => return Err(ConfigError::new("server.workers", "must be at most 1024")),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let max_header_bytes = s
        .max_header_bytes
        .bytes()
        .map_err(|e| ConfigError::new("server.max_header_bytes", e))?;
    if !(8192..=1 << 20).contains(&max_header_bytes) {
        return Err(ConfigError::new(
            "server.max_header_bytes",
            "must be between 8KiB and 1MiB",
        ));
    }
    Ok(ServerConfig {
        tls,
        http_listen,
        trusted_proxies,
        workers,
        header_read_timeout: positive("server.header_read_timeout", &s.header_read_timeout)?,
        idle_timeout: positive("server.idle_timeout", &s.idle_timeout)?,
        max_header_bytes: max_header_bytes as usize,
        shutdown_grace: duration("server.shutdown_grace", &s.shutdown_grace)?,
        http1_fast_path: s.http1_fast_path,
    })
}

pub(super) fn admin(a: RawAdmin) -> Result<AdminConfig, ConfigError> {
    let token = match (a.token, a.token_env) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                "admin.token",
                "set token or token_env, not both",
            ));
        }
        (Some(t), None) => Some(t),
        (None, Some(var)) => Some(std::env::var(&var).map_err(|_| {
            ConfigError::new(
                "admin.token_env",
                format!("environment variable {var} is not set"),
            )
        })?),
        (None, None) => None,
    };
    if let Some(t) = &token
        && t.len() < 16
    {
        return Err(ConfigError::new("admin.token", "must be at least 16 characters"));
    }
    Ok(AdminConfig {
        listen: socket_addr("admin.listen", &a.listen)?,
        token,
        allow_from: a
            .allow_from
            .iter()
            .enumerate()
            .map(|(i, p)| cidr(&format!("admin.allow_from[{i}]"), p))
            .collect::<Result<_, _>>()?,
    })
}

pub(super) fn headers(h: RawHeaders) -> Result<HeaderNames, ConfigError> {
    Ok(HeaderNames {
        user: header_name("headers.user", &h.user)?,
        user_id: header_name("headers.user_id", &h.user_id)?,
        user_uuid: header_name("headers.user_uuid", &h.user_uuid)?,
        roles: header_name("headers.roles", &h.roles)?,
        session_id: header_name("headers.session_id", &h.session_id)?,
        session_expires: header_name("headers.session_expires", &h.session_expires)?,
        jwt: header_name("headers.jwt", &h.jwt)?,
    })
}

pub(super) fn demo(demo: Option<RawDemo>) -> Result<Option<DemoConfig>, ConfigError> {
    demo.map(|d| {
        Ok(DemoConfig {
            whoami_listen: socket_addr("demo.whoami_listen", &d.whoami_listen)?,
        })
    })
    .transpose()
}

fn header_name(key: &str, text: &str) -> Result<HeaderName, ConfigError> {
    HeaderName::from_bytes(text.as_bytes())
        .map_err(|_| ConfigError::new(key, format!("invalid header name \"{text}\"")))
}
