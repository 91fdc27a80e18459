//! The gateway's refusals as gRPC statuses (SPEC §2.2): the same `ApiError` the JSON API
//! answers with, rendered for this transport. The status's code follows the HTTP status; its
//! message is the JSON's `message`; the JSON's `error` code rides in the `portcullis-error`
//! metadata, and a rate limit's `Retry-After` in `retry-after`. Never `UNKNOWN` or `INTERNAL`.

use crate::body::ProxyBody;
use crate::error::ApiError;
use http::{Response, StatusCode, header};
use tonic::{Code, Status};

/// `refused` as a gRPC status.
pub fn from_api(refused: ApiError) -> Status {
    let code = match refused.status {
        StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            Code::InvalidArgument
        }
        // 401, and the login redirect a browser navigation gets instead.
        StatusCode::UNAUTHORIZED | StatusCode::FOUND | StatusCode::SEE_OTHER => Code::Unauthenticated,
        StatusCode::FORBIDDEN => Code::PermissionDenied,
        StatusCode::NOT_FOUND => Code::NotFound,
        StatusCode::CONFLICT => Code::Aborted,
        StatusCode::TOO_MANY_REQUESTS => Code::ResourceExhausted,
        _ => Code::Unavailable,
    };
    let mut status = Status::new(code, refused.message.clone());
    let metadata = status.metadata_mut();
    if let Ok(v) = refused.code.parse() {
        metadata.insert("portcullis-error", v);
    }
    if let Some(wait) = refused.header(&header::RETRY_AFTER).and_then(|v| v.to_str().ok())
        && let Ok(v) = wait.parse()
    {
        metadata.insert("retry-after", v);
    }
    status
}

/// A trailers-only gRPC answer carrying `status`.
pub fn response(status: Status) -> Response<ProxyBody> {
    let (parts, body) = status.into_http::<tonic::body::Body>().into_parts();
    Response::from_parts(parts, ProxyBody::grpc(body, false))
}
