//! Process-context stage: who made a TLS call — program, command line, user,
//! container, ancestry — read from `/proc` on first sight and cached.
//!
//! The kernel only tells a pid. [`ProcessCache::get`] turns it into a
//! [`ProcessContext`], read once per process and then shared through an [`Arc`].
//! A cached context is checked against `/proc` at most once per
//! [`REVALIDATE_AFTER`] (start time and `comm`), which catches pid reuse and most
//! `exec`s when the caller misses them; [`ProcessCache::exec`] and
//! [`ProcessCache::exit`] are the exact way. A context stays available after its
//! process exits, until `exit` or eviction, because the last events of a process
//! are processed after it is gone.
//!
//! Program files are hashed once per file version, whatever number of processes
//! run them. Command lines are bounded and their secrets redacted
//! ([`redact_cmdline`]) before they are stored.

mod cgroup;
mod cmdline;
mod exe;
mod users;

use std::{
    collections::HashMap,
    fs::File,
    io::Read,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use procfs::{ProcError, process::Process};
use serde::Serialize;

pub use self::cgroup::container_from_cgroup;
pub use self::cmdline::redact_cmdline;
use self::{cgroup::cgroup_path, exe::ExeCache, users::Users};

/// How long a cached context is trusted before its start time and `comm` are
/// compared with `/proc` again.
pub const REVALIDATE_AFTER: Duration = Duration::from_secs(1);
/// Ancestors recorded per process: parent, grandparent, …
pub const MAX_ANCESTORS: usize = 8;
/// Program files whose hash and build id are cached.
const EXE_CACHE_ENTRIES: usize = 1024;
/// Bytes of `/proc/PID/cmdline` read; far more than [`redact_cmdline`] keeps, so
/// that what it keeps is never cut by the read.
const CMDLINE_READ_BYTES: usize = 256 * 1024;
/// Bytes read of the other small `/proc` files (`status`, `cgroup`).
const SMALL_FILE_BYTES: usize = 64 * 1024;
/// `/proc/PID/loginuid` of a process no login session started.
const UNSET_LOGIN_UID: u32 = u32::MAX;

/// What an event says about the process that made a TLS call.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessContext {
    /// Process id (thread group id), in the sensor's pid namespace.
    pub pid: u32,
    /// Parent process id; none for pid 1 and kernel threads.
    pub ppid: Option<u32>,
    /// Name of the process's main thread, as `/proc/PID/comm` has it (at most 15 bytes).
    pub comm: String,
    /// Program path as the process sees it (`readlink /proc/PID/exe`): inside its
    /// container's mount namespace, with ` (deleted)` when the file was removed.
    pub exe: Option<String>,
    /// SHA-256 of the program file, lower-case hex; none above 512 MiB.
    pub exe_sha256: Option<String>,
    /// GNU build id of the program file (ELF `NT_GNU_BUILD_ID`), lower-case hex.
    pub exe_build_id: Option<String>,
    /// Arguments, bounded and with secrets redacted (see [`redact_cmdline`]).
    pub cmdline: Vec<String>,
    /// Real uid (`/proc/PID/status`).
    pub uid: Option<u32>,
    /// Name of `uid` in the host's `/etc/passwd`.
    pub user: Option<String>,
    /// Audit login uid (`/proc/PID/loginuid`): the user who logged in, across
    /// `su` and `sudo`; none when no login session started the process.
    pub login_uid: Option<u32>,
    /// cgroup v2 path (the `0::` line of `/proc/PID/cgroup`); with cgroup v1,
    /// the first hierarchy's path.
    pub cgroup: Option<String>,
    /// The container the process runs in, told from `cgroup`.
    pub container: Option<Container>,
    /// Parent, grandparent, … up to [`MAX_ANCESTORS`]; ends with pid 1 when the
    /// chain is complete.
    pub ancestry: Vec<Ancestor>,
    /// Start time (field 22 of `/proc/PID/stat`), in clock ticks after boot: with
    /// `pid`, it names the process across pid reuse.
    pub start_time: u64,
    /// This context as JSON, serialised once: every event of the process carries
    /// it, and serialising it anew each time was most of an event's cost.
    #[serde(skip)]
    json: std::sync::OnceLock<Option<Box<serde_json::value::RawValue>>>,
}

