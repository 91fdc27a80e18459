//! Seed 003 (why sessions live server-side) as the gateway's reason to exist, walked over real
//! sockets: a login creates a server-side session and hands the client only an identifier; a
//! new session at every login; the resource server (upstream) never looks the session up — the
//! gateway tells it who the caller is and what they may do (the roles kept with the session);
//! an administrator rescinds access by destroying the session, and the client must log in
//! again; sessions outlive the client (persistent store).
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use common::*;

async fn login(addr: std::net::SocketAddr) -> (String, String) {
    let a = http_request(
        addr,
        request(
            "POST",
            "/auth/signin",
            Some("application/json"),
            r#"{"username":"alice","password":"alice-password"}"#,
        ),
    )
    .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let cookie = a.headers["set-cookie"].to_str().unwrap();
    let pair = cookie.split(';').next().unwrap().to_string();
    (pair, a.json()["session"]["id"].as_str().unwrap().to_string())
}

fn with_cookie(path: &str, cookie: &str) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    let mut req = get(path);
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    req
}

#[tokio::test]
async fn seed_003_server_side_sessions_through_the_gateway() {
    let backing = Backing::embedded();
    let (up, _stop) = upstream::whoami().await;
    let toml = backing.base_toml()
        + USERS
        + &route("resources", "/resources", &[up], "").replace("\"public\"", "\"authenticated\"");
    let gw = Gateway::start(&toml);

    // 1-4. Logging in creates a session server-side; the client gets only its identifier
    // (an opaque token in a cookie), and every login makes a new session.
    let (cookie, session) = login(gw.http).await;
    let (_, second) = login(gw.http).await;
    assert_ne!(session, second, "a new session at every login");
    let listed = admin_call(gw.admin, "GET", "/admin/sessions?user=alice").await;
    assert_eq!(json_of(&listed)["sessions"].as_array().unwrap().len(), 2);

    // 6. The client sends the cookie; the resource server receives who the caller is and the
    // permissions kept with the session, without a session lookup of its own — and never the
    // session credential itself.
    let a = http_request(gw.http, with_cookie("/resources/report", &cookie)).await;
    assert_eq!(a.status, 200);
    let seen = &a.json()["headers"];
    assert_eq!(seen["x-auth-user"], "alice");
    assert_eq!(seen["x-auth-roles"], "admin,dev");
    assert_eq!(seen["x-auth-session-id"], session.as_str());
    assert!(
        seen.get("cookie").is_none(),
        "the credential stays at the gateway"
    );

    // Sessions are persistent: a restarted gateway still knows them.
    gw.stop().await;
    let gw = Gateway::start(&toml);
    let a = http_request(gw.http, with_cookie("/resources/report", &cookie)).await;
    assert_eq!(a.status, 200, "the session outlived the gateway process");

    // Considerations: administrators rescind privileges by destroying the session, forcing
    // the user to log in again.
    let resp = admin_call(gw.admin, "DELETE", &format!("/admin/sessions/{session}")).await;
    assert_eq!(status_of(&resp), 200);
    let a = http_request(gw.http, with_cookie("/resources/report", &cookie)).await;
    assert_eq!(a.status, 401, "rescinded at once");
    let (fresh, _) = login(gw.http).await;
    let a = http_request(gw.http, with_cookie("/resources/report", &fresh)).await;
    assert_eq!(a.status, 200, "after logging in again");
    gw.stop().await;
}
