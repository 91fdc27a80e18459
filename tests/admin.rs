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

/// `portcullis mint`, `sessions list` and `sessions revoke` against a running gateway.
#[tokio::test]
async fn the_sessions_command_lists_and_revokes() {
    let (up, _stop) = upstream::whoami().await;
    let gw = Gateway::start(
        &(base_toml() + USERS + &route("app", "/", &[up], "").replace("\"public\"", "\"authenticated\"")),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cli.toml");
    let text = (base_toml() + USERS + &route("app", "/", &[up], "")).replace(
        "[admin]\nlisten = \"127.0.0.1:0\"",
        &format!("[admin]\nlisten = \"{}\"", gw.admin),
    );
    std::fs::write(&config, text).unwrap();
    let cli = |args: &[&str]| {
        let config = config.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        async move {
            tokio::task::spawn_blocking(move || {
                std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
                    .args(&args)
                    .arg("-c")
                    .arg(&config)
                    .output()
                    .unwrap()
            })
            .await
            .unwrap()
        }
    };

    let out = cli(&["mint", "--user", "alice", "--count", "3"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tokens: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(tokens.len(), 3);

    let out = cli(&["sessions", "list", "--user", "alice", "--json"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<String> = listed["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 3);
    let out = cli(&["sessions", "list", "--user", "alice"]).await;
    let table = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        table.lines().count(),
        4,
        "a header and one line a session:\n{table}"
    );
    assert!(table.contains(&ids[0]));

    let out = cli(&["sessions", "revoke", &ids[0]]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "revoked 1 session");
    let alive: Vec<u16> = futures_util::future::join_all(
        tokens
            .iter()
            .map(|t| async { status_of(&get_with_token(gw.http, "/x", t).await) }),
    )
    .await;
    assert_eq!(alive.iter().filter(|s| **s == 401).count(), 1, "{alive:?}");

    let out = cli(&["sessions", "revoke", "--user", "alice"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "revoked 2 sessions");
    for t in &tokens {
        assert_eq!(status_of(&get_with_token(gw.http, "/x", t).await), 401);
    }

    // Neither an id nor a user: clap says what is missing.
    let out = cli(&["sessions", "revoke"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("<ID>"));
}
