//! Reloading the configuration (POST /admin/reload and SIGHUP) while traffic flows: a new
//! route appears, a removed route 404s, no request fails; a bad file is refused with the reason
//! and the old configuration keeps serving; a new certificate is seen by the next handshake.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use common::*;
use portcullis::config::Config;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// Starts a gateway from a file (so it can reload it).
fn start_from(file: &Path) -> Gateway {
    let config = Config::load(file).unwrap();
    let running = portcullis::start(&config).expect("gateway starts");
    Gateway {
        tls: running.tls_addr.unwrap(),
        http: running.http_addr.unwrap(),
        admin: running.admin_addr,
        running: Some(running),
    }
}

async fn reload(admin: SocketAddr) -> (u16, serde_json::Value) {
    let resp = admin_call(admin, "POST", "/admin/reload").await;
    (status_of(&resp), json_of(&resp))
}

#[tokio::test]
async fn reload_under_load_drops_nothing() {
    let (up, _stop) = upstream::whoami().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("portcullis.toml");
    let before = base_toml() + USERS + &route("a", "/a", &[up], "") + &route("c", "/c", &[up], "");
    std::fs::write(&file, &before).unwrap();
    let gw = start_from(&file);
    assert_eq!(status_of(&get_raw(gw.http, "/c/x", "").await), 200);
    assert_eq!(status_of(&get_raw(gw.http, "/b/x", "").await), 404);

    // A second task keeps requests going — on one keep-alive connection and on new ones —
    // while the reload happens.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (stop, ok, failed, http) = (stop.clone(), ok.clone(), failed.clone(), gw.http);
        tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(http).await.unwrap();
            let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .unwrap();
            tokio::spawn(conn);
            while !stop.load(Ordering::Relaxed) {
                let kept = send
                    .send_request(get("/a/kept"))
                    .await
                    .map(|r| r.status().as_u16());
                let fresh = status_of(&get_raw(http, "/a/fresh", "").await);
                for status in [kept.unwrap_or(0), fresh] {
                    let counter = if status == 200 { &ok } else { &failed };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;

    // New: route b and user carol (alice's password); gone: route c.
    let carol = USERS
        .replace("username = \"alice\"", "username = \"carol\"")
        .replace("user_id = 1", "user_id = 3")
        .replace(
            "username = \"bob\"\nuser_id = 2",
            "username = \"dave\"\nuser_id = 4",
        );
    let after = base_toml() + USERS + &carol + &route("a", "/a", &[up], "") + &route("b", "/b", &[up], "");
    std::fs::write(&file, &after).unwrap();
    let (status, body) = reload(gw.admin).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["routes"], 2);
    assert_eq!(body["needs_restart"], serde_json::json!([]));
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();

    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no request failed across the reload"
    );
    assert!(ok.load(Ordering::Relaxed) > 10);
    assert_eq!(
        status_of(&get_raw(gw.http, "/b/x", "").await),
        200,
        "the new route"
    );
    assert_eq!(
        status_of(&get_raw(gw.http, "/c/x", "").await),
        404,
        "the removed route"
    );
    let signin = http_request(
        gw.http,
        request(
            "POST",
            "/auth/signin",
            Some("application/json"),
            r#"{"username":"carol","password":"alice-password"}"#,
        ),
    )
    .await;
    assert_eq!(signin.status, 200, "users are reloaded too");
    let minted = mint(gw.admin, "carol", 1).await;
    assert_eq!(minted.len(), 1, "the admin API sees the new users");
}

#[tokio::test]
async fn a_bad_file_is_refused_and_the_old_configuration_keeps_serving() {
    let (up, _stop) = upstream::whoami().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("portcullis.toml");
    let good = base_toml() + &route("a", "/a", &[up], "");
    std::fs::write(&file, &good).unwrap();
    let gw = start_from(&file);

    std::fs::write(&file, good.replace("path_prefix = \"/a\"", "path_prefix = \"a\"")).unwrap();
    let (status, body) = reload(gw.admin).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "reload_refused");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("routes[0].path_prefix"),
        "the reason names the key: {body}"
    );
    assert_eq!(
        status_of(&get_raw(gw.http, "/a/x", "").await),
        200,
        "still serving"
    );

    // Keys only a restart applies are named, and the rest is applied.
    let moved = good.replace("[store]", "[cache]\nmax_entries = 5\n[store]") + &route("b", "/b", &[up], "");
    std::fs::write(&file, moved).unwrap();
    let (status, body) = reload(gw.admin).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["needs_restart"], serde_json::json!(["cache"]));
    assert_eq!(status_of(&get_raw(gw.http, "/b/x", "").await), 200);

    let metrics = admin_call(gw.admin, "GET", "/metrics").await;
    assert!(
        metrics.contains("portcullis_reloads_total{kind=\"failed\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("portcullis_reloads_total{kind=\"succeeded\"} 1"));
}

