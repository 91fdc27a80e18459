//! TLS with ALPN h2 and http/1.1, the plain listener, and what the upstream sees of each.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use common::*;

#[tokio::test]
async fn tls_serves_http1_and_h2_and_plain_serves_http1() {
    let (up, _stop) = upstream::whoami().await;
    let gw = Gateway::start(&(base_toml() + &route("app", "/", &[up], "")));

    let (a, alpn) = tls_request(gw.tls, "http/1.1", get("/one?q=1")).await;
    assert_eq!(alpn, "http/1.1");
    assert_eq!(a.status, 200);
    assert_eq!(a.version, http::Version::HTTP_11);
    let seen = a.json();
    assert_eq!(seen["path"], "/one");
    assert_eq!(seen["query"], "q=1");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https");
    assert_eq!(seen["headers"]["x-forwarded-for"], "127.0.0.1");

    let req = http::Request::get(format!("https://localhost:{}/two", gw.tls.port()))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let (a, alpn) = tls_request(gw.tls, "h2", req).await;
    assert_eq!(alpn, "h2");
    assert_eq!(a.status, 200);
    assert_eq!(a.version, http::Version::HTTP_2);
    let seen = a.json();
    assert_eq!(seen["path"], "/two");
    assert_eq!(seen["version"], "HTTP/1.1", "upstreams are spoken to in HTTP/1.1");
    assert_eq!(
        seen["headers"]["host"],
        format!("localhost:{}", gw.tls.port()),
        "h2 :authority becomes Host"
    );
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https");

    let a = http_request(gw.http, get("/three")).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["headers"]["x-forwarded-proto"], "http");
    let id = a
        .headers
        .get("x-request-id")
        .expect("x-request-id on the response");
    assert_eq!(
        a.json()["headers"]["x-request-id"],
        id.to_str().unwrap(),
        "same id both ways"
    );
    gw.stop().await;
}

#[tokio::test]
async fn keep_alive_connection_serves_many_requests() {
    let (up, _stop) = upstream::whoami().await;
    let gw = Gateway::start(&(base_toml() + &route("app", "/", &[up], "")));
    let tcp = tokio::net::TcpStream::connect(gw.http).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    for i in 0..20 {
        send.ready().await.unwrap();
        let a = collect(send.send_request(get(&format!("/n/{i}"))).await.unwrap()).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.json()["path"], format!("/n/{i}"));
    }
    gw.stop().await;
}

#[tokio::test]
async fn large_bodies_stream_both_ways() {
    // 8 MiB up (chunked, unknown length) and an 8 MiB answer down.
    let up = upstream::scripted(|req: hyper::Request<hyper::body::Incoming>| async move {
        use http_body_util::BodyExt;
        let n = req.into_body().collect().await.unwrap().to_bytes().len();
        hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(vec![b'x'; n])))
    })
    .await;
    let gw = Gateway::start(&(base_toml() + &route("app", "/", &[up], "max_body = \"9MiB\"")));
    let (tx, rx) =
        tokio::sync::mpsc::channel::<Result<hyper::body::Frame<bytes::Bytes>, std::convert::Infallible>>(4);
    tokio::spawn(async move {
        for _ in 0..128 {
            let chunk = bytes::Bytes::from(vec![b'y'; 64 * 1024]);
            tx.send(Ok(hyper::body::Frame::data(chunk))).await.unwrap();
        }
    });
    let body = http_body_util::StreamBody::new(tokio_stream_from(rx));
    let req = hyper::Request::post("/echo")
        .header("host", "localhost")
        .body(body)
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(gw.http).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let a = collect(send.send_request(req).await.unwrap()).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body.len(), 8 << 20);
    gw.stop().await;
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
