//! Redis as operators run it for high availability, made of real processes on free ports:
//! a Redis Cluster of 3 masters and 3 replicas (`redis-cli --cluster create`), and a Sentinel
//! deployment of 1 master, 1 replica and 3 sentinels. Nodes start in parallel; every wait is
//! bounded. Tests can kill a node (SIGKILL, like a crash) and wait for the failover.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `redis-cli -p PORT ARGS…`, its output (empty if it failed).
pub fn cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn spawn(args: &[String]) -> Child {
    Command::new("redis-server")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server is installed (scripts/test.sh installs it)")
}

/// A server's arguments both deployments share: its port on loopback, data and `redis.log` in
/// `dir` (created), append-only (so a killed node comes back with its data), and replicas synced
/// at once (not after the default 5 s wait for others), then `extra`.
fn server_args(port: u16, dir: &std::path::Path, extra: &[&str]) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    let port = port.to_string();
    let log = dir.join("redis.log");
    let (dir, log) = (dir.to_str().unwrap(), log.to_str().unwrap());
    let mut args = vec![
        "--port",
        &port,
        "--bind",
        "127.0.0.1",
        "--appendonly",
        "yes",
        "--save",
        "",
        "--repl-diskless-sync-delay",
        "0",
        "--dir",
        dir,
        "--logfile",
        log,
    ];
    args.extend_from_slice(extra);
    args.into_iter().map(String::from).collect()
}

/// Waits (at most `limit`) until `ok` holds.
pub fn wait_until(what: &str, limit: Duration, ok: impl FnMut() -> bool) {
    if !waited(limit, ok) {
        panic!("timed out after {limit:?} waiting for {what}");
    }
}

