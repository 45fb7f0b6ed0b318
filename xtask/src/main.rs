//! Project tasks for Telltale. Run through the `./x` wrapper at the repository
//! root (it installs the pinned toolchains, then runs `cargo xtask`).

mod bench;
mod cmd;
mod fuzz;
mod package;
mod setup;

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow};
use clap::{Parser, Subcommand};

/// Set-up, build, run and test tasks for Telltale.
///
/// Use the `./x` wrapper at the repository root: it installs the Rust toolchains
/// pinned in rust-toolchain.toml and sensor-ebpf/rust-toolchain.toml when they
/// are missing, then runs `cargo xtask <ARGS>`.
#[derive(Debug, Parser)]
#[command(name = "xtask", bin_name = "./x", about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install what the build and the tests need; fast when already done.
    ///
    /// Builds bpf-linker into .tools/bin against the pinned nightly's libLLVM
    /// (cached through .tools/bpf-linker.stamp), installs the Debian packages the
    /// sensor and the tests use (nginx, curl, python3-requests, wrk, bpftrace, ...;
    /// as root only) and mounts tracefs when it is missing (as root only).
    Setup {
        /// Do not check or install Debian packages.
        #[arg(long)]
        no_apt: bool,
    },
    /// Build the sensor (`cargo build -p telltale`) after setting up bpf-linker.
    Build {
        /// Build with the release profile.
        #[arg(long)]
        release: bool,
    },
    /// Set everything up, build the sensor in release mode and run `telltale run`.
    ///
    /// Capturing needs root (or CAP_BPF + CAP_PERFMON + CAP_SYS_ADMIN).
    /// Example: `./x run -- --emit alerts,data`.
    Run {
        /// Build and run the debug profile instead of release.
        #[arg(long)]
        debug: bool,
        /// Arguments for `telltale run` (after `--`).
        #[arg(last = true, value_name = "TELLTALE_RUN_ARGS")]
        args: Vec<String>,
    },
    /// Set everything up, build the release sensor and run the workspace tests.
    ///
    /// The integration tests (crate telltale-tests) run the release binary named
    /// by TELLTALE_BIN, which this sets to target/release/telltale. They load
    /// eBPF programs, so run as root. The Debian package is built first (as by
    /// `./x package`; quick when up to date) for the test that installs it.
    /// Without extra arguments, every fuzz target then runs for a few seconds
    /// (`./x fuzz`). Example: `./x test -- -p telltale-tests`.
    Test {
        /// Extra arguments for `cargo test` (after `--`).
        #[arg(last = true, value_name = "CARGO_TEST_ARGS")]
        args: Vec<String>,
    },
    /// Benchmark the sensor against no sensor and a naive bpftrace capture.
    ///
    /// Sets everything up, builds the release sensor and sslpingpong, then runs
    /// alternating rounds of off / on (`telltale run --emit data`) / naive
    /// (bpftrace bench/naive.bt) over sslpingpong (µs added per hooked SSL call)
    /// and nginx + wrk (HTTPS requests/s), then steps a paced SSL_write rate up
    /// to find the highest rate the sensor captures without loss. Prints medians
    /// and ratios; writes bench/results/<date>-<host>.md and latest.json. As
    /// root; about 11 minutes (`--quick`: about 3).
    ///
    /// `./x bench decode` instead measures the decode stage alone (HTTP/1.1 and
    /// HTTP/2 throughput on one core against a copy of the same bytes), and
    /// `./x bench detect` detection (recall and false positives over the
    /// labelled corpus, matcher throughput against a memmem scan, with 1×, 4×
    /// and 16× the facts), without root or BPF; they write
    /// bench/results/{decode,detect}-latest.txt.
    ///
    /// `./x bench hold` measures enforcement's hold of TLS writes: alternating
    /// rounds of sslpingpong under off / on / exempt (a blocking policy that
    /// selects no process) / held (one that selects sslpingpong, so every
    /// SSL_write is held and judged), as µs per round trip; as root, writes
    /// bench/results/hold-latest.txt; about 5 minutes (`--quick`: about 3).
    Bench {
        /// `sensor` (default: the capture benchmark above), `decode`, `detect`
        /// or `hold`.
        #[arg(
            default_value = "sensor",
            value_parser = ["sensor", "decode", "detect", "hold"]
        )]
        suite: String,
        /// Fewer and shorter rounds, for a smoke test.
        #[arg(long)]
        quick: bool,
    },
    /// Fuzz the decoders with libFuzzer (targets in fuzz/, seeds in fuzz/seeds).
    ///
    /// Builds the targets with the pinned nightly and coverage instrumentation
    /// (what `cargo fuzz build` does; `cargo fuzz run TARGET` in fuzz/ works too
    /// where cargo-fuzz is installed), then runs each for --seconds. Inputs that
    /// crash are kept in target/fuzz/artifacts/TARGET.
    Fuzz {
        /// Targets to run (default: all): http1, http2, content, decoder,
        /// llm_request, binary, request_frame.
        targets: Vec<String>,
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// Build the Debian package target/debian/telltale_<version>_<arch>.deb.
    ///
    /// Installs cargo-deb (pinned) into .tools/bin, cached through
    /// .tools/cargo-deb.stamp, builds the release sensor, then runs `cargo deb`
    /// with the metadata of sensor/Cargo.toml and the files in deploy/ (systemd
    /// unit, /etc/telltale/telltale.toml, maintainer scripts). Skips the last
    /// step when the .deb is newer than all of them.
    Package,
    /// What CI runs: setup, `cargo fmt --check`, clippy with -D warnings, then `test`.
    Ci,
    /// Format the workspace (`cargo fmt --all`).
    Fmt,
}

