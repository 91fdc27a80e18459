//! The gateway's own gRPC services (SPEC §2.2), on the TLS listener over HTTP/2 and on the plain
//! listener with HTTP/2 prior knowledge: `portcullis.v1.SessionService` (the SessionService of
//! seed 001: the same decisions as its JSON and protobuf endpoints, `session`),
//! `grpc.health.v1.Health`, server reflection (v1 and v1alpha) so grpcurl and grpcio work
//! without the `.proto`, and Envoy's `ext_authz` (`ext_authz`: the proxy's own phases decide). A request is the gateway's when it is HTTP/2, says `application/grpc`
//! and names one of these services (`owns`); everything else goes through the phases as
//! before. Errors are gRPC statuses (`status`): never `UNKNOWN` or `INTERNAL` for bad input.

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
use tonic::codegen::Service;

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

/// Answers a call `owns` accepted.
pub async fn serve(
    shared: Arc<GatewayState>,
    conn: &ConnInfo,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let path = req.uri().path().to_string();
    let answered = if path.starts_with(SESSION) {
        let sessions = session::Sessions {
            shared,
            conn: conn.clone(),
        };
        call(
            pb::session_service_server::SessionServiceServer::new(sessions),
            req,
        )
        .await
    } else if path.starts_with(EXT_AUTHZ) {
        let authz = ext_authz::ExtAuthz {
            shared,
            conn: conn.clone(),
        };
        call(
            envoy_types::ext_authz::v3::pb::AuthorizationServer::new(authz),
            req,
        )
        .await
    } else if path.starts_with(HEALTH) {
        // Made per call (health checks are rare next to traffic): the process is up, and so
        // is the SessionService; the store's state is /readyz's, and each call's status.
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter
            .set_serving::<pb::session_service_server::SessionServiceServer<session::Sessions>>()
            .await;
        call(health, req).await
    } else {
        let mut reflection = tonic_reflection::server::Builder::configure();
        for descriptors in DESCRIPTORS {
            reflection = reflection.register_encoded_file_descriptor_set(descriptors);
        }
        let built = if path.starts_with(REFLECTION_V1) {
            match reflection.build_v1() {
                Ok(service) => Ok(call(service, req).await),
                Err(e) => Err(e),
            }
        } else {
            match reflection.build_v1alpha() {
                Ok(service) => Ok(call(service, req).await),
                Err(e) => Err(e),
            }
        };
        match built {
            Ok(answered) => answered,
            Err(e) => {
                tracing::error!(error = %e, "gRPC reflection could not be built");
                return status::response(tonic::Status::unavailable("reflection is not available"));
            }
        }
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
