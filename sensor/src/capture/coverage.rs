//! Coverage: which processes' TLS the probes see, and which they do not.
//!
//! A process that connects to a TLS port is *covered* when its executable or
//! one of its libraries is an attached target with read/write functions. When
//! none is, the SOC must know that this process's traffic is invisible: the
//! process, its binary (path, build-id), the TLS library recognised in it, if
//! any, and why it is not hooked. `telltale targets` shows the same view for
//! every process with network sockets.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use serde::Serialize;

use super::{
    AttachedTarget,
    targets::{FileId, exec_mappings},
};

/// A TLS stack a process uses and how the probes see it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StackUse {
    /// Library family or recognised stack (`openssl`, `go`, `rustls 0.23.12`, …).
    pub library: String,
    /// The file it lives in.
    pub path: PathBuf,
    /// How it is hooked (the strategies of its functions), or `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hooked: Option<String>,
    /// Why it is not hooked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The TLS view of one process.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessTls {
    /// Process id.
    pub pid: u32,
    /// Its `comm`.
    pub comm: String,
    /// Its executable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe: Option<PathBuf>,
    /// The executable's GNU build-id (hex).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_id: Option<String>,
    /// Every TLS stack found in the executable and its libraries.
    pub stacks: Vec<StackUse>,
}

impl ProcessTls {
    /// Whether any stack of the process is hooked.
    pub fn covered(&self) -> bool {
        self.stacks.iter().any(|s| s.hooked.is_some())
    }

    /// Why the process is not covered, in one line.
    pub fn gap_reason(&self) -> String {
        let unhooked: Vec<String> = self
            .stacks
            .iter()
            .filter(|s| s.hooked.is_none())
            .map(|s| {
                format!(
                    "{}: {}",
                    s.library,
                    s.reason.as_deref().unwrap_or("not hooked")
                )
            })
            .collect();
        if unhooked.is_empty() {
            "no TLS library the sensor knows was found in the executable or its libraries"
                .to_owned()
        } else {
            unhooked.join("; ")
        }
    }
}

/// Looks at processes and remembers what it learned about files, so that a
/// large executable is read once.
#[derive(Debug, Default)]
pub struct Coverage {
    files: HashMap<FileId, FileInfo>,
    /// Programs processes executed, for processes gone before inspection.
    execs: HashMap<u32, PathBuf>,
    exec_order: VecDeque<u32>,
    /// Processes whose TLS plaintext was captured: covered, whatever else.
    saw_tls: HashSet<u32>,
    saw_order: VecDeque<u32>,
    /// Shared libraries each library needs, by name (from the standard
    /// directories), for the dependency closure of exited programs.
    lib_needed: HashMap<String, Vec<String>>,
    reported: VecDeque<(u32, FileId)>,
    reported_set: HashSet<(u32, FileId)>,
}

#[derive(Debug, Clone)]
struct FileInfo {
    build_id: Option<String>,
    stack: Option<(String, String)>,
    /// Shared libraries named in its dynamic string table.
    needed: Vec<String>,
}

/// How many exec'd programs are remembered (processes usually connect within
/// seconds of their exec).
const EXECS_MAX: usize = 16_384;

/// How many (process, executable) gaps are remembered as reported.
const REPORTED_MAX: usize = 65_536;

/// Most file entries kept (each a few dozen bytes).
const FILES_MAX: usize = 65_536;

impl Coverage {
    /// An empty memory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes that plaintext of process `pid` was captured.
    pub fn saw_tls(&mut self, pid: u32) {
        if self.saw_tls.insert(pid) {
            self.saw_order.push_back(pid);
            while self.saw_order.len() > EXECS_MAX {
                if let Some(old) = self.saw_order.pop_front() {
                    self.saw_tls.remove(&old);
                }
            }
        }
    }

    /// Whether plaintext of process `pid` was captured.
    pub fn has_tls(&self, pid: u32) -> bool {
        self.saw_tls.contains(&pid)
    }

    /// Remembers the program process `pid` executed (an absolute path), to
    /// judge a process that exits before it can be inspected.
    pub fn exec(&mut self, pid: u32, path: Option<&Path>) {
        let Some(path) = path.filter(|p| p.is_absolute()) else {
            return;
        };
        // A new program in this process: what was seen before is not its.
        self.saw_tls.remove(&pid);
        if self.execs.insert(pid, path.to_path_buf()).is_none() {
            self.exec_order.push_back(pid);
        }
        while self.exec_order.len() > EXECS_MAX {
            if let Some(old) = self.exec_order.pop_front() {
                self.execs.remove(&old);
            }
        }
    }

