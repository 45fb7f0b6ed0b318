//! The file sink: JSON lines appended to a local file, rotated by size and age.
//!
//! Each record is written as its JSON body followed by `\n`. The file is created
//! with mode 0600 (events name processes, hosts and prompts: they are not for
//! every local user), its parent directories with 0700 when the sink creates
//! them. Restarts append to the existing file.
//!
//! Rotation renames: `path` becomes `path.1`, `path.1` becomes `path.2`, … up to
//! `path.N` (`keep`), and the oldest is deleted. A log shipper or `logrotate`
//! that moves or deletes the file is noticed at the next batch (the path's
//! device and inode no longer match the open handle) and the sink reopens the
//! path, so nothing keeps going to an unlinked file.
//!
//! Acknowledgement is the write (and, with `fsync = "always"`, the fsync): a
//! batch that fails part-way is retried whole by the worker, so a write error
//! can leave some records twice in the file (at least once).

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write as _},
    os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime},
};

use serde::{Deserialize, Serialize};

use super::{DeliveryError, Record, Transport};

/// The file sink's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCfg {
    /// The file to append to (required). Rotated files are `path.1` … `path.N`.
    pub path: PathBuf,
    /// Rotate before a record would make the file larger than this many bytes
    /// (default 100 MiB). A single record larger than this still goes, alone,
    /// into a fresh file.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Rotate when the current file is older than this many seconds (default
    /// 86400, one day; 0 = never). Age counts from the file's creation (its
    /// birth time when the file system records one, else from when the sink
    /// opened it).
    #[serde(default = "default_max_age_secs")]
    pub max_age_secs: u64,
    /// How many rotated files to keep, `path.1` (newest) … `path.N` (default 10;
    /// 0 = the full file is simply deleted on rotation).
    #[serde(default = "default_keep")]
    pub keep: u32,
    /// When to fsync (default `always`).
    #[serde(default)]
    pub fsync: Fsync,
}

/// When the file sink forces written records to disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fsync {
    /// After every batch, before the batch counts as delivered (the default): a
    /// power loss loses nothing the worker removed from its spool.
    #[default]
    Always,
    /// At most once a second, after a batch: a power loss can lose the last
    /// second or so of records (those written since the last fsync; the kernel
    /// also writes them back on its own within its dirty-page interval).
    Interval,
    /// Never: the kernel writes back when it pleases. Cheapest; a power loss can
    /// lose the records of the last seconds.
    Never,
}

fn default_max_bytes() -> u64 {
    100 * 1024 * 1024
}

fn default_max_age_secs() -> u64 {
    86_400
}

fn default_keep() -> u32 {
    10
}

/// How often [`Fsync::Interval`] syncs at most.
const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// The wall clock, replaceable in tests to age files without waiting.
type Clock = Box<dyn Fn() -> SystemTime + Send>;

/// The open file and what we know about it.
struct Current {
    file: File,
    /// Device and inode of `file`, to notice that the path now names another
    /// file (or none).
    dev: u64,
    ino: u64,
    /// Bytes in the file (kept here rather than asking the file system per record).
    size: u64,
    /// When the file was created, for `max_age_secs`.
    born: SystemTime,
}

/// Appends records as JSON lines to a file; see the [module docs](self).
pub struct FileTransport {
    cfg: FileCfg,
    current: Option<Current>,
    last_sync: Instant,
    clock: Clock,
}

/// Opens (creating as needed) the file `cfg.path` names, so that configuration
/// errors (a missing permission, a directory in the way) show at startup.
pub fn open(cfg: &FileCfg) -> Result<FileTransport, String> {
    open_with_clock(cfg, Box::new(SystemTime::now))
}

fn open_with_clock(cfg: &FileCfg, clock: Clock) -> Result<FileTransport, String> {
    if cfg.path.as_os_str().is_empty() {
        return Err("file sink: `path` is empty".into());
    }
    if cfg.max_bytes == 0 {
        return Err(format!(
            "file sink {}: `max_bytes` must be above 0",
            cfg.path.display()
        ));
    }
    let mut t = FileTransport {
        cfg: cfg.clone(),
        current: None,
        last_sync: Instant::now(),
        clock,
    };
    t.current = Some(
        t.open_current()
            .map_err(|e| format!("file sink {}: {e}", cfg.path.display()))?,
    );
    Ok(t)
}

