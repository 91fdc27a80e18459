//! portcullis: a TLS-terminating reverse proxy that authenticates every request once, at the
//! edge. `start` binds every listener of a validated `Config` and runs the gateway on its own
//! threads, so `main` and the tests start it the same way (tests on port 0).
//!
//! Where to look: `phase/` is one request's life, phase by phase (each decision written once;
//! `h1/` and `pipeline.rs` are the two transports that apply them); `server.rs` the
//! listeners and connections; `config/` the config file; `proxy/` header hygiene and upstreams.

pub mod access_log;
pub mod admin;
pub mod api;
pub mod api_state;
pub mod auth;
pub mod body;
pub mod certgen;
pub mod cli;
pub mod config;
pub mod error;
pub mod gateway;
pub mod grpc;
pub mod h1;
pub mod io;
pub mod metrics;
pub mod oidc;
pub mod pages;
pub mod phase;
pub mod pipeline;
pub mod proto;
pub mod proxy;
pub mod reload;
pub mod route;
pub mod server;
pub mod session;
pub mod tls;
pub mod watch;
pub mod whoami;

use config::Config;
use server::{ConnSettings, WorkerSockets};
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{key}: cannot listen on {addr}: {source}")]
    Bind {
        key: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
    #[error("session store: {0}")]
    Store(String),
}

/// A running gateway: its bound addresses and the handle that stops it.
pub struct Running {
    pub sessions: Arc<session::cache::Sessions>,
    /// Applies a new configuration file (SIGHUP, `POST /admin/reload`).
    pub reloader: Arc<reload::Reloader>,
    pub tls_addr: Option<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
    pub admin_addr: SocketAddr,
    pub whoami_addr: Option<SocketAddr>,
    cancel: CancellationToken,
    threads: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting and lets in-flight requests finish (bounded by `server.shutdown_grace`).
    pub fn shutdown(&self) {
        self.cancel.cancel();
    }

    /// A token that fires when the gateway is told to stop.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Waits (blocking) until every thread has finished.
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }

    /// Stops the gateway and waits for it without blocking the caller's runtime.
    pub async fn stop(self) {
        self.shutdown();
        let _ = tokio::task::spawn_blocking(move || self.join()).await;
    }
}

fn bind(key: &'static str, addr: SocketAddr, count: usize) -> Result<Vec<std::net::TcpListener>, StartError> {
    server::bind_reuseport(addr, count).map_err(|source| StartError::Bind { key, addr, source })
}

fn local(key: &'static str, l: &std::net::TcpListener) -> Result<SocketAddr, StartError> {
    l.local_addr().map_err(|source| StartError::Bind {
        key,
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })
}

/// Binds every listener, then starts the worker, admin and demo threads.
pub fn start(config: &Config) -> Result<Running, StartError> {
    access_log::set_buffer(config.log.buffer);
    let workers = config.server.workers;
    let mut tls_sockets = match &config.server.tls {
        Some((addr, _)) => bind("server.listen", *addr, workers)?,
        None => Vec::new(),
    };
    let mut http_sockets = match config.server.http_listen {
        Some(addr) => bind("server.http_listen", addr, workers)?,
        None => Vec::new(),
    };
    let admin_socket = bind("admin.listen", config.admin.listen, 1)?.remove(0);
    let whoami_socket = match &config.demo {
        Some(d) => Some(bind("demo.whoami_listen", d.whoami_listen, 1)?.remove(0)),
        None => None,
    };
    let tls_addr = tls_sockets
        .first()
        .map(|l| local("server.listen", l))
        .transpose()?;
    let http_addr = http_sockets
        .first()
        .map(|l| local("server.http_listen", l))
        .transpose()?;
    let admin_addr = local("admin.listen", &admin_socket)?;
    let whoami_addr = whoami_socket
        .as_ref()
        .map(|l| local("demo.whoami_listen", l))
        .transpose()?;

    let cancel = CancellationToken::new();
    let metrics = Arc::new(metrics::Metrics::new());
    let (sessions, sessions_thread) =
        session::service::start(config, cancel.clone(), metrics.clone()).map_err(StartError::Store)?;
    let passwords = Arc::new(
        auth::password::Passwords::new(std::thread::available_parallelism().map_or(1, |n| n.get() / 2))
            .map_err(StartError::Store)?,
    );
    let process = gateway::ProcessState {
        sessions: sessions.clone(),
        metrics: metrics.clone(),
        passwords,
    };
    let shared = gateway::GatewayState::new(config, &process).map_err(StartError::Store)?;
    sessions.admit(oidc::admission(&config.oidc));
    let current: gateway::Current = Arc::new(arc_swap::ArcSwap::from_pointee(shared));
    let tls_config = config
        .server
        .tls
        .as_ref()
        .map(|(_, tls)| Arc::new(arc_swap::ArcSwap::new(tls.clone())));
    let reloader = Arc::new(reload::Reloader::new(
        config,
        current.clone(),
        process,
        tls_config.clone(),
    ));
    let settings = ConnSettings {
        header_read_timeout: config.server.header_read_timeout,
        idle_timeout: config.server.idle_timeout,
        max_header_bytes: config.server.max_header_bytes,
        shutdown_grace: config.server.shutdown_grace,
        http1_fast_path: config.server.http1_fast_path,
    };
    let mut threads = vec![sessions_thread];
    for id in 0..workers {
        let sockets = WorkerSockets {
            tls: tls_sockets.pop().zip(tls_config.clone()),
            http: http_sockets.pop(),
        };
        let (current, settings, cancel) = (current.clone(), settings.clone(), cancel.clone());
        let handle = std::thread::Builder::new()
            .name(format!("worker-{id}"))
            .spawn(move || server::run_worker(id, current, sockets, settings, cancel))
            .map_err(StartError::Thread)?;
        threads.push(handle);
    }
    let admin = Arc::new(admin::Admin::new(
        config,
        sessions.clone(),
        metrics.clone(),
        reloader.clone(),
    ));
    threads.push(side_thread("admin", cancel.clone(), move |cancel| async move {
        match tokio::net::TcpListener::from_std(admin_socket) {
            Ok(l) => admin::serve(l, admin, cancel).await,
            Err(e) => tracing::error!(error = %e, "cannot use the admin listener"),
        }
    })?);
    if let Some(socket) = whoami_socket {
        threads.push(side_thread("whoami", cancel.clone(), move |cancel| async move {
            match tokio::net::TcpListener::from_std(socket) {
                Ok(l) => whoami::serve(l, cancel).await,
                Err(e) => tracing::error!(error = %e, "cannot use the demo listener"),
            }
        })?);
    }
    Ok(Running {
        sessions,
        reloader,
        tls_addr,
        http_addr,
        admin_addr,
        whoami_addr,
        cancel,
        threads,
    })
}

/// A thread with its own small runtime, for the admin and demo listeners.
fn side_thread<F, Fut>(name: &str, cancel: CancellationToken, body: F) -> Result<JoinHandle<()>, StartError>
where
    F: FnOnce(CancellationToken) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(
            move || match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt.block_on(body(cancel)),
                Err(e) => tracing::error!(error = %e, "cannot start a runtime"),
            },
        )
        .map_err(StartError::Thread)
}
