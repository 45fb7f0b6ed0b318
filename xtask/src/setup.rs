//! `setup`: bpf-linker in .tools, Debian packages, the Python SDK virtualenv in
//! .tools/pyenv, tracefs. Idempotent; each step prints one line.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::{
    Repo,
    cmd::{self, describe, is_root, which},
};

/// The bpf-linker release built from crates.io.
pub const BPF_LINKER_VERSION: &str = "0.13.0";

/// Debian packages the sensor, the integration tests and the benchmark need.
const PACKAGES: &[&str] = &[
    "nginx",
    "curl",
    "openssl",
    "ca-certificates",
    "python3",
    "python3-requests",
    "python3-httpx",
    // `python3 -m venv` (with pip) for .tools/pyenv.
    "python3-venv",
    "iproute2",
    "procps",
    "wrk",
    "bpftrace",
    // ./x bench: compiles bench/sslpingpong.c and pins processes with taskset.
    "gcc",
    "libc6-dev",
    "libssl-dev",
    "util-linux",
    // Event sinks' integration tests run against the real servers.
    "rsyslog",
    // rsyslog's TLS (gtls) stream driver, for the syslog sink's TLS test.
    "rsyslog-gnutls",
    "nats-server",
    // rdkafka builds librdkafka with cmake.
    "cmake",
    "zlib1g-dev",
    // TLS stacks besides OpenSSL, with real clients: GnuTLS (gnutls-cli, and
    // git, whose HTTPS goes through libcurl-gnutls), NSS (tstclnt, certutil),
    // Go (a crypto/tls client built in the tests).
    "gnutls-bin",
    "git",
    "libnss3-tools",
    "golang-go",
];

const TRACE_PIPE: &str = "/sys/kernel/tracing/trace_pipe";

pub fn setup(repo: &Repo, apt: bool) -> Result<()> {
    bpf_linker(repo).context("setup: bpf-linker")?;
    if apt {
        packages().context("setup: Debian packages")?;
        python_sdks(repo).context("setup: Python SDK virtualenv")?;
        bun(repo).context("setup: Bun")?;
    } else {
        println!("packages: skipped");
        println!("python sdks: skipped");
        println!("bun: skipped");
    }
    tracefs();
    Ok(())
}

// ---------------------------------------------------------------------------
// bpf-linker

fn stamp_text(ebpf_channel: &str) -> String {
    format!("nightly = \"{ebpf_channel}\"\nbpf-linker = \"{BPF_LINKER_VERSION}\"\n")
}

/// `bpf-linker --version` when it runs and reports our version.
fn linker_version_ok(bin: &Path) -> bool {
    cmd::output(Command::new(bin).arg("--version")).is_ok_and(|o| {
        o.status.success()
            && String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .any(|w| w == BPF_LINKER_VERSION)
    })
}

fn bpf_linker(repo: &Repo) -> Result<()> {
    let bin = repo.tools_bin().join("bpf-linker");
    let stamp = repo.root.join(".tools").join("bpf-linker.stamp");
    let want = stamp_text(&repo.ebpf_channel);

    let version_ok = bin.is_file() && linker_version_ok(&bin);
    if version_ok && std::fs::read_to_string(&stamp).is_ok_and(|s| s == want) {
        println!(
            "bpf-linker: ok (cached, {BPF_LINKER_VERSION} for {})",
            repo.ebpf_channel
        );
        return Ok(());
    }

    let llvm_dir = nightly_lib_dir(&repo.ebpf_channel)?;

    // A bpf-linker built before stamps existed: adopt it when its RUNPATH is the
    // pinned nightly's lib directory (so it loads that nightly's libLLVM).
    if version_ok && !stamp.exists() && binary_mentions(&bin, &llvm_dir) {
        write_stamp(&stamp, &want)?;
        println!(
            "bpf-linker: ok (existing {BPF_LINKER_VERSION} build linked to {}; stamp written)",
            repo.ebpf_channel
        );
        return Ok(());
    }

    let (lib_name, major) = find_libllvm(&llvm_dir)?;
    println!("bpf-linker: building {BPF_LINKER_VERSION} against {lib_name} (about a minute)...");
    let nl = llvm_dir.display();
    let rustflags = format!("-L {nl} -l dylib={lib_name} -C link-arg=-Wl,-rpath,{nl}");
    let mut install = Command::new("cargo");
    install
        .arg(format!("+{}", repo.user_channel))
        .args(["install", &format!("bpf-linker@{BPF_LINKER_VERSION}")])
        .args(["--locked", "--force", "--no-default-features", "--features"])
        .arg(format!("llvm-{major},no-llvm-linking"))
        .arg("--root")
        .arg(repo.root.join(".tools"))
        // Outside the repository: no rust-toolchain.toml or .cargo/config.toml.
        .current_dir(std::env::temp_dir())
        .env("RUSTFLAGS", &rustflags)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("RUSTUP_TOOLCHAIN");
    cmd::run(&mut install).with_context(|| format!("with RUSTFLAGS=\"{rustflags}\""))?;

    if !linker_version_ok(&bin) {
        bail!(
            "{} was installed but `{} --version` does not run or report {BPF_LINKER_VERSION}",
            bin.display(),
            bin.display()
        );
    }
    write_stamp(&stamp, &want)?;
    println!(
        "bpf-linker: ok (built {BPF_LINKER_VERSION} for {})",
        repo.ebpf_channel
    );
    Ok(())
}