/// A container a process runs in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Container {
    /// `docker`, `containerd`, `cri-o`, `podman`, `kubernetes` (a Kubernetes
    /// container whose runtime the cgroup does not name), `lxc` or `systemd-nspawn`.
    pub runtime: &'static str,
    /// Full container id (64 hex digits), or the machine name for LXC and
    /// systemd-nspawn.
    pub id: String,
    /// UID of the Kubernetes pod, with dashes, when the container is in one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
}

/// One process up the parent chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ancestor {
    /// Process id.
    pub pid: u32,
    /// Name of its main thread.
    pub comm: String,
    /// Its program path, when readable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
}

/// What the cache did, for `sensor.status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ProcessCacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that read `/proc` (including those that found nothing).
    pub misses: u64,
    /// Contexts dropped to make room (gone processes first, then the least
    /// recently used).
    pub evictions: u64,
    /// Lookups of a pid that no longer existed.
    pub gone: u64,
    /// Lookups of a process whose `/proc` entry could not be read (permissions,
    /// unexpected contents).
    pub unreadable: u64,
    /// Processes cached now (a gauge).
    pub cached: u64,
}

/// Contexts per process — a pid with its start time — bounded in number.
#[derive(Debug)]
pub struct ProcessCache {
    entries: HashMap<u32, Entry>,
    max_entries: usize,
    revalidate_after: Duration,
    exes: ExeCache,
    users: Users,
    /// Ticks once per lookup; orders entries by last use.
    clock: u64,
    inserts_since_sweep: usize,
    stats: ProcessCacheStats,
}

#[derive(Debug)]
struct Entry {
    context: Arc<ProcessContext>,
    last_used: u64,
    /// When the context was last found to still describe the pid.
    checked: Instant,
    /// The process was found gone: the context is kept for its late events.
    gone: bool,
}

/// Why a process's context could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unavailable {
    /// No such process (any more).
    Gone,
    /// It exists but `/proc` would not tell.
    Unreadable,
}

impl From<ProcError> for Unavailable {
    fn from(e: ProcError) -> Self {
        match e {
            ProcError::NotFound(_) => Unavailable::Gone,
            _ => Unavailable::Unreadable,
        }
    }
}

impl ProcessCache {
    /// A cache of at most `max_entries` processes (at least one).
    pub fn new(max_entries: usize) -> Self {
        Self {
            entries: HashMap::new(),
            max_entries: max_entries.max(1),
            revalidate_after: REVALIDATE_AFTER,
            exes: ExeCache::new(EXE_CACHE_ENTRIES),
            users: Users::new("/etc/passwd"),
            clock: 0,
            inserts_since_sweep: usize::MAX,
            stats: ProcessCacheStats::default(),
        }
    }

    /// The context of `pid`, read from /proc on first sight and cached. None if
    /// the process is gone (and was not cached) or cannot be read.
    ///
    /// First sight of a program file hashes it: up to 512 MiB read, once per
    /// file version.
    pub fn get(&mut self, pid: u32) -> Option<Arc<ProcessContext>> {
        self.clock += 1;
        if let Some(entry) = self.entries.get_mut(&pid) {
            let now = Instant::now();
            let trusted = entry.gone || now.duration_since(entry.checked) < self.revalidate_after;
            let same = trusted
                || match identity(pid) {
                    Ok((start_time, comm)) => {
                        start_time == entry.context.start_time && comm == entry.context.comm
                    }
                    Err(Unavailable::Gone) => {
                        entry.gone = true;
                        true
                    }
                    Err(Unavailable::Unreadable) => true,
                };
            if same {
                if !trusted {
                    entry.checked = now;
                }
                entry.last_used = self.clock;
                self.stats.hits += 1;
                return Some(Arc::clone(&entry.context));
            }
            // Another process has the pid now, or it ran another program.
            self.entries.remove(&pid);
        }
        self.stats.misses += 1;
        match self.read_context(pid) {
            Ok(context) => {
                let context = Arc::new(context);
                self.make_room();
                self.inserts_since_sweep = self.inserts_since_sweep.saturating_add(1);
                self.entries.insert(
                    pid,
                    Entry {
                        context: Arc::clone(&context),
                        last_used: self.clock,
                        checked: Instant::now(),
                        gone: false,
                    },
                );
                Some(context)
            }
            Err(Unavailable::Gone) => {
                self.stats.gone += 1;
                None
            }
            Err(Unavailable::Unreadable) => {
                self.stats.unreadable += 1;
                None
            }
        }
    }

