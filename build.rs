//! Compiles the gRPC definitions with a pure-Rust protobuf compiler (protox),
//! so building meshtop needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["tests/proto/echo.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["tests/proto"])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
