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

/// A client builder with the gateway's timeouts and reconnect policy: commands are sent once,
/// and the client reconnects by itself, for ever — its first connection too (fred's
/// `Config::fail_fast` would give up for good when the first one fails: a gateway started
/// before Redis would never reach it). Commands fail fast while disconnected through their
/// own options (`command_options`).
pub fn client_builder(mut config: Config) -> Builder {
    config.fail_fast = false;
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
    .set_policy(reconnect_policy());
    b
}

/// The first attempt at once (after 1 ms, with up to 25 ms of jitter: a gateway starting,
/// or a connection just lost), then every 250 ms, for ever. (fred sleeps before every attempt,
/// the first one too: a constant 250 ms would hold a new node's first lookup past its limit.)
fn reconnect_policy() -> ReconnectPolicy {
    let mut policy = ReconnectPolicy::new_exponential(0, 1, 250, 250);
    policy.set_jitter(25);
    policy
}

/// How long a session lookup (and `/readyz`'s ping) may wait on Redis: the store's reads and
/// the cluster's node clients (`redis_shards`) share it.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_millis(250);

/// A command's options: answered within `timeout`, and at once while disconnected.
pub fn command_options(timeout: Duration) -> Options {
    Options {
        timeout: Some(timeout),
        fail_fast: true,
        ..Options::default()
    }
}

/// Which of a server's two connections a command uses.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Read,
    Write,
}

/// A server's two clients. `WAIT` holds its connection until the replicas answer (up to
/// half a second while one is away): lookups never queue behind it, and a write's `WAIT`
/// goes on the connection that made the write, as `WAIT` requires.
#[derive(Clone)]
pub struct Pair {
    reads: Client,
    writes: Client,
}

impl Pair {
    /// Builds and starts both clients (they keep reconnecting by themselves).
    pub fn connect(config: &Config) -> Result<Pair, String> {
        let make = || {
            let client = client_builder(config.clone())
                .build()
                .map_err(|e| format!("redis client: {e}"))?;
            client.connect();
            Ok::<_, String>(client)
        };
        Ok(Pair {
            reads: make()?,
            writes: make()?,
        })
    }

    /// Waits up to `wait` for both connections; whether they are up.
    pub async fn wait_for_connect(&self, wait: Duration) -> bool {
        let both = async {
            self.reads.wait_for_connect().await.is_ok() && self.writes.wait_for_connect().await.is_ok()
        };
        tokio::time::timeout(wait, both).await.unwrap_or(false)
    }

    pub fn client(&self, role: Role) -> &Client {
        match role {
            Role::Read => &self.reads,
            Role::Write => &self.writes,
        }
    }

    /// Whether both are the same clients (not another pair to the same server).
    pub fn same(&self, other: &Pair) -> bool {
        self.reads.id() == other.reads.id()
    }

    /// Closes both, in the background.
    pub fn quit(self) {
        tokio::spawn(async move {
            let _ = self.reads.quit().await;
            let _ = self.writes.quit().await;
        });
    }
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
