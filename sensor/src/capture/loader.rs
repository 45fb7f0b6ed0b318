//! Loading the kernel programs and attaching them to targets.

use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{
        TracePoint, UProbe,
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeScope},
    },
    util::KernelVersion,
};
use sensor_common::{
    Counter, TlsFunction,
    probe::{EntryCookie, ReturnCookie},
};
use serde::Serialize;

use super::{
    CaptureError,
    elf::{FunctionSite, HookKind},
    sites::Plan,
    targets::Target,
};

/// The kernel programs, compiled by build.rs for the BPF target.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/telltale-ebpf"));

/// Entry and return program names per function, as defined in sensor-ebpf (for
/// Go, the return program goes on every `RET`).
const PROGRAMS: [(TlsFunction, &str, &str); 12] = [
    (TlsFunction::SslWrite, "ssl_write_enter", "ssl_write_exit"),
    (
        TlsFunction::SslWriteEx,
        "ssl_write_ex_enter",
        "ssl_write_ex_exit",
    ),
    (TlsFunction::SslRead, "ssl_read_enter", "ssl_read_exit"),
    (
        TlsFunction::SslReadEx,
        "ssl_read_ex_enter",
        "ssl_read_ex_exit",
    ),
    (
        TlsFunction::GnutlsRecordSend,
        "gnutls_send_enter",
        "gnutls_send_exit",
    ),
    (
        TlsFunction::GnutlsRecordRecv,
        "gnutls_recv_enter",
        "gnutls_recv_exit",
    ),
    (TlsFunction::PrWrite, "pr_write_enter", "pr_write_exit"),
    (TlsFunction::PrRead, "pr_read_enter", "pr_read_exit"),
    (TlsFunction::PrSend, "pr_send_enter", "pr_send_exit"),
    (TlsFunction::PrRecv, "pr_recv_enter", "pr_recv_exit"),
    (TlsFunction::GoWrite, "go_write_enter", "go_write_ret"),
    (TlsFunction::GoRead, "go_read_enter", "go_read_ret"),
];

/// The program of each auxiliary hook.
const fn hook_program(kind: HookKind) -> &'static str {
    match kind {
        HookKind::ConnEnd => "ssl_free_enter",
        HookKind::SslCtrlSni => "ssl_ctrl_enter",
        HookKind::SniArg1 => "sni_arg1_enter",
        HookKind::GnutlsSni => "gnutls_sni_enter",
        HookKind::NssImport => "nss_import_exit",
        HookKind::NsprClose => "nspr_close_enter",
    }
}

const HOOK_KINDS: [HookKind; 6] = [
    HookKind::ConnEnd,
    HookKind::SslCtrlSni,
    HookKind::SniArg1,
    HookKind::GnutlsSni,
    HookKind::NssImport,
    HookKind::NsprClose,
];

/// Return-site programs (see `sites`), per function.
const RETURN_SITE_PROGRAMS: [(TlsFunction, &str); 2] = [
    (TlsFunction::SslWrite, "ssl_write_ret_site"),
    (TlsFunction::SslRead, "ssl_read_ret_site"),
];

/// Syscall tracepoints that tie connections to their sockets (see sensor-ebpf's
/// io.rs); the program is named after the tracepoint.
const IO_TRACEPOINTS: [&str; 9] = [
    "sys_enter_read",
    "sys_enter_readv",
    "sys_enter_recvfrom",
    "sys_enter_recvmsg",
    "sys_enter_write",
    "sys_enter_writev",
    "sys_enter_sendto",
    "sys_enter_sendmsg",
    // Connects to TLS ports, for coverage (see sensor-ebpf's net.rs).
    "sys_enter_connect",
];

/// Scheduler tracepoints for process lifecycle (see sensor-ebpf's lifecycle.rs).
const SCHED_TRACEPOINTS: [&str; 2] = ["sched_process_exec", "sched_process_exit"];

