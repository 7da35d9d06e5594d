// Code generation needs protoc; the vendored binary spares a fresh machine an apt step.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    // Blocks are passed along as they came (agent spool → push → WAL → Kafka): as `Bytes`, a
    // batch kept for a retry or forwarded shares them instead of copying them.
    config.bytes([".sluice.v1.LogBatch.zstd_blocks"]);
    tonic_prost_build::configure().compile_with_config(
        config,
        &["proto/sluice/v1/ingest.proto"],
        &["proto"],
    )?;
    Ok(())
}
