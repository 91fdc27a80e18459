//! The SessionService (SPEC §2.2–2.3, seeds 001 and 002): create a session from credentials
//! and a device id, reissue it with a single-use reissue token, destroy it. Bodies are JSON or
//! `application/x-protobuf` (`proto/portcullis.proto`); the answer uses the request's format,
//! except errors, which are always the JSON error object. Other content types get 415.
//! `POST /sessions` with no body at all is the store protocol's pending session (`pending.rs`).

use super::cookie::{current, store_down};
use super::forms::{self, BodyError};
use super::pending::{self, issued_json, meta};
use super::proto;
use crate::body::ProxyBody;
use crate::error::{field_error, json_error, json_response};
use crate::gateway::{ConnInfo, Shared};
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

/// A ready 4xx, boxed to keep `Result`s small.
type Refusal = Box<Response<ProxyBody>>;

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
        _ => Err(Box::new(json_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send application/json or application/x-protobuf",
        ))),
    }
}

/// Reads a JSON body into `T`; a type error names the field.
fn json_body<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, Refusal> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| Box::new(refuse_json(e)))
}

fn refuse_json(e: serde_path_to_error::Error<serde_json::Error>) -> Response<ProxyBody> {
    {
        let field = e.path().to_string();
        let inner = e.into_inner();
        if field == "." || inner.is_syntax() || inner.is_eof() {
            json_error(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                &format!("invalid JSON: {inner}"),
            )
        } else {
            // serde's message would quote the value, which may be a password.
            field_error("invalid_field", &field, "expected a string")
        }
    }
}

fn protobuf_body<T: Message + Default>(bytes: &[u8]) -> Result<T, Refusal> {
    T::decode(bytes).map_err(|e| {
        Box::new(json_error(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            &format!("invalid protobuf message: {e}"),
        ))
    })
}

