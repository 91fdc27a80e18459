//! Which Redis deployment a `store.url` names, and the client configuration for it:
//! - `redis://[user:password@]host:port[/db]` — one server;
//! - `redis-cluster://[user:password@]host:port[,host:port…]` — Redis Cluster. One seed is
//!   enough: the client learns the cluster's topology and, when it loses a node, reconnects
//!   through every node it has learned, not only the seeds (fred's `UseCache` discovery);
//! - `redis-sentinel://[user:password@]host:port[,host:port…]/service[/db]` — Sentinel: the
//!   sentinels' addresses and the monitored service's name; the client asks the sentinels for
//!   the service's master and follows its failovers. The password (if any) is the master's.

use fred::prelude::*;
use fred::types::config::{ClusterDiscoveryPolicy, ServerConfig};
use std::time::Duration;

/// A client builder with the gateway's timeouts and reconnect policy: commands fail fast while
/// disconnected, are sent once, and the client reconnects every 250 ms, for ever.
pub fn client_builder(mut config: Config) -> Builder {
    config.fail_fast = true;
    let mut b = Builder::from_config(config);
    b.with_connection_config(|c| {
        c.connection_timeout = Duration::from_secs(2);
        c.internal_command_timeout = Duration::from_secs(2);
        c.max_command_attempts = 1;
        c.tcp = TcpConfig {
            nodelay: Some(true),
            ..Default::default()
        };
    })
    .with_performance_config(|p| {
        p.default_command_timeout = Duration::from_secs(2);
    })
    .set_policy(ReconnectPolicy::new_constant(0, 250));
    b
}

/// What kind of deployment a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deployment {
    Single,
    Cluster,
    Sentinel,
}

impl Deployment {
    /// Whether the deployment has replicas that a failover promotes (so a write is safe only
    /// once a replica holds it).
    pub fn replicated(self) -> bool {
        matches!(self, Deployment::Cluster | Deployment::Sentinel)
    }
}

/// The deployment a URL names, by its scheme (for the config check).
pub fn deployment(url: &str) -> Option<Deployment> {
    let scheme = url.split_once("://")?.0;
    match scheme {
        "redis" | "rediss" => Some(Deployment::Single),
        "redis-cluster" | "rediss-cluster" => Some(Deployment::Cluster),
        "redis-sentinel" => Some(Deployment::Sentinel),
        _ => None,
    }
}

/// The fred configuration for a URL. Errors never quote the URL (it may hold a password).
pub fn config(url: &str) -> Result<(Config, Deployment), String> {
    let kind = deployment(url).ok_or("expected redis://, redis-cluster:// or redis-sentinel://")?;
    let config = match kind {
        Deployment::Sentinel => sentinel(url)?,
        Deployment::Single | Deployment::Cluster => {
            let mut config =
                Config::from_url(url).map_err(|e| format!("invalid redis URL: {}", e.details()))?;
            if let ServerConfig::Clustered { policy, .. } = &mut config.server {
                *policy = ClusterDiscoveryPolicy::UseCache;
            }
            config
        }
    };
    Ok((config, kind))
}

/// `redis-sentinel://[user:password@]host:port[,host:port…]/service[/db]`.
fn sentinel(url: &str) -> Result<Config, String> {
    let rest = url
        .strip_prefix("redis-sentinel://")
        .ok_or("expected redis-sentinel://")?;
    let (authority, path) = rest
        .split_once('/')
        .ok_or("redis-sentinel:// needs the service's name after the sentinels: …/mymaster")?;
    let (credentials, hosts) = match authority.rsplit_once('@') {
        Some((c, h)) => (Some(c), h),
        None => (None, authority),
    };
    let (username, password) = match credentials {
        Some(c) => match c.split_once(':') {
            Some((u, p)) => ((!u.is_empty()).then(|| u.to_string()), Some(p.to_string())),
            None => (None, Some(c.to_string())),
        },
        None => (None, None),
    };
    let hosts = hosts
        .split(',')
        .map(|h| {
            let (host, port) = h.rsplit_once(':').ok_or("each sentinel is host:port")?;
            let port: u16 = port.parse().map_err(|_| "each sentinel is host:port")?;
            if host.is_empty() {
                return Err("each sentinel is host:port");
            }
            Ok(Server::new(
                host.trim_start_matches('[').trim_end_matches(']'),
                port,
            ))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut parts = path.split('/');
    let service_name = parts
        .next()
        .filter(|s| !s.is_empty())
        .ok_or("the service's name is empty")?;
    let database = match parts.next() {
        Some(db) if !db.is_empty() => Some(db.parse::<u8>().map_err(|_| "the database is a number")?),
        _ => None,
    };
    if parts.next().is_some() {
        return Err("expected …/service[/db]".into());
    }
    Ok(Config {
        server: ServerConfig::Sentinel {
            hosts,
            service_name: service_name.to_string(),
        },
        username,
        password,
        database,
        ..Config::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls() {
        let (c, kind) = config("redis-sentinel://u:p@a:26379,b:26380/mymaster/2").unwrap();
        assert_eq!(kind, Deployment::Sentinel);
        assert_eq!(
            (c.username.as_deref(), c.password.as_deref(), c.database),
            (Some("u"), Some("p"), Some(2))
        );
        match c.server {
            ServerConfig::Sentinel { hosts, service_name } => {
                assert_eq!(service_name, "mymaster");
                assert_eq!(hosts, vec![Server::new("a", 26379), Server::new("b", 26380)]);
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            "redis-sentinel://a:1",
            "redis-sentinel://a:1/",
            "redis-sentinel://a/x",
            "redis-sentinel://a:x/x",
            "redis-sentinel://a:1/x/y",
            "redis-sentinel://a:1/x/1/2",
        ] {
            assert!(config(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cluster_urls_follow_the_learned_topology() {
        let (c, kind) = config("redis-cluster://127.0.0.1:7000").unwrap();
        assert_eq!(kind, Deployment::Cluster);
        assert!(matches!(
            c.server,
            ServerConfig::Clustered {
                policy: ClusterDiscoveryPolicy::UseCache,
                ..
            }
        ));
        assert_eq!(config("redis://h:1/0").unwrap().1, Deployment::Single);
        assert!(config("http://h").is_err());
    }
}
