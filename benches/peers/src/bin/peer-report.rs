//! Prints the ratio table of a finished run again: `cargo run --bin peer-report [DIR]`, where
//! `DIR` is a criterion output directory (default: the bench's own).

use std::path::PathBuf;

fn main() {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
                .join("criterion")
        });
    print!("{}", tower_scope_peer_bench::report::render(&dir));
}
