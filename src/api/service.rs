//! The SessionService (SPEC §2.2–2.3, seeds 001 and 002): create a session from credentials
//! and a device id, reissue it with a single-use reissue token, destroy it. Bodies are JSON or
//! `application/x-protobuf` (`proto/portcullis.proto`); the answer uses the request's format,
//! except errors, which are always the JSON error object. Other content types get 415.
//! `POST /sessions` with no body at all is the store protocol's pending session (`pending.rs`).

use super::caller::{current, meta, no_session};
use super::forms::{self, BodyError};
use super::pending::{self, issued_json};
use super::proto;
use crate::body::ProxyBody;
use crate::error::{ApiError, json_response};
use crate::gateway::{ConnInfo, GatewayState};
use crate::session::lifecycle::{Issued, Reissued};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use prost::Message;
use serde::Deserialize;

/// Longest username, password and device id accepted (a password this long is still hashed
/// as typed; longer is refused rather than silently cut).
const MAX_USERNAME: usize = 64;
const MAX_PASSWORD: usize = 1024;
const MAX_DEVICE_UUID: usize = 128;

/// Why a request is refused before any session work (a 4xx).
type Refusal = ApiError;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Wire {
    Json,
    Protobuf,
}

/// The body's format from `Content-Type` (`None` when there is none); `Err` is the 415.
fn wire(headers: &HeaderMap) -> Result<Option<Wire>, Refusal> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    match forms::media_type(ct).as_str() {
        "" if ct.is_none() => Ok(None),
        "application/json" => Ok(Some(Wire::Json)),
        "application/x-protobuf" | "application/protobuf" => Ok(Some(Wire::Protobuf)),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send application/json or application/x-protobuf",
        )),
    }
}

/// Reads a JSON body into `T`; a type error names the field.
fn json_body<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, Refusal> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(refuse_json)
}

fn refuse_json(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let field = e.path().to_string();
    let inner = e.into_inner();
    if field == "." || inner.is_syntax() || inner.is_eof() {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("invalid JSON: {inner}"),
        )
    } else {
        // serde's message would quote the value, which may be a password.
        ApiError::field("invalid_field", &field, "expected a string")
    }
}

fn protobuf_body<T: Message + Default>(bytes: &[u8]) -> Result<T, Refusal> {
    T::decode(bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("invalid protobuf message: {e}"),
        )
    })
}

fn answer(status: StatusCode, wire: Wire, issued: &Issued) -> Response<ProxyBody> {
    match wire {
        Wire::Json => json_response(status, issued_json(issued)),
        Wire::Protobuf => protobuf_response(status, issued_message(issued).encode_to_vec()),
    }
}

/// A session just made, as the seed's CreateSessionResponse (ReissueSessionResponse has the
/// same fields and numbers): the protobuf body and the gRPC answer.
pub fn issued_message(issued: &Issued) -> proto::CreateSessionResponse {
    let user = issued.session.user.as_ref();
    proto::CreateSessionResponse {
        auth_token: issued.token.clone(),
        reissue_token: issued.reissue_token.clone(),
        exp: u32::try_from(issued.session.ends_at()).unwrap_or(u32::MAX),
        user_id: user.map_or(0, |u| u.id),
        username: user.map(|u| u.username.clone()).unwrap_or_default(),
        user_uuid: user.map(|u| u.uuid.clone()).unwrap_or_default(),
    }
}

fn protobuf_response(status: StatusCode, body: Vec<u8>) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-protobuf"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn read(req: Request<Incoming>) -> Result<Bytes, Refusal> {
    forms::bytes(req.into_body()).await.map_err(forms::body_error)
}

#[derive(Deserialize)]
struct CreateJson {
    username: Option<String>,
    password: Option<String>,
    device_uuid: Option<String>,
}

/// `POST /sessions`: credentials → 201 CreateSessionResponse; no body → a pending session.
pub async fn create(shared: &GatewayState, conn: &ConnInfo, req: Request<Incoming>) -> Response<ProxyBody> {
    let headers = req.headers().clone();
    let bytes = match read(req).await {
        Ok(b) => b,
        Err(refused) => return refused.into_response(),
    };
    let wire = wire(&headers);
    let (wire, message) = match wire {
        // No body at all, whatever the content type (`curl -d ''` sends a form type): the
        // store protocol. An empty protobuf message is a CreateSessionRequest without fields.
        _ if bytes.is_empty() && !matches!(wire, Ok(Some(Wire::Protobuf))) => {
            return pending::create(shared, conn, &headers).await;
        }
        Err(refused) => return refused.into_response(),
        Ok(wire) => match wire {
            None => {
                return ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "a body needs Content-Type application/json or application/x-protobuf",
                )
                .into_response();
            }
            Some(Wire::Json) => match json_body::<CreateJson>(&bytes) {
                Ok(m) => (Wire::Json, m),
                Err(refused) => return refused.into_response(),
            },
            Some(Wire::Protobuf) => match protobuf_body::<proto::CreateSessionRequest>(&bytes) {
                Ok(m) => (
                    Wire::Protobuf,
                    CreateJson {
                        username: Some(m.username),
                        password: Some(m.password),
                        device_uuid: Some(m.device_uuid),
                    },
                ),
                Err(refused) => return refused.into_response(),
            },
        },
    };
    let ask = CreateAsk {
        username: message.username.unwrap_or_default(),
        password: message.password.unwrap_or_default(),
        device_uuid: message.device_uuid,
    };
    match create_session(shared, conn, &headers, ask).await {
        Ok(issued) => answer(StatusCode::CREATED, wire, &issued),
        Err(refused) => refused.into_response(),
    }
}

