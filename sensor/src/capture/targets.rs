//! Discovery of the files to attach to: every OpenSSL-compatible library and every
//! executable that carries OpenSSL with symbols, on disk and mapped by running
//! processes.

use std::{
    collections::{BTreeSet, HashMap},
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use serde::Serialize;

use telltale::binary::stripped::Cache;

use super::elf::{self, FunctionSite, Hook, Library};

/// Identity of a file: uprobes attach to inodes, so two paths to one inode are
/// one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct FileId {
    /// Device number (`st_dev`).
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
}

/// What kind of file a target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// A shared library (libssl).
    SharedLibrary,
    /// An executable with OpenSSL linked in (node).
    Executable,
}

/// A file with TLS functions to attach to.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// Id passed to the kernel as the attach cookie; appears in every chunk.
    pub id: u64,
    /// Path the sensor opens to attach (may go through `/proc/PID/root`).
    pub path: PathBuf,
    /// The file's identity.
    pub file: FileId,
    /// Library or executable.
    pub kind: TargetKind,
    /// TLS library family the functions belong to.
    pub library: Library,
    /// How the functions were found (symbol table, `.gopclntab`, machine-code
    /// analysis, shipped offsets, cache).
    pub found_by: String,
    /// The functions found, with their offsets.
    #[serde(serialize_with = "ser_sites")]
    pub functions: Vec<FunctionSite>,
    /// Probes besides the read/write functions (connection ends, server names).
    pub hooks: Vec<Hook>,
    /// Why the file was considered, e.g. "standard library path" or
    /// "mapped by pid 42 (curl)".
    pub reasons: Vec<String>,
}

fn ser_sites<S: serde::Serializer>(sites: &[FunctionSite], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(sites.len()))?;
    for site in sites {
        seq.serialize_element(&serde_json::json!({
            "symbol": site.function.symbol(),
            "vaddr": format!("{:#x}", site.vaddr),
            "file_offset": format!("{:#x}", site.file_offset),
            "size": site.size,
            "placement": site.plan.describe(),
            "plan": site.plan,
        }))?;
    }
    seq.end()
}

/// Where discovery looks, from the configuration.
#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    /// Directories searched for `libssl.so*`.
    pub library_dirs: Vec<PathBuf>,
    /// Executable names looked up on `PATH` and in the standard binary directories
    /// (runtimes that embed OpenSSL, such as node).
    pub runtimes: Vec<String>,
    /// Files the operator named explicitly.
    pub extra: Vec<PathBuf>,
    /// Whether to scan `/proc/*/maps` of running processes.
    pub scan_processes: bool,
    /// Where the analyses of stripped executables are remembered, per
    /// build-id (in the state directory); `None`: analyse every time.
    pub analysis_cache: Option<PathBuf>,
}

/// A file that was looked at and not attached to, with the reason.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// The path looked at.
    pub path: PathBuf,
    /// Why it is not a target.
    pub reason: String,
}

/// Remembers every file already examined so that periodic rescans only inspect
/// new files, and hands out target ids.
#[derive(Debug, Default)]
pub struct Discovery {
    known: HashMap<FileId, Option<u64>>,
    /// Why files that carry a TLS stack were not made targets (coverage
    /// gaps name these reasons).
    pub notes: HashMap<FileId, String>,
    next_id: u64,
    /// Operator-named files that could not be used (reported once).
    pub skipped: Vec<Skipped>,
    /// Analyses of stripped executables, per build-id.
    cache: Option<Cache>,
}

struct Candidate {
    path: PathBuf,
    file: FileId,
    kind: TargetKind,
    reason: String,
}

impl Discovery {
    /// Creates an empty discovery state; `analysis_cache` is the file where
    /// analyses of stripped executables are remembered.
    pub fn new(analysis_cache: Option<&Path>) -> Self {
        let cache = analysis_cache.map(|p| {
            let (cache, warning) = Cache::open(p);
            if let Some(w) = warning {
                tracing::warn!(path = %p.display(), "{w}");
            }
            cache
        });
        Self {
            cache,
            ..Self::default()
        }
    }

    /// Looks for targets not seen before and returns them. Files without TLS
    /// functions are remembered so they are not parsed again.
    pub fn scan(&mut self, cfg: &DiscoveryConfig) -> Vec<Target> {
        let mut candidates = Vec::new();
        for dir in &cfg.library_dirs {
            library_files(dir, &mut candidates);
        }
        for name in &cfg.runtimes {
            for path in runtime_paths(name) {
                push_file(
                    &path,
                    TargetKind::Executable,
                    "runtime on PATH",
                    &mut candidates,
                );
            }
        }
        for path in &cfg.extra {
            if !push_file(
                path,
                TargetKind::Executable,
                "configured target",
                &mut candidates,
            ) {
                self.skip_once(path, "does not exist or is not a regular file");
            }
        }
        if cfg.scan_processes {
            process_files(&mut candidates);
        }
        self.inspect(candidates)
    }

