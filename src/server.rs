//! Listeners and connections. One worker thread per core, each with its own current-thread
//! tokio runtime and its own `SO_REUSEPORT` listening sockets, so a connection lives and dies on
//! one core with that core's upstream pools. Per connection: TLS handshake (bounded by the
//! header-read timeout), hyper-util's auto builder (HTTP/1.1 and HTTP/2), a header-read timeout
//! and header size cap, an idle timeout, and a graceful drain when the process stops.

use crate::gateway::{ConnInfo, Current, WorkerCell};
use crate::h1::{self, prefixed::Prefixed};
use crate::io::ActivityIo;
use crate::metrics::OpenConnection;
use crate::pipeline;
use crate::watch::{Busy, ConnWatch, Registry};
use arc_swap::ArcSwap;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Connection settings shared by every listener of a worker.
#[derive(Clone)]
pub struct ConnSettings {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    pub shutdown_grace: Duration,
    /// Serve HTTP/1.1 on the fast path first (`h1`).
    pub http1_fast_path: bool,
}

/// A worker's sockets: the TLS one (with its TLS config) and the plain one.
pub struct WorkerSockets {
    /// The TLS listener and the TLS config new handshakes use (a reload may replace it).
    pub tls: Option<(std::net::TcpListener, Arc<ArcSwap<rustls::ServerConfig>>)>,
    pub http: Option<std::net::TcpListener>,
}

/// Binds `count` sockets to `addr` with `SO_REUSEPORT`; with port 0 they share the first's port.
pub fn bind_reuseport(addr: SocketAddr, count: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    let mut out: Vec<std::net::TcpListener> = Vec::with_capacity(count);
    let mut addr = addr;
    for _ in 0..count {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        let listener: std::net::TcpListener = socket.into();
        addr = listener.local_addr()?;
        out.push(listener);
    }
    Ok(out)
}

/// Runs one worker until `cancel` fires and its connections have drained (or the grace ran out).
pub fn run_worker(
    id: usize,
    current: Current,
    sockets: WorkerSockets,
    settings: ConnSettings,
    cancel: CancellationToken,
) {
    // However this worker ends (a panic included), its last access-log lines are sent; made
    // first, so it is dropped last, after the runtime and whatever its tasks logged.
    let _flush = crate::access_log::FlushOnExit;
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(worker = id, error = %e, "cannot start the worker's runtime");
            cancel.cancel();
            return;
        }
    };
    runtime.block_on(async move {
        // This thread's access-log lines reach the log's writer at least every 100 ms.
        tokio::spawn(async {
            let mut ticks = tokio::time::interval(crate::access_log::BATCH_AGE);
            loop {
                ticks.tick().await;
                crate::access_log::flush_local();
            }
        });
        let worker = Arc::new(WorkerCell::new(current));
        let builder = http_builder(&settings);
        let tracker = TaskTracker::new();
        let ctx = Arc::new(ConnCtx {
            worker,
            registry: Registry::default(),
            http1_builder: http1_builder(&settings),
            http2_builder: builder.clone().http2_only(),
            builder,
            settings: settings.clone(),
            cancel: cancel.clone(),
        });
        if let Some((listener, acceptor)) = sockets.tls {
            match TcpListener::from_std(listener) {
                Ok(l) => {
                    tracker.spawn(accept_loop(l, Some(acceptor), ctx.clone(), tracker.clone()));
                }
                Err(e) => tracing::error!(worker = id, error = %e, "cannot use the TLS listener"),
            }
        }
        if let Some(listener) = sockets.http {
            match TcpListener::from_std(listener) {
                Ok(l) => {
                    tracker.spawn(accept_loop(l, None, ctx.clone(), tracker.clone()));
                }
                Err(e) => tracing::error!(worker = id, error = %e, "cannot use the HTTP listener"),
            }
        }
        // Closes idle connections and, once cancelled, asks every connection to finish.
        ctx.registry
            .supervise(settings.idle_timeout, cancel.clone())
            .await;
        tracker.close();
        if tokio::time::timeout(settings.shutdown_grace, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                worker = id,
                open = tracker.len(),
                "shutdown grace ran out; closing the remaining connections"
            );
        }
    });
}

struct ConnCtx {
    worker: Arc<WorkerCell>,
    registry: Registry,
    /// HTTP/1.1 or HTTP/2 by the connection's first bytes (the plain listener).
    builder: auto::Builder<TokioExecutor>,
    /// HTTP/1.1 only: a TLS connection that negotiated it, or one that served HTTP/1.1 already.
    http1_builder: hyper::server::conn::http1::Builder,
    /// HTTP/2 only: a TLS connection that negotiated `h2`.
    http2_builder: auto::Builder<TokioExecutor>,
    settings: ConnSettings,
    cancel: CancellationToken,
}

/// hyper's HTTP/1 server alone, set as `http_builder`'s HTTP/1 half.
fn http1_builder(s: &ConnSettings) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(s.header_read_timeout)
        .max_buf_size(s.max_header_bytes.max(8192))
        .writev(false)
        .keep_alive(true);
    builder
}

