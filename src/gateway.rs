//! The state requests run against: `GatewayState` (what the configuration file makes: routes,
//! header names, trusted proxies…; swapped whole on a reload), `ProcessState` (what outlives
//! reloads: sessions, metrics, password threads) and `Worker` (one per worker thread: that
//! thread's upstream connection pools).

use crate::auth::jwt::{AssertionSigner, Issuer};
use crate::config::{Config, HeaderNames, Mode, RouteConfig};
use crate::metrics::{MethodClass, Metrics, RequestLabels, RouteLabel};
use crate::proxy::lease::HyperPool;
use crate::proxy::pool::Pool;
use crate::proxy::upstream::Upstreams;
use crate::route::RouteTable;
use crate::session::cache::{CachedSession, Sessions};
use arc_swap::ArcSwap;
use http::HeaderName;
use ipnet::IpNet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// A configured route with its live upstream state and its metric handles.
pub struct Route {
    pub config: RouteConfig,
    pub upstreams: Upstreams,
    /// The route's name as a metric label.
    pub label: &'static str,
    pub request_duration: Histogram,
    pub upstream_duration: Histogram,
    /// The `200` request counters (read, write), made ahead: the common answer skips the
    /// label map's lookup.
    pub ok_requests: [Counter; 2],
}

/// The routes and the table that finds them.
pub struct Routes {
    pub table: RouteTable,
    pub routes: Vec<Route>,
}

impl Routes {
    pub fn new(configs: &[RouteConfig], metrics: &Metrics) -> Routes {
        let table = RouteTable::new(
            configs
                .iter()
                .map(|r| (r.host.as_deref(), r.path_prefix.as_str())),
        );
        let routes = configs
            .iter()
            .map(|c| {
                let label = crate::metrics::label(&c.name);
                let by_route = RouteLabel { route: label };
                let ok = |method| {
                    let labels = RequestLabels {
                        route: label,
                        method,
                        status: 200,
                    };
                    metrics.requests.get_or_create(&labels).clone()
                };
                Route {
                    upstreams: Upstreams::new(c, label, metrics),
                    config: c.clone(),
                    label,
                    request_duration: metrics.request_duration.get_or_create(&by_route).clone(),
                    upstream_duration: metrics.upstream_duration.get_or_create(&by_route).clone(),
                    ok_requests: [ok(MethodClass::read), ok(MethodClass::write)],
                }
            })
            .collect();
        Routes { table, routes }
    }
}

/// What the configuration file makes of the gateway, read by every request on every worker;
/// a reload swaps in a new one (`Current`).
pub struct GatewayState {
    pub routes: Arc<Routes>,
    pub sessions: Arc<Sessions>,
    pub header_names: HeaderNames,
    /// The identity header names, stripped from every client request.
    pub identity_headers: Vec<HeaderName>,
    pub cookie_name: String,
    /// `[ui] title`: the site's name on every page.
    pub ui_title: String,
    pub api: crate::api_state::Api,
    pub assertion: Option<Arc<AssertionSigner>>,
    pub jwt_issuers: Arc<Vec<Issuer>>,
    /// `[[oidc]]`: the identity providers people sign in through.
    pub oidc: crate::oidc::Providers,
    pub trusted_proxies: Vec<IpNet>,
    pub access_log: bool,
    /// `mode = "single-user"`: who every request without a valid credential is.
    pub local_user: Option<Arc<CachedSession>>,
    pub metrics: Arc<Metrics>,
}

/// What lives as long as the process, across reloads: the sessions (store and cache), the
/// metrics, and the password threads.
#[derive(Clone)]
pub struct ProcessState {
    pub sessions: Arc<Sessions>,
    pub metrics: Arc<Metrics>,
    pub passwords: Arc<crate::auth::password::Passwords>,
}