    /// Looks at the program and libraries of one process (one that just exec'd)
    /// and returns the targets not seen before.
    /// `path` is the program as the kernel reported the exec: when the process
    /// is already gone (a short-lived CLI), an absolute path is inspected
    /// directly so that its next run is hooked.
    pub fn scan_pid(&mut self, pid: u32, path: Option<&Path>) -> Vec<Target> {
        let mut candidates = Vec::new();
        process_candidates(pid, &mut BTreeSet::new(), &mut candidates);
        if !candidates.iter().any(|c| c.kind == TargetKind::Executable)
            && let Some(path) = path.filter(|p| p.is_absolute())
        {
            push_file(
                path,
                TargetKind::Executable,
                &format!("executed by pid {pid}"),
                &mut candidates,
            );
        }
        self.inspect(candidates)
    }

    fn inspect(&mut self, candidates: Vec<Candidate>) -> Vec<Target> {
        // Group reasons per inode, keeping the first path seen.
        let mut by_file: HashMap<FileId, (Candidate, BTreeSet<String>)> = HashMap::new();
        for c in candidates {
            if self.known.contains_key(&c.file) {
                continue;
            }
            let reason = c.reason.clone();
            by_file
                .entry(c.file)
                .or_insert_with(|| (c, BTreeSet::new()))
                .1
                .insert(reason);
        }
        let mut found = Vec::new();
        let mut files: Vec<_> = by_file.into_values().collect();
        let inspected = !files.is_empty();
        files.sort_by(|a, b| a.0.path.cmp(&b.0.path));
        for (c, reasons) in files {
            let inspection = match elf::inspect(&c.path, self.cache.as_mut()) {
                Ok(i) => i,
                Err(e) => {
                    tracing::debug!(path = %c.path.display(), error = %e, "not inspectable");
                    elf::Inspection::default()
                }
            };
            if let Some(note) = inspection.note {
                tracing::info!(path = %c.path.display(), "{note}");
                self.notes.insert(c.file, note);
            }
            let Some(symbols) = inspection
                .symbols
                .filter(|s| !(s.io.is_empty() && s.hooks.is_empty()))
            else {
                if reasons.contains("configured target") {
                    self.skip_once(&c.path, "defines no TLS read/write functions we know");
                }
                self.known.insert(c.file, None);
                continue;
            };
            self.next_id += 1;
            let id = self.next_id;
            self.known.insert(c.file, Some(id));
            found.push(Target {
                id,
                path: c.path,
                file: c.file,
                kind: c.kind,
                library: symbols.library,
                found_by: symbols.found_by,
                functions: symbols.io,
                hooks: symbols.hooks,
                reasons: reasons.into_iter().collect(),
            });
        }
        if inspected
            && let Some(cache) = &mut self.cache
            && cache.is_dirty()
            && let Err(e) = cache.save()
        {
            tracing::warn!(path = %cache.path().display(), error = %e, "cannot save the analysis cache");
        }
        found
    }

    fn skip_once(&mut self, path: &Path, reason: &str) {
        if !self.skipped.iter().any(|s| s.path == path) {
            self.skipped.push(Skipped {
                path: path.to_path_buf(),
                reason: reason.to_owned(),
            });
        }
    }
}

fn file_id(meta: &fs::Metadata) -> FileId {
    FileId {
        dev: meta.dev(),
        ino: meta.ino(),
    }
}

fn push_file(path: &Path, kind: TargetKind, reason: &str, out: &mut Vec<Candidate>) -> bool {
    match fs::metadata(path) {
        Ok(meta) if meta.is_file() => {
            // Report the file under its real name, not a symlink to it.
            let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
            out.push(Candidate {
                path,
                file: file_id(&meta),
                kind,
                reason: reason.to_owned(),
            });
            true
        }
        _ => false,
    }
}

/// Shared libraries that carry a TLS API we hook: OpenSSL's and BoringSSL's
/// libssl, GnuTLS, NSS's libssl3 and NSPR (whose I/O functions NSS uses).
fn is_tls_library_name(name: &str) -> bool {
    ["libssl.so", "libssl3.so", "libgnutls.so", "libnspr4.so"]
        .iter()
        .any(|p| name.starts_with(p))
}

fn library_files(dir: &Path, out: &mut Vec<Candidate>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name.to_str().is_some_and(is_tls_library_name) {
            push_file(
                &entry.path(),
                TargetKind::SharedLibrary,
                "standard library path",
                out,
            );
        }
    }
}

fn runtime_paths(name: &str) -> Vec<PathBuf> {
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path_var).collect();
    for d in [
        "/usr/local/bin",
        "/usr/bin",
        "/bin",
        "/usr/local/sbin",
        "/usr/sbin",
    ] {
        dirs.push(PathBuf::from(d));
    }
    dirs.into_iter()
        .map(|d| d.join(name))
        .filter(|p| p.is_file())
        .collect()
}

