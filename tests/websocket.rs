//! WebSocket pass-through: a real WebSocket client talks through the gateway (plain and TLS) to
//! the demo upstream's echo.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn websocket_echo_through_the_gateway() {
    let (up, _stop) = upstream::whoami().await;
    let gw = Gateway::start(&(base_toml() + &route("ws", "/", &[up], "")));

    let (mut ws, resp) = tokio_tungstenite::connect_async(format!("ws://{}/socket", gw.http))
        .await
        .expect("upgrade through the gateway");
    assert_eq!(resp.status(), 101);
    for i in 0..5 {
        ws.send(Message::text(format!("hello {i}"))).await.unwrap();
        let back = ws.next().await.unwrap().unwrap();
        assert_eq!(back.into_text().unwrap().as_str(), format!("hello {i}"));
    }
    ws.send(Message::binary(vec![0u8, 1, 2, 255])).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap().into_data().as_ref(),
        &[0u8, 1, 2, 255]
    );
    ws.close(None).await.unwrap();

    // Over TLS (ALPN http/1.1, as WebSocket clients offer).
    let tcp = tokio::net::TcpStream::connect(gw.tls).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(tls_client_config(&[b"http/1.1"]));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let (mut wss, _) =
        tokio_tungstenite::client_async(format!("wss://localhost:{}/socket", gw.tls.port()), tls)
            .await
            .expect("wss upgrade through the gateway");
    wss.send(Message::text("over tls")).await.unwrap();
    assert_eq!(
        wss.next().await.unwrap().unwrap().into_text().unwrap().as_str(),
        "over tls"
    );
    gw.stop().await;
}
