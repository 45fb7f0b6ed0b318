//! `package`: the Debian package, built by cargo-deb (pinned, in .tools) from the
//! release sensor and the files in deploy/ (metadata: `[package.metadata.deb]`
//! in sensor/Cargo.toml).

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::SystemTime,
};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::{Repo, cmd};

/// The cargo-deb release installed into .tools.
pub const CARGO_DEB_VERSION: &str = "3.8.0";

/// Files the package is made of besides the binary: a change to any of them
/// makes the .deb out of date.
const INPUTS: &[&str] = &[
    "sensor/Cargo.toml",
    "README.md",
    "deploy/systemd/telltale.service",
    "deploy/etc/telltale.toml",
    "deploy/debian/postinst",
    "deploy/debian/prerm",
    "deploy/debian/postrm",
];

/// Builds cargo-deb when needed, the release sensor, then the .deb (unless an
/// up-to-date one is there). Returns the .deb's path.
pub fn package(repo: &Repo) -> Result<PathBuf> {
    cargo_deb(repo).context("package: cargo-deb")?;
    let bin = repo.build_sensor(true)?;
    let out_dir = repo.root.join("target").join("debian");
    let mut inputs: Vec<PathBuf> = INPUTS.iter().map(|f| repo.root.join(f)).collect();
    inputs.push(bin);
    if let Some(deb) = up_to_date_deb(&out_dir, &inputs)? {
        println!("package: ok (up to date, {})", deb.display());
        return Ok(deb);
    }
    let mut deb = repo.cargo(["deb", "-p", "telltale", "--no-build", "--locked"])?;
    // Prints the path of the package on stdout; warnings go to stderr.
    deb.stderr(Stdio::inherit());
    let path = cmd::stdout(&mut deb)?;
    let path = path
        .lines()
        .map(str::trim)
        .rfind(|l| l.ends_with(".deb"))
        .map(PathBuf::from)
        .ok_or_else(|| anyhow!("cargo deb printed no .deb path: {path}"))?;
    if !path.is_file() {
        bail!(
            "cargo deb reported {}, which does not exist",
            path.display()
        );
    }
    // Only one package in target/debian: the tests install whatever is there.
    for entry in std::fs::read_dir(&out_dir)
        .with_context(|| format!("reading {}", out_dir.display()))?
        .flatten()
    {
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "deb") && p != path {
            std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    println!("package: ok ({})", path.display());
    Ok(path)
}

/// The one .deb in `dir` when it is newer than every file of `inputs`.
fn up_to_date_deb(dir: &Path, inputs: &[PathBuf]) -> Result<Option<PathBuf>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(None);
    };
    let debs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    let [deb] = debs.as_slice() else {
        return Ok(None);
    };
    let built = modified(deb)?;
    for input in inputs {
        if modified(input)? >= built {
            return Ok(None);
        }
    }
    Ok(Some(deb.clone()))
}

fn modified(p: &Path) -> Result<SystemTime> {
    p.metadata()
        .and_then(|m| m.modified())
        .with_context(|| format!("reading the modification time of {}", p.display()))
}

fn stamp_text() -> String {
    format!("cargo-deb = \"{CARGO_DEB_VERSION}\"\n")
}

/// `cargo-deb --version` reports our version.
fn version_ok(bin: &Path) -> bool {
    cmd::output(Command::new(bin).arg("--version")).is_ok_and(|o| {
        o.status.success()
            && String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .any(|w| w.trim_start_matches('v') == CARGO_DEB_VERSION)
    })
}

/// cargo-deb at [`CARGO_DEB_VERSION`] in .tools/bin, cached through
/// .tools/cargo-deb.stamp.
fn cargo_deb(repo: &Repo) -> Result<()> {
    let bin = repo.tools_bin().join("cargo-deb");
    let stamp = repo.root.join(".tools").join("cargo-deb.stamp");
    let want = stamp_text();
    if bin.is_file() && version_ok(&bin) && std::fs::read_to_string(&stamp).is_ok_and(|s| s == want)
    {
        println!("cargo-deb: ok (cached, {CARGO_DEB_VERSION})");
        return Ok(());
    }
    println!("cargo-deb: building {CARGO_DEB_VERSION} (about two minutes)...");
    let mut install = Command::new("cargo");
    install
        .arg(format!("+{}", repo.user_channel))
        .args(["install", &format!("cargo-deb@{CARGO_DEB_VERSION}")])
        .args(["--locked", "--force", "--root"])
        .arg(repo.root.join(".tools"))
        // Outside the repository: no rust-toolchain.toml or .cargo/config.toml.
        .current_dir(std::env::temp_dir())
        .env_remove("RUSTUP_TOOLCHAIN");
    cmd::run(&mut install)?;
    if !version_ok(&bin) {
        bail!(
            "{} was installed but does not report {CARGO_DEB_VERSION}",
            bin.display()
        );
    }
    std::fs::write(&stamp, &want).with_context(|| format!("writing {}", stamp.display()))?;
    println!("cargo-deb: ok (built {CARGO_DEB_VERSION})");
    Ok(())
}
