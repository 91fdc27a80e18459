//! Command-line verbs that talk to a running gateway through its admin API (so they work the
//! same for every store, and never open an embedded store file the gateway holds).

use crate::admin::MAX_MINT;
use crate::config::Config;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(
        "cannot reach the admin listener at {addr}: {why} — is the gateway running (portcullis run -c FILE)?"
    )]
    Unreachable { addr: std::net::SocketAddr, why: String },
    #[error("admin.token (or admin.token_env) must be set to use this command")]
    NoToken,
    #[error("the gateway answered {status}: {body}")]
    Refused { status: u16, body: String },
}

/// Calls the admin API: `method path` with an optional JSON body; returns the JSON answer.
pub async fn admin_call(
    config: &Config,
    method: http::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<serde_json::Value, CliError> {
    let token = config.admin.token.as_deref().ok_or(CliError::NoToken)?;
    let addr = config.admin.listen;
    let unreachable = |why: String| CliError::Unreachable { addr, why };
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    tokio::spawn(conn);
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, addr.to_string())
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(payload)))
        .map_err(|e| unreachable(e.to_string()))?;
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| unreachable(e.to_string()))?
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    if !(200..300).contains(&status) {
        return Err(CliError::Refused { status, body: text });
    }
    serde_json::from_str(&text).map_err(|_| CliError::Refused { status, body: text })
}

/// Mints `count` sessions for `user` (in batches of the admin API's cap).
pub async fn mint(
    config: &Config,
    user: &str,
    count: u64,
    ttl: Option<&str>,
) -> Result<Vec<String>, CliError> {
    let mut tokens = Vec::with_capacity(count as usize);
    let mut left = count;
    while left > 0 {
        let batch = left.min(MAX_MINT);
        let mut body = serde_json::json!({ "username": user, "count": batch });
        if let Some(ttl) = ttl {
            body["ttl"] = ttl.into();
        }
        let answer = admin_call(config, http::Method::POST, "/admin/sessions", Some(body)).await?;
        tokens.extend(
            answer["tokens"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t.as_str().map(str::to_string)),
        );
        left -= batch;
    }
    Ok(tokens)
}

/// `GET /admin/sessions?user=NAME`: the admin API's JSON.
pub async fn list_sessions(config: &Config, user: &str) -> Result<serde_json::Value, CliError> {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("user", user)
        .finish();
    admin_call(
        config,
        http::Method::GET,
        &format!("/admin/sessions?{query}"),
        None,
    )
    .await
}

/// The listing as an aligned table, one session a line.
pub fn sessions_table(list: &serde_json::Value) -> String {
    let mut out = format!(
        "{:<32}  {:<20}  {:>10}  {:>10}  {:>10}  {}\n",
        "ID", "DEVICE", "CREATED", "LAST USED", "ENDS", "ADDRESS"
    );
    for s in list["sessions"].as_array().into_iter().flatten() {
        let text = |k: &str| s[k].as_str().unwrap_or("-").to_string();
        let number = |k: &str| s[k].as_u64().map_or("-".into(), |n| n.to_string());
        out.push_str(&format!(
            "{:<32}  {:<20}  {:>10}  {:>10}  {:>10}  {}\n",
            text("id"),
            text("device_uuid"),
            number("created"),
            number("last_used"),
            number("expires"),
            text("ip"),
        ));
    }
    out
}

/// Revokes one session by id, or all of a user's; returns how many ended.
pub async fn revoke(config: &Config, id: Option<&str>, user: Option<&str>) -> Result<usize, CliError> {
    let path = match (id, user) {
        (Some(id), _) => format!("/admin/sessions/{}", encode_segment(id)),
        (None, Some(user)) => format!("/admin/users/{}/sessions", encode_segment(user)),
        (None, None) => return Ok(0),
    };
    let answer = admin_call(config, http::Method::DELETE, &path, None).await?;
    Ok(answer["revoked"].as_array().map_or(0, Vec::len))
}

/// A path segment with everything but unreserved characters percent-encoded.
fn encode_segment(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