/// Whether `ok` came to hold within `limit`.
fn waited(limit: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

struct Node {
    port: u16,
    child: Option<Child>,
    args: Vec<String>,
}

impl Node {
    fn start(port: u16, args: Vec<String>) -> Node {
        Node {
            port,
            child: Some(spawn(&args)),
            args,
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        self.child = Some(spawn(&self.args));
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis Cluster: 3 masters, each with one replica.
pub struct RedisCluster {
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
}

impl RedisCluster {
    /// Starts six nodes and joins them (`cluster-node-timeout` 1 s: a dead master is replaced
    /// in about two seconds). A cluster whose replicas are not all in sync within 20 s is
    /// described on stderr and built once more from new processes on new ports: this is the
    /// tests' set-up, before any gateway runs (CI saw one such start, once, and not here since).
    pub fn start() -> RedisCluster {
        match RedisCluster::try_start() {
            Ok(cluster) => cluster,
            Err(first) => {
                eprintln!("a Redis Cluster did not come up; starting another. It was:\n{first}");
                RedisCluster::try_start()
                    .unwrap_or_else(|second| panic!("no Redis Cluster came up twice:\n{second}"))
            }
        }
    }

    fn try_start() -> Result<RedisCluster, String> {
        let dir = tempfile::tempdir().unwrap();
        let nodes: Vec<Node> = (0..6)
            .map(|_| {
                // The cluster bus gets a free port of its own (by default it is port + 10000,
                // which may be taken, or past 65535).
                let (port, bus) = (free_port(), free_port());
                let bus = bus.to_string();
                let args = server_args(
                    port,
                    &dir.path().join(port.to_string()),
                    &[
                        "--cluster-port",
                        &bus,
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "1000",
                        // As docs/sessions.md recommends: a master lost stops only its own slots.
                        "--cluster-require-full-coverage",
                        "no",
                    ],
                );
                Node::start(port, args)
            })
            .collect();
        for n in &nodes {
            wait_until("a cluster node", Duration::from_secs(10), || {
                cli(n.port, &["ping"]).trim() == "PONG"
            });
        }
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli is installed");
        assert!(created.success(), "redis-cli --cluster create failed");
        let cluster = RedisCluster { dir, nodes };
        let ok = |n: &Node| cli(n.port, &["cluster", "info"]).contains("cluster_state:ok");
        if !waited(Duration::from_secs(20), || cluster.nodes.iter().all(ok)) {
            return Err(cluster.describe("cluster_state:ok on every node"));
        }
        if !waited(Duration::from_secs(20), || cluster.replicas_in_sync()) {
            return Err(cluster.describe("every master's replica in sync"));
        }
        Ok(cluster)
    }

    /// What each node says of itself and its replication, and the end of its log: printed when
    /// the cluster does not reach the state a wait asked for.
    fn describe(&self, waited_for: &str) -> String {
        let mut out = format!("waited in vain for {waited_for}\n");
        for n in &self.nodes {
            let me = cli(n.port, &["cluster", "nodes"]);
            let me = me.lines().find(|l| l.contains("myself")).unwrap_or("(no answer)");
            let repl = cli(n.port, &["info", "replication"]);
            let repl: Vec<&str> = repl
                .lines()
                .filter(|l| {
                    l.starts_with("role")
                        || l.starts_with("master_link")
                        || l.starts_with("slave")
                        || l.starts_with("connected")
                })
                .collect();
            let log = std::fs::read_to_string(self.dir.path().join(n.port.to_string()).join("redis.log"))
                .unwrap_or_default();
            let tail: Vec<&str> = log
                .lines()
                .rev()
                .take(12)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            out += &format!(
                "-- node {} ({}): {me}\n   {}\n   log: {}\n",
                n.port,
                if n.child.is_some() { "running" } else { "killed" },
                repl.join(" | "),
                tail.join("\n        ")
            );
        }
        out
    }

    /// A URL with one seed node, as docs/sessions.md shows it.
    pub fn url_with_seed(&self, port: u16) -> String {
        format!("redis-cluster://127.0.0.1:{port}")
    }

    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// A running node's view of the live masters: port and slot ranges.
    fn master_slots(&self) -> Vec<(u16, Vec<(u16, u16)>)> {
        let Some(alive) = self.nodes.iter().find(|n| n.child.is_some()) else {
            return Vec::new();
        };
        cli(alive.port, &["cluster", "nodes"])
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                // A master without slots is not serving (or is a replica not yet gossiped).
                if f.len() < 9 || !f[2].contains("master") || f[2].contains("fail") {
                    return None;
                }
                let port = f[1].split(['@', ':']).nth(1)?.parse().ok()?;
                let ranges = f[8..]
                    .iter()
                    .filter(|r| !r.starts_with('['))
                    .filter_map(|r| match r.split_once('-') {
                        Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                        None => r.parse().ok().map(|x| (x, x)),
                    })
                    .collect();
                Some((port, ranges))
            })
            .collect()
    }

    /// The live masters' ports.
    pub fn masters(&self) -> Vec<u16> {
        self.master_slots().into_iter().map(|(p, _)| p).collect()
    }

    /// The master serving `key` now.
    pub fn master_of(&self, key: &str) -> u16 {
        let alive = self.nodes.iter().find(|n| n.child.is_some()).unwrap();
        let slot: u16 = cli(alive.port, &["cluster", "keyslot", key])
            .trim()
            .parse()
            .unwrap();
        self.master_slots()
            .into_iter()
            .find(|(_, ranges)| ranges.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
            .map(|(p, _)| p)
            .unwrap_or_else(|| panic!("no master serves slot {slot}"))
    }

    /// Moves the slot of `key`, with its keys, from its master to another one (as
    /// `redis-cli --cluster reshard` does, for one slot); returns (from, to).
    pub fn move_slot_of(&self, key: &str) -> (u16, u16) {
        let from = self.master_of(key);
        let to = *self.masters().iter().find(|p| **p != from).unwrap();
        let slot = cli(from, &["cluster", "keyslot", key]).trim().to_string();
        let id = |port: u16| cli(port, &["cluster", "myid"]).trim().to_string();
        let (from_id, to_id) = (id(from), id(to));
        assert!(cli(to, &["cluster", "setslot", &slot, "importing", &from_id]).contains("OK"));
        assert!(cli(from, &["cluster", "setslot", &slot, "migrating", &to_id]).contains("OK"));
        loop {
            let keys = cli(from, &["cluster", "getkeysinslot", &slot, "100"]);
            let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let to_port = to.to_string();
            let mut args = vec!["migrate", "127.0.0.1", &to_port, "", "0", "5000", "keys"];
            args.extend(keys.iter().copied());
            assert!(cli(from, &args).contains("OK"), "MIGRATE failed");
        }
        for port in self.masters() {
            assert!(cli(port, &["cluster", "setslot", &slot, "node", &to_id]).contains("OK"));
        }
        (from, to)
    }

    /// Kills the node on `port` (SIGKILL) and waits for nothing.
    pub fn kill(&mut self, port: u16) {
        self.nodes.iter_mut().find(|n| n.port == port).unwrap().kill();
    }

    /// The ports of the nodes that serve no slots (replicas).
    pub fn replicas(&self) -> Vec<u16> {
        let masters = self.masters();
        self.ports()
            .into_iter()
            .filter(|p| !masters.contains(p))
            .collect()
    }

    /// Kills the node on `port` (SIGKILL) and waits until another master serves its slots.
    pub fn kill_and_fail_over(&mut self, port: u16) -> Duration {
        let started = Instant::now();
        self.nodes.iter_mut().find(|n| n.port == port).unwrap().kill();
        let others: Vec<u16> = self.ports().into_iter().filter(|p| *p != port).collect();
        wait_until("the failover", Duration::from_secs(20), || {
            others
                .iter()
                .all(|p| cli(*p, &["cluster", "info"]).contains("cluster_state:ok"))
                && !self.masters().contains(&port)
        });
        started.elapsed()
    }

    /// Starts a killed node again: it rejoins as a replica, and every master has one again.
    pub fn restart(&mut self, port: u16) {
        let n = self.nodes.iter_mut().find(|n| n.port == port).unwrap();
        n.restart();
        wait_until("a restarted node", Duration::from_secs(10), || {
            cli(port, &["ping"]).trim() == "PONG"
        });
        self.wait_for_replicas(Duration::from_secs(30));
    }

    /// Waits until three masters hold slots and each has an online replica. The masters are
    /// asked anew on every try: right after `--cluster create` a node's view may still list a
    /// replica as a (slotless) master, and a list taken then would wait on the wrong node.
    fn wait_for_replicas(&self, limit: Duration) {
        if !waited(limit, || self.replicas_in_sync()) {
            panic!("{}", self.describe("every master's replica in sync"));
        }
    }

    fn replicas_in_sync(&self) -> bool {
        let masters = self.masters();
        masters.len() == 3
            && masters.iter().all(|m| {
                let info = cli(*m, &["info", "replication"]);
                info.contains("role:master")
                    && info.contains("connected_slaves:1")
                    && info.contains("state=online")
            })
    }
}

/// A Sentinel deployment: one master, one replica, three sentinels watching `mymaster`.
pub struct RedisSentinel {
    dir: tempfile::TempDir,
    master: Node,
    replica: Node,
    sentinels: Vec<Node>,
}

pub const SERVICE: &str = "mymaster";

impl RedisSentinel {
    pub fn start() -> RedisSentinel {
        let dir = tempfile::tempdir().unwrap();
        let data = |name: &str| {
            let d = dir.path().join(name);
            std::fs::create_dir_all(&d).unwrap();
            d.to_str().unwrap().to_string()
        };
        let server = |port: u16, name: &str, extra: &[&str]| server_args(port, &dir.path().join(name), extra);
        let (m, r) = (free_port(), free_port());
        let master = Node::start(m, server(m, "master", &[]));
        let master_port = m.to_string();
        let replica = Node::start(
            r,
            server(r, "replica", &["--replicaof", "127.0.0.1", &master_port]),
        );
        let sentinels = (0..3)
            .map(|i| {
                let port = free_port();
                let conf = dir.path().join(format!("sentinel-{i}.conf"));
                std::fs::write(
                    &conf,
                    format!(
                        "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor {SERVICE} 127.0.0.1 {m} 2\n\
                         sentinel down-after-milliseconds {SERVICE} 1000\nsentinel failover-timeout {SERVICE} 5000\n\
                         sentinel parallel-syncs {SERVICE} 1\n",
                        data(&format!("sentinel-{i}"))
                    ),
                )
                .unwrap();
                Node::start(port, vec![conf.to_str().unwrap().to_string(), "--sentinel".into()])
            })
            .collect::<Vec<_>>();
        let s = RedisSentinel {
            dir,
            master,
            replica,
            sentinels,
        };
        wait_until("the replica in sync", Duration::from_secs(15), || {
            let info = cli(m, &["info", "replication"]);
            info.contains("connected_slaves:1") && info.contains("state=online")
        });
        for sen in &s.sentinels {
            wait_until(
                "sentinels that know each other and the replica",
                Duration::from_secs(20),
                || {
                    let info = cli(sen.port, &["sentinel", "master", SERVICE]);
                    info.contains("num-other-sentinels\n2") && info.contains("num-slaves\n1")
                },
            );
        }
        s
    }

    /// The URL naming the sentinels and the service (docs/sessions.md, `store.url`).
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis-sentinel://{}/{SERVICE}", hosts.join(","))
    }

    pub fn master_port(&self) -> u16 {
        self.master.port
    }

    /// Starts the killed master again: the sentinels make it the new master's replica.
    pub fn restart_old_master(&mut self) {
        self.master.restart();
        let new_master = self.replica.port;
        wait_until(
            "the old master back as a replica",
            Duration::from_secs(30),
            || {
                let info = cli(new_master, &["info", "replication"]);
                info.contains("connected_slaves:1") && info.contains("state=online")
            },
        );
    }

    /// Kills the master (SIGKILL) and waits until the sentinels promoted the replica.
    pub fn kill_master_and_fail_over(&mut self) -> Duration {
        let started = Instant::now();
        self.master.kill();
        let want = self.replica.port.to_string();
        let sentinel = self.sentinels[0].port;
        wait_until("the sentinel failover", Duration::from_secs(30), || {
            cli(sentinel, &["sentinel", "get-master-addr-by-name", SERVICE])
                .lines()
                .nth(1)
                .is_some_and(|p| p.trim() == want)
        });
        started.elapsed()
    }
}

/// The gateways' warnings in the test's captured output (shown when a test fails): a store
/// error's cause is logged, never answered.
pub fn log_warnings() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn,fred=error"))
        .with_test_writer()
        .try_init();
}