    /// The TLS view of process `pid`, or `None` when it is gone. `notes` gives
    /// discovery's reasons for files it looked at and did not attach to.
    pub fn inspect(
        &mut self,
        pid: u32,
        targets: &[AttachedTarget],
        notes: &HashMap<FileId, String>,
    ) -> Option<ProcessTls> {
        let Ok(maps) = fs::read_to_string(format!("/proc/{pid}/maps")) else {
            return self.inspect_program(pid, targets, notes);
        };
        let comm = fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|c| c.trim().to_owned())
            .unwrap_or_default();
        let exe = fs::read_link(format!("/proc/{pid}/exe")).ok();
        let mut stacks = Vec::new();
        let mut build_id = None;
        let mut seen = HashSet::new();
        for m in exec_mappings(&maps) {
            let file = FileId {
                dev: libc::makedev(m.dev_major, m.dev_minor),
                ino: m.ino,
            };
            if !seen.insert(file) {
                continue;
            }
            let path = PathBuf::from(m.path);
            let is_exe = exe.as_deref() == Some(path.as_path());
            if let Some(t) = targets.iter().find(|t| t.target.file == file) {
                stacks.push(hooked_use(t));
                if is_exe {
                    build_id = self.info(pid, &path, file).build_id;
                }
                continue;
            }
            // Libraries are only recognised by name; executables by content.
            if !is_exe && !is_interesting_library(m.path) {
                continue;
            }
            let info = self.info(pid, &path, file);
            if is_exe {
                build_id = info.build_id.clone();
            }
            if let Some((library, why)) = info.stack {
                let reason = notes.get(&file).cloned().unwrap_or(why);
                stacks.push(StackUse {
                    library,
                    path,
                    hooked: None,
                    reason: Some(reason),
                });
            }
        }
        Some(ProcessTls {
            pid,
            comm,
            exe,
            build_id,
            stacks,
        })
    }

    /// The view of a process that exited before it could be inspected, from
    /// the program it executed: covered when that program is a target or
    /// links a hooked library.
    fn inspect_program(
        &mut self,
        pid: u32,
        targets: &[AttachedTarget],
        notes: &HashMap<FileId, String>,
    ) -> Option<ProcessTls> {
        let path = self.execs.get(&pid)?.clone();
        let meta = fs::metadata(&path).ok()?;
        let file = FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        };
        let comm = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let info = self.info(pid, &path, file);
        let mut stacks = Vec::new();
        if let Some(t) = targets.iter().find(|t| t.target.file == file) {
            stacks.push(hooked_use(t));
        }
        let needed = self.needed_closure(&info.needed);
        for t in targets {
            let name = t.target.path.file_name().and_then(|n| n.to_str());
            if name.is_some_and(|n| needed.iter().any(|need| n.starts_with(need.as_str()))) {
                stacks.push(hooked_use(t));
            }
        }
        if stacks.is_empty()
            && let Some((library, why)) = info.stack.clone()
        {
            stacks.push(StackUse {
                library,
                path: path.clone(),
                hooked: None,
                reason: Some(notes.get(&file).cloned().unwrap_or(why)),
            });
        }
        Some(ProcessTls {
            pid,
            comm,
            exe: Some(path),
            build_id: info.build_id,
            stacks,
        })
    }

    /// The libraries `direct` needs, and theirs, found by name in the
    /// standard library directories (bounded: 64 libraries, depth 4).
    fn needed_closure(&mut self, direct: &[String]) -> Vec<String> {
        let mut all: Vec<String> = Vec::new();
        let mut level: Vec<String> = direct.to_vec();
        for _ in 0..4 {
            let mut next = Vec::new();
            for name in level {
                if all.contains(&name) || all.len() >= 64 {
                    continue;
                }
                let deps = self
                    .lib_needed
                    .entry(name.clone())
                    .or_insert_with(|| library_needs(&name))
                    .clone();
                all.push(name);
                next.extend(deps);
            }
            if next.is_empty() {
                break;
            }
            level = next;
        }
        all
    }

    /// Whether the gap of `pid` running `exe` is new (and remembers it).
    pub fn first_report(&mut self, pid: u32, exe: Option<&Path>) -> bool {
        let file = exe
            .and_then(|p| fs::metadata(p).ok())
            .map(|m| FileId {
                dev: m.dev(),
                ino: m.ino(),
            })
            .unwrap_or(FileId { dev: 0, ino: 0 });
        let key = (pid, file);
        if !self.reported_set.insert(key) {
            return false;
        }
        self.reported.push_back(key);
        if self.reported.len() > REPORTED_MAX
            && let Some(old) = self.reported.pop_front()
        {
            self.reported_set.remove(&old);
        }
        true
    }

    fn info(&mut self, pid: u32, path: &Path, file: FileId) -> FileInfo {
        if let Some(i) = self.files.get(&file) {
            return i.clone();
        }
        // Through the process's root: it may live in another mount namespace.
        let via_root = PathBuf::from(format!("/proc/{pid}/root{}", path.display()));
        let data = fs::File::open(&via_root)
            .or_else(|_| fs::File::open(path))
            .ok()
            // SAFETY: read-only private mapping of a file that is mapped for
            // execution, which is not truncated while it runs.
            .and_then(|f| unsafe { memmap2::Mmap::map(&f) }.ok());
        let info = match data {
            Some(d) => FileInfo {
                build_id: super::elf::build_id(&d),
                stack: identify(path, &d),
                needed: super::elf::needed_libraries(&d),
            },
            None => FileInfo {
                build_id: None,
                stack: None,
                needed: Vec::new(),
            },
        };
        if self.files.len() >= FILES_MAX {
            self.files.clear();
        }
        self.files.insert(file, info.clone());
        info
    }
}

