//! Compiles the demo's emojivoto gRPC definitions with a pure-Rust protobuf
//! compiler (protox), so building meshtop needs no system `protoc`. The
//! tests' own service is generated into tests/support/generated/ and
//! checked by a test, so that production builds do not compile it.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["demo/proto/emoji.proto", "demo/proto/voting.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["demo/proto"])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