/// Why this kernel cannot hold writes for enforcement, if it cannot: the
/// probes stop processes with `bpf_send_signal` (Linux 5.3) and blocks shut
/// sockets down through `pidfd_getfd` (Linux 5.6).
pub fn hold_unsupported() -> Option<String> {
    match KernelVersion::current() {
        Ok(v) if v >= KernelVersion::new(5, 6, 0) => None,
        Ok(v) => Some(format!(
            "Linux {v} lacks bpf_send_signal or pidfd_getfd (5.6 or later is needed)"
        )),
        Err(e) => Some(format!("the kernel version is unknown: {e}")),
    }
}

/// Options of [`Probes::load`].
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Ring buffer size in bytes.
    pub ring_bytes: u32,
    /// Unread bytes above which a record wakes user space (0: every record).
    pub wakeup_bytes: u64,
    /// Use emulated probe sites where the analysis found them.
    pub emulated_sites: bool,
    /// Destination ports whose connects are reported for coverage.
    pub tls_ports: Vec<u16>,
    /// Hold TLS writes of processes not judged exempt (a blocking policy is
    /// configured and not in dry-run).
    pub hold: bool,
}

/// How one function of one target was hooked.
#[derive(Debug, Clone, Serialize)]
pub struct FunctionAttachment {
    /// The function's symbol.
    pub symbol: &'static str,
    /// File offset of the probe.
    pub offset: String,
    /// `emulated-sites`, `entry+uretprobe` or `entry` when attached, else `failed`.
    pub strategy: &'static str,
    /// Where the probes sit and why.
    pub detail: String,
    /// The attach error, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The loaded kernel programs and their maps.
pub struct Probes {
    /// `None` once detached.
    ebpf: Option<Ebpf>,
    counters: PerCpuArray<MapData, u64>,
    cookies: bool,
    emulated_sites: bool,
}

impl Probes {
    /// Loads the programs with a ring buffer of `ring_bytes` bytes (a power of two
    /// multiple of the page size).
    pub fn load(opts: LoadOptions) -> Result<Self, CaptureError> {
        // The memlock rlimit only matters before 5.11 (memcg accounting since);
        // raising it fails without CAP_SYS_RESOURCE, which is harmless.
        let rlim = libc::rlimit {
            rlim_cur: libc::RLIM_INFINITY,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: plain syscall with a valid pointer.
        if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
            tracing::debug!("could not raise RLIMIT_MEMLOCK; fine on kernels >= 5.11");
        }
        let cookies = KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(5, 15, 0));
        let flag: u8 = cookies.into();
        let offsets = sock_offsets();
        let hold: u8 = opts.hold.into();
        let mut ebpf = EbpfLoader::new()
            .override_global("TELLTALE_HOLD", &hold, true)
            .map_max_entries("EVENTS", opts.ring_bytes)
            .override_global("TELLTALE_SOCK_OFFSETS", &offsets, true)
            .override_global("TELLTALE_USE_COOKIE", &flag, true)
            .override_global("TELLTALE_WAKEUP_BYTES", &opts.wakeup_bytes, true)
            .load(EBPF_OBJECT)
            .map_err(|e| CaptureError::Load(e.to_string()))?;
        let names = PROGRAMS.iter().flat_map(|(_, enter, exit)| [*enter, *exit]);
        let names = names
            .chain(RETURN_SITE_PROGRAMS.iter().map(|p| p.1))
            .chain(HOOK_KINDS.map(hook_program));
        for name in names {
            let prog: &mut UProbe = program(&mut ebpf, name)?;
            prog.load().map_err(|e| CaptureError::Program {
                name,
                error: format!("{e:#}"),
            })?;
        }
        attach_io_tracepoints(&mut ebpf);
        set_tls_ports(&mut ebpf, &opts.tls_ports)?;
        let counters = ebpf
            .take_map("COUNTERS")
            .ok_or(CaptureError::MissingMap("COUNTERS"))?;
        let counters =
            PerCpuArray::try_from(counters).map_err(|e| CaptureError::Load(e.to_string()))?;
        Ok(Self {
            ebpf: Some(ebpf),
            counters,
            cookies,
            // Sites past the first instruction need cookies to say where the
            // arguments are.
            emulated_sites: opts.emulated_sites && cookies,
        })
    }

