//! The fuzz targets on the stable toolchain (see `fuzz/` for the libFuzzer runs):
//!
//! - `committed_corpora_replay_cleanly` replays every file of `fuzz/corpus/<target>/` (and any
//!   `fuzz/artifacts/<target>/` regression a fixed bug left) through its harness;
//! - `bounded_random_run` (ignored; `.ci/run` runs it) feeds each target mutations of its
//!   corpus from a seeded PRNG for `TOWER_SCOPE_FUZZ_SECS` seconds per target (default 20);
//!   `TOWER_SCOPE_FUZZ_SEED` picks another sequence. A failure prints the input, escaped: save
//!   it under `fuzz/regressions/<target>/` with the fix, and the replay keeps it fixed.

#![cfg(all(
    feature = "guard",
    feature = "cors",
    feature = "jwt",
    feature = "aws-lc"
))]

#[path = "fuzz_harness/mod.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn corpus_dir(kind: &str, target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target)
}

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    for kind in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(corpus_dir(kind, target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_file() {
                let bytes = std::fs::read(&path).unwrap();
                found.push((path, bytes));
            }
        }
    }
    found.sort();
    found
}

/// Runs one input, naming it when the harness panics.
fn run(target: &str, f: harness::Harness, name: &dyn std::fmt::Display, data: &[u8]) {
    let outcome = std::panic::catch_unwind(|| f(data));
    if let Err(panic) = outcome {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default();
        panic!(
            "{target}: input {name} failed: {message}\ninput (escaped): {}",
            data.escape_ascii()
        );
    }
}

#[test]
fn committed_corpora_replay_cleanly() {
    for &(target, f) in harness::TARGETS {
        let inputs = inputs(target);
        assert!(
            inputs.len() >= 5,
            "{target}: the committed corpus is missing ({} files)",
            inputs.len()
        );
        for (path, data) in &inputs {
            run(target, f, &path.display(), data);
        }
    }
}

/// xorshift64*: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes that matter to these parsers, so mutations reach their edge cases quickly.
const INTERESTING: &[&[u8]] = &[
    b"%",
    b"%49",
    b"%2F",
    b"%2e",
    b"%00",
    b"%FF",
    b"+",
    b"=",
    b"&",
    b";",
    b"/",
    b"//",
    b"/..",
    b"/.",
    b"\"",
    b"\\u0049",
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"null",
    b"1e999",
    b"-0",
    b"\xEF\xBB\xBF",
    b"resourceId",
    b"threadId",
    b"t-b",
    b"*",
    b".",
    b"Bearer ",
    b"\n",
    b" ",
    b"\t",
    b"==",
    b"https://",
    b"*.",
];

fn mutate(rng: &mut Rng, seed: &[u8], pool: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..1 + rng.below(6) {
        let at = rng.below(data.len() + 1);
        match rng.below(7) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] = rng.next() as u8;
            }
            1 if !data.is_empty() => {
                let end = (at + 1 + rng.below(8)).min(data.len());
                data.drain(at.min(end)..end);
            }
            2 => {
                let piece = INTERESTING[rng.below(INTERESTING.len())];
                data.splice(at..at, piece.iter().copied());
            }
            3 if !data.is_empty() => {
                // Duplicate a slice (duplicate keys, repeated segments).
                let start = rng.below(data.len());
                let end = (start + 1 + rng.below(16)).min(data.len());
                let piece = data[start..end].to_vec();
                data.splice(at..at, piece);
            }
            4 => {
                // Splice in part of another corpus input.
                let other = &pool[rng.below(pool.len())];
                if !other.is_empty() {
                    let start = rng.below(other.len());
                    let end = (start + 1 + rng.below(32)).min(other.len());
                    data.splice(at..at, other[start..end].iter().copied());
                }
            }
            5 => data.insert(at, rng.next() as u8 & 0x7F),
            _ => data.truncate(at),
        }
    }
    data
}

#[test]
#[ignore = "bounded fuzzing run; .ci/run runs it with --ignored"]
fn bounded_random_run() {
    let per_target = Duration::from_secs(
        std::env::var("TOWER_SCOPE_FUZZ_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(20),
    );
    let seed: u64 = std::env::var("TOWER_SCOPE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_0016);
    println!("bounded fuzzing: seed {seed}, {per_target:?} per target");
    for &(target, f) in harness::TARGETS {
        let pool: Vec<Vec<u8>> = inputs(target).into_iter().map(|(_, d)| d).collect();
        assert!(!pool.is_empty(), "{target}: no corpus to mutate");
        let mut rng = Rng(seed ^ target.len() as u64 ^ 0x9E37_79B9_7F4A_7C15);
        let started = Instant::now();
        let mut runs = 0u64;
        while started.elapsed() < per_target {
            let pick = rng.below(pool.len());
            let data = mutate(&mut rng, &pool[pick], &pool);
            run(target, f, &format_args!("#{runs} (seed {seed})"), &data);
            runs += 1;
        }
        println!(
            "{target}: {runs} executions in {:?}, 0 failures",
            started.elapsed()
        );
    }
}
