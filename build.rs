//! Compiles the gRPC definitions with a pure-Rust protobuf compiler (protox),
//! so building meshtop needs no system `protoc`: the demo's emojivoto
//! services and the test service.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "demo/proto/emoji.proto",
        "demo/proto/voting.proto",
        "tests/proto/echo.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["demo/proto", "tests/proto"])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