    /// The maps of judged processes and of connections not held (see
    /// [`crate::capture::HoldMap`]).
    #[allow(clippy::type_complexity)]
    pub fn take_hold_maps(
        &mut self,
    ) -> Result<
        (
            aya::maps::HashMap<MapData, u32, u8>,
            aya::maps::HashMap<MapData, sensor_common::SockKey, u8>,
        ),
        CaptureError,
    > {
        let ebpf = self.ebpf.as_mut().ok_or(CaptureError::MissingMap("HOLD"))?;
        let hold = ebpf
            .take_map("HOLD")
            .ok_or(CaptureError::MissingMap("HOLD"))?;
        let skip = ebpf
            .take_map("HOLD_SKIP")
            .ok_or(CaptureError::MissingMap("HOLD_SKIP"))?;
        let err = |e: aya::maps::MapError| CaptureError::Load(e.to_string());
        Ok((
            aya::maps::HashMap::try_from(hold).map_err(err)?,
            aya::maps::HashMap::try_from(skip).map_err(err)?,
        ))
    }

    /// Whether chunks carry the target id (kernel ≥ 5.15).
    pub fn has_cookies(&self) -> bool {
        self.cookies
    }

    /// Takes the ring buffer for the reader. Call once.
    pub fn take_ring(&mut self) -> Result<RingBuf<MapData>, CaptureError> {
        let map = self
            .ebpf
            .as_mut()
            .and_then(|e| e.take_map("EVENTS"))
            .ok_or(CaptureError::MissingMap("EVENTS"))?;
        RingBuf::try_from(map).map_err(|e| CaptureError::Load(e.to_string()))
    }

    /// Attaches entry and return probes to every function of `target`, where the
    /// site analysis placed them. A failure on one function does not stop the
    /// others; the report says what happened.
    pub fn attach(&mut self, target: &Target) -> Vec<FunctionAttachment> {
        let mut report = Vec::new();
        let Some(ebpf) = self.ebpf.as_mut() else {
            return report;
        };
        let Ok(id) = u32::try_from(target.id) else {
            return report;
        };
        for site in &target.functions {
            let (points, strategy, detail) = plan_points(self.emulated_sites, id, site);
            let result = points.iter().try_for_each(|&(name, offset, cookie)| {
                attach_one(
                    ebpf,
                    name,
                    &target.path,
                    offset,
                    self.cookies.then_some(cookie),
                )
            });
            report.push(FunctionAttachment {
                symbol: site.function.symbol(),
                offset: format!("{:#x}", site.file_offset),
                strategy: if result.is_ok() { strategy } else { "failed" },
                detail,
                error: result.err().map(|e| e.to_string()),
            });
        }
        for hook in &target.hooks {
            let cookie = self.cookies.then_some(u64::from(id));
            let result = attach_one(
                ebpf,
                hook_program(hook.kind),
                &target.path,
                hook.file_offset,
                cookie,
            );
            let strategy = match hook.kind {
                HookKind::NssImport => "uretprobe",
                _ => "entry",
            };
            report.push(FunctionAttachment {
                symbol: hook.symbol,
                offset: format!("{:#x}", hook.file_offset),
                strategy: if result.is_ok() { strategy } else { "failed" },
                detail: hook.kind.describe().to_owned(),
                error: result.err().map(|e| e.to_string()),
            });
        }
        report
    }

    /// Detaches and unloads every program (dropping the links).
    pub fn detach(&mut self) {
        self.ebpf = None;
    }

    /// Sums the kernel's per-CPU counters.
    pub fn counters(&self) -> KernelCounters {
        let mut values = [0u64; Counter::COUNT as usize];
        for c in Counter::ALL {
            if let Ok(per_cpu) = self.counters.get(&(c as u32), 0) {
                values[c as usize] = per_cpu.iter().sum();
            }
        }
        KernelCounters(values)
    }
}

