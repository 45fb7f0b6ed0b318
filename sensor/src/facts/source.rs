//! Where facts are read from, bounded file reading, and the accumulator that
//! applies the value hygiene every collector shares.
//!
//! Every file the collectors read is optional: a missing, unreadable or
//! non-regular file yields nothing rather than an error, because hosts differ
//! widely in what they have and a partial fact set is still useful.

use std::{
    fs,
    io::Read,
    path::{Path, PathBuf},
};

use super::{Fact, FactKind, Strength};

/// The most bytes read from any one file. Config and proc files are far
/// smaller; the cap keeps a hostile or corrupt file from costing memory.
pub(crate) const MAX_FILE_BYTES: u64 = 1 << 20;

/// The most entries taken from one directory (`/etc/profile.d`,
/// `/etc/apt/apt.conf.d`, `/sys/class/net`).
pub(crate) const MAX_DIR_ENTRIES: usize = 256;

/// The most facts one collection keeps; far above what any real host yields.
const MAX_FACTS: usize = 16_384;

/// Values shorter than this (in characters) match too much text to be useful.
const MIN_VALUE_CHARS: usize = 3;

/// The kernel's `uname(2)` fields that are facts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Uname {
    /// `uname -m` (`x86_64`).
    pub arch: String,
    /// `uname -r` (`6.1.0-18-amd64`).
    pub release: String,
    /// `uname -v` (`#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)`).
    pub version: String,
}

/// Where facts are read from: `/` on a real host, a directory tree in tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    /// The file system root every absolute path is read under.
    pub root: PathBuf,
    /// The sensor's environment (`TZ`, `https_proxy`, `LANG`, …).
    pub env: Vec<(String, String)>,
    /// The kernel identification; `None` reads it from `root`'s
    /// `/proc/sys/kernel/{osrelease,version,arch}`.
    pub uname: Option<Uname>,
}

impl Sources {
    /// The running host: root `/`, this process's environment, the kernel's
    /// identification from `/proc` (no `uname(2)`, so no libc is needed).
    pub fn host() -> Self {
        // `vars_os` because `vars` panics on a non-UTF-8 variable.
        let env = std::env::vars_os()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.to_string_lossy().into_owned(),
                )
            })
            .collect();
        Self {
            root: PathBuf::from("/"),
            env,
            uname: None,
        }
    }

    /// `abs` (an absolute host path) under this root.
    pub(crate) fn path(&self, abs: &str) -> PathBuf {
        under(&self.root, abs)
    }

    /// Whether facts come from the running host rather than a copied tree.
    pub(crate) fn is_host_root(&self) -> bool {
        self.root == Path::new("/")
    }

    /// The environment variable `name` (exact case).
    pub(crate) fn env_var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `abs` (an absolute host path) under `root`.
pub(crate) fn under(root: &Path, abs: &str) -> PathBuf {
    root.join(abs.trim_start_matches('/'))
}

/// At most [`MAX_FILE_BYTES`] of a regular file. Non-regular files (FIFOs,
/// devices) are refused because opening or reading them could block the
/// sensor; user-owned paths (`~/.npmrc`) could be made into one. (A file
/// swapped for a FIFO between the check and the open is not covered.)
pub(crate) fn read_bytes(path: &Path) -> Option<Vec<u8>> {
    if !fs::metadata(path).ok()?.is_file() {
        return None;
    }
    let mut data = Vec::new();
    fs::File::open(path)
        .ok()?
        .take(MAX_FILE_BYTES)
        .read_to_end(&mut data)
        .ok()?;
    Some(data)
}

/// A file as text; invalid UTF-8 is replaced rather than refused, so one bad
/// byte does not hide a whole config file.
pub(crate) fn read_text(path: &Path) -> Option<String> {
    read_bytes(path).map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// The first non-empty line of a file, trimmed (proc and sysfs values, where
/// a leading `#` is data: `#1 SMP …`).
pub(crate) fn first_line(path: &Path) -> Option<String> {
    first_line_where(path, |_| true)
}

/// The first non-empty line that is not a `#` comment (`/etc/hostname`).
pub(crate) fn first_setting(path: &Path) -> Option<String> {
    first_line_where(path, |l| !l.starts_with('#'))
}

/// The first non-empty trimmed line of a file that `keep` accepts.
fn first_line_where(path: &Path, keep: impl Fn(&str) -> bool) -> Option<String> {
    let text = read_text(path)?;
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && keep(l))
        .map(str::to_owned)
}

/// Up to [`MAX_DIR_ENTRIES`] entries of a directory as (file name, path),
/// sorted by name so collection order (and so which name a duplicate keeps)
/// does not depend on the file system's listing order.
pub(crate) fn list_dir(path: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = fs::read_dir(path) else {
        return Vec::new();
    };
    let mut out: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .take(MAX_DIR_ENTRIES)
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    out.sort();
    out
}