fn write_stamp(stamp: &Path, text: &str) -> Result<()> {
    std::fs::write(stamp, text).with_context(|| format!("writing {}", stamp.display()))
}

/// `$(rustc +<nightly> --print sysroot)/lib`.
fn nightly_lib_dir(channel: &str) -> Result<PathBuf> {
    let mut rustc = Command::new("rustc");
    rustc
        .arg(format!("+{channel}"))
        .args(["--print", "sysroot"])
        .current_dir(std::env::temp_dir())
        .env_remove("RUSTUP_TOOLCHAIN");
    let sysroot = cmd::stdout(&mut rustc)
        .with_context(|| format!("is the {channel} toolchain installed? (./x installs it)"))?;
    Ok(PathBuf::from(sysroot).join("lib"))
}

/// The nightly's LLVM shared library as a linker name and its major version:
/// `libLLVM-23-rust-1.101.0-nightly.so` -> ("LLVM-23-rust-1.101.0-nightly", 23).
fn find_libllvm(dir: &Path) -> Result<(String, u32)> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("libLLVM-") && n.ends_with(".so"))
        .collect();
    names.sort();
    let file = names
        .first()
        .ok_or_else(|| anyhow!("no libLLVM-*.so in {}", dir.display()))?;
    let name = file
        .strip_prefix("lib")
        .and_then(|n| n.strip_suffix(".so"))
        .expect("filtered on prefix and suffix");
    let digits: String = name["LLVM-".len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let major = digits
        .parse()
        .map_err(|_| anyhow!("cannot read the LLVM major version from {file}"))?;
    Ok((name.to_owned(), major))
}

/// Whether the file at `bin` contains the bytes of `dir` (its RUNPATH).
fn binary_mentions(bin: &Path, dir: &Path) -> bool {
    let Ok(data) = std::fs::read(bin) else {
        return false;
    };
    let needle = dir.as_os_str().as_encoded_bytes();
    let Some((&first, _)) = needle.split_first() else {
        return false;
    };
    let mut at = 0;
    while let Some(i) = data[at..].iter().position(|&b| b == first) {
        let start = at + i;
        if data[start..].starts_with(needle) {
            return true;
        }
        at = start + 1;
    }
    false
}

// ---------------------------------------------------------------------------
// Debian packages

fn packages() -> Result<()> {
    let mut wanted: Vec<&str> = PACKAGES.to_vec();
    if which("node").is_none() {
        wanted.push("nodejs");
    }
    let Some(dpkg_query) = which("dpkg-query") else {
        println!(
            "packages: WARNING: dpkg-query not found (not Debian?); check by hand: {}",
            wanted.join(" ")
        );
        return Ok(());
    };
    let missing = missing_packages(&dpkg_query, &wanted)?;
    if missing.is_empty() {
        println!("packages: ok ({} present)", wanted.len());
        return Ok(());
    }
    if !is_root() {
        println!(
            "packages: WARNING: not root, not installing missing packages: {}",
            missing.join(" ")
        );
        return Ok(());
    }
    println!("packages: installing {}", missing.join(" "));
    cmd::run(Command::new("apt-get").arg("update"))?;
    cmd::run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing),
    )?;
    let still = missing_packages(&dpkg_query, &wanted)?;
    if !still.is_empty() {
        bail!("still missing after apt-get install: {}", still.join(" "));
    }
    println!("packages: ok (installed {})", missing.len());
    Ok(())
}