/// One executable mapping from `/proc/PID/maps`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Mapping<'a> {
    pub dev_major: u32,
    pub dev_minor: u32,
    pub ino: u64,
    pub path: &'a str,
}

/// Parses the executable, file-backed mappings of a `/proc/PID/maps` text.
pub(crate) fn exec_mappings(maps: &str) -> impl Iterator<Item = Mapping<'_>> {
    maps.lines().filter_map(|line| {
        let mut f = line.splitn(6, ' ');
        let _range = f.next()?;
        let perms = f.next()?;
        let _off = f.next()?;
        let dev = f.next()?;
        let ino: u64 = f.next()?.parse().ok()?;
        let path = f.next()?.trim_start();
        if !perms.contains('x')
            || ino == 0
            || !path.starts_with('/')
            || path.ends_with(" (deleted)")
        {
            return None;
        }
        let (maj, min) = dev.split_once(':')?;
        Some(Mapping {
            dev_major: u32::from_str_radix(maj, 16).ok()?,
            dev_minor: u32::from_str_radix(min, 16).ok()?,
            ino,
            path,
        })
    })
}

/// Every libssl and every main executable mapped by a running process.
fn process_files(out: &mut Vec<Candidate>) {
    let Ok(procs) = fs::read_dir("/proc") else {
        return;
    };
    let mut seen: BTreeSet<(u64, u64)> = BTreeSet::new();
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        process_candidates(pid, &mut seen, out);
    }
}

/// The libssl mappings and the main executable of process `pid`.
fn process_candidates(pid: u32, seen: &mut BTreeSet<(u64, u64)>, out: &mut Vec<Candidate>) {
    {
        let Ok(maps) = fs::read_to_string(format!("/proc/{pid}/maps")) else {
            return; // exited, or a kernel thread
        };
        let exe = fs::read_link(format!("/proc/{pid}/exe")).ok();
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        for m in exec_mappings(&maps) {
            let dev = libc::makedev(m.dev_major, m.dev_minor);
            let name = Path::new(m.path)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("");
            let is_exe = exe.as_deref() == Some(Path::new(m.path));
            if !(is_exe || is_tls_library_name(name)) || !seen.insert((dev, m.ino)) {
                continue;
            }
            let kind = if is_exe {
                TargetKind::Executable
            } else {
                TargetKind::SharedLibrary
            };
            let want = FileId { dev, ino: m.ino };
            // The process may live in another mount namespace: prefer the plain
            // path when it names the same inode, else go through its root.
            let direct = PathBuf::from(m.path);
            let via_root = PathBuf::from(format!("/proc/{pid}/root{}", m.path));
            let Some(path) = [direct, via_root]
                .into_iter()
                .find(|p| fs::metadata(p).is_ok_and(|md| file_id(&md) == want))
            else {
                continue;
            };
            out.push(Candidate {
                path,
                file: want,
                kind,
                reason: format!("mapped by pid {pid} ({})", comm.trim()),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exec_mappings() {
        let maps = "\
55d0-55d1 r--p 00000000 fd:01 1234 /usr/bin/curl
55d1-55d2 r-xp 00001000 fd:01 1234 /usr/bin/curl
7f00-7f01 r-xp 00020000 fd:01 99 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f02-7f03 r-xp 00000000 00:00 0 [vdso]
7f04-7f05 r-xp 00000000 fd:01 77 /tmp/gone.so (deleted)
7f06-7f07 rw-p 00000000 00:00 0
7f08-7f09 r-xp 00000000 fd:01 78 /opt/with space/lib.so
";
        let got: Vec<_> = exec_mappings(maps).collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].path, "/usr/bin/curl");
        assert_eq!(
            (got[0].dev_major, got[0].dev_minor, got[0].ino),
            (0xfd, 1, 1234)
        );
        assert_eq!(got[1].path, "/usr/lib/x86_64-linux-gnu/libssl.so.3");
        assert_eq!(got[2].path, "/opt/with space/lib.so");
    }

    #[test]
    fn garbage_maps_lines_are_ignored() {
        assert_eq!(exec_mappings("x\n\n1 2 3\nr-xp a b c d\n").count(), 0);
    }

    #[test]
    fn rescans_report_each_file_once() {
        let cfg = DiscoveryConfig {
            library_dirs: vec![
                PathBuf::from("/usr/lib/x86_64-linux-gnu"),
                PathBuf::from("/lib/x86_64-linux-gnu"),
            ],
            runtimes: vec![],
            extra: vec![PathBuf::from("/nonexistent/telltale-test")],
            scan_processes: false,
            analysis_cache: None,
        };
        let mut d = Discovery::new(None);
        let first = d.scan(&cfg);
        // /usr is merged here: both directories hold the same libssl inode.
        let mut ids: Vec<_> = first.iter().map(|t| t.file).collect();
        ids.dedup();
        assert_eq!(ids.len(), first.len());
        assert!(d.scan(&cfg).is_empty(), "second scan finds nothing new");
        assert_eq!(d.skipped.len(), 1);
    }
}