impl GatewayState {
    pub fn new(config: &Config, process: &ProcessState) -> Result<GatewayState, String> {
        let metrics = process.metrics.clone();
        Ok(GatewayState {
            routes: Arc::new(Routes::new(&config.routes, &metrics)),
            sessions: process.sessions.clone(),
            header_names: config.headers.clone(),
            identity_headers: config.headers.all().into_iter().cloned().collect(),
            cookie_name: config.cookie_name.clone(),
            ui_title: config.ui_title.clone(),
            api: crate::api_state::Api::new(config, metrics.clone(), process.passwords.clone()),
            assertion: config.assertion.clone(),
            jwt_issuers: config.jwt_issuers.clone(),
            oidc: crate::oidc::Providers::new(&config.oidc),
            trusted_proxies: config.server.trusted_proxies.clone(),
            access_log: config.log.access && crate::access_log::enabled(),
            local_user: match &config.mode {
                Mode::SingleUser(user) => {
                    Some(CachedSession::local(user).ok_or("cannot build the local user's session")?)
                }
                Mode::MultiUser => None,
            },
            metrics,
        })
    }

    /// A refusal as the client gets it: an HTML page for a browser navigation, else JSON.
    pub fn answer(
        &self,
        error: impl Into<crate::error::ApiError>,
        navigation: bool,
    ) -> http::Response<crate::body::ProxyBody> {
        let login = self.api.url("/auth/login");
        let page = crate::error::Page {
            site: &self.ui_title,
            login: &login,
        };
        error.into().render(navigation.then_some(page))
    }

    /// The session cookie's name on this connection's listener.
    pub fn cookie_on(&self, conn: &ConnInfo) -> &str {
        crate::auth::browser::cookie_name(&self.cookie_name, conn.tls)
    }

    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }
}

/// One worker thread's view of one configuration: the shared state plus the worker's own pool
/// of upstream connections for those routes.
pub struct Worker {
    pub shared: Arc<GatewayState>,
    /// The general path's upstream connections (hyper client connections).
    pub pool: Arc<HyperPool>,
    /// The HTTP/1.1 fast path's upstream connections (raw streams).
    pub streams: Pool<crate::proxy::stream::Stream>,
}

impl Worker {
    pub fn new(shared: Arc<GatewayState>) -> Worker {
        let counts = || shared.routes.routes.iter().map(|r| r.upstreams.len());
        let pool = Arc::new(Pool::new(counts()));
        let streams = Pool::new(counts());
        Worker {
            shared,
            pool,
            streams,
        }
    }
}

/// The shared state requests start on now; a reload stores a new one.
pub type Current = Arc<ArcSwap<GatewayState>>;

/// A worker thread's handle on the current configuration. Each request takes the current
/// `Worker` and keeps it to its end, so a reload never changes a request midway; when a reload
/// replaced the shared state, the next request builds the worker's view of it (with a fresh
/// pool — the old pool's connections close as their last responses finish).
pub struct WorkerCell {
    current: Current,
    mine: ArcSwap<Worker>,
}

impl WorkerCell {
    pub fn new(current: Current) -> WorkerCell {
        let mine = ArcSwap::from_pointee(Worker::new(current.load_full()));
        WorkerCell { current, mine }
    }

    pub fn get(&self) -> Arc<Worker> {
        let mine = self.mine.load_full();
        let now = self.current.load();
        if Arc::ptr_eq(&mine.shared, &now) {
            return mine;
        }
        let fresh = Arc::new(Worker::new(Arc::clone(&now)));
        self.mine.store(fresh.clone());
        fresh
    }
}

/// What a request knows about the connection it came on.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// The peer's IP as a header value, made once per connection for X-Forwarded-For.
    pub peer_ip: http::HeaderValue,
    pub tls: bool,
}

impl ConnInfo {
    pub fn new(peer: SocketAddr, tls: bool) -> ConnInfo {
        let ip = match peer.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        let peer_ip = http::HeaderValue::from_str(&ip.to_string())
            .unwrap_or_else(|_| http::HeaderValue::from_static("unknown"));
        ConnInfo { peer, peer_ip, tls }
    }
}