/// Whether a TLS handshake with `addr` succeeds for a client trusting only `ca`.
async fn handshake_trusting(addr: SocketAddr, ca: &Path) -> bool {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(portcullis::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .is_ok()
}

use rustls::pki_types::pem::PemObject;

#[tokio::test]
async fn a_new_certificate_is_seen_by_the_next_handshake() {
    let (up, _stop) = upstream::whoami().await;
    let dir = tempfile::tempdir().unwrap();
    let fresh = portcullis::certgen::generate(
        &dir.path().join("new-certs"),
        "localhost",
        &["localhost".to_string(), "127.0.0.1".to_string()],
    )
    .unwrap();
    let file = dir.path().join("portcullis.toml");
    let old = base_toml() + &route("a", "/", &[up], "");
    std::fs::write(&file, &old).unwrap();
    let gw = start_from(&file);
    let old_ca = repo_path("certs/ca.pem");
    assert!(handshake_trusting(gw.tls, &old_ca).await);
    assert!(!handshake_trusting(gw.tls, &fresh.ca_cert).await);

    let swapped = old
        .replace(
            &repo_path("certs/localhost.pem").display().to_string(),
            &fresh.cert.display().to_string(),
        )
        .replace(
            &repo_path("certs/localhost-key.pem").display().to_string(),
            &fresh.key.display().to_string(),
        );
    assert_ne!(swapped, old);
    std::fs::write(&file, swapped).unwrap();
    let (status, body) = reload(gw.admin).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        handshake_trusting(gw.tls, &fresh.ca_cert).await,
        "the new certificate"
    );
    assert!(!handshake_trusting(gw.tls, &old_ca).await, "not the old one");
}

#[tokio::test]
async fn sighup_reloads_the_running_binary() {
    let (up, _stop) = upstream::whoami().await;
    let (http, admin) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("portcullis.toml");
    let head = format!(
        "[server]\nhttp_listen = \"127.0.0.1:{http}\"\nworkers = 1\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n"
    );
    std::fs::write(&file, head.clone() + &route("a", "/a", &[up], "")).unwrap();
    let mut child = spawn_binary(&file, std::process::Stdio::null());
    let addr = wait_listening(http).await;
    assert_eq!(status_of(&get_raw(addr, "/b/x", "").await), 404);
    std::fs::write(
        &file,
        head + &route("a", "/a", &[up], "") + &route("b", "/b", &[up], ""),
    )
    .unwrap();
    signal(&child, "-HUP");
    let mut seen = 0;
    for _ in 0..100 {
        seen = status_of(&get_raw(addr, "/b/x", "").await);
        if seen == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, 200, "the new route after SIGHUP");
    assert_eq!(status_of(&get_raw(addr, "/a/x", "").await), 200);
    signal(&child, "-TERM");
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
}

/// The `aud` of a JWT, read without verifying (the jwt tests verify signatures).
fn audience(jwt: &str) -> String {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["aud"].as_str().unwrap().to_string()
}

/// Assertions a session reuses are keyed by route name, not index: a reload that renumbers
/// routes must not send one route's assertion to another.
#[tokio::test]
async fn reused_assertions_follow_route_names_across_a_reload() {
    let (up, _stop) = upstream::whoami().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("portcullis.toml");
    let assertion = format!(
        "\n[assertion]\nkey = \"{}\"\n",
        repo_path("certs/assertion-key.pem").display()
    );
    let auth =
        |name: &str, prefix: &str| route(name, prefix, &[up], "").replace("\"public\"", "\"authenticated\"");
    let head = base_toml() + &assertion + USERS;
    std::fs::write(&file, head.clone() + &auth("a", "/a") + &auth("b", "/b")).unwrap();
    let gw = start_from(&file);
    let token = mint(gw.admin, "alice", 1).await.remove(0);
    let jwt_at = |path: &'static str| {
        let token = token.clone();
        let http = gw.http;
        async move {
            let resp = get_with_token(http, path, &token).await;
            assert_eq!(status_of(&resp), 200, "{resp}");
            audience(json_of(&resp)["headers"]["x-auth-jwt"].as_str().unwrap())
        }
    };
    assert_eq!(jwt_at("/a/x").await, "a");
    assert_eq!(jwt_at("/b/x").await, "b");
    // Route b becomes index 0 and a index 1.
    std::fs::write(&file, head + &auth("b", "/b") + &auth("a", "/a")).unwrap();
    assert_eq!(reload(gw.admin).await.0, 200);
    assert_eq!(jwt_at("/a/x").await, "a", "never route b's assertion");
    assert_eq!(jwt_at("/b/x").await, "b");
}

/// Sessions carry the identity they were made with: a reload that removes a user or changes
/// their roles ends that user's sessions, and leaves everyone else's alone.
#[tokio::test]
async fn removed_or_changed_users_are_logged_out_by_a_reload() {
    let (up, _stop) = upstream::whoami().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("portcullis.toml");
    let app = route("app", "/", &[up], "").replace("\"public\"", "\"authenticated\"");
    std::fs::write(&file, base_toml() + USERS + &app).unwrap();
    let gw = start_from(&file);
    let alice = mint(gw.admin, "alice", 1).await.remove(0);
    let bob = mint(gw.admin, "bob", 1).await.remove(0);

    // alice loses a role; bob is unchanged.
    let fewer_roles = USERS.replace("roles = [\"admin\", \"dev\"]", "roles = [\"dev\"]");
    std::fs::write(&file, base_toml() + &fewer_roles + &app).unwrap();
    let (status, body) = reload(gw.admin).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["users_logged_out"], serde_json::json!(["alice"]));
    assert_eq!(
        status_of(&get_with_token(gw.http, "/x", &alice).await),
        401,
        "old roles, old session"
    );
    assert_eq!(status_of(&get_with_token(gw.http, "/x", &bob).await), 200);
    let fresh = mint(gw.admin, "alice", 1).await.remove(0);
    let resp = get_with_token(gw.http, "/x", &fresh).await;
    assert_eq!(
        json_of(&resp)["headers"]["x-auth-roles"],
        "dev",
        "a new session has the new roles"
    );
}
