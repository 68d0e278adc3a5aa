//! Generates the Rust code for `proto/` with protox, a pure-Rust protobuf compiler, so a build needs cargo and
//! nothing else (no system `protoc`).

use std::path::PathBuf;

const PROTO_ROOT: &str = "../../proto";
// google/rpc/error_details.proto is compiled for its descriptor only (its Rust types are tonic-types' own, see the
// extern_path below): reflection serves it so generic clients (buf curl, grpcurl) can decode the BadRequest,
// ResourceInfo and ErrorInfo details courier sends in grpc-status-details-bin.
const FILES: &[&str] = &[
    "courier/users/v1/users.proto",
    "courier/payments/v1/payments.proto",
    "courier/risk/v1/risk.proto",
    "google/rpc/error_details.proto",
    // For the `google.api.http` extension: the REST/JSON routes (courier-kit's rest module) and docs/api.md read
    // each method's rule from the descriptor set.
    "google/api/annotations.proto",
];

const TYK_ROOT: &str = "../../third_party/tyk/coprocess/proto";
const TYK_FILES: &[&str] = &["coprocess_object.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files: Vec<PathBuf> = FILES.iter().map(|f| PathBuf::from(PROTO_ROOT).join(f)).collect();
    let mut compiler = protox::Compiler::new([PROTO_ROOT])?;
    compiler.include_source_info(true).include_imports(true).open_files(&files)?;
    let descriptors = compiler.file_descriptor_set();

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // The encoded set is embedded for server reflection and for the REST routes. Encoded by protox itself: the
    // prost-types set above has lost the extension options (`google.api.http`), which prost cannot keep.
    std::fs::write(out_dir.join("courier_descriptor.bin"), compiler.encode_file_descriptor_set())?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // google.rpc.Status is tonic-types' own, so it converts to and from tonic::Status without copying code.
        .extern_path(".google.rpc", "::tonic_types::pb")
        // Ordered maps encode deterministically: idempotency fingerprints hash the encoded request.
        .btree_map(".")
        // prost's codec, but an undecodable request is INVALID_ARGUMENT without the decoder's text (src/codec.rs).
        .codec_path("crate::codec::CourierCodec")
        .compile_fds(descriptors)?;

    // Tyk's coprocess contract (vendored, MPL-2.0): its files import each other by bare name, so their directory
    // is their include root. Only the server side is needed (courier is the plugin), and the client for tests.
    let tyk: Vec<PathBuf> = TYK_FILES.iter().map(|f| PathBuf::from(TYK_ROOT).join(f)).collect();
    let tyk = protox::compile(&tyk, [TYK_ROOT])?;
    tonic_prost_build::configure().build_server(true).build_client(true).compile_fds(tyk)?;

    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    println!("cargo:rerun-if-changed={TYK_ROOT}");
    Ok(())
}
