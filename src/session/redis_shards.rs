//! Redis Cluster routing for the store: one connection per master, so a master that dies (or
//! hangs) stalls only its own slots. fred's cluster client handles every node in one task and,
//! while a dead master is still listed, keeps that task in its reconnection loop: every
//! command, to every master, waited (issue #14, finding 3). Here that client only follows the
//! topology (`control`: it learns the cluster from one seed and re-learns it through every node
//! it knows); each command goes to its slot's master over a client of that master alone (a
//! `Pair`: one connection for lookups, one for writes and their `WAIT`).
//!
//! - A command that meets a moved slot (`MOVED`, `ASK`) re-learns the topology and is sent
//!   once more; any other failure starts a re-learning in the background and is answered as
//!   the store being unavailable (503) — fast: node clients fail fast while disconnected.
//! - A master that left the topology (replaced in a failover) has its client dropped.
//! - Not followed: `ASK` (a slot in the middle of a migration). The keys already moved answer
//!   503 until the migration ends (`redis-cli --cluster reshard` moves a slot in moments); then
//!   `MOVED` is followed as above.

use super::redis_url::{self, Pair, command_options};
use super::store::StoreError;
use fred::prelude::*;
use fred::types::config::ServerConfig;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Shards {
    /// The cluster client: topology only.
    control: Client,
    /// What every node client is made from (credentials, database), its server replaced.
    template: Config,
    nodes: Mutex<HashMap<Server, Pair>>,
    refreshing: AtomicBool,
}

/// Whether an error means the slot lives elsewhere now.
pub fn is_redirect(e: &Error) -> bool {
    let details = e.details();
    ["MOVED", "ASK ", "CLUSTERDOWN", "TRYAGAIN"]
        .iter()
        .any(|m| details.contains(m))
}

impl Shards {
    /// Starts the topology client and waits up to `wait` for the cluster's slots.
    pub async fn connect(config: Config, wait: Duration) -> Result<Arc<Shards>, String> {
        let control = redis_url::client_builder(config.clone())
            .build()
            .map_err(|e| format!("redis client: {e}"))?;
        control.connect();
        if tokio::time::timeout(wait, control.wait_for_connect())
            .await
            .is_err()
        {
            tracing::warn!("redis is not reachable yet; the gateway starts and keeps trying");
        }
        Ok(Arc::new(Shards {
            control,
            template: config,
            nodes: Mutex::new(HashMap::new()),
            refreshing: AtomicBool::new(false),
        }))
    }

    /// The clients of the master that serves `key` now.
    pub async fn client_for(&self, key: &str) -> Result<Pair, StoreError> {
        let slot = fred::util::redis_keyslot(key.as_bytes());
        let server = self
            .control
            .cached_cluster_state()
            .and_then(|state| state.get_server(slot).cloned())
            .ok_or_else(|| StoreError::Unavailable("the cluster's topology is not known yet".into()))?;
        self.node(server).await
    }

    /// The clients of one master, made (and connected, for at most a lookup's time) at first
    /// use.
    async fn node(&self, server: Server) -> Result<Pair, StoreError> {
        if let Some(pair) = self.nodes.lock().ok().and_then(|n| n.get(&server).cloned()) {
            return Ok(pair);
        }
        let mut config = self.template.clone();
        config.server = ServerConfig::Centralized {
            server: server.clone(),
        };
        let pair = Pair::connect(&config).map_err(StoreError::Unavailable)?;
        pair.wait_for_connect(redis_url::LOOKUP_TIMEOUT).await;
        let mut nodes = self
            .nodes
            .lock()
            .map_err(|_| StoreError::Unavailable("redis node table poisoned".into()))?;
        // Another request may have made one meanwhile: keep that one.
        let kept = nodes.entry(server).or_insert(pair.clone()).clone();
        if !kept.same(&pair) {
            pair.quit();
        }
        Ok(kept)
    }

    /// The clients of every master, as the topology says now.
    pub async fn primaries(&self) -> Vec<Pair> {
        let servers = self
            .control
            .cached_cluster_state()
            .map(|s| s.unique_primary_nodes())
            .unwrap_or_default();
        let mut pairs = Vec::with_capacity(servers.len());
        for server in servers {
            if let Ok(pair) = self.node(server).await {
                pairs.push(pair);
            }
        }
        pairs
    }

    /// Re-learns the topology now (bounded), for a command about to be sent again.
    pub async fn resync(&self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.control.sync_cluster()).await;
        self.prune();
    }

    /// Re-learns the topology in the background (one at a time).
    pub fn refresh(self: &Arc<Self>) {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), me.control.sync_cluster()).await;
            me.prune();
            me.refreshing.store(false, Ordering::Release);
        });
    }

    /// Drops the clients of nodes that no longer serve slots.
    fn prune(&self) {
        let Some(state) = self.control.cached_cluster_state() else {
            return;
        };
        let primaries = state.unique_primary_nodes();
        let Ok(mut nodes) = self.nodes.lock() else {
            return;
        };
        let gone: Vec<Server> = nodes.keys().filter(|s| !primaries.contains(s)).cloned().collect();
        for server in gone {
            if let Some(pair) = nodes.remove(&server) {
                pair.quit();
            }
        }
    }

    /// Whether any master answers (`/readyz`: the store is reachable; one master down leaves
    /// the others serving their sessions).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let quick = command_options(redis_url::LOOKUP_TIMEOUT);
        for pair in self.primaries().await {
            let reads = pair.client(redis_url::Role::Read).with_options(&quick);
            if reads.ping::<String>(None).await.is_ok() {
                return Ok(());
            }
        }
        Err(StoreError::Unavailable("no cluster master answers".into()))
    }
}
