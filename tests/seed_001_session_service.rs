//! Seed 001 (the SessionService) walked step by step against portcullis, in JSON and in
//! protobuf, on the embedded store and on redis: CreateSession with credentials and a device
//! id, the tokens in use, ReissueSession moving `exp` by two weeks, DestroySession; device
//! replacement; errors that name the field; and the messages' field numbers checked against
//! `proto/portcullis.proto`.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use common::*;
use portcullis::api::proto;
use prost::Message;
use std::collections::BTreeMap;

const PROTOBUF: &str = "application/x-protobuf";
const TWO_WEEKS: u64 = 14 * 86400;

fn create_json(device: &str) -> String {
    serde_json::json!({"username": "alice", "password": "alice-password", "device_uuid": device}).to_string()
}

/// Sessions are the subject here; the one route only exists because a config needs one.
fn app_route() -> String {
    route("app", "/app", &[upstream::dead_address()], "")
}

async fn me_status(gw: &Gateway, token: &str) -> u16 {
    http_request(gw.http, bearer(get("/users/me"), token))
        .await
        .status
}

async fn walk(backing: Backing) {
    let kind = backing.name();
    let gw = Gateway::start(&(backing.base_toml() + USERS + &app_route()));
    let now = portcullis::session::now();

    // CreateSessionRequest → CreateSessionResponse (JSON).
    let a = http_request(
        gw.http,
        request(
            "POST",
            "/sessions",
            Some("application/json"),
            create_json("device-a"),
        ),
    )
    .await;
    assert_eq!(a.status, 201, "{kind}: {:?}", a.body);
    let created = a.json();
    let fields: Vec<&str> = created.as_object().unwrap().keys().map(String::as_str).collect();
    for f in [
        "auth_token",
        "reissue_token",
        "exp",
        "user_id",
        "username",
        "user_uuid",
    ] {
        assert!(fields.contains(&f), "{kind}: {f} in {created}");
    }
    assert_eq!(created["username"], "alice");
    assert_eq!(created["user_id"], 1);
    assert_eq!(created["user_uuid"], "11111111-1111-4111-8111-111111111111");
    let exp = created["exp"].as_u64().unwrap();
    assert!(
        (now + TWO_WEEKS - 5..=now + TWO_WEEKS + 5).contains(&exp),
        "{kind}: valid for 2 weeks"
    );
    let auth = created["auth_token"].as_str().unwrap().to_string();
    let reissue = created["reissue_token"].as_str().unwrap().to_string();
    assert_eq!(me_status(&gw, &auth).await, 200, "{kind}: the auth token works");
    assert_eq!(
        me_status(&gw, &reissue).await,
        401,
        "{kind}: a reissue token is not an auth token"
    );

    // ReissueSessionRequest → ReissueSessionResponse: a new pair, exp extended.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let a = http_request(
        gw.http,
        request(
            "POST",
            "/sessions/reissue",
            Some("application/json"),
            serde_json::json!({ "reissue_token": reissue }).to_string(),
        ),
    )
    .await;
    assert_eq!(a.status, 200, "{kind}: {:?}", a.body);
    let reissued = a.json();
    assert_eq!(reissued["username"], "alice");
    assert_eq!(reissued["user_id"], 1);
    assert!(
        reissued["exp"].as_u64().unwrap() > exp,
        "{kind}: exp moved to now + 14d (a second later than at creation)"
    );
    let auth2 = reissued["auth_token"].as_str().unwrap().to_string();
    let reissue2 = reissued["reissue_token"].as_str().unwrap().to_string();
    assert_ne!(reissue2, reissue, "{kind}: a new reissue token");
    assert_eq!(me_status(&gw, &auth2).await, 200);
    assert_eq!(
        me_status(&gw, &auth).await,
        401,
        "{kind}: the old auth token ended"
    );

    // DestroySessionRequest → DestroySessionResponse.
    let a = http_request(
        gw.http,
        bearer(
            request("POST", "/sessions/destroy", Some("application/json"), "{}"),
            &auth2,
        ),
    )
    .await;
    assert_eq!(a.status, 200, "{kind}: {:?}", a.body);
    assert_eq!(a.json(), serde_json::json!({}));
    assert_eq!(me_status(&gw, &auth2).await, 401, "{kind}: destroyed");

    // The same three in protobuf.
    let body = proto::CreateSessionRequest {
        username: "alice".into(),
        password: "alice-password".into(),
        device_uuid: "device-p".into(),
    }
    .encode_to_vec();
    let a = http_request(gw.http, request("POST", "/sessions", Some(PROTOBUF), body)).await;
    assert_eq!(a.status, 201, "{kind}: {:?}", a.body);
    assert_eq!(a.headers["content-type"], PROTOBUF);
    let created = proto::CreateSessionResponse::decode(a.body.as_ref()).unwrap();
    assert_eq!(created.username, "alice");
    assert_eq!(created.user_id, 1);
    assert_eq!(created.user_uuid, "11111111-1111-4111-8111-111111111111");
    assert!(u64::from(created.exp) >= now + TWO_WEEKS - 5);
    assert_eq!(me_status(&gw, &created.auth_token).await, 200);

    let body = proto::ReissueSessionRequest {
        reissue_token: created.reissue_token.clone(),
    }
    .encode_to_vec();
    let a = http_request(
        gw.http,
        request("POST", "/sessions/reissue", Some(PROTOBUF), body),
    )
    .await;
    assert_eq!(a.status, 200, "{kind}: {:?}", a.body);
    let reissued = proto::ReissueSessionResponse::decode(a.body.as_ref()).unwrap();
    assert_eq!(reissued.username, "alice");
    assert_ne!(reissued.reissue_token, created.reissue_token);
    assert_eq!(me_status(&gw, &reissued.auth_token).await, 200);

    let body = proto::DestroySessionRequest {}.encode_to_vec();
    let a = http_request(
        gw.http,
        bearer(
            request("POST", "/sessions/destroy", Some(PROTOBUF), body),
            &reissued.auth_token,
        ),
    )
    .await;
    assert_eq!(a.status, 200, "{kind}: {:?}", a.body);
    assert_eq!(a.headers["content-type"], PROTOBUF);
    assert!(proto::DestroySessionResponse::decode(a.body.as_ref()).is_ok());
    assert_eq!(me_status(&gw, &reissued.auth_token).await, 401);

    // DELETE /sessions/current does the same.
    let a = http_request(
        gw.http,
        request(
            "POST",
            "/sessions",
            Some("application/json"),
            create_json("device-c"),
        ),
    )
    .await;
    let token = a.json()["auth_token"].as_str().unwrap().to_string();
    let a = http_request(
        gw.http,
        bearer(request("DELETE", "/sessions/current", None, ""), &token),
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(me_status(&gw, &token).await, 401);

    // Device replacement: a new session for alice on device D ends her other sessions on D.
    let mut on_d = Vec::new();
    for device in ["device-d", "device-e", "device-d"] {
        let a = http_request(
            gw.http,
            request("POST", "/sessions", Some("application/json"), create_json(device)),
        )
        .await;
        assert_eq!(a.status, 201);
        on_d.push(a.json()["auth_token"].as_str().unwrap().to_string());
    }
    assert_eq!(
        me_status(&gw, &on_d[0]).await,
        401,
        "{kind}: replaced by the same device"
    );
    assert_eq!(
        me_status(&gw, &on_d[1]).await,
        200,
        "{kind}: another device stays"
    );
    assert_eq!(me_status(&gw, &on_d[2]).await, 200);
    gw.stop().await;
}

