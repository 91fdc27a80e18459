//! `GET /metrics` on the admin listener: token-protected Prometheus text whose series move as
//! traffic flows — requests by route, method class and status, latency histograms, upstream
//! connect errors by target, cache events, store lookups, session events, logins, open
//! connections.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use common::*;
use hyper_util::rt::TokioIo;

#[tokio::test]
async fn series_move_as_traffic_flows() {
    let (up, _stop) = upstream::whoami().await;
    let dead = upstream::dead_address();
    let gw = Gateway::start(
        &(base_toml()
            + USERS
            + &route("app", "/app", &[up], "").replace("\"public\"", "\"authenticated\"")
            + &route("gone", "/gone", &[dead], "")),
    );
    let unauthorized = raw(
        gw.admin,
        b"GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&unauthorized), 401, "the admin token is needed");

    let before = scrape(gw.admin).await;
    // Series an alert may watch exist before their first event.
    for kind in ["succeeded", "failed", "rate_limited"] {
        let series = format!("portcullis_logins_total{{kind=\"{kind}\"}} 0");
        assert!(before.lines().any(|l| l == series), "{series} missing:\n{before}");
    }
    assert!(
        before
            .lines()
            .any(|l| l == "portcullis_log_dropped_lines_total 0"),
        "{before}"
    );
    let token = mint(gw.admin, "alice", 1).await.remove(0);
    for _ in 0..5 {
        assert_eq!(status_of(&get_with_token(gw.http, "/app/x", &token).await), 200);
    }
    assert_eq!(status_of(&get_raw(gw.http, "/app/x", "").await), 401);
    assert_eq!(status_of(&get_raw(gw.http, "/gone", "").await), 502);
    let login = |password: &str| {
        request(
            "POST",
            "/auth/signin",
            Some("application/json"),
            format!(r#"{{"username":"alice","password":"{password}"}}"#),
        )
    };
    assert_eq!(http_request(gw.http, login("alice-password")).await.status, 200);
    assert_eq!(http_request(gw.http, login("wrong")).await.status, 401);

    // A keep-alive connection held open while scraping.
    let tcp = tokio::net::TcpStream::connect(gw.http).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = send.send_request(bearer(get("/app/held"), &token)).await.unwrap();
    assert_eq!(resp.status(), 200);

    let after = scrape(gw.admin).await;
    let moved = |series: &str| value(&after, series) - value(&before, series);
    assert_eq!(
        moved("portcullis_requests_total{route=\"app\",method=\"read\",status=\"200\"}"),
        6.0,
        "{after}"
    );
    assert_eq!(
        moved("portcullis_requests_total{route=\"app\",method=\"read\",status=\"401\"}"),
        1.0
    );
    assert_eq!(
        moved("portcullis_requests_total{route=\"gone\",method=\"read\",status=\"502\"}"),
        1.0
    );
    assert_eq!(
        moved("portcullis_requests_total{route=\"api\",method=\"write\",status=\"200\"}"),
        1.0
    );
    assert_eq!(
        moved("portcullis_requests_total{route=\"api\",method=\"write\",status=\"401\"}"),
        1.0
    );
    assert_eq!(
        moved("portcullis_request_duration_seconds_count{route=\"app\"}"),
        7.0
    );
    assert_eq!(
        moved("portcullis_upstream_duration_seconds_count{route=\"app\"}"),
        6.0
    );
    assert!(moved("portcullis_upstream_duration_seconds_sum{route=\"app\"}") > 0.0);
    assert!(
        moved(&format!(
            "portcullis_upstream_connect_errors_total{{route=\"gone\",target=\"http://{dead}\"}}"
        )) >= 1.0,
        "{after}"
    );
    assert_eq!(
        moved("portcullis_cache_events_total{kind=\"miss\"}"),
        1.0,
        "one miss, then hits"
    );
    assert_eq!(moved("portcullis_cache_events_total{kind=\"hit\"}"), 5.0);
    assert_eq!(moved("portcullis_store_lookups_total{kind=\"memory\"}"), 1.0);
    assert_eq!(
        moved("portcullis_store_lookup_duration_seconds_count{kind=\"memory\"}"),
        1.0
    );
    assert_eq!(
        moved("portcullis_session_events_total{kind=\"created\"}"),
        2.0,
        "mint + sign-in"
    );
    assert_eq!(moved("portcullis_logins_total{kind=\"succeeded\"}"), 1.0);
    assert_eq!(moved("portcullis_logins_total{kind=\"failed\"}"), 1.0);
    assert!(
        value(
            &after,
            "portcullis_open_connections{listener=\"http\",protocol=\"http\"}"
        ) >= 1.0
    );

    // Revocations count as destroyed sessions.
    let resp = admin_call(gw.admin, "DELETE", "/admin/users/alice/sessions").await;
    assert_eq!(status_of(&resp), 200);
    let last = scrape(gw.admin).await;
    assert_eq!(
        value(&last, "portcullis_session_events_total{kind=\"destroyed\"}")
            - value(&after, "portcullis_session_events_total{kind=\"destroyed\"}"),
        2.0
    );
    drop(send);
}