/// Where the dynamic loader finds libraries on common distributions.
const LIBRARY_DIRS: [&str; 7] = [
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
    "/usr/local/lib",
];

/// The libraries library `name` needs, when it is in a standard directory.
fn library_needs(name: &str) -> Vec<String> {
    if name.contains('/') {
        return Vec::new();
    }
    LIBRARY_DIRS
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .and_then(|p| fs::File::open(p).ok())
        // SAFETY: read-only private mapping of a system library.
        .and_then(|f| unsafe { memmap2::Mmap::map(&f) }.ok())
        .map(|d| super::elf::needed_libraries(&d))
        .unwrap_or_default()
}

fn hooked_use(t: &AttachedTarget) -> StackUse {
    let mut strategies: Vec<&str> = t
        .attachments
        .iter()
        .filter(|a| a.error.is_none())
        .map(|a| a.strategy)
        .collect();
    strategies.sort_unstable();
    strategies.dedup();
    let active = t.attachments.iter().any(|a| {
        a.error.is_none()
            && t.target
                .functions
                .iter()
                .any(|f| f.function.symbol() == a.symbol)
    });
    StackUse {
        library: t.target.library.name().to_owned(),
        path: t.target.path.clone(),
        hooked: active.then(|| format!("{} ({})", strategies.join(", "), t.target.found_by)),
        reason: (!active).then(|| {
            let errors: Vec<String> = t
                .attachments
                .iter()
                .filter_map(|a| Some(format!("{}: {}", a.symbol, a.error.as_deref()?)))
                .collect();
            if errors.is_empty() {
                "no read/write function in this file (hooks only)".to_owned()
            } else {
                format!("attach failed: {}", errors.join("; "))
            }
        }),
    }
}

/// Libraries worth naming in a coverage gap when they are not attached.
fn is_interesting_library(path: &str) -> bool {
    let name = Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("");
    [
        "libssl",
        "libgnutls",
        "libnspr4",
        "libjvm",
        "libwolfssl",
        "libmbedtls",
        "libboringssl",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

/// The TLS stack recognisable in a file that has no hook, and why it has none.
pub fn identify(path: &Path, data: &[u8]) -> Option<(String, String)> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.starts_with("libjvm") {
        return Some((
            "java jsse".to_owned(),
            "Java's TLS (JSSE) runs inside the JVM and has no native function to probe".to_owned(),
        ));
    }
    for (lib, why) in [
        ("libwolfssl", "wolfSSL is not supported yet"),
        ("libmbedtls", "Mbed TLS is not supported yet"),
    ] {
        if name.starts_with(lib) {
            return Some((lib.trim_start_matches("lib").to_owned(), why.to_owned()));
        }
    }
    if let Some(v) = crate_version(data, b"/rustls-") {
        return Some((
            format!("rustls {v}"),
            "rustls is a Rust library compiled into the program: it has no exported \
             functions and no stable layout to probe, so its plaintext is not visible"
                .to_owned(),
        ));
    }
    if telltale::binary::golang::is_go(data) {
        return Some((
            "go".to_owned(),
            "a Go program whose crypto/tls functions were not found".to_owned(),
        ));
    }
    let finder = |s: &[u8]| memchr::memmem::find(data, s).is_some();
    if finder(b"BoringSSL") || finder(b"boringssl/ssl/ssl_lib.cc") {
        return Some((
            "boringssl".to_owned(),
            "statically linked BoringSSL whose SSL_write/SSL_read could not be located".to_owned(),
        ));
    }
    if finder(b"ssl/ssl_lib.c") && finder(b"OpenSSL ") {
        return Some((
            "openssl".to_owned(),
            "statically linked OpenSSL whose SSL_write/SSL_read could not be located".to_owned(),
        ));
    }
    None
}

/// The version of a Rust crate compiled into `data`, from the source paths
/// that panic locations keep (`…/index.crates.io-…/rustls-0.23.12/src/…`).
fn crate_version(data: &[u8], needle: &[u8]) -> Option<String> {
    let at = memchr::memmem::find(data, needle)? + needle.len();
    let rest = data.get(at..at + 32.min(data.len() - at))?;
    let end = rest
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || b == b'.' || b == b'-'))
        .unwrap_or(rest.len());
    let v = std::str::from_utf8(&rest[..end]).ok()?;
    v.starts_with(|c: char| c.is_ascii_digit())
        .then(|| v.to_owned())
}