/// The probes of one function: (program, file offset, cookie) each, the
/// strategy's name and a description. `emulated_sites`: whether sites past the
/// first instruction may be used (they need attach cookies).
fn plan_points(
    emulated_sites: bool,
    id: u32,
    site: &FunctionSite,
) -> (Vec<(&'static str, u64, u64)>, &'static str, String) {
    let Some(&(_, enter, exit)) = PROGRAMS.iter().find(|p| p.0 == site.function) else {
        return (
            Vec::new(),
            "failed",
            "no kernel program for this function".to_owned(),
        );
    };
    let ret_site = RETURN_SITE_PROGRAMS.iter().find(|p| p.0 == site.function);
    match (&site.plan, ret_site) {
        (Plan::EmulatedSites { entry, ret }, Some(&(_, ret_prog))) if emulated_sites => {
            let entry_cookie = EntryCookie {
                target: id,
                conn: entry.conn,
                buf: entry.buf,
                len_out: entry.len_out,
                num: entry.num,
            };
            let ret_cookie = ReturnCookie {
                target: id,
                result: ret.result,
                count_slot: ret.count_slot,
            };
            let points = vec![
                (
                    enter,
                    site.file_offset + entry.offset,
                    entry_cookie.encode(),
                ),
                (ret_prog, site.file_offset + ret.offset, ret_cookie.encode()),
            ];
            (points, site.plan.name(), site.plan.describe())
        }
        (Plan::GoReturnSites { entry, rets, .. }, _) => {
            // Go's probes read fixed registers; the cookie carries the id.
            let cookie = u64::from(id);
            let mut points = vec![(enter, site.file_offset + entry, cookie)];
            points.extend(rets.iter().map(|r| (exit, site.file_offset + r, cookie)));
            (points, site.plan.name(), site.plan.describe())
        }
        _ => {
            let cookie = EntryCookie::abi(id).encode();
            let detail = match &site.plan {
                Plan::EmulatedSites { .. } => "entry+uretprobe at +0x0: emulated sites \
                                               disabled or unsupported by this kernel \
                                               (no attach cookies)"
                    .to_owned(),
                _ => site.plan.describe(),
            };
            let points = vec![
                (enter, site.file_offset, cookie),
                (exit, site.file_offset, cookie),
            ];
            (points, "entry+uretprobe", detail)
        }
    }
}

/// Offsets of the kernel fields the in-kernel socket lookup follows, from this
/// kernel's BTF. Without them events still get their flow from `/proc`, except
/// for processes that exit first.
fn sock_offsets() -> sensor_common::SockOffsets {
    use super::btf::Btf;
    let btf = match Btf::from_sys() {
        Ok(Ok(btf)) => btf,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot parse the kernel's BTF; flows come from /proc only");
            return Default::default();
        }
        Err(e) => {
            tracing::warn!(error = %e, "no kernel BTF; flows come from /proc only");
            return Default::default();
        }
    };
    let all = || -> Result<sensor_common::SockOffsets, super::btf::BtfError> {
        let sc = |f: &str| btf.offset("sock_common", &[f]);
        let common = btf.offset("sock", &["__sk_common"])?;
        Ok(sensor_common::SockOffsets {
            valid: 1,
            task_files: btf.offset("task_struct", &["files"])?,
            files_fdt: btf.offset("files_struct", &["fdt"])?,
            fdt_fd: btf.offset("fdtable", &["fd"])?,
            fdt_max_fds: btf.offset("fdtable", &["max_fds"])?,
            file_private_data: btf.offset("file", &["private_data"])?,
            file_inode: btf.offset("file", &["f_inode"])?,
            inode_mode: btf.offset("inode", &["i_mode"])?,
            socket_sk: btf.offset("socket", &["sk"])?,
            // A bitfield before 5.6: then the protocol stays unknown.
            sk_protocol: btf.offset("sock", &["sk_protocol"]).unwrap_or(u32::MAX),
            skc_family: common + sc("skc_family")?,
            skc_num: common + sc("skc_num")?,
            skc_dport: common + sc("skc_dport")?,
            skc_rcv_saddr: common + sc("skc_rcv_saddr")?,
            skc_daddr: common + sc("skc_daddr")?,
            skc_v6_rcv_saddr: common + sc("skc_v6_rcv_saddr")?,
            skc_v6_daddr: common + sc("skc_v6_daddr")?,
        })
    };
    all().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "kernel layout not understood; flows come from /proc only");
        Default::default()
    })
}

