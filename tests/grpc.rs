//! The gateway's gRPC services over real sockets (issue #16, SPEC §2.2): tonic's client on the
//! plain listener (HTTP/2 prior knowledge), and Python's grpcio — a client we did not write —
//! on both listeners (`tests/grpc/client.py`, which also reads the services through
//! reflection alone and asks the health service).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use portcullis::grpc::pb::session_service_client::SessionServiceClient;
use portcullis::grpc::pb::{CreateSessionRequest, DestroySessionRequest, ReissueSessionRequest};
use tonic::Code;
use tonic::transport::Channel;

/// A gateway's config: the test users, `extra`, an authenticated route (for ext_authz; the
/// SessionService needs none), and this machine as a trusted proxy (ext_authz answers only those).
fn config(extra: &str) -> String {
    let nowhere: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    let app = route("app", "/", &[nowhere], "").replace("\"public\"", "\"authenticated\"");
    format!("{}{USERS}{extra}{app}", base_toml()).replacen(
        "workers = 1\n",
        "workers = 1\ntrusted_proxies = [\"127.0.0.1/32\"]\n",
        1,
    )
}

async fn client(addr: std::net::SocketAddr) -> SessionServiceClient<Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    SessionServiceClient::new(channel)
}

fn create(username: &str, password: &str, device: &str) -> CreateSessionRequest {
    CreateSessionRequest {
        username: username.into(),
        password: password.into(),
        device_uuid: device.into(),
    }
}

fn with_bearer<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