impl FileTransport {
    /// Opens `path` for appending, creating it (0600) and its missing parent
    /// directories (0700).
    fn open_current(&self) -> io::Result<Current> {
        let path = &self.cfg.path;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
            && !parent.is_dir()
        {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| with_context(e, &format!("creating {}", parent.display())))?;
        }
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        let now = (self.clock)();
        // An existing file (a restart): its birth time when the file system
        // keeps one (ext4, xfs, btrfs, tmpfs via statx); else it counts as new
        // now, which at worst delays the first age rotation after a restart by
        // the file's previous age. An empty file is new.
        let born = match meta.len() {
            0 => now,
            _ => meta.created().ok().filter(|t| *t <= now).unwrap_or(now),
        };
        if meta.len() == 0 && self.cfg.fsync != Fsync::Never {
            // A new file: make its directory entry durable too.
            sync_dir(path);
        }
        Ok(Current {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            file,
            born,
        })
    }

    /// The open file, reopened when the path was removed or now names another
    /// file (moved by a shipper or logrotate). One `stat` per batch.
    fn current(&mut self) -> io::Result<&mut Current> {
        let stale = match (&self.current, fs::metadata(&self.cfg.path)) {
            (None, _) => true,
            (Some(_), Err(e)) if e.kind() == io::ErrorKind::NotFound => true,
            (Some(_), Err(e)) => return Err(e),
            (Some(c), Ok(m)) => m.dev() != c.dev || m.ino() != c.ino,
        };
        if stale {
            self.current = None;
            self.current = Some(self.open_current()?);
        }
        self.current
            .as_mut()
            .ok_or_else(|| io::Error::other("no open file"))
    }

    /// Renames `path` to `path.1` (shifting older files up, deleting the one
    /// past `keep`) and opens a fresh `path`.
    fn rotate(&mut self) -> io::Result<()> {
        if let Some(c) = self.current.take() {
            // Rotated files are no longer written: sync whatever is pending so
            // the rename does not leave a half-written file behind a crash.
            if self.cfg.fsync != Fsync::Never {
                c.file.sync_data()?;
            }
        }
        let path = &self.cfg.path;
        let keep = self.cfg.keep;
        if keep == 0 {
            remove_if_exists(path)?;
        } else {
            remove_if_exists(&numbered(path, keep))?;
            for n in (1..keep).rev() {
                rename_if_exists(&numbered(path, n), &numbered(path, n + 1))?;
            }
            rename_if_exists(path, &numbered(path, 1))?;
        }
        self.current = Some(self.open_current()?);
        Ok(())
    }

    fn deliver_io(&mut self, batch: &[Record]) -> io::Result<()> {
        let now = (self.clock)();
        let max_age = self.cfg.max_age_secs;
        {
            let c = self.current()?;
            if c.size > 0 && age_exceeded(c.born, now, max_age) {
                self.rotate()?;
            }
        }
        let max_bytes = self.cfg.max_bytes;
        // One write per file segment: records up to the next size rotation.
        let mut buf = Vec::with_capacity(batch.iter().map(|r| r.body.len() + 1).sum());
        for r in batch {
            let line = r.body.len() as u64 + 1;
            let size = self.current()?.size + buf.len() as u64;
            if size > 0 && size + line > max_bytes {
                self.write_buf(&mut buf)?;
                self.rotate()?;
            }
            buf.extend_from_slice(&r.body);
            buf.push(b'\n');
        }
        self.write_buf(&mut buf)?;
        match self.cfg.fsync {
            Fsync::Always => self.sync()?,
            Fsync::Interval if self.last_sync.elapsed() >= SYNC_INTERVAL => self.sync()?,
            Fsync::Interval | Fsync::Never => {}
        }
        Ok(())
    }

    fn write_buf(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let c = self.current()?;
        let res = c.file.write_all(buf);
        // Count what may have reached the file even on error, so size rotation
        // stays conservative.
        c.size += buf.len() as u64;
        buf.clear();
        res
    }

    fn sync(&mut self) -> io::Result<()> {
        if let Some(c) = &self.current {
            c.file.sync_data()?;
        }
        self.last_sync = Instant::now();
        Ok(())
    }
}

impl Transport for FileTransport {
    fn describe(&self) -> String {
        format!("file {}", self.cfg.path.display())
    }

    fn deliver(&mut self, batch: &[Record]) -> Result<(), DeliveryError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.deliver_io(batch).map_err(|e| {
            // Reopen next time: the handle may be in an unknown state (a full
            // disk, a file system remounted read-only).
            self.current = None;
            DeliveryError::retry(format!("file {}: {e}", self.cfg.path.display()))
        })
    }
}

