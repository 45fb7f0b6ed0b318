//! Capture stage: finds TLS libraries, attaches the kernel programs to them and
//! reads plaintext chunks from the ring buffer.
//!
//! Public surface: [`Capture`] (start, rescan, read), [`Chunk`], the discovery
//! types for `telltale targets`, and [`KernelCounters`].

mod btf;
mod coverage;
mod elf;
mod loader;
mod record;
mod sites;
mod targets;

use std::path::Path;

use aya::maps::{MapData, RingBuf};
use serde::Serialize;
use tokio::io::unix::AsyncFd;

pub use coverage::{Coverage, NetProcess, StackUse, network_processes};
pub use elf::Library;
pub use loader::{FunctionAttachment, KernelCounters, LoadOptions, hold_unsupported};
pub use record::{Chunk, Connect, FdBind, Hold, Record, comm_str};
pub use sensor_common::FdSource;
pub use targets::{Discovery, DiscoveryConfig, Skipped, Target};

/// Why capture could not start.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The kernel refused the BPF object (permissions, kernel features).
    #[error(
        "loading the kernel programs failed: {0}. Telltale needs root (or CAP_BPF, \
         CAP_PERFMON and CAP_SYS_ADMIN) and a kernel >= 5.8 with BTF"
    )]
    Load(String),
    /// A program failed to load or attach.
    #[error("kernel program {name}: {error}")]
    Program {
        /// Program name.
        name: &'static str,
        /// What went wrong.
        error: String,
    },
    /// The embedded object lacks a program (a build problem).
    #[error("the embedded kernel object has no program {0}; rebuild telltale")]
    MissingProgram(&'static str),
    /// The embedded object lacks a map (a build problem).
    #[error("the embedded kernel object has no map {0}; rebuild telltale")]
    MissingMap(&'static str),
    /// Registering the ring buffer with the async runtime failed.
    #[error("cannot poll the ring buffer: {0}")]
    Poll(#[from] std::io::Error),
}

/// A target and how each of its functions was attached.
#[derive(Debug, Clone, Serialize)]
pub struct AttachedTarget {
    /// The file.
    #[serde(flatten)]
    pub target: Target,
    /// Per-function outcome.
    pub attachments: Vec<FunctionAttachment>,
}

impl AttachedTarget {
    /// A target as discovery planned it, before (or without) attaching: each
    /// function and hook with its planned strategy.
    pub fn planned(target: Target) -> Self {
        let mut attachments: Vec<FunctionAttachment> = target
            .functions
            .iter()
            .map(|f| FunctionAttachment {
                symbol: f.function.symbol(),
                offset: format!("{:#x}", f.file_offset),
                strategy: f.plan.name(),
                detail: f.plan.describe(),
                error: None,
            })
            .collect();
        attachments.extend(target.hooks.iter().map(|h| FunctionAttachment {
            symbol: h.symbol,
            offset: format!("{:#x}", h.file_offset),
            strategy: "entry",
            detail: h.kind.describe().to_owned(),
            error: None,
        }));
        Self {
            target,
            attachments,
        }
    }

    /// True when at least one function is hooked.
    pub fn is_active(&self) -> bool {
        self.attachments.iter().any(|a| a.error.is_none())
    }
}

/// Running capture: loaded programs, attached targets and the ring-buffer reader.
pub struct Capture {
    probes: loader::Probes,
    ring: AsyncFd<RingBuf<MapData>>,
    discovery: Discovery,
    discovery_cfg: DiscoveryConfig,
    targets: Vec<AttachedTarget>,
    record_errors: u64,
    holds: Option<HoldMap>,
}

/// The kernel's record of which processes have their TLS writes held: user
/// space judges each process once per program and writes the result here.
pub struct HoldMap {
    map: aya::maps::HashMap<MapData, u32, u8>,
    skip: aya::maps::HashMap<MapData, sensor_common::SockKey, u8>,
}

impl HoldMap {
    /// Records that process `pid` is (`true`) or is not under a blocking policy.
    pub fn judge(&mut self, pid: u32, selected: bool) {
        let v = if selected {
            sensor_common::hold::SELECTED
        } else {
            sensor_common::hold::EXEMPT
        };
        if let Err(e) = self.map.insert(&pid, &v, 0) {
            tracing::warn!(pid, error = %e, "cannot record a process's enforcement judgement");
        }
    }

    /// Writes on connection `conn` of `pid` are not held any more (until the
    /// connection object is freed).
    pub fn skip_conn(&mut self, pid: u32, conn: u64) {
        let key = sensor_common::SockKey { pid, _pad: 0, conn };
        if let Err(e) = self.skip.insert(&key, &1, 0) {
            tracing::debug!(pid, error = %e, "cannot exempt a connection from holds");
        }
    }

    /// The map's descriptor (for the hold guard).
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use aya::maps::IterableMap as _;
        use std::os::fd::AsFd as _;
        self.map.map().fd().as_fd()
    }
}

impl Capture {
    /// Loads the kernel programs and attaches them to every target discovery
    /// finds. Must be called within a tokio runtime.
    ///
    /// With `opts.hold`, `judge` records every running process's judgement in
    /// the kernel before any probe is attached, so that only the processes a
    /// blocking policy selects (and new ones, until judged) are ever held; an
    /// error from it stops the start before anything is attached.
    pub fn start(
        discovery_cfg: DiscoveryConfig,
        opts: LoadOptions,
        judge: &mut dyn FnMut(&mut HoldMap) -> Result<(), String>,
    ) -> Result<Self, CaptureError> {
        let hold = opts.hold;
        let mut probes = loader::Probes::load(opts)?;
        let holds = if hold {
            let (map, skip) = probes.take_hold_maps()?;
            let mut map = HoldMap { map, skip };
            judge(&mut map).map_err(CaptureError::Load)?;
            Some(map)
        } else {
            None
        };
        if !probes.has_cookies() {
            tracing::warn!("kernel < 5.15: events cannot name the library they came from");
        }
        // SAFETY: the RingBuf owns its map fd and the AsyncFd owns the RingBuf, so
        // the fd stays open and unchanged for as long as it is registered.
        let ring = unsafe { AsyncFd::register(probes.take_ring()?) }
            .map_err(|e| CaptureError::Poll(std::io::Error::other(e.to_string())))?;
        let mut capture = Self {
            probes,
            ring,
            discovery: Discovery::new(discovery_cfg.analysis_cache.as_deref()),
            discovery_cfg,
            targets: Vec::new(),
            record_errors: 0,
            holds,
        };
        capture.rescan();
        for s in &capture.discovery.skipped {
            tracing::warn!(path = %s.path.display(), reason = %s.reason, "configured target skipped");
        }
        Ok(capture)
    }

    /// The map of judged processes, when writes are held.
    pub fn holds(&mut self) -> Option<&mut HoldMap> {
        self.holds.as_mut()
    }

    /// Looks for new targets (libraries mapped by processes started since the last
    /// scan, new runtimes) and attaches to them. Returns how many were added.
    pub fn rescan(&mut self) -> usize {
        let new = self.discovery.scan(&self.discovery_cfg);
        self.attach_new(new)
    }

    /// Looks at the program of a process that just exec'd (`path` as the
    /// kernel reported it); attaches to it when it is a TLS stack not seen
    /// before. Returns how many targets were added.
    pub fn exec(&mut self, pid: u32, path: Option<&Path>) -> usize {
        if !self.discovery_cfg.scan_processes {
            return 0;
        }
        let new = self.discovery.scan_pid(pid, path);
        self.attach_new(new)
    }

    fn attach_new(&mut self, new: Vec<Target>) -> usize {
        let n = new.len();
        for target in new {
            let attachments = self.probes.attach(&target);
            let attached = AttachedTarget {
                target,
                attachments,
            };
            log_attachment(&attached);
            self.targets.push(attached);
        }
        n
    }

    /// All targets attached so far.
    pub fn targets(&self) -> &[AttachedTarget] {
        &self.targets
    }

    /// The file a target id (attach cookie) stands for, and its library family.
    pub fn target_of(&self, id: u64) -> Option<(&Path, Library)> {
        self.targets
            .iter()
            .find(|t| t.target.id == id)
            .map(|t| (t.target.path.as_path(), t.target.library))
    }

    /// Waits until the ring buffer has data, then hands every available record to
    /// `f`. Returns the number of records read.
    ///
    /// At most [`BATCH_BYTES`] of records are handed over per call, so that the
    /// caller can pass on what it built before taking more: memory stays bounded
    /// however full the ring is. Returns whether the ring was emptied.
    pub async fn read<F: FnMut(Record<'_>)>(&mut self, f: F) -> std::io::Result<bool> {
        let mut guard = self.ring.readable_mut().await?;
        let emptied = drain_ring(guard.get_inner_mut(), &mut self.record_errors, f);
        if emptied {
            guard.clear_ready();
        }
        Ok(emptied)
    }

    /// Like [`Capture::read`] without waiting: hands over up to [`BATCH_BYTES`]
    /// of what is already in the ring. Returns whether the ring was emptied.
    pub fn drain<F: FnMut(Record<'_>)>(&mut self, f: F) -> bool {
        drain_ring(self.ring.get_mut(), &mut self.record_errors, f)
    }

    /// Detaches every probe; the ring buffer and counters stay readable so that
    /// what was already captured can still be drained.
    pub fn detach(&mut self) {
        self.probes.detach();
    }

    /// Why files with a TLS stack were not attached to, by file.
    pub fn notes(&self) -> &std::collections::HashMap<targets::FileId, String> {
        &self.discovery.notes
    }

    /// Records rejected by the parser (never expected; a sign of a build mismatch).
    pub fn record_errors(&self) -> u64 {
        self.record_errors
    }

    /// The kernel's counters.
    pub fn counters(&self) -> KernelCounters {
        self.probes.counters()
    }
}

/// Bytes of records handed over per [`Capture::read`] or [`Capture::drain`].
pub const BATCH_BYTES: usize = 4 << 20;

fn drain_ring<F: FnMut(Record<'_>)>(
    ring: &mut RingBuf<MapData>,
    errors: &mut u64,
    mut f: F,
) -> bool {
    let mut taken = 0;
    loop {
        if taken >= BATCH_BYTES {
            return false;
        }
        let Some(item) = ring.next() else {
            return true;
        };
        taken += item.len();
        match record::parse(&item) {
            Ok(record) => f(record),
            Err(e) => {
                *errors += 1;
                tracing::warn!(error = %e, "dropping malformed ring-buffer record");
            }
        }
    }
}

fn log_attachment(t: &AttachedTarget) {
    let functions: Vec<_> = t
        .attachments
        .iter()
        .map(|a| format!("{}:{}", a.symbol, a.strategy))
        .collect();
    for a in &t.attachments {
        tracing::debug!(path = %t.target.path.display(), symbol = a.symbol, "{}", a.detail);
    }
    if t.is_active() {
        tracing::info!(
            path = %t.target.path.display(),
            id = t.target.id,
            functions = %functions.join(","),
            reason = %t.target.reasons.join("; "),
            "attached"
        );
    }
    for a in t.attachments.iter().filter(|a| a.error.is_some()) {
        tracing::warn!(
            path = %t.target.path.display(),
            symbol = a.symbol,
            error = a.error.as_deref().unwrap_or(""),
            "attach failed"
        );
    }
}
