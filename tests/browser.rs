//! Sign-in in a real browser (issue #13): headless Chromium from Debian's packages, driven by
//! Playwright (`tests/browser/signin.mjs`), against this gateway on its TLS listener with the
//! demo upstream behind it; and sign-in through an OpenID Provider (SPEC §4a, issue #17) in
//! the same browser (`tests/browser/oidc.mjs`), against node-oidc-provider
//! (`tests/common/oidc.rs`). `scripts/test.sh` installs Chromium and the npm packages when
//! they are missing; without them these tests fail and say so (they never skip).
//!
//! Screenshots go to `target/screenshots`; `PORTCULLIS_SCREENSHOTS=docs/screenshots` refreshes
//! the README's.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use common::oidc::{Provider, client_registration};
use common::*;
use std::time::Duration;

const BOB: &str = r#"
[[users]]
username = "bob"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$YcGBI+qXHUVQfSNkWdg91A$4YLEcSW02dH0l1Dw+sTZtcBJxZBIlWbCZYeudlWZZTo"
user_id = 2
user_uuid = "22222222-2222-4222-8222-222222222222"
"#;

/// Chromium's path (`CHROMIUM`, else Debian's), asserting it and the npm packages are there.
fn browser_prerequisites() -> String {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: scripts/test.sh installs Debian's chromium"
    );
    assert!(
        repo_path("tests/browser/node_modules/playwright-core").exists(),
        "tests/browser/node_modules is missing: scripts/test.sh runs npm ci there"
    );
    chromium
}

/// Runs `node tests/browser/<script>` with GATEWAY (the TLS listener as
/// `https://localhost:<port>`), SCREENSHOTS, CHROMIUM and `env`; prints its report and fails
/// with it (and `also()`, e.g. another process's log) unless every step passed within 3 minutes.
async fn run_browser_steps(
    script: &str,
    chromium: &str,
    gw: &Gateway,
    env: &[(&str, String)],
    also: &dyn Fn() -> String,
) {
    let shots = std::env::var("PORTCULLIS_SCREENSHOTS")
        .map(|d| repo_path(&d))
        .unwrap_or_else(|_| repo_path("target/screenshots"));
    let run = tokio::process::Command::new("node")
        .arg(repo_path("tests/browser").join(script))
        .env("GATEWAY", format!("https://localhost:{}", gw.tls.port()))
        .env("SCREENSHOTS", &shots)
        .env("CHROMIUM", chromium)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the browser steps finish within 3 minutes")
        .expect("node runs (scripts/test.sh installs Node.js where missing)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{report}");
    assert!(out.status.success(), "browser steps failed:\n{report}{}", also());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_in_a_real_chromium() {
    let chromium = browser_prerequisites();
    let (up, _stop) = upstream::whoami().await;
    let users = USERS
        .split("[[users]]\nusername = \"bob\"")
        .next()
        .unwrap()
        .to_string()
        + BOB;
    let config = base_toml()
        + "[ui]\ntitle = \"Example Corp\"\n"
        + &users
        + &route("app", "/app", &[up], "").replace("\"public\"", "\"authenticated\"")
        + &route("admin", "/admin", &[up], "roles = [\"admin\"]").replace("\"public\"", "\"roles\"")
        + &route("down", "/down", &[upstream::dead_address()], "");
    let gw = Gateway::start(&config);
    run_browser_steps("signin.mjs", &chromium, &gw, &[], &String::new).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_sign_in_in_a_real_chromium() {
    let chromium = browser_prerequisites();
    let (up, _stop) = upstream::whoami().await;
    let idp_port = free_port();
    let config = base_toml()
        + "[ui]\ntitle = \"Example Corp\"\n"
        + USERS
        + &route("app", "/app", &[up], "").replace("\"public\"", "\"authenticated\"")
        + &common::oidc::providers_toml(idp_port);
    let gw = Gateway::start(&config);
    // The provider second, registered with the callbacks as the browser reaches the gateway:
    // https (the TLS listener) and Host localhost:<port>.
    let register = |client_id: &str, auth: &str, name: &str| {
        client_registration(
            client_id,
            auth,
            &[format!(
                "https://localhost:{}/auth/oidc/{name}/callback",
                gw.tls.port()
            )],
            &format!("http://{}/auth/oidc/{name}/backchannel-logout", gw.http),
        )
    };
    let idp = Provider::start(
        idp_port,
        serde_json::json!([
            register("portcullis", "client_secret_basic", "idp"),
            register("staff-only", "client_secret_post", "staff"),
        ]),
    );
    let provider_log = || format!("\nthe provider's log (last 40 lines):\n{}", idp.log_tail(40));
    run_browser_steps(
        "oidc.mjs",
        &chromium,
        &gw,
        &[("IDP", idp.issuer())],
        &provider_log,
    )
    .await;
    gw.stop().await;
}