fn answer(status: StatusCode, wire: Wire, issued: &Issued) -> Response<ProxyBody> {
    match wire {
        Wire::Json => json_response(status, issued_json(issued)),
        Wire::Protobuf => {
            let user = issued.session.user.as_ref();
            let message = proto::CreateSessionResponse {
                auth_token: issued.token.clone(),
                reissue_token: issued.reissue_token.clone(),
                exp: u32::try_from(issued.session.ends_at()).unwrap_or(u32::MAX),
                user_id: user.map_or(0, |u| u.id),
                username: user.map(|u| u.username.clone()).unwrap_or_default(),
                user_uuid: user.map(|u| u.uuid.clone()).unwrap_or_default(),
            };
            protobuf_response(status, message.encode_to_vec())
        }
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
    forms::bytes(req.into_body())
        .await
        .map_err(|e| Box::new(forms::body_error(e)))
}

#[derive(Deserialize)]
struct CreateJson {
    username: Option<String>,
    password: Option<String>,
    device_uuid: Option<String>,
}

/// `POST /sessions`: credentials → 201 CreateSessionResponse; no body → a pending session.
pub async fn create(shared: &Shared, conn: &ConnInfo, req: Request<Incoming>) -> Response<ProxyBody> {
    let headers = req.headers().clone();
    let bytes = match read(req).await {
        Ok(b) => b,
        Err(resp) => return *resp,
    };
    let wire = wire(&headers);
    let (wire, message) = match wire {
        // No body at all, whatever the content type (`curl -d ''` sends a form type): the
        // store protocol. An empty protobuf message is a CreateSessionRequest without fields.
        _ if bytes.is_empty() && !matches!(wire, Ok(Some(Wire::Protobuf))) => {
            return pending::create(shared, conn, &headers).await;
        }
        Err(resp) => return *resp,
        Ok(wire) => match wire {
            None => {
                return json_error(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "a body needs Content-Type application/json or application/x-protobuf",
                );
            }
            Some(Wire::Json) => match json_body::<CreateJson>(&bytes) {
                Ok(m) => (Wire::Json, m),
                Err(resp) => return *resp,
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
                Err(resp) => return *resp,
            },
        },
    };
    let username = message.username.unwrap_or_default();
    let password = message.password.unwrap_or_default();
    let device_uuid = message.device_uuid.filter(|d| !d.is_empty());
    if username.is_empty() {
        return field_error("missing_field", "username", "required");
    }
    if username.len() > MAX_USERNAME {
        return field_error("invalid_field", "username", "at most 64 bytes");
    }
    if password.is_empty() {
        return field_error("missing_field", "password", "required");
    }
    if password.len() > MAX_PASSWORD {
        return field_error("invalid_field", "password", "at most 1024 bytes");
    }
    if let Some(d) = &device_uuid
        && (d.len() > MAX_DEVICE_UUID || d.chars().any(char::is_control))
    {
        return field_error("invalid_field", "device_uuid", "at most 128 printable characters");
    }
    let api = &shared.api;
    if let Err(refused) = api.address_allowed(conn) {
        return refused.into_response();
    }
    let user = match api.check_login(&username, &password).await {
        Ok(user) => user,
        Err(refused) => return refused.into_response(),
    };
    match shared
        .sessions
        .create_active(user, None, meta(conn, &headers, device_uuid))
        .await
    {
        Ok(issued) => answer(StatusCode::CREATED, wire, &issued),
        Err(e) => {
            tracing::warn!(error = %e, "cannot create a session");
            store_down()
        }
    }
}

#[derive(Deserialize)]
struct ReissueJson {
    reissue_token: Option<String>,
}

/// `POST /sessions/reissue` `{"reissue_token"}` → 200 with a new pair.
pub async fn reissue(shared: &Shared, req: Request<Incoming>) -> Response<ProxyBody> {
    let wire = match wire(req.headers()) {
        Ok(Some(w)) => w,
        Ok(None) => Wire::Json,
        Err(resp) => return *resp,
    };
    let bytes = match read(req).await {
        Ok(b) => b,
        Err(resp) => return *resp,
    };
    let presented = match wire {
        Wire::Json if bytes.is_empty() => None,
        Wire::Json => match json_body::<ReissueJson>(&bytes) {
            Ok(m) => m.reissue_token,
            Err(resp) => return *resp,
        },
        Wire::Protobuf => match protobuf_body::<proto::ReissueSessionRequest>(&bytes) {
            Ok(m) => Some(m.reissue_token),
            Err(resp) => return *resp,
        },
    };
    let Some(presented) = presented.filter(|t| !t.is_empty()) else {
        return field_error("missing_field", "reissue_token", "required");
    };
    match shared.sessions.reissue(&presented).await {
        Ok(Reissued::Issued(issued)) => answer(StatusCode::OK, wire, &issued),
        Ok(Reissued::Invalid) => json_error(
            StatusCode::UNAUTHORIZED,
            "invalid_reissue_token",
            "this reissue token is not valid",
        ),
        Ok(Reissued::Expired) => json_error(
            StatusCode::UNAUTHORIZED,
            "reissue_token_expired",
            "this reissue token has expired; log in again",
        ),
        Ok(Reissued::Reused) => json_error(
            StatusCode::UNAUTHORIZED,
            "reissue_token_reused",
            "this reissue token was already used; the session has been ended",
        ),
        Err(e) => {
            tracing::warn!(error = %e, "reissue failed");
            store_down()
        }
    }
}

/// `POST /sessions/destroy` (body `{}`, empty, or an empty protobuf message) and
/// `DELETE /sessions/current`, with the session's token: 200 `{}`.
pub async fn destroy(shared: &Shared, conn: &ConnInfo, req: Request<Incoming>) -> Response<ProxyBody> {
    let wire = match wire(req.headers()) {
        Ok(w) => w.unwrap_or(Wire::Json),
        Err(resp) => return *resp,
    };
    if let Some(refused) = pending::cookie_from_another_site(shared, conn, &req) {
        return refused;
    }
    let live = match current(shared, conn, req.headers()).await {
        Err(resp) => return resp,
        Ok(None) => return json_error(StatusCode::UNAUTHORIZED, "invalid_token", "no valid session"),
        Ok(Some(live)) => live,
    };
    let bytes = match read(req).await {
        Ok(b) => b,
        Err(resp) => return *resp,
    };
    let well_formed = match wire {
        Wire::Json => {
            bytes.is_empty() || json_body::<serde_json::Map<String, serde_json::Value>>(&bytes).is_ok()
        }
        Wire::Protobuf => proto::DestroySessionRequest::decode(&bytes[..]).is_ok(),
    };
    if !well_formed {
        return forms::body_error(BodyError::Invalid("expected an empty message".into()));
    }
    if let Err(e) = shared.sessions.revoke(live.id()).await {
        tracing::warn!(error = %e, "destroy failed");
        return store_down();
    }
    match wire {
        Wire::Json => json_response(StatusCode::OK, "{}".into()),
        Wire::Protobuf => protobuf_response(StatusCode::OK, proto::DestroySessionResponse {}.encode_to_vec()),
    }
}
