//! The SessionService's messages and gRPC service (`proto/portcullis.proto`, seed 001),
//! generated at build time (`build.rs`: protox, so no system `protoc`). The HTTP endpoints use
//! the messages as `application/x-protobuf` bodies (`api::service`), `grpc` serves the service.

tonic::include_proto!("portcullis.v1");

/// The `.proto`'s descriptors, for reflection.
pub const DESCRIPTOR: &[u8] = tonic::include_file_descriptor_set!("portcullis_descriptor");