    /// The process exec'd a new program: drop its cached context (next get re-reads it).
    pub fn exec(&mut self, pid: u32) {
        self.entries.remove(&pid);
    }

    /// The process exited: forget it. Its context is gone for good, so call this
    /// once the process's last events have been handled.
    pub fn exit(&mut self, pid: u32) {
        self.entries.remove(&pid);
    }

    /// Sets how long a cached context is trusted before it is checked against
    /// `/proc` again ([`REVALIDATE_AFTER`] by default; zero checks every lookup).
    #[cfg(test)]
    pub fn revalidate_after(mut self, every: Duration) -> Self {
        self.revalidate_after = every;
        self
    }

    /// How many processes are cached.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no process is cached.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Counters since the cache was made, and its size now.
    pub fn stats(&self) -> ProcessCacheStats {
        ProcessCacheStats {
            cached: self.entries.len() as u64,
            ..self.stats
        }
    }

    /// Makes room for one more entry: first drops the processes that are gone
    /// (a look at `/proc` per entry, so at most once per quarter of the capacity
    /// inserted), then the least recently used.
    fn make_room(&mut self) {
        if self.entries.len() < self.max_entries {
            return;
        }
        if self.inserts_since_sweep >= (self.max_entries / 4).max(1) {
            self.inserts_since_sweep = 0;
            let before = self.entries.len();
            self.entries
                .retain(|&pid, entry| !entry.gone && Path::new(&format!("/proc/{pid}")).exists());
            self.stats.evictions += (before - self.entries.len()) as u64;
        }
        while self.entries.len() >= self.max_entries {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, entry)| (!entry.gone, entry.last_used))
                .map(|(&pid, _)| pid)
            else {
                break;
            };
            self.entries.remove(&oldest);
            self.stats.evictions += 1;
        }
    }

    /// Reads a process's context. Every file is read through one handle on
    /// `/proc/PID`, so a pid reused meanwhile cannot mix two processes.
    fn read_context(&mut self, pid: u32) -> Result<ProcessContext, Unavailable> {
        let process = open_process(pid)?;
        let stat = process.stat()?;
        let exe = process.exe().ok().map(|p| p.to_string_lossy().into_owned());
        let facts = process
            .open_relative("exe")
            .map(|file| self.exes.facts(&file))
            .unwrap_or_default();
        let cmdline = read_cmdline(&process);
        let uid = read_text(&process, "status", SMALL_FILE_BYTES)
            .and_then(|(status, _)| real_uid(&status));
        let user = uid.and_then(|uid| self.users.name(uid));
        let login_uid = process.loginuid().ok().filter(|&u| u != UNSET_LOGIN_UID);
        let cgroup = read_text(&process, "cgroup", SMALL_FILE_BYTES)
            .and_then(|(text, _)| cgroup_path(&text));
        let container = cgroup.as_deref().and_then(container_from_cgroup);
        let ancestry = ancestry(stat.ppid);
        // Reaped while we read: what we have may be half a context.
        process.stat()?;
        Ok(ProcessContext {
            pid,
            ppid: u32::try_from(stat.ppid).ok().filter(|&p| p > 0),
            comm: stat.comm,
            exe,
            exe_sha256: facts.sha256,
            exe_build_id: facts.build_id,
            cmdline,
            uid,
            user,
            login_uid,
            cgroup,
            container,
            ancestry,
            start_time: stat.starttime,
            json: std::sync::OnceLock::new(),
        })
    }
}

impl ProcessContext {
    /// The context as JSON, serialised on first use and kept.
    pub fn json(&self) -> Option<&serde_json::value::RawValue> {
        self.json
            .get_or_init(|| serde_json::value::to_raw_value(self).ok())
            .as_deref()
    }
}