#[tokio::test]
async fn seed_001_on_the_embedded_store() {
    walk(Backing::embedded()).await;
}

#[tokio::test]
async fn seed_001_on_redis() {
    walk(Backing::redis()).await;
}

/// On a Redis Cluster (3 masters, 3 replicas) through one seed node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_001_on_a_redis_cluster() {
    walk(Backing::cluster()).await;
}

#[tokio::test]
async fn errors_name_the_field() {
    let gw = Gateway::start(&(base_toml() + USERS + "\n[login]\nper_user = 3\n" + &app_route()));
    let json = Some("application/json");
    for (body, field) in [
        (r#"{"password": "x"}"#, "username"),
        (r#"{"username": "alice"}"#, "password"),
        (r#"{"username": 5, "password": "x"}"#, "username"),
        (r#"{"username": "alice", "password": ["x"]}"#, "password"),
        (
            r#"{"username": "alice", "password": "x", "device_uuid": 7}"#,
            "device_uuid",
        ),
    ] {
        let a = http_request(gw.http, request("POST", "/sessions", json, body)).await;
        assert_eq!(a.status, 400, "{body}");
        assert_eq!(a.json()["field"], field, "{body}: {}", a.json());
        assert!(a.json()["message"].as_str().unwrap().starts_with(field));
    }
    // A value of the wrong type is never quoted back (it may be a password).
    let a = http_request(
        gw.http,
        request(
            "POST",
            "/sessions",
            json,
            r#"{"username": "alice", "password": 987654321}"#,
        ),
    )
    .await;
    assert_eq!(a.json()["field"], "password");
    assert!(!String::from_utf8_lossy(&a.body).contains("987654321"));
    let long_device = format!(
        r#"{{"username": "alice", "password": "x", "device_uuid": "{}"}}"#,
        "d".repeat(200)
    );
    let a = http_request(gw.http, request("POST", "/sessions", json, long_device)).await;
    assert_eq!(a.json()["field"], "device_uuid");

    let a = http_request(gw.http, request("POST", "/sessions", json, "{\"username\": ")).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json()["error"], "invalid_body");
    let a = http_request(
        gw.http,
        request("POST", "/sessions", Some(PROTOBUF), vec![0xff, 0xff, 0xff]),
    )
    .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json()["error"], "invalid_body");
    let a = http_request(gw.http, request("POST", "/sessions", Some("text/plain"), "hello")).await;
    assert_eq!(a.status, 415);
    let a = http_request(gw.http, request("POST", "/sessions/reissue", json, "{}")).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json()["field"], "reissue_token");

    // Unknown user and wrong password: one answer.
    let wrong = http_request(
        gw.http,
        request(
            "POST",
            "/sessions",
            json,
            r#"{"username": "alice", "password": "nope"}"#,
        ),
    )
    .await;
    let unknown = http_request(
        gw.http,
        request(
            "POST",
            "/sessions",
            json,
            r#"{"username": "mallory", "password": "nope"}"#,
        ),
    )
    .await;
    assert_eq!((wrong.status, unknown.status), (401, 401));
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(wrong.json()["error"], "invalid_credentials");

    // Rate limited per username: 429 with Retry-After (alice has used 2 of 3 attempts).
    let mut last = None;
    for _ in 0..3 {
        last = Some(
            http_request(
                gw.http,
                request(
                    "POST",
                    "/sessions",
                    json,
                    r#"{"username": "alice", "password": "nope"}"#,
                ),
            )
            .await,
        );
    }
    let last = last.unwrap();
    assert_eq!(last.status, 429);
    assert!(last.headers.contains_key("retry-after"));
}

/// Field number → wire value, read from an encoded message (varints and length-delimited only,
/// which is all these messages use).
fn wire_fields(mut bytes: &[u8]) -> BTreeMap<u32, String> {
    fn varint(b: &mut &[u8]) -> u64 {
        let mut out = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = b[0];
            *b = &b[1..];
            out |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
        }
        out
    }
    let mut out = BTreeMap::new();
    while !bytes.is_empty() {
        let key = varint(&mut bytes);
        let (number, wire_type) = ((key >> 3) as u32, key & 7);
        let value = match wire_type {
            0 => varint(&mut bytes).to_string(),
            2 => {
                let len = varint(&mut bytes) as usize;
                let (v, rest) = bytes.split_at(len);
                bytes = rest;
                String::from_utf8(v.to_vec()).unwrap()
            }
            other => panic!("unexpected wire type {other}"),
        };
        out.insert(number, value);
    }
    out
}