/// A process's network sockets, from its own network namespace's tables.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NetSummary {
    /// TCP sockets (any state) the process holds.
    pub tcp: usize,
    /// UDP sockets.
    pub udp: usize,
    /// Remote ports of its connected TCP sockets, sorted, unique.
    pub remote_ports: Vec<u16>,
}

/// A process with network sockets and its TLS view.
#[derive(Debug, Clone, Serialize)]
pub struct NetProcess {
    /// The TLS view.
    #[serde(flatten)]
    pub tls: ProcessTls,
    /// Its sockets.
    pub sockets: NetSummary,
}

/// Every running process that holds TCP or UDP sockets, with its TLS view
/// against `targets` (attached, or as discovery planned them).
pub fn network_processes(
    targets: &[AttachedTarget],
    notes: &HashMap<FileId, String>,
) -> Vec<NetProcess> {
    let mut coverage = Coverage::new();
    let mut out = Vec::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return out;
    };
    let mut pids: Vec<u32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    for pid in pids {
        let Some(sockets) = net_summary(pid) else {
            continue;
        };
        if sockets.tcp + sockets.udp == 0 {
            continue;
        }
        if let Some(tls) = coverage.inspect(pid, targets, notes) {
            out.push(NetProcess { tls, sockets });
        }
    }
    out
}

/// The inet sockets process `pid` holds, matched by inode against the socket
/// tables of its network namespace. `None` when its descriptors are unreadable.
fn net_summary(pid: u32) -> Option<NetSummary> {
    use crate::conn::socket::{TCP_ESTABLISHED, socket_fds, table_rows};
    let inodes: HashSet<u64> = socket_fds(pid).ok()?.into_iter().map(|(_, i)| i).collect();
    let mut sum = NetSummary::default();
    if inodes.is_empty() {
        return Some(sum);
    }
    let mut ports = std::collections::BTreeSet::new();
    for (table, is_tcp) in [
        ("tcp", true),
        ("tcp6", true),
        ("udp", false),
        ("udp6", false),
    ] {
        let Ok(text) = fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for row in table_rows(&text).filter(|r| inodes.contains(&r.inode)) {
            if is_tcp {
                sum.tcp += 1;
                if row.state == TCP_ESTABLISHED {
                    ports.insert(row.remote.port());
                }
            } else {
                sum.udp += 1;
            }
        }
    }
    sum.remote_ports = ports.into_iter().collect();
    Some(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustls_is_recognised_with_its_version() {
        let data = b"\0\0/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rustls-0.23.12/src/conn.rs\0";
        let (lib, why) = identify(Path::new("/usr/bin/agent"), data).expect("recognised");
        assert_eq!(lib, "rustls 0.23.12");
        assert!(why.contains("not visible"), "{why}");
        assert_eq!(crate_version(b"/rustls-", b"/rustls-"), None);
        assert_eq!(crate_version(b"x/rustls-abc/", b"/rustls-"), None);
    }

    #[test]
    fn plain_files_have_no_stack() {
        assert_eq!(identify(Path::new("/bin/true"), b"\x7fELF nothing"), None);
        let java = identify(Path::new("/usr/lib/jvm/lib/server/libjvm.so"), b"");
        assert!(java.is_some_and(|(l, _)| l == "java jsse"));
    }

    #[test]
    fn a_gap_is_reported_once_per_process_and_program() {
        let mut c = Coverage::new();
        let exe = Path::new("/bin/sh");
        assert!(c.first_report(1, Some(exe)));
        assert!(!c.first_report(1, Some(exe)));
        assert!(c.first_report(2, Some(exe)));
    }

    /// A process with a TCP connection is listed with its remote port.
    #[test]
    fn processes_with_sockets_are_listed() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let _client = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let me = network_processes(&[], &HashMap::new())
            .into_iter()
            .find(|p| p.tls.pid == std::process::id())
            .expect("this process holds sockets");
        assert!(me.sockets.tcp >= 2, "{:?}", me.sockets);
        assert!(me.sockets.remote_ports.contains(&port), "{:?}", me.sockets);
    }

    /// This test process maps no TLS library hooked by nobody: it is seen,
    /// not covered, and the reason says so.
    #[test]
    fn an_unhooked_process_is_a_gap() {
        let mut c = Coverage::new();
        let me = c
            .inspect(std::process::id(), &[], &HashMap::new())
            .expect("own process");
        assert!(!me.covered());
        assert!(me.build_id.is_some(), "test binaries have a build-id");
        assert!(!me.gap_reason().is_empty());
    }
}