/// A handle on `/proc/PID`.
fn open_process(pid: u32) -> Result<Process, Unavailable> {
    let pid = i32::try_from(pid).map_err(|_| Unavailable::Gone)?;
    Ok(Process::new(pid)?)
}

/// What names a process now: its start time and `comm`.
fn identity(pid: u32) -> Result<(u64, String), Unavailable> {
    let stat = open_process(pid)?.stat()?;
    Ok((stat.starttime, stat.comm))
}

/// Up to `limit` bytes of a file under `/proc/PID`, as text, and whether there was more.
fn read_text(process: &Process, name: &str, limit: usize) -> Option<(String, bool)> {
    let file: File = process.open_relative(name).ok()?;
    let mut bytes = Vec::new();
    file.take(limit as u64 + 1).read_to_end(&mut bytes).ok()?;
    let more = bytes.len() > limit;
    bytes.truncate(limit);
    Some((String::from_utf8_lossy(&bytes).into_owned(), more))
}

/// The command line, bounded and redacted; empty for kernel threads and zombies.
fn read_cmdline(process: &Process) -> Vec<String> {
    let Some((text, more)) = read_text(process, "cmdline", CMDLINE_READ_BYTES) else {
        return Vec::new();
    };
    let mut args: Vec<String> = text.split('\0').map(str::to_owned).collect();
    if more {
        // The last argument is cut: drop it rather than show half a secret.
        args.pop();
        args.push("…".to_owned());
    } else if args.last().is_some_and(String::is_empty) {
        // The NUL that ends the last argument.
        args.pop();
    }
    redact_cmdline(&args)
}

/// The real uid from the text of `/proc/PID/status`.
fn real_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next())
        .and_then(|uid| uid.parse().ok())
}

/// The parent chain from `ppid` up, at most [`MAX_ANCESTORS`] long, ending with
/// pid 1 or where `/proc` stops telling.
fn ancestry(mut ppid: i32) -> Vec<Ancestor> {
    let mut chain = Vec::new();
    while chain.len() < MAX_ANCESTORS {
        let Some(pid) = u32::try_from(ppid).ok().filter(|&p| p > 0) else {
            break;
        };
        let Ok(process) = open_process(pid) else {
            break;
        };
        let Ok(stat) = process.stat() else {
            break;
        };
        chain.push(Ancestor {
            pid,
            comm: stat.comm,
            exe: process.exe().ok().map(|p| p.to_string_lossy().into_owned()),
        });
        if pid == 1 {
            break;
        }
        ppid = stat.ppid;
    }
    chain
}

#[cfg(test)]
mod tests {
    use std::{
        process::{Child, Command},
        thread::sleep,
    };

    use object::Object;
    use sha2::{Digest, Sha256};

    use super::*;

    /// A child process killed and reaped on drop.
    struct Kid(Child);

    impl Kid {
        /// Spawns and waits until the new program's arguments are visible in
        /// /proc (under load they can lag the return of `spawn`).
        fn spawn(program: &str, args: &[&str]) -> Self {
            let kid = Self(
                Command::new(program)
                    .args(args)
                    .spawn()
                    .expect("spawn child"),
            );
            let cmdline = format!("/proc/{}/cmdline", kid.pid());
            let deadline = Instant::now() + Duration::from_secs(5);
            while std::fs::read(&cmdline).map_or(true, |c| c.is_empty())
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            kid
        }

        fn pid(&self) -> u32 {
            self.0.id()
        }