/// The repository and its pinned toolchains.
pub struct Repo {
    pub root: PathBuf,
    /// From rust-toolchain.toml.
    pub user_channel: String,
    /// From sensor-ebpf/rust-toolchain.toml.
    pub ebpf_channel: String,
}

impl Repo {
    fn locate() -> Result<Self> {
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let root = manifest
            .parent()
            .ok_or_else(|| anyhow!("{} has no parent directory", manifest.display()))?
            .to_path_buf();
        Ok(Self {
            user_channel: channel(&root.join("rust-toolchain.toml"))?,
            ebpf_channel: channel(&root.join("sensor-ebpf").join("rust-toolchain.toml"))?,
            root,
        })
    }

    pub fn tools_bin(&self) -> PathBuf {
        self.root.join(".tools").join("bin")
    }

    /// `cargo <args>` in the repository with .tools/bin first on PATH. No
    /// `+toolchain`: rust-toolchain.toml selects the userspace toolchain.
    fn cargo<I, S>(&self, args: I) -> Result<Command>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut c = Command::new("cargo");
        c.args(args)
            .current_dir(&self.root)
            .env("PATH", cmd::path_with(&self.tools_bin())?);
        Ok(c)
    }

    fn build_sensor(&self, release: bool) -> Result<PathBuf> {
        let mut build = self.cargo(["build", "-p", "telltale"])?;
        if release {
            build.arg("--release");
        }
        cmd::run(&mut build)?;
        let profile = if release { "release" } else { "debug" };
        Ok(self.root.join("target").join(profile).join("telltale"))
    }
}

