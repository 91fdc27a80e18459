//! Reading what browsers and clients send to the session API: small bodies (JSON or form),
//! query parameters, and the safe-redirect rule for `rd`.

use crate::body::ProxyBody;
use crate::error::ApiError;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use std::collections::HashMap;

/// Largest request body the session API reads.
pub const MAX_BODY: usize = 16 * 1024;

#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    TooLarge,
    Unreadable,
    UnsupportedType,
    Invalid(String),
}

/// Reads a whole body, at most `MAX_BODY` bytes.
pub async fn bytes(body: Incoming) -> Result<Bytes, BodyError> {
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Err(_) => Err(BodyError::Unreadable),
    }
}

/// The media type of a `Content-Type` value, lower-cased, without parameters.
pub fn media_type(content_type: Option<&str>) -> String {
    content_type
        .map(|c| c.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// The 4xx for a body that could not be read.
pub fn body_error(e: BodyError) -> ApiError {
    use http::StatusCode;
    match e {
        BodyError::UnsupportedType => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send application/json or application/x-www-form-urlencoded",
        ),
        BodyError::TooLarge => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "at most 16 KiB")
        }
        BodyError::Unreadable => ApiError::new(
            StatusCode::BAD_REQUEST,
            "unreadable_body",
            "the body could not be read",
        ),
        BodyError::Invalid(why) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", why),
    }
}

/// Reads a JSON or form body into string fields.
pub async fn fields(
    content_type: Option<&str>,
    body: Incoming,
) -> Result<HashMap<String, String>, BodyError> {
    let kind = media_type(content_type);
    if kind != "application/json" && kind != "application/x-www-form-urlencoded" {
        return Err(BodyError::UnsupportedType);
    }
    let bytes = bytes(body).await?;
    if kind == "application/json" {
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| BodyError::Invalid(format!("invalid JSON: {e}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| BodyError::Invalid("expected a JSON object".into()))?;
        let mut out = HashMap::new();
        for (k, v) in obj {
            match v {
                serde_json::Value::String(s) => {
                    out.insert(k.clone(), s.clone());
                }
                serde_json::Value::Null => {}
                _ => return Err(BodyError::Invalid(format!("{k}: expected a string"))),
            }
        }
        Ok(out)
    } else {
        Ok(form_urlencoded::parse(&bytes).into_owned().collect())
    }
}

/// The first value of query parameter `name`.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// 303 to `location` (already safe: `safe_redirect`'s, or the gateway's own page).
pub fn see_other(location: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::empty());
    *resp.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// `rd` if it is a same-origin relative path, else `/`. Refused: anything not starting with a
/// single `/`, `//host`, `/\host`, backslashes anywhere, and control or whitespace characters
/// (browsers drop tabs and newlines, turning `/%09/evil` into `//evil`) — checked on the
/// percent-decoded form.
pub fn safe_redirect(rd: &str) -> String {
    let decoded: Vec<u8> = percent_decode(rd.as_bytes());
    let ok = decoded.first() == Some(&b'/')
        && !matches!(decoded.get(1), Some(b'/') | Some(b'\\'))
        && !decoded
            .iter()
            .any(|&b| b == b'\\' || b.is_ascii_control() || b == b' ')
        && http::HeaderValue::from_str(rd).is_ok()
        && rd.len() <= 2048;
    if ok { rd.to_string() } else { "/".to_string() }
}

pub fn percent_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%'
            && let (Some(h), Some(l)) = (
                input.get(i + 1).and_then(|c| (*c as char).to_digit(16)),
                input.get(i + 2).and_then(|c| (*c as char).to_digit(16)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_redirect_payloads_go_home() {
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "/%09/evil.example",
            "/%5Cevil.example",
            "/%2F%2Fevil.example",
            "%2F%2Fevil.example",
            "https://evil.example",
            "javascript:alert(1)",
            "evil.example",
            "",
            "/\t/evil",
            "/ok\r\nSet-Cookie: x=1",
            "/%0d%0aSet-Cookie:x",
        ] {
            assert_eq!(safe_redirect(bad), "/", "{bad:?}");
        }
        for good in ["/", "/app", "/app/page?tab=2&x=%2F", "/a/b#frag"] {
            assert_eq!(safe_redirect(good), good);
        }
    }
}