/// The packages of `wanted` that dpkg does not report as installed.
fn missing_packages<'a>(dpkg_query: &Path, wanted: &[&'a str]) -> Result<Vec<&'a str>> {
    let mut query = Command::new(dpkg_query);
    query
        .arg("-W")
        .arg("-f=${Package}\t${Status}\n")
        .args(wanted);
    // Exits 1 when some package is unknown; stdout still lists the known ones.
    let out = cmd::output(&mut query)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success()
        && stderr
            .lines()
            .any(|l| !l.trim().is_empty() && !l.contains("no packages found"))
    {
        bail!(
            "`{}` failed ({}): {}",
            describe(&query),
            cmd::status_text(out.status),
            stderr.trim()
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let installed: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(_, status)| status.split_whitespace().last() == Some("installed"))
        .map(|(pkg, _)| pkg.split(':').next().unwrap_or(pkg))
        .collect();
    Ok(wanted
        .iter()
        .copied()
        .filter(|p| !installed.contains(p))
        .collect())
}

// ---------------------------------------------------------------------------
// Python SDKs

/// The official Anthropic Python SDK the integration tests drive (pinned: its
/// request shapes are what the detection tests assert on).
pub const ANTHROPIC_SDK_VERSION: &str = "2.14.0";

/// uv, a real Rust CLI built on rustls (a static, stripped binary from the
/// Python package index): the coverage tests use it as a TLS stack the sensor
/// cannot hook.
pub const UV_VERSION: &str = "0.13.9";

fn pyenv_stamp_text() -> String {
    format!("anthropic = \"{ANTHROPIC_SDK_VERSION}\"\nuv = \"{UV_VERSION}\"\n")
}

/// `uv --version`'s version, from the venv.
fn uv_version(venv: &Path) -> Option<String> {
    let out = cmd::output(Command::new(venv.join("bin").join("uv")).arg("--version")).ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    out.status.success().then(|| {
        text.split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned()
    })
}

/// `anthropic.__version__` as the venv's python reports it.
fn sdk_version(python: &Path) -> Option<String> {
    let out = cmd::output(
        Command::new(python).args(["-c", "import anthropic; print(anthropic.__version__)"]),
    )
    .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A virtualenv at .tools/pyenv with the official `anthropic` SDK at
/// [`ANTHROPIC_SDK_VERSION`], for tests that send real SDK traffic.
fn python_sdks(repo: &Repo) -> Result<()> {
    let tools = repo.root.join(".tools");
    let venv = tools.join("pyenv");
    let python = venv.join("bin").join("python");
    let stamp = tools.join("pyenv.stamp");
    let want = pyenv_stamp_text();

    let have = if python.is_file() {
        sdk_version(&python)
    } else {
        None
    };
    if have.as_deref() == Some(ANTHROPIC_SDK_VERSION)
        && uv_version(&venv).as_deref() == Some(UV_VERSION)
        && std::fs::read_to_string(&stamp).is_ok_and(|s| s == want)
    {
        println!("python sdks: ok (cached, anthropic {ANTHROPIC_SDK_VERSION})");
        return Ok(());
    }

    // Debian's python3 (python3-venv), not whatever a version manager put first
    // on PATH.
    let debian = Path::new("/usr/bin/python3");
    let base = if debian.is_file() {
        debian.to_path_buf()
    } else {
        which("python3").ok_or_else(|| anyhow!("no python3 (the python3 package installs it)"))?
    };
    let pip_ok = python.is_file()
        && cmd::output(Command::new(&python).args(["-m", "pip", "--version"]))
            .is_ok_and(|o| o.status.success());
    if !pip_ok {
        println!("python sdks: creating {}", venv.display());
        std::fs::create_dir_all(&tools).with_context(|| format!("creating {}", tools.display()))?;
        cmd::run(
            Command::new(&base)
                .args(["-m", "venv", "--clear"])
                .arg(&venv),
        )
        .with_context(|| {
            format!(
                "is python3-venv installed for {}? (./x setup installs it)",
                base.display()
            )
        })?;
    }
    println!(
        "python sdks: installing anthropic=={ANTHROPIC_SDK_VERSION} (found {})...",
        have.as_deref().unwrap_or("none")
    );
    cmd::run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .arg(format!("anthropic=={ANTHROPIC_SDK_VERSION}"))
            .arg(format!("uv=={UV_VERSION}")),
    )
    .with_context(|| {
        format!(
            "pip could not install anthropic=={ANTHROPIC_SDK_VERSION} into {}; \
             this step needs the Python package index (is the network up?)",
            venv.display()
        )
    })?;
    let got = sdk_version(&python);
    if got.as_deref() != Some(ANTHROPIC_SDK_VERSION) {
        bail!(
            "after pip install, {} reports anthropic {} instead of {ANTHROPIC_SDK_VERSION}",
            python.display(),
            got.as_deref().unwrap_or("(import fails)")
        );
    }
    if uv_version(&venv).as_deref() != Some(UV_VERSION) {
        bail!(
            "after pip install, {} has no uv {UV_VERSION}",
            venv.display()
        );
    }
    write_stamp(&stamp, &want)?;
    println!("python sdks: ok (installed anthropic {ANTHROPIC_SDK_VERSION}, uv {UV_VERSION})");
    Ok(())
}

