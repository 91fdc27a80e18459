//! Envoy's external authorization over gRPC (issue #16, SPEC §2.5): `Check` answered by the
//! proxy's own phases, asked with the client Envoy's protos give (`envoy-types`, tonic) over
//! real sockets. Envoy itself cannot be installed on these machines; the requests are built as
//! Envoy's ext_authz filter sends them (attributes.request.http: method, host, path, scheme,
//! lower-case headers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse, HttpResponse};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use std::collections::HashMap;
use tonic::Code;
use tonic::transport::Channel;

fn config(trusted: bool) -> String {
    let nowhere: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut toml = format!(
        "{}{USERS}{}{}{}",
        base_toml(),
        route("app", "/app", &[nowhere], "").replace("\"public\"", "\"authenticated\""),
        route("admin", "/admin", &[nowhere], "roles = [\"admin\"]").replace("\"public\"", "\"roles\""),
        route("open", "/open", &[nowhere], ""),
    ) + &route("root", "/", &[nowhere], "roles = [\"admin\"]")
        .replace("\"public\"", "\"roles\"");
    if trusted {
        toml = toml.replacen(
            "workers = 1\n",
            "workers = 1\ntrusted_proxies = [\"127.0.0.1/32\"]\n",
            1,
        );
    }
    toml
}

async fn client(addr: std::net::SocketAddr) -> AuthorizationClient<Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    AuthorizationClient::new(channel)
}

/// A Check as Envoy's filter sends it for `method path` with these client headers.
fn check(method: &str, path: &str, headers: &[(&str, &str)]) -> CheckRequest {
    let headers: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: method.into(),
                    host: "app.example".into(),
                    path: path.into(),
                    scheme: "https".into(),
                    headers,
                    ..HttpRequest::default()
                }),
                ..Request::default()
            }),
            ..AttributeContext::default()
        }),
    }
}

/// (gRPC code, HTTP status of a denial or 200, headers set or denied with, headers removed, body)
fn read(answer: CheckResponse) -> (i32, u16, HashMap<String, String>, Vec<String>, String) {
    let code = answer.status.map_or(0, |s| s.code);
    let pairs = |hs: &[envoy_types::ext_authz::v3::pb::HeaderValueOption]| -> HashMap<String, String> {
        hs.iter()
            .filter_map(|h| h.header.as_ref())
            .map(|h| (h.key.clone(), h.value.clone()))
            .collect()
    };
    match answer.http_response {
        Some(HttpResponse::OkResponse(ok)) => {
            (code, 200, pairs(&ok.headers), ok.headers_to_remove, String::new())
        }
        Some(HttpResponse::DeniedResponse(d)) => (
            code,
            d.status.map_or(0, |s| s.code as u16),
            pairs(&d.headers),
            Vec::new(),
            d.body,
        ),
        other => panic!("no http_response: {other:?}"),
    }
}

