//! Loading the kernel programs and attaching them to targets.

use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{
        UProbe,
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeScope},
    },
    util::KernelVersion,
};
use sensor_common::{Counter, TlsFunction};
use serde::Serialize;

use super::{CaptureError, targets::Target};

/// The kernel programs, compiled by build.rs for the BPF target.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/telltale-ebpf"));

/// Entry and return program names per function, as defined in sensor-ebpf.
const PROGRAMS: [(TlsFunction, &str, &str); 4] = [
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
];

/// Entry program marking the end of a connection.
const FREE_PROGRAM: &str = "ssl_free_enter";

/// How one function of one target was hooked.
#[derive(Debug, Clone, Serialize)]
pub struct FunctionAttachment {
    /// The function's symbol.
    pub symbol: &'static str,
    /// File offset of the probe.
    pub offset: String,
    /// `entry+uretprobe` when attached, else why it failed.
    pub strategy: &'static str,
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
}

impl Probes {
    /// Loads the programs with a ring buffer of `ring_bytes` bytes (a power of two
    /// multiple of the page size).
    pub fn load(ring_bytes: u32) -> Result<Self, CaptureError> {
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
        let mut ebpf = EbpfLoader::new()
            .map_max_entries("EVENTS", ring_bytes)
            .override_global("TELLTALE_USE_COOKIE", &flag, true)
            .load(EBPF_OBJECT)
            .map_err(|e| CaptureError::Load(e.to_string()))?;
        let names = PROGRAMS.iter().flat_map(|(_, enter, exit)| [*enter, *exit]);
        for name in names.chain([FREE_PROGRAM]) {
            let prog: &mut UProbe = program(&mut ebpf, name)?;
            prog.load().map_err(|e| CaptureError::Program {
                name,
                error: format!("{e:#}"),
            })?;
        }
        let counters = ebpf
            .take_map("COUNTERS")
            .ok_or(CaptureError::MissingMap("COUNTERS"))?;
        let counters =
            PerCpuArray::try_from(counters).map_err(|e| CaptureError::Load(e.to_string()))?;
        Ok(Self {
            ebpf: Some(ebpf),
            counters,
            cookies,
        })
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

    /// Attaches entry and return probes to every function of `target`. A failure
    /// on one function does not stop the others; the report says what happened.
    pub fn attach(&mut self, target: &Target) -> Vec<FunctionAttachment> {
        let mut report = Vec::new();
        let Some(ebpf) = self.ebpf.as_mut() else {
            return report;
        };
        for site in &target.functions {
            let Some((_, enter, exit)) = PROGRAMS.iter().find(|p| p.0 == site.function) else {
                continue;
            };
            let point = UProbeAttachPoint {
                location: UProbeAttachLocation::AbsoluteOffset(site.file_offset),
                cookie: self.cookies.then_some(target.id),
            };
            let result = [*enter, *exit].into_iter().try_for_each(|name| {
                let prog: &mut UProbe = program(ebpf, name)?;
                prog.attach([point], &target.path, UProbeScope::AllProcesses)
                    .map(drop)
                    .map_err(|e| CaptureError::Program {
                        name,
                        error: format!("{e:#}"),
                    })
            });
            report.push(FunctionAttachment {
                symbol: site.function.symbol(),
                offset: format!("{:#x}", site.file_offset),
                strategy: if result.is_ok() {
                    "entry+uretprobe"
                } else {
                    "failed"
                },
                error: result.err().map(|e| e.to_string()),
            });
        }
        if let Some(offset) = target.free_offset {
            let result = program(ebpf, FREE_PROGRAM).and_then(|prog| {
                prog.attach(
                    [UProbeAttachLocation::AbsoluteOffset(offset)],
                    &target.path,
                    UProbeScope::AllProcesses,
                )
                .map(drop)
                .map_err(|e| CaptureError::Program {
                    name: FREE_PROGRAM,
                    error: format!("{e:#}"),
                })
            });
            report.push(FunctionAttachment {
                symbol: sensor_common::SSL_FREE_SYMBOL,
                offset: format!("{offset:#x}"),
                strategy: if result.is_ok() { "entry" } else { "failed" },
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
