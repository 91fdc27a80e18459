//! The gateway's HTTP client for identity providers: discovery, JWKS, the token and UserInfo
//! endpoints. hyper-util's pooled client over hyper-rustls, with the provider's TLS settings
//! (system roots or `ca_file`), HTTP/1.1, no redirects followed, a connect and a whole-call
//! deadline, and a cap on what an answer may hold. It is openidconnect's `AsyncHttpClient`.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use openidconnect::{AsyncHttpClient, HttpRequest, HttpResponse};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// How long a connection may take to open.
const CONNECT: Duration = Duration::from_secs(5);
/// How long one call may take, answer read included.
const CALL: Duration = Duration::from_secs(10);
/// The most an answer may hold (discovery documents and key sets are a few KiB).
const MAX_ANSWER: usize = 1 << 20;

/// Why a call to a provider did not give an answer. The text names the problem, never a
/// secret (requests carry the client secret and codes; they are not quoted).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpError(String);

#[derive(Clone)]
pub struct Http {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Http {
    pub fn new(tls: Arc<rustls::ClientConfig>) -> Http {
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_connect_timeout(Some(CONNECT));
        tcp.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Http { client }
    }

    /// One request and its whole answer, within `CALL`.
    pub async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let (parts, body) = request.into_parts();
        let host = parts.uri.host().unwrap_or("?").to_string();
        let request = http::Request::from_parts(parts, Full::new(Bytes::from(body)));
        let call = async {
            let answer = self
                .client
                .request(request)
                .await
                .map_err(|e| HttpError(format!("cannot reach {host}: {}", chain(&e))))?;
            let (parts, body) = answer.into_parts();
            let body = Limited::new(body, MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| HttpError(format!("{host}: answer not read: {e}")))?
                .to_bytes();
            Ok(http::Response::from_parts(parts, body.to_vec()))
        };
        tokio::time::timeout(CALL, call)
            .await
            .map_err(|_| HttpError(format!("{host} did not answer within {}s", CALL.as_secs())))?
    }
}

/// An error and its causes, on one line (openidconnect's and hyper's own texts are terse).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let next = c.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = c.source();
    }
    text
}

impl<'c> AsyncHttpClient<'c> for Http {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}
