//! `/auth/verify` behind a real nginx using the documented `auth_request` example
//! (`docs/sessions.md`), and the
//! caller's own sessions (`GET`/`DELETE /sessions`).
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use common::*;

/// The documented nginx example (`docs/sessions.md`) with the test's ports.
fn readme_nginx(listen: u16, gateway: u16, app: u16) -> String {
    let readme = std::fs::read_to_string(repo_path("docs/sessions.md")).unwrap();
    let start = readme
        .find("# portcullis forward-auth example")
        .expect("the example is in docs/sessions.md");
    let block = &readme[start..];
    let block = &block[..block.find("```").unwrap()];
    block
        .replace("127.0.0.1:8000", &format!("127.0.0.1:{listen}"))
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{gateway}"))
        .replace("127.0.0.1:8081", &format!("127.0.0.1:{app}"))
}

struct Nginx(std::process::Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM to the master stops its workers too (SIGKILL would orphan them).
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn nginx_auth_request_with_the_readme_config() {
    let (up, _stop) = upstream::whoami().await;
    // nginx connects from 127.0.0.1: docs/sessions.md says to list it as a trusted proxy.
    let gw = Gateway::start(
        &(trusting_loopback()
            + USERS
            + &route("app", "/", &[up], "").replace("policy = \"public\"", "policy = \"authenticated\"")
            + &route("admin", "/admin", &[up], "roles = [\"admin\"]")
                .replace("policy = \"public\"", "policy = \"roles\"")),
    );
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off;\npid {0}/nginx.pid;\nerror_log {0}/error.log warn;\nevents {{}}\nhttp {{\naccess_log off;\n{1}\n}}\n",
            dir.path().display(),
            readme_nginx(port, gw.http.port(), up.port())
        ),
    )
    .unwrap();
    let child = std::process::Command::new("nginx")
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf)
        .spawn()
        .expect("nginx is installed (scripts/test.sh installs nginx-light)");
    let _nginx = Nginx(child);
    let addr = wait_listening(port).await;
    let bob = mint(gw.admin, "bob", 1).await.remove(0);
    let alice = mint(gw.admin, "alice", 1).await.remove(0);

    assert_eq!(status_of(&get_raw(addr, "/x", "").await), 401);
    let resp = get_with_token(addr, "/x", &bob).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert_eq!(
        json_of(&resp)["headers"]["x-auth-user"],
        "bob",
        "identity passed on by nginx"
    );
    assert_eq!(
        status_of(&get_with_token(addr, "/admin/panel", &bob).await),
        403,
        "the admin route's policy applies"
    );
    let resp = get_with_token(addr, "/admin/panel", &alice).await;
    assert_eq!(status_of(&resp), 200);
    assert_eq!(json_of(&resp)["headers"]["x-auth-roles"], "admin,dev");
    assert_eq!(status_of(&get_with_token(addr, "/x", "pc1_forged").await), 401);
    gw.stop().await;
}

/// `base_toml()` with this machine's loopback clients as trusted proxies.
fn trusting_loopback() -> String {
    base_toml().replace("workers = 1", "workers = 1\ntrusted_proxies = [\"127.0.0.1/32\"]")
}

#[tokio::test]
async fn verify_directly_and_log_out_everywhere() {
    let (up, _stop) = upstream::whoami().await;
    let routes = route("open", "/open", &[up], "")
        + &route("app", "/", &[up], "").replace("policy = \"public\"", "policy = \"authenticated\"");
    let gw = Gateway::start(&(trusting_loopback() + USERS + &routes));
    let untrusting = Gateway::start(&(base_toml() + USERS + &routes));
    let tokens = mint(gw.admin, "alice", 3).await;
    let verify = |uri: &str, token: Option<&str>| {
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        format!("{auth}X-Forwarded-Host: localhost\r\nX-Forwarded-Uri: {uri}\r\nX-Forwarded-Method: GET\r\n")
    };
    let resp = get_raw(gw.http, "/auth/verify", &verify("/private?x=1", Some(&tokens[0]))).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert!(resp.contains("x-auth-user: alice"), "{resp}");
    assert_eq!(
        status_of(&get_raw(gw.http, "/auth/verify", &verify("/private", None)).await),
        401
    );
    assert_eq!(
        status_of(&get_raw(gw.http, "/auth/verify", &verify("/open/page", None)).await),
        200,
        "public route"
    );
    assert_eq!(
        status_of(&get_raw(gw.http, "/auth/verify", &verify("/../etc", None)).await),
        400
    );
    // From a peer that is not a trusted proxy, X-Forwarded-* choose nothing (SPEC §2.5): a
    // caller naming a route that way is refused, one naming none needs a valid session.
    let theirs = mint(untrusting.admin, "alice", 1).await.remove(0);
    for (uri, token) in [
        ("/open/page", None),
        ("/../etc", None),
        ("/open/page", Some(theirs.as_str())),
    ] {
        let resp = get_raw(untrusting.http, "/auth/verify", &verify(uri, token)).await;
        assert_eq!(status_of(&resp), 403, "{uri}: {resp}");
        assert_eq!(json_of(&resp)["error"], "untrusted_forwarded_headers");
    }
    assert_eq!(
        status_of(&get_raw(untrusting.http, "/auth/verify", "").await),
        401
    );
    assert_eq!(
        status_of(&get_with_token(untrusting.http, "/auth/verify", &theirs).await),
        200
    );
    untrusting.stop().await;

    let listed = json_of(&get_with_token(gw.http, "/sessions", &tokens[1]).await);
    let sessions = listed["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 3);
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    let req = format!(
        "DELETE /sessions HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        tokens[1]
    );
    let resp = raw(gw.http, req.as_bytes()).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert_eq!(json_of(&resp)["revoked"], 3);
    for t in &tokens {
        assert_eq!(status_of(&get_with_token(gw.http, "/x", t).await), 401);
    }
    assert_eq!(status_of(&get_raw(gw.http, "/sessions", "").await), 401);
    gw.stop().await;
}