fn http_builder(s: &ConnSettings) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(s.header_read_timeout)
        .max_buf_size(s.max_header_bytes.max(8192))
        .writev(false)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(s.max_header_bytes.min(u32::MAX as usize) as u32)
        .max_concurrent_streams(256);
    builder
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<Arc<ArcSwap<rustls::ServerConfig>>>,
    ctx: Arc<ConnCtx>,
    tracker: TaskTracker,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = ctx.cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let ctx = ctx.clone();
        let tls = tls.clone();
        tracker.spawn(async move {
            match tls {
                Some(config) => {
                    // The TLS config as of this handshake: a reload's new certificate is seen
                    // by the next connection.
                    let acceptor = TlsAcceptor::from(config.load_full());
                    let handshake =
                        tokio::time::timeout(ctx.settings.header_read_timeout, acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(tls_stream)) => {
                            let protocol = match tls_stream.get_ref().1.alpn_protocol() {
                                Some(b"h2") => "h2",
                                _ => "http/1.1",
                            };
                            let _open =
                                OpenConnection::new(&ctx.worker.get().shared.metrics, "tls", protocol);
                            let version = if protocol == "h2" {
                                Version::H2
                            } else {
                                Version::H1
                            };
                            serve(tls_stream, ConnInfo::new(peer, true), &ctx, version).await
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
                None => {
                    // Plain connections may speak HTTP/1.1 or h2c; hyper tells them apart later.
                    let _open = OpenConnection::new(&ctx.worker.get().shared.metrics, "http", "http");
                    serve(stream, ConnInfo::new(peer, false), &ctx, Version::Either).await
                }
            }
        });
    }
}

/// What every request on one connection shares: the worker, the peer, and the connection's
/// watch (activity and requests in flight, for the idle check).
struct ConnState {
    worker: Arc<WorkerCell>,
    info: ConnInfo,
    watch: Arc<ConnWatch>,
    /// hyper has started on a request of this connection.
    started: AtomicBool,
}

/// The HTTP versions a connection may speak.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Version {
    /// TLS with ALPN `http/1.1` (or none).
    H1,
    /// TLS with ALPN `h2`.
    H2,
    /// The plain listener: HTTP/1.1, or HTTP/2 with prior knowledge.
    Either,
}

/// Serves a connection: HTTP/1.1 on the fast path while it can, then hyper.
async fn serve<IO>(io: IO, conn: ConnInfo, ctx: &ConnCtx, mut version: Version)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let registered = ctx.registry.register(&ctx.cancel);
    let watch = registered.watch.clone();
    let io = ActivityIo::new(io, watch.clone());
    let (io, replay) = if version != Version::H2 && ctx.settings.http1_fast_path {
        let limits = h1::Limits {
            header_read_timeout: ctx.settings.header_read_timeout,
            max_header_bytes: ctx.settings.max_header_bytes,
        };
        match h1::serve(io, &conn, &ctx.worker, &watch, &limits).await {
            h1::Ended::Closed => return,
            h1::Ended::Handover(io, replay, served) => {
                if served {
                    version = Version::H1;
                }
                (io, replay)
            }
        }
    } else {
        (io, Vec::new())
    };
    // A request the fast path read and handed over is answered even if shutdown has begun:
    // the graceful close waits for hyper to have started on it.
    let handed_over = !replay.is_empty();
    let io = TokioIo::new(Prefixed::new(replay, io));
    let state = Arc::new(ConnState {
        worker: ctx.worker.clone(),
        info: conn,
        watch: watch.clone(),
        started: AtomicBool::new(false),
    });
    let started = state.clone();
    let peer = state.info.peer;
    let service = hyper::service::service_fn(move |req| {
        let state = state.clone();
        async move {
            let _busy = Busy::enter(&state.watch);
            state.started.store(true, Ordering::Relaxed);
            let worker = state.worker.get();
            Ok::<_, Infallible>(pipeline::handle(&worker, req, &state.info).await)
        }
    });
    // A graceful close waits for hyper to have started on a request handed to it.
    let may_close = || !handed_over || started.started.load(Ordering::Relaxed);
    let result = match version {
        // hyper-util's auto builder sniffs the version even when told one (with upgrades):
        // hyper's own HTTP/1, so an HTTP/2 preface is refused here.
        Version::H1 => {
            let connection = ctx.http1_builder.serve_connection(io, service).with_upgrades();
            drive(connection, |c| c.graceful_shutdown(), &watch, may_close)
                .await
                .map_err(|e| e.to_string())
        }
        // ALPN h2: HTTP/2 only (HTTP/2 has no Upgrade).
        Version::H2 => {
            let connection = ctx.http2_builder.serve_connection(io, service);
            drive(connection, |c| c.graceful_shutdown(), &watch, may_close)
                .await
                .map_err(|e| e.to_string())
        }
        Version::Either => {
            let connection = ctx.builder.serve_connection_with_upgrades(io, service);
            drive(connection, |c| c.graceful_shutdown(), &watch, may_close)
                .await
                .map_err(|e| e.to_string())
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Runs a hyper connection until it ends; once the connection is asked to close (idle,
/// shutdown) and `may_close` agrees, it finishes gracefully.
async fn drive<F, E>(
    connection: F,
    graceful: fn(std::pin::Pin<&mut F>),
    watch: &ConnWatch,
    may_close: impl Fn() -> bool,
) -> Result<(), E>
where
    F: std::future::Future<Output = Result<(), E>>,
{
    tokio::pin!(connection);
    let mut closing = false;
    std::future::poll_fn(|cx| {
        if !closing && watch.should_close(cx.waker()) && may_close() {
            closing = true;
            graceful(connection.as_mut());
        }
        connection.as_mut().poll(cx)
    })
    .await
}
