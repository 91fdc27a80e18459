//! The small parsers every section of the configuration uses: paths relative to the config
//! file, socket addresses, CIDRs and durations, each error naming its key.

use crate::config::model::ConfigError;
use crate::config::units::parse_duration;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(super) fn resolve(base: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

pub(super) fn socket_addr(key: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse().map_err(|_| {
        ConfigError::new(
            key,
            format!("invalid address \"{text}\" (expected IP:port, e.g. 127.0.0.1:8443 or [::1]:8443)"),
        )
    })
}

pub(super) fn cidr(key: &str, text: &str) -> Result<IpNet, ConfigError> {
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net);
    }
    text.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
        ConfigError::new(
            key,
            format!("invalid IP or CIDR \"{text}\" (e.g. 10.0.0.0/8 or 192.0.2.1)"),
        )
    })
}

pub(super) fn duration(key: &str, text: &str) -> Result<Duration, ConfigError> {
    parse_duration(text).map_err(|e| ConfigError::new(key, e))
}

pub(super) fn positive(key: &str, text: &str) -> Result<Duration, ConfigError> {
    let d = duration(key, text)?;
    if d.is_zero() {
        return Err(ConfigError::new(key, "must be greater than zero"));
    }
    Ok(d)
}