/// Attaches the syscall tracepoints. Without them (no tracefs, a kernel without
/// syscall tracepoints) capture works but events cannot name their flow, which
/// they then say; so failures are logged, not fatal.
fn attach_io_tracepoints(ebpf: &mut Ebpf) {
    ensure_tracefs();
    let attach_all = |ebpf: &mut Ebpf, category: &str, names: &[&str]| {
        let mut failed = Vec::new();
        for &name in names {
            let result = ebpf
                .program_mut(name)
                .ok_or_else(|| "missing from the kernel object".to_owned())
                .and_then(|p| {
                    let tp: &mut TracePoint = p.try_into().map_err(|e| format!("{e}"))?;
                    tp.load().map_err(|e| format!("{e:#}"))?;
                    tp.attach(category, name)
                        .map(drop)
                        .map_err(|e| format!("{e:#}"))
                });
            if let Err(e) = result {
                failed.push(format!("{name}: {e}"));
            }
        }
        failed
    };
    let failed = attach_all(ebpf, "syscalls", &IO_TRACEPOINTS);
    if !failed.is_empty() {
        tracing::warn!(
            failures = %failed.join("; "),
            "syscall tracepoints unavailable: events will not name their network flow"
        );
    }
    let failed = attach_all(ebpf, "sched", &SCHED_TRACEPOINTS);
    if !failed.is_empty() {
        tracing::warn!(
            failures = %failed.join("; "),
            "scheduler tracepoints unavailable: new programs are found only by rescans"
        );
    }
}

/// Tells the connect tracepoint which destination ports are TLS ports.
fn set_tls_ports(ebpf: &mut Ebpf, ports: &[u16]) -> Result<(), CaptureError> {
    let map = ebpf
        .map_mut("TLS_PORTS")
        .ok_or(CaptureError::MissingMap("TLS_PORTS"))?;
    let mut map: aya::maps::HashMap<_, u16, u8> =
        aya::maps::HashMap::try_from(map).map_err(|e| CaptureError::Load(e.to_string()))?;
    for &port in ports.iter().take(sensor_common::MAX_TLS_PORTS as usize) {
        map.insert(&port, &1, 0)
            .map_err(|e| CaptureError::Load(format!("TLS_PORTS: {e}")))?;
    }
    Ok(())
}

/// Mounts tracefs at /sys/kernel/tracing when neither it nor debugfs's copy is
/// mounted (classic tracepoints need it; uprobes do not).
fn ensure_tracefs() {
    use std::path::Path;
    if Path::new("/sys/kernel/tracing/events").exists()
        || Path::new("/sys/kernel/debug/tracing/events").exists()
    {
        return;
    }
    // SAFETY: plain mount(2) with valid NUL-terminated strings.
    let rc = unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            c"/sys/kernel/tracing".as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        tracing::info!("mounted tracefs at /sys/kernel/tracing");
    } else {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "tracefs is not mounted and could not be mounted"
        );
    }
}

fn attach_one(
    ebpf: &mut Ebpf,
    name: &'static str,
    path: &std::path::Path,
    offset: u64,
    cookie: Option<u64>,
) -> Result<(), CaptureError> {
    let prog = program(ebpf, name)?;
    let point = UProbeAttachPoint {
        location: UProbeAttachLocation::AbsoluteOffset(offset),
        cookie,
    };
    prog.attach([point], path, UProbeScope::AllProcesses)
        .map(drop)
        .map_err(|e| CaptureError::Program {
            name,
            error: format!("{e:#}"),
        })
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut UProbe, CaptureError> {
    ebpf.program_mut(name)
        .ok_or(CaptureError::MissingProgram(name))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| CaptureError::Program {
            name,
            error: e.to_string(),
        })
}

/// A snapshot of the kernel-side counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelCounters(pub [u64; Counter::COUNT as usize]);

impl KernelCounters {
    /// One counter's value.
    pub fn get(&self, c: Counter) -> u64 {
        self.0[c as usize]
    }
}

impl Serialize for KernelCounters {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(Counter::ALL.len()))?;
        for c in Counter::ALL {
            m.serialize_entry(c.name(), &self.get(c))?;
        }
        m.end()
    }
}
