//! Harness code for moq-proto's tests, benchmarks and fuzz targets; not part of the product.
//!
//! - [`testing`]: a deterministic in-memory network of [`moq_proto::node::Node`]s in virtual
//!   time, and the fan-out fixture the allocation test and benchmarks share.
//! - [`fuzzing`]: one entry point per cargo-fuzz target (`fuzz/fuzz_targets/*.rs` call them),
//!   also replayed over the committed corpora by `cargo test` on stable Rust.
//!
//! It lives outside `moq-proto` so the product crate carries no harness code and no test-only
//! features. Both modules report bugs by panicking, which is how a test or libFuzzer sees them.

pub mod fuzzing;
pub mod testing;