/// Whether a file born at `born` is older than `max_age_secs` at `now` (0 = never).
fn age_exceeded(born: SystemTime, now: SystemTime, max_age_secs: u64) -> bool {
    max_age_secs != 0
        && now
            .duration_since(born)
            .is_ok_and(|age| age >= Duration::from_secs(max_age_secs))
}

/// `path.n`.
fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(with_context(e, &format!("removing {}", path.display())))
        }
        _ => Ok(()),
    }
}

fn rename_if_exists(from: &Path, to: &Path) -> io::Result<()> {
    match fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(with_context(
            e,
            &format!("renaming {} to {}", from.display(), to.display()),
        )),
        _ => Ok(()),
    }
}

/// Best effort: fsync the directory holding `path` so a new or renamed entry
/// survives a crash. Failing here loses nothing already written, so it is not
/// an error.
fn sync_dir(path: &Path) {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

fn with_context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use std::{
        os::unix::fs::PermissionsExt as _,
        sync::{
            Arc,
            atomic::{AtomicU64, Ordering},
        },
    };

    use super::*;
    use crate::deliver::Level;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            static N: AtomicU64 = AtomicU64::new(0);
            let p = std::env::temp_dir().join(format!(
                "telltale-file-sink-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).unwrap();
            Self(p)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn rec(i: usize, body_len: usize) -> Record {
        let mut body = format!("{{\"n\":{i},\"pad\":\"");
        while body.len() < body_len.saturating_sub(2) {
            body.push('x');
        }
        body.push_str("\"}");
        Record {
            id: format!("id-{i}").into(),
            event_type: "alert".into(),
            time: "2025-01-01T00:00:00Z".into(),
            level: Level::High,
            host: "h".into(),
            body: body.into_bytes(),
        }
    }

    fn cfg(path: PathBuf) -> FileCfg {
        FileCfg {
            path,
            max_bytes: default_max_bytes(),
            max_age_secs: default_max_age_secs(),
            keep: default_keep(),
            fsync: Fsync::Always,
        }
    }

    fn lines(path: &Path) -> Vec<String> {
        fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn defaults_and_fsync_modes_parse() {
        let c: FileCfg = toml::from_str("path = \"/x/y\"").unwrap();
        assert_eq!(c, cfg("/x/y".into()));
        for (s, m) in [
            ("always", Fsync::Always),
            ("interval", Fsync::Interval),
            ("never", Fsync::Never),
        ] {
            let c: FileCfg = toml::from_str(&format!("path = \"/p\"\nfsync = \"{s}\"")).unwrap();
            assert_eq!(c.fsync, m);
        }
        assert!(toml::from_str::<FileCfg>("path = \"/p\"\nfsync = \"batch\"").is_err());
        assert!(toml::from_str::<FileCfg>("path = \"/p\"\nbogus = 1").is_err());
        assert!(toml::from_str::<FileCfg>("max_bytes = 1").is_err());
    }

    #[test]
    fn writes_json_lines_with_private_modes_and_appends_across_restarts() {
        let dir = TempDir::new();
        let path = dir.path().join("a/b/events.jsonl");
        for mode in [Fsync::Always, Fsync::Interval, Fsync::Never] {
            let mut c = cfg(path.clone());
            c.fsync = mode;
            let mut t = open(&c).unwrap();
            t.deliver(&[rec(1, 10), rec(2, 10)]).unwrap();
        }
        let l = lines(&path);
        assert_eq!(l.len(), 6);
        assert!(
            l.iter()
                .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
        );
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        for d in [dir.path().join("a"), dir.path().join("a/b")] {
            assert_eq!(
                fs::metadata(&d).unwrap().permissions().mode() & 0o777,
                0o700
            );
        }
        assert!(fs::read(&path).unwrap().ends_with(b"}\n"));
    }

    #[test]
    fn rotates_by_size_and_keeps_n() {
        let dir = TempDir::new();
        let path = dir.path().join("e.log");
        let mut c = cfg(path.clone());
        c.max_bytes = 100;
        c.keep = 2;
        let mut t = open(&c).unwrap();
        // 40-byte lines: two per file (80 bytes), the third would exceed 100.
        let batch: Vec<Record> = (0..7).map(|i| rec(i, 39)).collect();
        t.deliver(&batch).unwrap();
        for p in [&path, &numbered(&path, 1), &numbered(&path, 2)] {
            assert!(fs::metadata(p).unwrap().len() <= 100, "{}", p.display());
        }
        assert!(!numbered(&path, 3).exists(), "keep = 2");
        // Newest in `path`, then .1, .2; records 0..=1 were deleted with the oldest.
        assert_eq!(lines(&path).len(), 1);
        assert!(lines(&path)[0].contains("\"n\":6"));
        assert!(lines(&numbered(&path, 1))[0].contains("\"n\":4"));
        assert!(lines(&numbered(&path, 2))[0].contains("\"n\":2"));
        // A record larger than max_bytes still goes, alone, into a fresh file.
        t.deliver(&[rec(99, 300)]).unwrap();
        assert_eq!(lines(&path).len(), 1);
        assert!(lines(&numbered(&path, 1))[0].contains("\"n\":6"));
        assert_eq!(
            fs::metadata(numbered(&path, 1))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
    }

    #[test]
    fn keep_zero_deletes_on_rotation() {
        let dir = TempDir::new();
        let path = dir.path().join("e.log");
        let mut c = cfg(path.clone());
        c.max_bytes = 50;
        c.keep = 0;
        let mut t = open(&c).unwrap();
        t.deliver(&[rec(1, 39), rec(2, 39)]).unwrap();
        assert_eq!(lines(&path).len(), 1);
        assert!(!numbered(&path, 1).exists());
    }

    #[test]
    fn rotates_by_age_with_an_injected_clock() {
        let dir = TempDir::new();
        let path = dir.path().join("e.log");
        let mut c = cfg(path.clone());
        c.max_age_secs = 60;
        let offset = Arc::new(AtomicU64::new(0));
        let o = offset.clone();
        let clock: Clock =
            Box::new(move || SystemTime::now() + Duration::from_secs(o.load(Ordering::Relaxed)));
        let mut t = open_with_clock(&c, clock).unwrap();
        t.deliver(&[rec(1, 10)]).unwrap();
        offset.store(30, Ordering::Relaxed);
        t.deliver(&[rec(2, 10)]).unwrap();
        assert!(!numbered(&path, 1).exists(), "30 s < 60 s");
        offset.store(61, Ordering::Relaxed);
        t.deliver(&[rec(3, 10)]).unwrap();
        assert_eq!(lines(&numbered(&path, 1)).len(), 2);
        assert_eq!(lines(&path).len(), 1);
        // The new file's age starts now: no second rotation right away.
        t.deliver(&[rec(4, 10)]).unwrap();
        assert_eq!(lines(&path).len(), 2);

        assert!(!age_exceeded(SystemTime::UNIX_EPOCH, SystemTime::now(), 0));
        let born = SystemTime::UNIX_EPOCH;
        assert!(age_exceeded(born, born + Duration::from_secs(10), 10));
        assert!(!age_exceeded(born, born + Duration::from_secs(9), 10));
        assert!(
            !age_exceeded(born + Duration::from_secs(5), born, 1),
            "clock went back"
        );
    }

    #[test]
    fn reopens_after_external_move_or_removal() {
        let dir = TempDir::new();
        let path = dir.path().join("e.log");
        let mut t = open(&cfg(path.clone())).unwrap();
        t.deliver(&[rec(1, 10)]).unwrap();
        let moved = dir.path().join("shipped.log");
        fs::rename(&path, &moved).unwrap();
        t.deliver(&[rec(2, 10)]).unwrap();
        assert_eq!(
            lines(&moved).len(),
            1,
            "nothing more goes to the moved file"
        );
        assert_eq!(lines(&path).len(), 1);
        assert!(lines(&path)[0].contains("\"n\":2"));
        fs::remove_file(&path).unwrap();
        t.deliver(&[rec(3, 10)]).unwrap();
        assert_eq!(lines(&path).len(), 1);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn open_errors_name_the_path() {
        let dir = TempDir::new();
        let e = open(&cfg(dir.path().to_path_buf())).err().unwrap();
        assert!(e.contains(&dir.path().display().to_string()), "{e}");
        let blocker = dir.path().join("f");
        fs::write(&blocker, "").unwrap();
        let e = open(&cfg(blocker.join("sub/e.log"))).err().unwrap();
        assert!(e.contains("sub/e.log"), "{e}");
        let mut c = cfg(dir.path().join("x"));
        c.max_bytes = 0;
        assert!(open(&c).err().unwrap().contains("max_bytes"));
    }
}
