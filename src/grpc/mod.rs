//! The gateway's own gRPC services (SPEC §2.2), on the TLS listener over HTTP/2 and on the plain
//! listener with HTTP/2 prior knowledge: `portcullis.v1.SessionService` (the SessionService of
//! seed 001: the same decisions as its JSON and protobuf endpoints, `session`),
//! `grpc.health.v1.Health`, server reflection (v1 and v1alpha) so grpcurl and grpcio work
//! without the `.proto`, and Envoy's `ext_authz` (`ext_authz`: the proxy's own phases decide). A request is the gateway's when it is HTTP/2, says `application/grpc`
//! and names one of these services (`owns`); everything else goes through the phases as
//! before (these services' paths are the gateway's on every host). Errors are gRPC statuses
//! (`status`): never `UNKNOWN` or `INTERNAL` for bad input. Messages are capped (16 KiB, a
//! `Check` 256 KiB) and a call must arrive and be answered within 30 s.

pub mod codec;
pub mod ext_authz;
pub mod session;
pub mod status;

use crate::body::ProxyBody;
use crate::gateway::{ConnInfo, GatewayState};
use http::{HeaderValue, Request, Response, Version, header};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tonic::Status;
use tonic::codegen::Service;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};

/// The SessionService's messages and server (generated at build time).
pub use crate::proto as pb;

const SESSION: &str = "/portcullis.v1.SessionService/";
const HEALTH: &str = "/grpc.health.v1.Health/";
const REFLECTION_V1: &str = "/grpc.reflection.v1.ServerReflection/";
const REFLECTION_V1ALPHA: &str = "/grpc.reflection.v1alpha.ServerReflection/";
const EXT_AUTHZ: &str = "/envoy.service.auth.v3.Authorization/";

/// Whether `req` is a call to one of the gateway's own gRPC services.
pub fn owns<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_2
        && req
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"))
        && [SESSION, HEALTH, REFLECTION_V1, REFLECTION_V1ALPHA, EXT_AUTHZ]
            .iter()
            .any(|service| req.uri().path().starts_with(service))
}

/// The descriptors reflection serves: the SessionService's and Health's.
const DESCRIPTORS: [&[u8]; 2] = [pb::DESCRIPTOR, tonic_health::pb::FILE_DESCRIPTOR_SET];

/// The largest message a call may send: the SessionService's fields are capped far below
/// this (as the JSON endpoints' 16 KiB bodies); Envoy's `Check` carries a request's headers.
const MAX_MESSAGE: usize = 16 * 1024;
const MAX_CHECK: usize = 256 * 1024;
/// How long a call may take to arrive and be answered (a client that sends most of a message
/// and withholds the rest holds nothing longer than this).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The process's health reporter: Watch streams follow it for as long as the process runs.
async fn health() -> &'static HealthReporter {
    static REPORTER: tokio::sync::OnceCell<HealthReporter> = tokio::sync::OnceCell::const_new();
    REPORTER
        .get_or_init(|| async {
            // The process ("", SERVING from the start) is up, and so is the SessionService;
            // the store's state is /readyz's, and each call's status.
            let reporter = HealthReporter::new();
            reporter
                .set_serving::<pb::session_service_server::SessionServiceServer<session::Sessions>>()
                .await;
            reporter
        })
        .await
}

/// Answers a call `owns` accepted.
pub async fn serve(
    shared: Arc<GatewayState>,
    conn: &ConnInfo,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let path = req.uri().path().to_string();
    let answering = async {
        if path.starts_with(SESSION) {
            let sessions = session::Sessions {
                shared,
                conn: conn.clone(),
            };
            let server = pb::session_service_server::SessionServiceServer::new(sessions)
                .max_decoding_message_size(MAX_MESSAGE);
            Ok(call(server, req).await)
        } else if path.starts_with(EXT_AUTHZ) {
            // Refused before its message is read: only a trusted proxy may send one.
            if !shared.is_trusted(conn.peer.ip()) {
                tracing::warn!(peer = %conn.peer.ip(), "ext_authz Check from a peer not in server.trusted_proxies refused");
                return Err(Status::permission_denied(
                    "Check is answered only for server.trusted_proxies",
                ));
            }
            let authz = ext_authz::ExtAuthz {
                shared,
                conn: conn.clone(),
            };
            let server = envoy_types::ext_authz::v3::pb::AuthorizationServer::new(authz)
                .max_decoding_message_size(MAX_CHECK);
            Ok(call(server, req).await)
        } else if path.starts_with(HEALTH) {
            let service = HealthService::from_health_reporter(health().await.clone());
            let server = HealthServer::new(service).max_decoding_message_size(MAX_MESSAGE);
            Ok(call(server, req).await)
        } else {
            let mut reflection = tonic_reflection::server::Builder::configure();
            for descriptors in DESCRIPTORS {
                reflection = reflection.register_encoded_file_descriptor_set(descriptors);
            }
            let unavailable = |e: tonic_reflection::server::Error| {
                tracing::error!(error = %e, "gRPC reflection could not be built");
                Status::unavailable("reflection is not available")
            };
            if path.starts_with(REFLECTION_V1) {
                let server = reflection.build_v1().map_err(unavailable)?;
                Ok(call(server.max_decoding_message_size(MAX_MESSAGE), req).await)
            } else {
                let server = reflection.build_v1alpha().map_err(unavailable)?;
                Ok(call(server.max_decoding_message_size(MAX_MESSAGE), req).await)
            }
        }
    };
    let answered = match tokio::time::timeout(CALL_TIMEOUT, answering).await {
        Ok(Ok(answered)) => answered,
        Ok(Err(refused)) => return status::response(refused),
        Err(_) => return status::response(Status::deadline_exceeded("the call took too long to arrive")),
    };
    let Ok(resp) = answered;
    let (mut parts, body) = resp.into_parts();
    // Ours decodes with our codec (`codec`); the others' INTERNAL is a message they could
    // not decode (`body::decode_error_is_callers`).
    let theirs = !path.starts_with(SESSION);
    if theirs {
        parts.headers = crate::body::decode_error_is_callers(parts.headers);
    }
    parts
        .headers
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Response::from_parts(parts, ProxyBody::grpc(body, theirs))
}

async fn call<S>(mut service: S, req: Request<Incoming>) -> Result<Response<tonic::body::Body>, Infallible>
where
    S: Service<Request<Incoming>, Response = Response<tonic::body::Body>, Error = Infallible>,
{
    std::future::poll_fn(|cx| service.poll_ready(cx)).await?;
    service.call(req).await
}