/// Reads `channel = "..."` from a rust-toolchain.toml.
fn channel(file: &Path) -> Result<String> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("channel"))
        .filter_map(|rest| rest.trim_start().strip_prefix('='))
        .filter_map(|rest| rest.split('"').nth(1))
        .map(str::to_owned)
        .next()
        .ok_or_else(|| anyhow!("{}: no `channel = \"...\"` line", file.display()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match Repo::locate().and_then(|repo| dispatch(&repo, cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(repo: &Repo, task: Task) -> Result<()> {
    match task {
        Task::Setup { no_apt } => setup::setup(repo, !no_apt),
        Task::Build { release } => {
            setup::setup(repo, false)?;
            let bin = repo.build_sensor(release)?;
            println!("build: ok ({})", bin.display());
            Ok(())
        }
        Task::Run { debug, args } => run(repo, !debug, &args),
        Task::Test { args } => test(repo, &args),
        Task::Bench { suite, quick } if suite != "sensor" => bench::library(repo, &suite, quick),
        Task::Bench { quick, .. } => bench::bench(repo, quick),
        Task::Fuzz { targets, seconds } => {
            setup::setup(repo, false)?;
            fuzz::fuzz(repo, &targets, seconds)
        }
        Task::Package => {
            setup::setup(repo, false)?;
            package::package(repo).map(drop)
        }
        Task::Ci => ci(repo),
        Task::Fmt => cmd::run(&mut repo.cargo(["fmt", "--all"])?),
    }
}

fn run(repo: &Repo, release: bool, args: &[String]) -> Result<()> {
    use std::os::unix::process::CommandExt as _;

    setup::setup(repo, true)?;
    let bin = repo.build_sensor(release)?;
    if !cmd::is_root() {
        eprintln!(
            "run: note: not root; capturing needs root (or CAP_BPF + CAP_PERFMON + \
             CAP_SYS_ADMIN); trying anyway"
        );
    }
    let mut telltale = Command::new(&bin);
    telltale.arg("run").args(args);
    // exec: the sensor gets the terminal's signals and its exit code is ours.
    let err = telltale.exec();
    Err(err).with_context(|| format!("could not start `{}`", cmd::describe(&telltale)))
}

/// Seconds each fuzz target runs in `./x test`.
const FUZZ_SMOKE_SECONDS: u64 = 10;

fn test(repo: &Repo, args: &[String]) -> Result<()> {
    let start = Instant::now();
    let result = (|| {
        setup::setup(repo, true)?;
        let bin = repo.build_sensor(true)?;
        // tests/tests/package.rs installs target/debian/*.deb.
        if cmd::which("dpkg").is_some() {
            package::package(repo)?;
        } else {
            println!("package: skipped (no dpkg)");
        }
        let mut test = repo.cargo(["test", "--workspace", "--exclude", "sensor-ebpf"])?;
        test.args(args).env("TELLTALE_BIN", &bin);
        cmd::run(&mut test)?;
        // A short libFuzzer run of every decoder target, from the seeds.
        if args.is_empty() {
            println!("test: fuzz smoke ({FUZZ_SMOKE_SECONDS} s per target)");
            fuzz::fuzz(repo, &[], FUZZ_SMOKE_SECONDS)?;
        }
        Ok(())
    })();
    let took = elapsed(start.elapsed());
    match &result {
        Ok(()) => println!("test: ok in {took}"),
        Err(_) => println!("test: FAILED after {took}"),
    }
    result
}

fn ci(repo: &Repo) -> Result<()> {
    let step = |name: &str, f: &dyn Fn() -> Result<()>| -> Result<()> {
        println!("ci: == {name} ==");
        f().with_context(|| format!("ci step `{name}` failed"))
    };
    // Clippy builds the kernel programs too (sensor/build.rs), so bpf-linker and
    // the rest must be in place first.
    step("setup", &|| setup::setup(repo, true))?;
    step("fmt", &|| {
        cmd::run(&mut repo.cargo(["fmt", "--all", "--check"])?)
            .context("formatting differs; run `./x fmt`")
    })?;
    step("clippy", &|| {
        cmd::run(&mut repo.cargo([
            "clippy",
            "--workspace",
            "--exclude",
            "sensor-ebpf",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ])?)
    })?;
    step("test", &|| test(repo, &[]))?;
    println!("ci: ok");
    Ok(())
}

fn elapsed(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn channels_are_read_from_the_toolchain_files() {
        let repo = super::Repo::locate().unwrap();
        assert!(!repo.user_channel.is_empty());
        assert!(repo.ebpf_channel.starts_with("nightly"));
    }
}