/// (message, field) → (type, number), from the .proto file.
fn proto_file_fields() -> BTreeMap<(String, String), (String, u32)> {
    let text = std::fs::read_to_string(repo_path("proto/portcullis.proto")).unwrap();
    let mut out = BTreeMap::new();
    let mut message = None;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("message ") {
            message = Some(rest.trim_end_matches(['{', ' ']).to_string());
        } else if line.starts_with('}') {
            message = None;
        } else if let (Some(m), Some((decl, number))) =
            (&message, line.trim_end_matches(';').split_once(" = "))
        {
            let (ty, name) = decl.split_once(' ').unwrap();
            out.insert(
                (m.clone(), name.to_string()),
                (ty.to_string(), number.parse().unwrap()),
            );
        }
    }
    out
}

#[test]
fn messages_carry_the_proto_files_field_numbers() {
    let declared = proto_file_fields();
    assert_eq!(declared.len(), 16, "{declared:?}");
    let response = proto::CreateSessionResponse {
        auth_token: "auth_token".into(),
        reissue_token: "reissue_token".into(),
        exp: 3003,
        user_id: 4004,
        username: "username".into(),
        user_uuid: "user_uuid".into(),
    };
    let encoded: Vec<(&str, Vec<u8>, BTreeMap<&str, &str>)> = vec![
        (
            "CreateSessionRequest",
            proto::CreateSessionRequest {
                username: "username".into(),
                password: "password".into(),
                device_uuid: "device_uuid".into(),
            }
            .encode_to_vec(),
            BTreeMap::new(),
        ),
        (
            "CreateSessionResponse",
            response.encode_to_vec(),
            [("exp", "3003"), ("user_id", "4004")].into(),
        ),
        (
            "ReissueSessionResponse",
            response.encode_to_vec(),
            [("exp", "3003"), ("user_id", "4004")].into(),
        ),
        (
            "ReissueSessionRequest",
            proto::ReissueSessionRequest {
                reissue_token: "reissue_token".into(),
            }
            .encode_to_vec(),
            BTreeMap::new(),
        ),
    ];
    let mut checked = 0;
    for (message, bytes, numbers) in encoded {
        let on_wire = wire_fields(&bytes);
        for ((m, field), (_, number)) in &declared {
            if m != message {
                continue;
            }
            let want = numbers.get(field.as_str()).copied().unwrap_or(field.as_str());
            assert_eq!(
                on_wire.get(number).map(String::as_str),
                Some(want),
                "{message}.{field} must be field {number}"
            );
            checked += 1;
        }
        assert_eq!(
            on_wire.len(),
            declared.keys().filter(|(m, _)| m == message).count()
        );
    }
    assert_eq!(checked, 16);
    assert!(proto::DestroySessionRequest {}.encode_to_vec().is_empty());
}