/// A shell-style `KEY=value` assignment (`export` allowed, quotes removed),
/// as in `/etc/environment`, `/etc/os-release` and profile scripts. Comments,
/// blank lines and anything that is not a plain assignment give `None`.
pub(crate) fn parse_assignment(line: &str) -> Option<(&str, String)> {
    let line = line.trim();
    if line.starts_with('#') {
        return None;
    }
    let line = line
        .strip_prefix("export ")
        .map(str::trim_start)
        .unwrap_or(line);
    let (key, rest) = line.split_once('=')?;
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return None;
    }
    Some((key, unquote_shell(rest)))
}

/// The first word of a shell value with its quoting removed: `"a b"` → `a b`,
/// `'x'` → `x`, `plain rest` → `plain`.
fn unquote_shell(raw: &str) -> String {
    let raw = raw.trim();
    let mut chars = raw.chars();
    match chars.next() {
        Some(q @ ('"' | '\'')) => {
            let mut out = String::new();
            let mut escaped = false;
            for c in chars {
                match c {
                    _ if escaped => {
                        out.push(c);
                        escaped = false;
                    }
                    '\\' if q == '"' => escaped = true,
                    _ if c == q => break,
                    _ => out.push(c),
                }
            }
            out
        }
        _ => raw
            .split(|c: char| c.is_whitespace() || c == ';')
            .next()
            .unwrap_or_default()
            .to_owned(),
    }
}

/// Strip one pair of matching surrounding quotes (config-file values).
pub(crate) fn strip_quotes(v: &str) -> &str {
    let v = v.trim();
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q).and_then(|s| s.strip_suffix(q)) {
            return inner.trim();
        }
    }
    v
}

/// Facts as collectors find them, with the shared value rules applied.
#[derive(Debug, Default)]
pub(crate) struct Found {
    facts: Vec<Fact>,
}

impl Found {
    /// Record a fact. The value is trimmed; empty values, and values shorter
    /// than three characters (except UTC offsets, which are numbers like `0`
    /// or `60` that the matcher renders in longer spellings), are dropped.
    pub(crate) fn push(
        &mut self,
        kind: FactKind,
        name: impl Into<String>,
        value: &str,
        strength: Strength,
    ) {
        let value = value.trim();
        let short = value.chars().count() < MIN_VALUE_CHARS;
        if value.is_empty()
            || (short && kind != FactKind::UtcOffset)
            || self.facts.len() >= MAX_FACTS
        {
            return;
        }
        self.facts.push(Fact {
            kind,
            name: name.into(),
            value: value.to_owned(),
            strength,
        });
    }

    /// The facts, de-duplicated and sorted: the same kind and value appear once
    /// with the name (and strength) they were first found under, so collectors
    /// run the most telling source first.
    pub(crate) fn finish(self) -> Vec<Fact> {
        let mut seen = std::collections::HashSet::new();
        let mut facts: Vec<Fact> = self
            .facts
            .into_iter()
            .filter(|f| seen.insert((f.kind, f.value.clone())))
            .collect();
        facts.sort();
        facts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments() {
        assert_eq!(parse_assignment("A=b"), Some(("A", "b".to_owned())));
        assert_eq!(
            parse_assignment("export  X_Y=\"a \\\"b\\\"\""),
            Some(("X_Y", "a \"b\"".to_owned()))
        );
        assert_eq!(
            parse_assignment("  K='v w' # c"),
            Some(("K", "v w".to_owned()))
        );
        assert_eq!(parse_assignment("K=v; echo"), Some(("K", "v".to_owned())));
        assert_eq!(parse_assignment("# K=v"), None);
        assert_eq!(parse_assignment("if [ x ]; then"), None);
        assert_eq!(parse_assignment("bad key=v"), None);
    }

    #[test]
    fn found_rules() {
        let mut f = Found::default();
        f.push(FactKind::Hostname, "b", " host ", Strength::Strong);
        f.push(FactKind::Hostname, "a", "host", Strength::Weak);
        f.push(FactKind::User, "x", "ab", Strength::Strong);
        f.push(FactKind::UtcOffset, "z", "0", Strength::Weak);
        f.push(FactKind::User, "x", "  ", Strength::Strong);
        let facts = f.finish();
        assert_eq!(facts.len(), 2);
        assert_eq!(facts[0].kind, FactKind::UtcOffset);
        assert_eq!(
            (facts[1].name.as_str(), facts[1].value.as_str()),
            ("b", "host")
        );
        assert_eq!(facts[1].strength, Strength::Strong);
    }
}
