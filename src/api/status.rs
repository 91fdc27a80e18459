//! The store protocol's status socket (SPEC §2.1): WebSocket `GET /auth/status?token=…` (or the
//! token in `Authorization` on the upgrade). Text frames: `{"status": "pending"}` at once,
//! `{"status": "OK", "user": {…}}` the moment the session is activated, `{"status": "expired"}`
//! when the pending session ends, `{"status": "denied"}` when the person refused the device on
//! the login page; `{"status": "invalid"}` for a token that is not (or no longer) a live
//! session. Each is followed by a normal close, except `pending`.
//!
//! Pushed, not polled: the socket waits on `Sessions::changes`, which carries every change made
//! on this instance and, with redis, those published by the others. A slow safety re-check
//! (every 30 s) bounds the wait should a published message be lost. The token travels in the
//! query string, which the access log never records.

use super::forms;
use crate::auth;
use crate::body::ProxyBody;
use crate::error::ApiError;
use crate::gateway::{ConnInfo, GatewayState};
use crate::session::cache::{Found, Sessions};
use crate::session::{State, now, token};
use futures_util::{SinkExt, StreamExt};
use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::sync::broadcast::error::RecvError;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig, frame::coding::CloseCode};

const RECHECK_EVERY: Duration = Duration::from_secs(30);
/// Status sockets open at once per gateway; more get 503 (each holds a task and wakes on
/// every session change).
pub const MAX_SOCKETS: usize = 10_000;
/// Clients have nothing to say on this socket: anything bigger than a ping is refused.
const MAX_CLIENT_MESSAGE: usize = 1024;

/// One open status socket, counted until dropped.
struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Accepts the upgrade and hands the socket to its own task.
pub fn socket(shared: &GatewayState, _conn: &ConnInfo, mut req: Request<Incoming>) -> Response<ProxyBody> {
    let values = |name| {
        req.headers()
            .get_all(name)
            .into_iter()
            .map(http::HeaderValue::as_bytes)
    };
    let is_websocket = req.version() == Version::HTTP_11
        && crate::proxy::framing::tunnel(
            values(http::header::CONNECTION),
            values(http::header::UPGRADE),
            &["websocket"],
        )
        .is_some();
    let key = req.headers().get("sec-websocket-key").cloned();
    let (true, Some(key)) = (is_websocket, key) else {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "websocket_required",
            "connect with a WebSocket (HTTP/1.1 Upgrade)",
        )
        .into_response();
    };
    let token = forms::query_param(req.uri().query(), "token")
        .or_else(|| auth::bearer(req.headers()).ok().flatten().map(str::to_string))
        .unwrap_or_default();
    let open = shared.sessions.watchers.clone();
    if open.fetch_add(1, Ordering::AcqRel) >= MAX_SOCKETS {
        open.fetch_sub(1, Ordering::AcqRel);
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_sockets",
            "too many status sockets are open; try again shortly",
        )
        .into_response();
    }
    let open = Open(open);
    let sessions = shared.sessions.clone();
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let _open = open;
        let Ok(upgraded) = on_upgrade.await else { return };
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_CLIENT_MESSAGE))
            .max_frame_size(Some(MAX_CLIENT_MESSAGE));
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
        watch(ws, &sessions, &token).await;
    });
    let mut resp = Response::new(ProxyBody::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert("sec-websocket-accept", v);
    }
    resp
}

enum Seen {
    Pending {
        ends: u64,
    },
    Active(String),
    /// Refused on the login page's Deny.
    Denied,
    /// `expired` when its time ran out, else `invalid`.
    Gone,
}

async fn look(sessions: &Sessions, token: &str, id: Option<&str>) -> Result<Seen, ()> {
    match sessions.authenticate(token).await {
        Ok(Found::Pending(live)) => Ok(Seen::Pending {
            ends: live.session.ends_at(),
        }),
        Ok(Found::Active(live)) => Ok(Seen::Active(super::cookie::live_json(&live))),
        Ok(Found::Nothing) => match id {
            // A token that opens nothing may be a denied session's: the record says which.
            Some(id) => match sessions.store.get(id).await {
                Ok(Some(s)) if s.state == State::Denied && holds(token, &s.secret_hash) => Ok(Seen::Denied),
                Ok(_) => Ok(Seen::Gone),
                Err(_) => Err(()),
            },
            None => Ok(Seen::Gone),
        },
        Err(_) => Err(()),
    }
}

/// Whether `token` is the one whose secret hashes to `secret_hash` (hex).
fn holds(token: &str, secret_hash: &str) -> bool {
    token::Parsed::new(token).is_some_and(|p| {
        bool::from(
            token::hex(&p.secret_hash())
                .as_bytes()
                .ct_eq(secret_hash.as_bytes()),
        )
    })
}

type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

async fn finish(ws: &mut Socket, status: &str, user: Option<&str>) {
    let text = match user {
        Some(user) => format!("{{\"status\":\"{status}\",\"user\":{user}}}"),
        None => format!("{{\"status\":\"{status}\"}}"),
    };
    let _ = ws.send(Message::text(text)).await;
    let _ = ws
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }))
        .await;
}

async fn watch(mut ws: Socket, sessions: &Arc<Sessions>, token: &str) {
    // Subscribe before the first look, so an activation between the two is not missed.
    let mut changes = sessions.changes();
    // Only a token with our tag may make the store look for a denied record.
    let id = token::Parsed::new(token)
        .filter(|p| sessions.keys().genuine(p))
        .map(|p| token::id_hex(&p.id()));
    let mut ends = match look(sessions, token, id.as_deref()).await {
        Ok(Seen::Pending { ends }) => ends,
        Ok(Seen::Active(user)) => return finish(&mut ws, "OK", Some(&user)).await,
        Ok(Seen::Denied) => return finish(&mut ws, "denied", None).await,
        Ok(Seen::Gone) | Err(()) => return finish(&mut ws, "invalid", None).await,
    };
    if ws.send(Message::text("{\"status\":\"pending\"}")).await.is_err() {
        return;
    }
    let mut recheck = tokio::time::interval(RECHECK_EVERY);
    recheck.tick().await;
    loop {
        let left = Duration::from_secs(ends.saturating_sub(now()));
        let look_again = tokio::select! {
            change = changes.recv() => match change {
                Ok(changed) => &*changed == "*" || Some(&*changed) == id.as_deref(),
                Err(RecvError::Lagged(_)) => true,
                Err(RecvError::Closed) => return,
            },
            _ = tokio::time::sleep(left) => return finish(&mut ws, "expired", None).await,
            _ = recheck.tick() => true,
            incoming = ws.next() => match incoming {
                // The client left (or sent a close): nothing more to say.
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => false,
            },
        };
        if !look_again {
            continue;
        }
        match look(sessions, token, id.as_deref()).await {
            Ok(Seen::Pending { ends: e }) => ends = e,
            Ok(Seen::Active(user)) => return finish(&mut ws, "OK", Some(&user)).await,
            Ok(Seen::Denied) => return finish(&mut ws, "denied", None).await,
            Ok(Seen::Gone) if now() >= ends => return finish(&mut ws, "expired", None).await,
            Ok(Seen::Gone) => return finish(&mut ws, "invalid", None).await,
            // The store is down: keep waiting; the next change or re-check looks again.
            Err(()) => {}
        }
    }
}