// ---------------------------------------------------------------------------
// Bun

/// The Bun release the tests compile a client with: a single native binary
/// with BoringSSL linked in and its symbols stripped, whose TLS functions the
/// sensor must find by analysing its machine code.
pub const BUN_VERSION: &str = "1.4.5";

/// npm's integrity (SHA-512) of `@oven/bun-linux-x64` at [`BUN_VERSION`].
const BUN_SHA512_BASE64: &str =
    "IWX9BELoGHAUtMonkeSaNaZwXzRk+oDw6Mk+HBFXd3KHYIBNBsIGRupMZPcgNoDbJpLu6gAJjIoIVPZtt1aJ1g==";

/// Downloads Bun's linux-x64 build from the npm registry into `.tools/bun`,
/// checks its integrity, and unpacks the `bun` binary (x86-64 only).
fn bun(repo: &Repo) -> Result<()> {
    let dir = repo.root.join(".tools").join("bun");
    let bin = dir.join("bun");
    let stamp = dir.join("bun.stamp");
    let want = format!("bun = \"{BUN_VERSION}\"\n");
    if std::env::consts::ARCH != "x86_64" {
        println!("bun: skipped (the tests use the x86-64 build)");
        return Ok(());
    }
    if bin.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == want) {
        println!("bun: ok (cached, {BUN_VERSION})");
        return Ok(());
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let tgz = dir.join("bun.tgz");
    let url =
        format!("https://registry.npmjs.org/@oven/bun-linux-x64/-/bun-linux-x64-{BUN_VERSION}.tgz");
    println!("bun: downloading {url}");
    cmd::run(
        Command::new("curl")
            .args(["-fsSL", "--retry", "3", "-o"])
            .arg(&tgz)
            .arg(&url),
    )
    .with_context(|| format!("downloading {url} (is the network up?)"))?;
    let digest = cmd::output(
        Command::new("sh")
            .arg("-c")
            .arg("openssl dgst -sha512 -binary \"$1\" | base64 -w0")
            .arg("sh")
            .arg(&tgz),
    )?;
    let got = String::from_utf8_lossy(&digest.stdout).trim().to_owned();
    if got != BUN_SHA512_BASE64 {
        let _ = std::fs::remove_file(&tgz);
        bail!("{url}: SHA-512 {got} does not match npm's integrity {BUN_SHA512_BASE64}");
    }
    cmd::run(
        Command::new("tar")
            .args(["-xzf"])
            .arg(&tgz)
            .arg("-C")
            .arg(&dir)
            .args(["--strip-components=2", "package/bin/bun"]),
    )?;
    let _ = std::fs::remove_file(&tgz);
    if !bin.is_file() {
        bail!("{} has no package/bin/bun", url);
    }
    write_stamp(&stamp, &want)?;
    println!("bun: ok (installed {BUN_VERSION})");
    Ok(())
}

// ---------------------------------------------------------------------------
// tracefs

fn tracefs() {
    if Path::new(TRACE_PIPE).exists() {
        println!("tracefs: ok (mounted)");
        return;
    }
    if !is_root() {
        println!(
            "tracefs: WARNING: not mounted at /sys/kernel/tracing and not root; \
             tracepoint-based hooks will be unavailable"
        );
        return;
    }
    let mut mount = Command::new("mount");
    mount.args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"]);
    match cmd::run(&mut mount) {
        Ok(()) if Path::new(TRACE_PIPE).exists() => println!("tracefs: ok (mounted now)"),
        Ok(()) => println!("tracefs: WARNING: mounted, but {TRACE_PIPE} is still missing"),
        Err(e) => println!("tracefs: WARNING: {e:#}; tracepoint-based hooks will be unavailable"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libllvm_name_and_major_come_from_the_file_name() {
        let dir = std::env::temp_dir().join(format!("xtask-libllvm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in [
            "libLLVM.so.23.1-rust-1.101.0-nightly",
            "libLLVM-23-rust-1.101.0-nightly.so",
            "librustc_driver-1.so",
        ] {
            std::fs::write(dir.join(f), b"").unwrap();
        }
        let found = find_libllvm(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            found.unwrap(),
            ("LLVM-23-rust-1.101.0-nightly".to_owned(), 23)
        );
    }
}
