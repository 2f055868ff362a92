//! Harness entry points shared by the cargo-fuzz targets in `fuzz/` and by the corpus replay
//! test, so CI exercises every committed corpus file on stable Rust.