/// What CreateSession asks, whichever wire it came on (JSON, protobuf body, gRPC).
pub struct CreateAsk {
    pub username: String,
    pub password: String,
    /// Empty is none.
    pub device_uuid: Option<String>,
}

/// CreateSession for every wire: the fields checked (400 naming the field), the address and
/// user rate limits (429), the password (401 `invalid_credentials`), then the session, which
/// ends the user's other sessions on the same device.
pub async fn create_session(
    shared: &GatewayState,
    conn: &ConnInfo,
    headers: &HeaderMap,
    ask: CreateAsk,
) -> Result<Issued, ApiError> {
    let CreateAsk {
        username,
        password,
        device_uuid,
    } = ask;
    let device_uuid = device_uuid.filter(|d| !d.is_empty());
    if username.is_empty() {
        return Err(ApiError::field("missing_field", "username", "required"));
    }
    if username.len() > MAX_USERNAME {
        return Err(ApiError::field("invalid_field", "username", "at most 64 bytes"));
    }
    if password.is_empty() {
        return Err(ApiError::field("missing_field", "password", "required"));
    }
    if password.len() > MAX_PASSWORD {
        return Err(ApiError::field("invalid_field", "password", "at most 1024 bytes"));
    }
    if let Some(d) = &device_uuid
        && (d.len() > MAX_DEVICE_UUID || d.chars().any(char::is_control))
    {
        return Err(ApiError::field(
            "invalid_field",
            "device_uuid",
            "at most 128 printable characters",
        ));
    }
    let api = &shared.api;
    api.address_allowed(conn.peer.ip())?;
    let user = api.check_login(&username, &password).await?;
    shared
        .sessions
        .create_active(user, None, meta(conn, headers, device_uuid))
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "cannot create a session");
            ApiError::from(&e)
        })
}

#[derive(Deserialize)]
struct ReissueJson {
    reissue_token: Option<String>,
}

/// `POST /sessions/reissue` `{"reissue_token"}` → 200 with a new pair.
pub async fn reissue(shared: &GatewayState, req: Request<Incoming>) -> Response<ProxyBody> {
    let wire = match wire(req.headers()) {
        Ok(Some(w)) => w,
        Ok(None) => Wire::Json,
        Err(refused) => return refused.into_response(),
    };
    let bytes = match read(req).await {
        Ok(b) => b,
        Err(refused) => return refused.into_response(),
    };
    let presented = match wire {
        Wire::Json if bytes.is_empty() => None,
        Wire::Json => match json_body::<ReissueJson>(&bytes) {
            Ok(m) => m.reissue_token,
            Err(refused) => return refused.into_response(),
        },
        Wire::Protobuf => match protobuf_body::<proto::ReissueSessionRequest>(&bytes) {
            Ok(m) => Some(m.reissue_token),
            Err(refused) => return refused.into_response(),
        },
    };
    let Some(presented) = presented.filter(|t| !t.is_empty()) else {
        return ApiError::field("missing_field", "reissue_token", "required").into_response();
    };
    match reissue_session(shared, &presented).await {
        Ok(issued) => answer(StatusCode::OK, wire, &issued),
        Err(refused) => refused.into_response(),
    }
}

/// ReissueSession for every wire: a new pair for a valid reissue token (single use, with its
/// grace window), else 401 saying why.
pub async fn reissue_session(shared: &GatewayState, presented: &str) -> Result<Issued, ApiError> {
    match shared.sessions.reissue(presented).await {
        Ok(Reissued::Issued(issued)) => Ok(*issued),
        Ok(Reissued::Invalid) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_reissue_token",
            "this reissue token is not valid",
        )),
        Ok(Reissued::Expired) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "reissue_token_expired",
            "this reissue token has expired; log in again",
        )),
        Ok(Reissued::Reused) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "reissue_token_reused",
            "this reissue token was already used; the session has been ended",
        )),
        Err(e) => {
            tracing::warn!(error = %e, "reissue failed");
            Err(ApiError::from(&e))
        }
    }
}

/// `POST /sessions/destroy` (body `{}`, empty, or an empty protobuf message) and
/// `DELETE /sessions/current`, with the session's token: 200 `{}`.
pub async fn destroy(shared: &GatewayState, conn: &ConnInfo, req: Request<Incoming>) -> Response<ProxyBody> {
    let wire = match wire(req.headers()) {
        Ok(w) => w.unwrap_or(Wire::Json),
        Err(refused) => return refused.into_response(),
    };
    if let Some(refused) = pending::cookie_from_another_site(shared, conn, &req) {
        return refused;
    }
    let live = match current(shared, conn, req.headers()).await {
        Err(refused) => return refused.into_response(),
        Ok(None) => return no_session().into_response(),
        Ok(Some(live)) => live,
    };
    let bytes = match read(req).await {
        Ok(b) => b,
        Err(refused) => return refused.into_response(),
    };
    let well_formed = match wire {
        Wire::Json => {
            bytes.is_empty() || json_body::<serde_json::Map<String, serde_json::Value>>(&bytes).is_ok()
        }
        Wire::Protobuf => proto::DestroySessionRequest::decode(&bytes[..]).is_ok(),
    };
    if !well_formed {
        return forms::body_error(BodyError::Invalid("expected an empty message".into())).into_response();
    }
    if let Err(e) = shared.sessions.revoke(live.id()).await {
        tracing::warn!(error = %e, "destroy failed");
        return ApiError::from(&e).into_response();
    }
    match wire {
        Wire::Json => json_response(StatusCode::OK, "{}".into()),
        Wire::Protobuf => protobuf_response(StatusCode::OK, proto::DestroySessionResponse {}.encode_to_vec()),
    }
}
