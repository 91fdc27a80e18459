//! The SessionService messages the protobuf bodies use: the generated ones (`crate::proto`),
//! under the name the API has always given them. `tests/seed_001_session_service.rs` checks
//! every field number on the wire against `proto/portcullis.proto`.

pub use crate::proto::{
    CreateSessionRequest, CreateSessionResponse, DestroySessionRequest, DestroySessionResponse,
    ReissueSessionRequest, ReissueSessionResponse,
};