fn error_code(status: &tonic::Status) -> &str {
    status
        .metadata()
        .get("portcullis-error")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn the_session_service_over_grpc_decides_as_the_json_api() {
    let gw = Gateway::start(&config(""));
    let mut c = client(gw.http).await;

    let created = c
        .create_session(create("alice", "alice-password", "phone-1"))
        .await
        .unwrap()
        .into_inner();
    assert!(created.auth_token.starts_with("pc1_") && created.reissue_token.starts_with("pcr_"));
    assert_eq!(
        (
            created.username.as_str(),
            created.user_id,
            created.user_uuid.as_str()
        ),
        ("alice", 1, "11111111-1111-4111-8111-111111111111")
    );
    assert!(u64::from(created.exp) > portcullis::session::now());
    // The token is a session the JSON API knows.
    let me = get_with_token(gw.http, "/users/me", &created.auth_token).await;
    assert_eq!(status_of(&me), 200, "{me}");

    // Reissue: a new pair for the same user; a token that is no reissue token is refused.
    let reissued = c
        .reissue_session(ReissueSessionRequest {
            reissue_token: created.reissue_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reissued.username, "alice");
    assert_ne!(reissued.auth_token, created.auth_token);
    let bad = c
        .reissue_session(ReissueSessionRequest {
            reissue_token: "pcr_not-a-token".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (bad.code(), error_code(&bad)),
        (Code::Unauthenticated, "invalid_reissue_token")
    );
    let missing = c
        .reissue_session(ReissueSessionRequest::default())
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument);
    assert!(missing.message().contains("reissue_token"), "{missing:?}");

    // Device replacement: a new session on the same device ends the one before it.
    let again = c
        .create_session(create("alice", "alice-password", "phone-1"))
        .await
        .unwrap()
        .into_inner();
    let old = get_with_token(gw.http, "/users/me", &reissued.auth_token).await;
    assert_eq!(status_of(&old), 401, "{old}");

    // DestroySession takes the token from the metadata; without a live one it is refused.
    let anonymous = c.destroy_session(DestroySessionRequest {}).await.unwrap_err();
    assert_eq!(
        (anonymous.code(), error_code(&anonymous)),
        (Code::Unauthenticated, "invalid_token")
    );
    c.destroy_session(with_bearer(DestroySessionRequest {}, &again.auth_token))
        .await
        .unwrap();
    let gone = get_with_token(gw.http, "/users/me", &again.auth_token).await;
    assert_eq!(status_of(&gone), 401, "{gone}");
    let twice = c
        .destroy_session(with_bearer(DestroySessionRequest {}, &again.auth_token))
        .await
        .unwrap_err();
    assert_eq!(twice.code(), Code::Unauthenticated);
    gw.stop().await;
}

#[tokio::test]
async fn bad_input_is_invalid_argument_and_refusals_keep_their_codes() {
    let gw = Gateway::start(&config("\n[login]\nper_user = 3\n"));
    let mut c = client(gw.http).await;
    for (request, field) in [
        (create("", "x", ""), "username"),
        (create("alice", "", ""), "password"),
        (create(&"a".repeat(65), "x", ""), "username"),
        (create("alice", "x", "dev\u{7}ice"), "device_uuid"),
    ] {
        let refused = c.create_session(request).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{field}: {refused:?}");
        assert!(refused.message().starts_with(field), "{field}: {refused:?}");
    }
    // Unknown users and wrong passwords: one answer, never the password in it.
    let wrong = c.create_session(create("alice", "nope", "")).await.unwrap_err();
    let unknown = c.create_session(create("mallory", "nope", "")).await.unwrap_err();
    assert_eq!(
        (wrong.code(), wrong.message()),
        (unknown.code(), unknown.message())
    );
    assert_eq!(
        (wrong.code(), error_code(&wrong)),
        (Code::Unauthenticated, "invalid_credentials")
    );
    assert!(!format!("{wrong:?}").contains("nope"));
    // alice has used 1 of 3 attempts: the third after this is rate limited, with retry-after.
    let mut last = None;
    for _ in 0..3 {
        last = c.create_session(create("alice", "nope", "")).await.err();
    }
    let limited = last.unwrap();
    assert_eq!(
        (limited.code(), error_code(&limited)),
        (Code::ResourceExhausted, "rate_limited")
    );
    let wait: u64 = limited
        .metadata()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait >= 1, "{limited:?}");

    // A message that is not the request's protobuf: INVALID_ARGUMENT, never UNKNOWN/INTERNAL.
    let garbage = raw_grpc_call(gw.http, "/portcullis.v1.SessionService/CreateSession", &[0xff; 7]).await;
    assert_eq!(garbage, Some(Code::InvalidArgument as i32), "grpc-status");
    let health = raw_grpc_call(gw.http, "/grpc.health.v1.Health/Check", &[0xff; 7]).await;
    assert_eq!(
        health,
        Some(Code::InvalidArgument as i32),
        "grpc-status of Health/Check"
    );
    gw.stop().await;
}

/// Sends one length-prefixed gRPC message (`payload` as its bytes) with hyper's HTTP/2 client;
/// the `grpc-status` the call ended with.
async fn raw_grpc_call(addr: std::net::SocketAddr, path: &str, payload: &[u8]) -> Option<i32> {
    use http_body_util::BodyExt;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(payload);
    let req = http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::Full::new(bytes::Bytes::from(frame)))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let in_head = resp.headers().get("grpc-status").cloned();
    let collected = resp.into_body().collect().await.unwrap();
    let status = in_head.or_else(|| collected.trailers().and_then(|t| t.get("grpc-status").cloned()));
    status.and_then(|v| v.to_str().ok()?.parse().ok())
}

#[tokio::test]
async fn grpcio_a_client_we_did_not_write_works_on_both_listeners() {
    let gw = Gateway::start(&config(""));
    let python = repo_path("target/grpc-venv/bin/python");
    assert!(
        python.exists(),
        "grpcio's virtualenv is missing: scripts/test.sh makes it (target/grpc-venv)"
    );
    let out = tokio::process::Command::new(python)
        .arg(repo_path("tests/grpc/client.py"))
        .arg(gw.http.to_string())
        .arg(gw.tls.to_string())
        .arg(repo_path("certs/ca.pem"))
        .output()
        .await
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "tests/grpc/client.py failed:\n{said}");
    assert!(
        said.contains("grpcio: all checks passed on plain and tls"),
        "{said}"
    );
    gw.stop().await;
}
