//! `./x fuzz`: builds the cargo-fuzz targets in fuzz/ with libFuzzer and coverage
//! instrumentation (as `cargo fuzz build` does, without installing cargo-fuzz)
//! and runs them. `./x test` runs every target briefly as a smoke test.

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, Result, bail};

use crate::{Repo, cmd};

/// Every fuzz target in fuzz/Cargo.toml.
pub const TARGETS: &[&str] = &[
    "http1",
    "http2",
    "content",
    "decoder",
    "llm_request",
    "binary",
    "request_frame",
];

/// What `cargo fuzz build` passes to rustc for libFuzzer.
const RUSTFLAGS: &str = "-Cpasses=sancov-module \
    -Cllvm-args=-sanitizer-coverage-level=4 \
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
    -Cllvm-args=-sanitizer-coverage-pc-table \
    -Cllvm-args=-sanitizer-coverage-trace-compares \
    --cfg fuzzing -Cdebug-assertions -Coverflow-checks";

const TARGET_TRIPLE: &str = "x86_64-unknown-linux-gnu";

/// Builds the targets and runs each named one (all when `targets` is empty) for
/// `seconds`, starting from the committed seeds in fuzz/seeds/TARGET.
pub fn fuzz(repo: &Repo, targets: &[String], seconds: u64) -> Result<()> {
    let names: Vec<&str> = if targets.is_empty() {
        TARGETS.to_vec()
    } else {
        for t in targets {
            if !TARGETS.contains(&t.as_str()) {
                bail!(
                    "unknown fuzz target {t:?}; the targets are {}",
                    TARGETS.join(", ")
                );
            }
        }
        targets.iter().map(String::as_str).collect()
    };
    let fuzz_dir = repo.root.join("fuzz");
    let target_dir = repo.root.join("target").join("fuzz");
    let mut build = Command::new("cargo");
    build
        .arg(format!("+{}", repo.ebpf_channel))
        .args(["build", "--release", "--target", TARGET_TRIPLE, "--bins"])
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(&fuzz_dir)
        .env("RUSTFLAGS", RUSTFLAGS);
    cmd::run(&mut build).context("building the fuzz targets")?;
    for name in names {
        let bin: PathBuf = target_dir.join(TARGET_TRIPLE).join("release").join(name);
        let corpus = target_dir.join("corpus").join(name);
        let artifacts = target_dir.join("artifacts").join(name);
        for d in [&corpus, &artifacts] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let seeds = fuzz_dir.join("seeds").join(name);
        let mut run = Command::new(&bin);
        run.arg(format!("-max_total_time={seconds}"))
            .arg("-rss_limit_mb=2048")
            .arg("-print_final_stats=1")
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .arg(&corpus);
        if seeds.is_dir() {
            run.arg(&seeds);
        }
        println!("fuzz: {name} for {seconds} s");
        cmd::run(&mut run).with_context(|| {
            format!(
                "fuzz target {name} failed; the input that broke it is in {}",
                artifacts.display()
            )
        })?;
    }
    Ok(())
}
