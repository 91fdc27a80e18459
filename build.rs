//! Compiles `proto/portcullis.proto` for the gRPC SessionService (`src/grpc`): protox (a
//! protobuf compiler in Rust, so no system `protoc` is needed) makes the descriptors, which
//! tonic-prost-build turns into the messages and the server, and which reflection serves.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/portcullis.proto");
    let descriptors = protox::compile(["portcullis.proto"], ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("portcullis_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .build_transport(false)
        // An undecodable message is INVALID_ARGUMENT, not tonic's INTERNAL (src/grpc/codec.rs).
        .codec_path("crate::grpc::codec::Codec")
        .compile_fds(descriptors)?;
    Ok(())
}