        fn end(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    impl Drop for Kid {
        fn drop(&mut self) {
            self.end();
        }
    }

    fn field_22(stat: &str) -> u64 {
        let after_comm = &stat[stat.rfind(')').expect("comm ends") + 1..];
        // Fields 3.. follow the comm; field 22 is the 20th of them.
        after_comm
            .split_whitespace()
            .nth(19)
            .and_then(|f| f.parse().ok())
            .expect("starttime")
    }

    fn wait_for_comm(pid: u32, comm: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|c| c.trim_end() != comm)
        {
            assert!(Instant::now() < deadline, "{pid} never became {comm}");
            sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn this_process() {
        let mut cache = ProcessCache::new(16);
        let pid = std::process::id();
        let ctx = cache.get(pid).expect("own context");

        assert_eq!(ctx.pid, pid);
        let comm = std::fs::read_to_string("/proc/self/comm").expect("comm");
        assert_eq!(ctx.comm, comm.trim_end_matches('\n'));
        let exe = std::env::current_exe().expect("current exe");
        assert_eq!(ctx.exe.as_deref(), Some(exe.to_string_lossy().as_ref()));

        let bytes = std::fs::read(&exe).expect("read exe");
        assert_eq!(
            ctx.exe_sha256.as_deref(),
            Some(exe::hex(&Sha256::digest(&bytes)).as_str())
        );
        let build_id = object::File::parse(&*bytes)
            .expect("parse exe")
            .build_id()
            .expect("build id");
        assert_eq!(ctx.exe_build_id, build_id.map(exe::hex));
        if let Some(id) = &ctx.exe_build_id {
            assert!(!id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()));
        }

        let parent = std::os::unix::process::parent_id();
        assert_eq!(ctx.ppid, Some(parent));
        assert_eq!(ctx.ancestry.first().map(|a| a.pid), Some(parent));
        assert!(ctx.ancestry.len() <= MAX_ANCESTORS);
        if ctx.ancestry.len() < MAX_ANCESTORS {
            assert_eq!(
                ctx.ancestry.last().map(|a| a.pid),
                Some(1),
                "{:?}",
                ctx.ancestry
            );
        }

        let args: Vec<String> = std::env::args().collect();
        assert_eq!(ctx.cmdline, redact_cmdline(&args));

        // SAFETY: getuid cannot fail.
        let uid = unsafe { libc::getuid() };
        assert_eq!(ctx.uid, Some(uid));
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let listed = passwd
            .lines()
            .any(|l| l.split(':').nth(2) == Some(uid.to_string().as_str()));
        assert_eq!(ctx.user.is_some(), listed);

        let login_uid = std::fs::read_to_string("/proc/self/loginuid")
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .filter(|&u| u != u32::MAX);
        assert_eq!(ctx.login_uid, login_uid);

        let cgroups = std::fs::read_to_string("/proc/self/cgroup").expect("cgroup");
        if let Some(v2) = cgroups.lines().find_map(|l| l.strip_prefix("0::")) {
            assert_eq!(ctx.cgroup.as_deref(), Some(v2));
        }
        assert_eq!(
            ctx.container,
            ctx.cgroup.as_deref().and_then(container_from_cgroup)
        );

        let stat = std::fs::read_to_string("/proc/self/stat").expect("stat");
        assert_eq!(ctx.start_time, field_22(&stat));

        let json = serde_json::to_value(&*ctx).expect("serialize");
        assert_eq!(json["pid"], pid);
        assert_eq!(json["start_time"], ctx.start_time);

        // The second lookup is served from the cache.
        let again = cache.get(pid).expect("cached context");
        assert!(Arc::ptr_eq(&ctx, &again));
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.gone), (1, 1, 0));
    }

    #[test]
    fn a_child_that_exits() {
        let mut kid = Kid::spawn("sleep", &["5"]);
        let pid = kid.pid();
        let mut cache = ProcessCache::new(16);
        let ctx = cache.get(pid).expect("child context");
        assert_eq!(ctx.comm, "sleep");
        assert_eq!(ctx.cmdline, ["sleep", "5"]);
        assert!(ctx.exe.as_deref().is_some_and(|e| e.ends_with("sleep")));
        assert_eq!(ctx.ppid, Some(std::process::id()));
        assert_eq!(
            ctx.ancestry.first().map(|a| a.pid),
            Some(std::process::id())
        );

        kid.end();
        // Its last events may still come: the context stays until exit().
        assert!(cache.get(pid).is_some());
        cache.exit(pid);
        assert!(cache.get(pid).is_none());
        assert_eq!(cache.stats().gone, 1);
        assert!(cache.is_empty());

        // A cache that never saw it finds nothing.
        let mut fresh = ProcessCache::new(16).revalidate_after(Duration::ZERO);
        assert!(fresh.get(pid).is_none());
        assert_eq!(fresh.stats().gone, 1);
    }

