//! Compiles the kernel programs (`sensor-ebpf`) for the BPF target with the
//! pinned nightly and bpf-linker, so that `include_bytes_aligned!` can embed them.

use std::{
    env,
    path::{Path, PathBuf},
};

fn main() -> anyhow::Result<()> {
    // The library alone (fuzzing, benchmarks) does not embed the kernel programs.
    if std::env::var_os("CARGO_FEATURE_SENSOR").is_none() {
        return Ok(());
    }
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest
        .parent()
        .ok_or_else(|| anyhow::anyhow!("sensor crate has no parent directory"))?;
    let ebpf_dir = root.join("sensor-ebpf");
    let toolchain = ebpf_toolchain(&ebpf_dir.join("rust-toolchain.toml"))?;

    // `./x setup` installs bpf-linker into the repository's .tools/bin; put it first
    // on PATH so plain `cargo build` works too once set-up has run.
    let tools = root.join(".tools").join("bin");
    println!(
        "cargo::rerun-if-changed={}",
        tools.join("bpf-linker").display()
    );
    if tools.join("bpf-linker").is_file() {
        let path = env::var_os("PATH").unwrap_or_default();
        let joined =
            env::join_paths(std::iter::once(tools.clone()).chain(env::split_paths(&path)))?;
        // SAFETY: build scripts are single-threaded at this point.
        unsafe { env::set_var("PATH", joined) };
    } else if which_bpf_linker().is_none() {
        anyhow::bail!(
            "bpf-linker is not installed: run `./x setup` at the repository root \
             (it builds bpf-linker into .tools/bin against the pinned nightly)"
        );
    }

    let ebpf_root = ebpf_dir
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("non-UTF-8 path {}", ebpf_dir.display()))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "sensor-ebpf",
            root_dir: ebpf_root,
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(&toolchain),
    )
}

/// Reads `channel = "..."` from the eBPF crate's rust-toolchain.toml.
fn ebpf_toolchain(file: &Path) -> anyhow::Result<String> {
    println!("cargo::rerun-if-changed={}", file.display());
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("channel"))
        .filter_map(|rest| rest.split('"').nth(1))
        .map(str::to_owned)
        .next()
        .ok_or_else(|| anyhow::anyhow!("{}: no `channel = \"...\"` line", file.display()))
}

fn which_bpf_linker() -> Option<PathBuf> {
    env::split_paths(&env::var_os("PATH")?)
        .map(|d| d.join("bpf-linker"))
        .find(|p| p.is_file())
}
