//! The SessionService messages (`proto/portcullis.proto`, seed 001) as prost structs. Written
//! by hand so the build needs no protoc; `tests/seed_001_session_service.rs` checks every field
//! number here against the .proto file by encoding each message and reading the wire back.

#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateSessionRequest {
    #[prost(string, tag = "1")]
    pub username: String,
    #[prost(string, tag = "2")]
    pub password: String,
    #[prost(string, tag = "3")]
    pub device_uuid: String,
}

/// Also the ReissueSessionResponse: the seed gives both the same fields and numbers.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateSessionResponse {
    #[prost(string, tag = "1")]
    pub auth_token: String,
    #[prost(string, tag = "2")]
    pub reissue_token: String,
    #[prost(uint32, tag = "3")]
    pub exp: u32,
    #[prost(uint64, tag = "4")]
    pub user_id: u64,
    #[prost(string, tag = "5")]
    pub username: String,
    #[prost(string, tag = "6")]
    pub user_uuid: String,
}

pub type ReissueSessionResponse = CreateSessionResponse;

#[derive(Clone, PartialEq, prost::Message)]
pub struct ReissueSessionRequest {
    #[prost(string, tag = "1")]
    pub reissue_token: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DestroySessionRequest {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DestroySessionResponse {}