#[tokio::test]
async fn check_decides_as_the_proxy_does() {
    let gw = Gateway::start(&config(true));
    let alice = mint(gw.admin, "alice", 1).await.remove(0);
    let bob = mint(gw.admin, "bob", 1).await.remove(0);
    let mut c = client(gw.http).await;
    let bearer = |t: &str| format!("Bearer {t}");

    // Allowed: the identity set (a client's copies in any spelling replaced or removed), the
    // gateway's own token removed, other cookies kept without the session cookie.
    let asked = check(
        "POST",
        "/app/x?y=1",
        &[
            ("authorization", &bearer(&alice)),
            ("x_auth_user", "mallory"),
            ("x-auth-session-id", "forged"),
            ("cookie", "theme=dark"),
        ],
    );
    let (code, status, set, removed, _) = read(c.check(asked).await.unwrap().into_inner());
    assert_eq!((code, status), (0, 200));
    assert_eq!(
        set.get("x-auth-user").map(String::as_str),
        Some("alice"),
        "{set:?}"
    );
    assert_eq!(
        set.get("x-auth-roles").map(String::as_str),
        Some("admin,dev"),
        "{set:?}"
    );
    assert_eq!(
        set.get("cookie").map(String::as_str),
        Some("theme=dark"),
        "{set:?}"
    );
    assert!(removed.contains(&"authorization".to_string()), "{removed:?}");
    assert!(removed.contains(&"x_auth_user".to_string()), "{removed:?}");
    assert!(!removed.contains(&"x-auth-user".to_string()), "{removed:?}");
    let sid = set.get("x-auth-session-id").unwrap();
    assert!(sid != "forged" && sid.len() == 32, "{set:?}");

    // The session cookie, however Envoy passed it (repeated Cookie lines joined with `,`, and
    // a scheme that hides the client's TLS), opens the session and never reaches the upstream.
    let cookie = format!("a=1,__Host-portcullis={alice}");
    let mut behind_a_balancer = check("GET", "/open/x", &[("cookie", &cookie)]);
    if let Some(http) = behind_a_balancer
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
    {
        http.scheme = "http".into();
    }
    let (_, status, set, removed, _) = read(c.check(behind_a_balancer).await.unwrap().into_inner());
    assert_eq!(status, 200);
    assert_eq!(
        set.get("cookie").map(String::as_str),
        Some("a=1"),
        "{set:?} {removed:?}"
    );
    assert_eq!(
        set.get("x-auth-user").map(String::as_str),
        Some("alice"),
        "{set:?}"
    );

    // No credential: an API client gets 401 with WWW-Authenticate and the JSON body; a browser
    // navigation gets the login redirect back to where it was going.
    let (code, status, headers, _, body) =
        read(c.check(check("GET", "/app/x", &[])).await.unwrap().into_inner());
    assert_eq!((code, status), (Code::Unauthenticated as i32, 401));
    assert!(headers.contains_key("www-authenticate"), "{headers:?}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["error"],
        "unauthorized"
    );
    let navigation = check("GET", "/app/x?y=1", &[("accept", "text/html")]);
    let (code, status, headers, _, _) = read(c.check(navigation).await.unwrap().into_inner());
    assert_eq!((code, status), (Code::Unauthenticated as i32, 302));
    let location = headers.get("location").unwrap();
    assert!(location == "/auth/login?rd=/app/x%3Fy%3D1", "{location}");

    // Roles: bob has none of the admin route's; alice has.
    let (code, status, ..) = read(
        c.check(check("GET", "/admin/", &[("authorization", &bearer(&bob))]))
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!((code, status), (Code::PermissionDenied as i32, 403));
    let (_, status, ..) = read(
        c.check(check("GET", "/admin/", &[("authorization", &bearer(&alice))]))
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(status, 200);

    // A path the gateway itself serves (`/users/me`) is, behind Envoy, the upstream's, under
    // its route's policy: bob lacks the root route's role.
    for path in ["/users/me", "/sessions/current", "/auth/login"] {
        let (code, status, ..) = read(
            c.check(check("DELETE", path, &[("authorization", &bearer(&bob))]))
                .await
                .unwrap()
                .into_inner(),
        );
        assert_eq!((code, status), (Code::PermissionDenied as i32, 403), "{path}");
    }
    let (_, status, ..) = read(
        c.check(check("GET", "/users/me", &[("authorization", &bearer(&alice))]))
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(status, 200);

    // A public route needs nothing; any other path is the root route's (no credential: 401).
    let (_, status, set, removed, _) = read(c.check(check("GET", "/open/", &[])).await.unwrap().into_inner());
    assert_eq!(status, 200);
    assert!(!set.contains_key("x-auth-user") && removed.contains(&"x-auth-user".to_string()));
    let (_, status, ..) = read(
        c.check(check("GET", "/elsewhere", &[]))
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(status, 401);

    // A session cookie on a cross-site write is refused, as on the proxy path.
    let cookie = format!("__Host-portcullis={alice}");
    let cross = check(
        "POST",
        "/app/x",
        &[("cookie", &cookie), ("sec-fetch-site", "cross-site")],
    );
    let (_, status, ..) = read(c.check(cross).await.unwrap().into_inner());
    assert_eq!(status, 403);

    // A path that does not normalize is a 400, like the proxy's.
    let (code, status, ..) = read(
        c.check(check("GET", "/app/%2e%2e/%2e%2e/x%2Fy", &[]))
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!((code, status), (Code::InvalidArgument as i32, 400));

    // Bad input to Check itself: no attributes is INVALID_ARGUMENT, never INTERNAL.
    let empty = c.check(CheckRequest::default()).await.unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
    gw.stop().await;
}

#[tokio::test]
async fn check_is_answered_only_for_trusted_proxies() {
    let gw = Gateway::start(&config(false));
    let alice = mint(gw.admin, "alice", 1).await.remove(0);
    let mut c = client(gw.http).await;
    let refused = c
        .check(check(
            "GET",
            "/app/x",
            &[("authorization", &format!("Bearer {alice}"))],
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    gw.stop().await;
}
