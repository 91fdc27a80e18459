//! Sign-in in a real browser (issue #13): headless Chromium from Debian's packages, driven by
//! Playwright (`tests/browser/signin.mjs`), against this gateway on its TLS listener with the
//! demo upstream behind it. `scripts/test.sh` installs Chromium and the npm packages when they
//! are missing; without them this test fails and says so (it never skips).
//!
//! Screenshots go to `target/screenshots`; `PORTCULLIS_SCREENSHOTS=docs/screenshots` refreshes
//! the README's.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use common::*;
use std::time::Duration;

const BOB: &str = r#"
[[users]]
username = "bob"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$YcGBI+qXHUVQfSNkWdg91A$4YLEcSW02dH0l1Dw+sTZtcBJxZBIlWbCZYeudlWZZTo"
user_id = 2
user_uuid = "22222222-2222-4222-8222-222222222222"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_in_a_real_chromium() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: scripts/test.sh installs Debian's chromium"
    );
    let script_dir = repo_path("tests/browser");
    assert!(
        script_dir.join("node_modules/playwright-core").exists(),
        "tests/browser/node_modules is missing: scripts/test.sh runs npm ci there"
    );
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
    let shots = std::env::var("PORTCULLIS_SCREENSHOTS")
        .map(|d| repo_path(&d))
        .unwrap_or_else(|_| repo_path("target/screenshots"));
    let run = tokio::process::Command::new("node")
        .arg(script_dir.join("signin.mjs"))
        .env("GATEWAY", format!("https://localhost:{}", gw.tls.port()))
        .env("SCREENSHOTS", &shots)
        .env("CHROMIUM", &chromium)
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
    assert!(out.status.success(), "browser steps failed:\n{report}");
    gw.stop().await;
}
