//! The admin listener: open /healthz, bearer-token protection for the rest, and its paths never
//! served on the public listeners (there they are routed like any other path).
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use common::*;

#[tokio::test]
async fn health_is_open_and_the_rest_needs_the_token() {
    let (up, _stop) = upstream::whoami().await;
    let gw = Gateway::start(&(base_toml() + &route("app", "/", &[up], "")));
    let resp = get_raw(gw.admin, "/healthz", "").await;
    assert_eq!(status_of(&resp), 200);
    assert_eq!(json_of(&resp)["status"], "ok");

    let resp = get_raw(gw.admin, "/readyz", "").await;
    assert_eq!(status_of(&resp), 401);
    assert!(resp.to_ascii_lowercase().contains("www-authenticate: bearer"));
    let resp = get_raw(
        gw.admin,
        "/readyz",
        "Authorization: Bearer wrong-token-wrong-token\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 401);
    let resp = get_raw(
        gw.admin,
        "/readyz",
        "Authorization: Bearer test-admin-token-0123456789\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 200);
    assert!(!resp.contains("test-admin-token"), "the token is never echoed");

    // On the public listener these paths belong to the upstream.
    for path in ["/healthz", "/readyz", "/admin/sessions", "/metrics"] {
        let resp = get_raw(gw.http, path, "").await;
        assert_eq!(status_of(&resp), 200, "{path}");
        assert_eq!(json_of(&resp)["path"], path, "{path} was forwarded");
    }
    gw.stop().await;
}

#[tokio::test]
async fn without_a_token_the_admin_api_is_disabled() {
    let (up, _stop) = upstream::whoami().await;
    let toml =
        base_toml().replace("token = \"test-admin-token-0123456789\"", "") + &route("app", "/", &[up], "");
    let gw = Gateway::start(&toml);
    assert_eq!(status_of(&get_raw(gw.admin, "/healthz", "").await), 200);
    let resp = get_raw(
        gw.admin,
        "/readyz",
        "Authorization: Bearer anything-at-all-here\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 403);
    assert_eq!(json_of(&resp)["error"], "admin_disabled");
    gw.stop().await;
}