    #[test]
    fn a_gone_process_stays_cached_until_exit() {
        let mut kid = Kid::spawn("sleep", &["5"]);
        let pid = kid.pid();
        let mut cache = ProcessCache::new(16).revalidate_after(Duration::ZERO);
        assert!(cache.get(pid).is_some());
        kid.end();
        assert_eq!(
            cache.get(pid).map(|c| c.comm.clone()).as_deref(),
            Some("sleep")
        );
        assert!(cache.entries.get(&pid).is_some_and(|e| e.gone));
        assert_eq!(cache.stats().gone, 0);
    }

    #[test]
    fn exec_drops_the_context() {
        let kid = Kid::spawn("sh", &["-c", "sleep 0.3; exec sleep 5"]);
        let pid = kid.pid();
        let mut told = ProcessCache::new(16);
        let mut checking = ProcessCache::new(16).revalidate_after(Duration::ZERO);
        assert_eq!(told.get(pid).expect("sh").comm, "sh");
        assert_eq!(checking.get(pid).expect("sh").comm, "sh");

        wait_for_comm(pid, "sleep");
        // Until told, the cache trusts what it read.
        assert_eq!(told.get(pid).expect("cached sh").comm, "sh");
        told.exec(pid);
        let ctx = told.get(pid).expect("sleep");
        assert_eq!(ctx.comm, "sleep");
        assert_eq!(ctx.cmdline, ["sleep", "5"]);
        // A cache that re-checks notices by itself.
        assert_eq!(checking.get(pid).expect("sleep").comm, "sleep");
        assert_eq!(checking.stats().misses, 2);
    }

    #[test]
    fn pid_reuse_is_noticed() {
        let pid = std::process::id();
        let mut cache = ProcessCache::new(16).revalidate_after(Duration::ZERO);
        let real = cache.get(pid).expect("own context");
        // Pretend the cached context belonged to an earlier process with this pid.
        let mut stale = (*real).clone();
        stale.start_time = real.start_time.wrapping_sub(1);
        stale.comm = "earlier".to_owned();
        if let Some(entry) = cache.entries.get_mut(&pid) {
            entry.context = Arc::new(stale);
        }
        let ctx = cache.get(pid).expect("re-read context");
        assert_eq!(ctx.start_time, real.start_time);
        assert_eq!(ctx.comm, real.comm);
        assert_eq!(cache.stats().misses, 2);
    }

    #[test]
    fn the_cache_is_bounded() {
        let kids: Vec<Kid> = (0..10).map(|_| Kid::spawn("sleep", &["5"])).collect();
        let mut cache = ProcessCache::new(4);
        for kid in &kids {
            assert!(cache.get(kid.pid()).is_some());
            assert!(cache.len() <= 4);
        }
        assert_eq!(cache.len(), 4);
        assert_eq!(cache.stats().evictions, 6);
        // The most recent ones stay.
        for kid in &kids[6..] {
            assert!(cache.entries.contains_key(&kid.pid()));
        }
    }

    #[test]
    fn gone_processes_are_evicted_first() {
        let mut first = Kid::spawn("sleep", &["5"]);
        let second = Kid::spawn("sleep", &["5"]);
        let mut cache = ProcessCache::new(2);
        assert!(cache.get(first.pid()).is_some());
        assert!(cache.get(second.pid()).is_some());
        // The first is the most recently used, but gone.
        assert!(cache.get(first.pid()).is_some());
        first.end();
        assert!(cache.get(std::process::id()).is_some());
        assert!(!cache.entries.contains_key(&first.pid()));
        assert!(cache.entries.contains_key(&second.pid()));
        assert_eq!(cache.stats().evictions, 1);
    }

    #[test]
    fn unknown_pids_are_gone() {
        let mut cache = ProcessCache::new(4);
        assert!(cache.get(u32::MAX).is_none());
        assert!(cache.get(0).is_none());
        assert_eq!(cache.stats().gone, 2);
        assert!(cache.is_empty());
    }

    #[test]
    fn status_uid_lines() {
        assert_eq!(
            real_uid("Name:\tx\nUid:\t1000\t0\t0\t0\nGid:\t1\n"),
            Some(1000)
        );
        assert_eq!(real_uid("Name:\tx\n"), None);
        assert_eq!(real_uid("Uid:\tx\n"), None);
    }
}
