//! The event stream's records: a common envelope (schema version, id, time,
//! sensor and host identity) around one body per event type.
//!
//! Event types so far: `tls.data` (captured plaintext, only when the operator asks
//! for it), `http` (one per request/response exchange), `decode.error` (what could
//! not be decoded) and `sensor.status` (start, periodic and final counters).

mod http;

pub use http::{
    ConnOut, DecodeErrorEvent, DecodeOut, HttpEvent, HttpOut, HttpPolicy, authority, llm_summary,
};

use base64::Engine as _;
use serde::Serialize;

use crate::{
    capture::{FdSource, KernelCounters, comm_str},
    conn::{ReassemblyStats, SocketView, TlsMessage},
    host::HostIdentity,
    process::{ProcessCacheStats, ProcessContext},
};

/// Version of the event schema. Bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// What every event carries besides its body.
#[derive(Debug, Serialize)]
pub struct Envelope<'a, B: Serialize> {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// `tls.data`, `sensor.status`, …
    pub event_type: &'static str,
    /// Unique, time-ordered id (UUIDv7) for de-duplication downstream.
    pub event_id: String,
    /// RFC 3339 UTC time the event describes.
    pub time: String,
    /// Sensor name and version.
    pub sensor: SensorInfo,
    /// The host the sensor runs on.
    pub host: &'a HostIdentity,
    /// Type-specific fields.
    #[serde(flatten)]
    pub body: B,
}

/// Identifies the sensor build.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SensorInfo {
    /// Always `telltale`.
    pub name: &'static str,
    /// Crate version.
    pub version: &'static str,
}

/// This build's [`SensorInfo`].
pub const SENSOR: SensorInfo = SensorInfo {
    name: "telltale",
    version: env!("CARGO_PKG_VERSION"),
};

/// Wraps a body in an envelope for `time` (Unix ns).
pub fn envelope<'a, B: Serialize>(
    host: &'a HostIdentity,
    event_type: &'static str,
    time_unix_ns: i128,
    body: B,
) -> Envelope<'a, B> {
    Envelope {
        schema_version: SCHEMA_VERSION,
        event_type,
        event_id: uuid::Uuid::now_v7().to_string(),
        time: rfc3339(time_unix_ns),
        sensor: SENSOR,
        host,
        body,
    }
}

/// Formats Unix nanoseconds as RFC 3339 UTC with nanoseconds.
pub fn rfc3339(unix_ns: i128) -> String {
    let secs = unix_ns.div_euclid(1_000_000_000) as i64;
    let nanos = unix_ns.rem_euclid(1_000_000_000) as u32;
    chrono::DateTime::from_timestamp(secs, nanos)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// The process that made a call, as `/proc` describes it (read once per
/// process, serialised once), or just its pid and thread name when `/proc` could
/// not be read.
#[derive(Debug)]
pub enum ProcessOut {
    /// The cached context.
    Context(std::sync::Arc<ProcessContext>),
    /// The context with values removed (alerts mask the matched values in the
    /// command line too).
    Redacted(serde_json::Value),
    /// What the kernel reported with the call.
    Minimal {
        /// Process id.
        pid: u32,
        /// Name of the calling thread.
        comm: String,
    },
}

impl Serialize for ProcessOut {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Context(ctx) => match ctx.json() {
                Some(raw) => raw.serialize(s),
                None => ctx.serialize(s),
            },
            Self::Redacted(v) => v.serialize(s),
            Self::Minimal { pid, comm } => {
                use serde::ser::SerializeMap;
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("pid", pid)?;
                m.serialize_entry("comm", comm)?;
                m.end()
            }
        }
    }
}

/// The thread that made the call, as the kernel reported it with the call.
#[derive(Debug, Serialize)]
pub struct ThreadInfo {
    /// Thread id (initial PID namespace).
    pub tid: u32,
    /// Thread name (`comm`).
    pub comm: String,
    /// Real uid at the call.
    pub uid: u32,
    /// Real gid at the call.
    pub gid: u32,
}

/// The library a connection's plaintext was captured from.
#[derive(Debug, Clone)]
pub struct LibraryRef {
    /// Its family: `openssl`, `boringssl`, `gnutls`, `nss` or `go`.
    pub kind: &'static str,
    /// The library or executable file, when known.
    pub path: Option<String>,
}

impl LibraryRef {
    /// The family implied by a function, for records whose target is unknown
    /// (kernels without attach cookies). OpenSSL and BoringSSL share names.
    pub fn from_function(f: sensor_common::TlsFunction) -> Self {
        use sensor_common::TlsFunction as F;
        let kind = match f {
            F::GnutlsRecordSend | F::GnutlsRecordRecv => "gnutls",
            F::PrWrite | F::PrRead | F::PrSend | F::PrRecv => "nss",
            F::GoWrite | F::GoRead => "go",
            _ => "openssl",
        };
        Self { kind, path: None }
    }
}

/// Where the plaintext was captured.
#[derive(Debug, Serialize)]
pub struct TlsInfo {
    /// `pid:0xSSL*`: names one TLS connection while the process lives.
    pub connection: String,
    /// `egress` (written by the process) or `ingress` (read by it).
    pub direction: &'static str,
    /// Library function.
    pub function: &'static str,
    /// Library family.
    pub library_kind: &'static str,
    /// The library or executable file the probe sat in, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub library: Option<String>,
    /// The server name (SNI) the client asked for, when it set one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// The network flow, or why it is not known.
    pub socket: SocketOut,
}

/// The `tls.socket` object.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum SocketOut {
    /// The flow is known.
    Known {
        /// The descriptor in the process.
        fd: i32,
        /// `nested_io`, `preceding_read` or `following_write`: how the
        /// descriptor was tied to the connection.
        fd_source: &'static str,
        /// `tcp`.
        transport: &'static str,
        /// Local IP.
        local_ip: String,
        /// Local port.
        local_port: u16,
        /// Remote IP.
        remote_ip: String,
        /// Remote port.
        remote_port: u16,
        /// Community ID v1 of the flow.
        community_id: String,
    },
    /// Not known, and why.
    Unknown {
        /// Always `unknown`.
        status: &'static str,
        /// Why.
        reason: String,
    },
}

impl SocketOut {
    /// The flow's Suricata-style flow id (a positive 64-bit integer derived from
    /// the Community ID, the same on both ends) and its Community ID, when the
    /// flow is known: what an alert carries to join it with network sensors.
    pub fn flow(&self) -> (Option<i64>, Option<String>) {
        match self {
            Self::Known { community_id, .. } => (
                Some(telltale::deliver::format::flow_id(community_id)),
                Some(community_id.clone()),
            ),
            Self::Unknown { .. } => (None, None),
        }
    }

    pub(crate) fn new(v: &SocketView) -> Self {
        match v {
            SocketView::Known(i, source) => Self::Known {
                fd: i.fd,
                fd_source: match source {
                    FdSource::Nested => "nested_io",
                    FdSource::PrecedingRead => "preceding_read",
                    FdSource::FollowingWrite => "following_write",
                    FdSource::ConnObject => "conn_object",
                    FdSource::Unknown => "unknown",
                },
                transport: i.transport,
                local_ip: i.local.ip().to_string(),
                local_port: i.local.port(),
                remote_ip: i.remote.ip().to_string(),
                remote_port: i.remote.port(),
                community_id: i.community_id.clone(),
            },
            SocketView::Unknown(why) => Self::Unknown {
                status: "unknown",
                reason: why.to_string(),
            },
        }
    }
}

/// One captured message and, in `data` mode, its bytes.
#[derive(Debug, Serialize)]
pub struct MessageInfo {
    /// `CLOCK_MONOTONIC` ns of the call's return.
    pub mono_ns: u64,
    /// Bytes the call transferred.
    pub length: u64,
    /// Bytes captured (less than `length` when incomplete or truncated).
    pub captured: u64,
    /// All bytes the kernel could capture arrived.
    pub complete: bool,
    /// The call exceeded the per-call capture limit.
    pub truncated: bool,
    /// `utf8` or `base64`: how `data` is encoded.
    pub encoding: &'static str,
    /// The plaintext.
    pub data: String,
}

/// Body of a `tls.data` event.
#[derive(Debug, Serialize)]
pub struct TlsData {
    /// Which process.
    pub process: ProcessOut,
    /// Which thread.
    pub thread: ThreadInfo,
    /// Which connection, function and direction.
    pub tls: TlsInfo,
    /// What.
    pub message: MessageInfo,
}

impl TlsData {
    /// Builds the body for a reassembled message; `library` is the target's path,
    /// `context` what `/proc` says about the process.
    pub fn new(
        m: &TlsMessage,
        library: &LibraryRef,
        context: Option<std::sync::Arc<ProcessContext>>,
    ) -> Self {
        let (encoding, data) = match std::str::from_utf8(&m.data) {
            Ok(s) => ("utf8", s.to_owned()),
            Err(_) => (
                "base64",
                base64::engine::general_purpose::STANDARD.encode(&m.data),
            ),
        };
        let thread_comm = comm_str(&m.comm);
        Self {
            process: match context {
                Some(ctx) => ProcessOut::Context(ctx),
                None => ProcessOut::Minimal {
                    pid: m.key.pid,
                    comm: thread_comm.clone(),
                },
            },
            thread: ThreadInfo {
                tid: m.tid,
                comm: thread_comm,
                uid: m.uid,
                gid: m.gid,
            },
            tls: TlsInfo {
                connection: m.key.to_string(),
                direction: match m.direction {
                    sensor_common::Direction::Egress => "egress",
                    sensor_common::Direction::Ingress => "ingress",
                },
                function: m.function.symbol(),
                library_kind: library.kind,
                library: library.path.clone(),
                server_name: m.server_name.as_deref().map(str::to_owned),
                socket: SocketOut::new(&m.socket),
            },
            message: MessageInfo {
                mono_ns: m.ts_ns,
                length: m.total_len,
                captured: m.data.len() as u64,
                complete: m.complete,
                truncated: m.truncated,
                encoding,
                data,
            },
        }
    }
}

/// Counters of the user-space pipeline.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct PipelineStats {
    /// Events written to the sink.
    pub events: u64,
    /// Plaintext bytes received from the kernel.
    pub bytes: u64,
    /// Ring-buffer records rejected as malformed.
    pub record_errors: u64,
    /// Per-stage latency: messages timed.
    pub messages_timed: u64,
    /// Sum and maximum of the time from the SSL call's return to its message
    /// reaching the decoder (capture, ring buffer, reassembly), ns.
    pub capture_ns_total: u64,
    /// See `capture_ns_total`.
    pub capture_ns_max: u64,
    /// Sum and maximum of the time decoding and detection took per message, ns.
    pub decode_detect_ns_total: u64,
    /// See `decode_detect_ns_total`.
    pub decode_detect_ns_max: u64,
    /// Time spent waiting for the sinks' queue (backpressure), ns.
    pub sink_wait_ns_total: u64,
    /// `coverage` events: processes that opened TLS connections the probes
    /// cannot see.
    pub coverage_gaps: u64,
    /// Connects to TLS ports never judged for coverage because too many
    /// waited at once.
    pub coverage_checks_dropped: u64,
}

/// Attachment summary.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct TargetStats {
    /// Files with at least one hooked function.
    pub attached: usize,
    /// Files where every attach failed.
    pub failed: usize,
}

/// Body of a `coverage` event: a process connected to a TLS port and none of
/// its TLS stacks is hooked, so what it sends is not visible.
#[derive(Debug, Serialize)]
pub struct CoverageEvent {
    /// The process.
    pub process: ProcessOut,
    /// Where it connected.
    pub destination: Destination,
    /// Its program.
    pub binary: Binary,
    /// What the sensor found and why it cannot see the traffic.
    pub tls: CoverageTls,
}

/// A connection's destination.
#[derive(Debug, Serialize)]
pub struct Destination {
    /// Address.
    pub ip: String,
    /// Port.
    pub port: u16,
}

/// A process's executable.
#[derive(Debug, Serialize)]
pub struct Binary {
    /// Path, when readable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// GNU build-id (hex), when the file has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_id: Option<String>,
}

/// The TLS side of a coverage gap.
#[derive(Debug, Serialize)]
pub struct CoverageTls {
    /// Always false: covered processes raise no event.
    pub visible: bool,
    /// TLS stacks recognised in the executable and its libraries (none hooked).
    pub stacks: Vec<crate::capture::StackUse>,
    /// Why the traffic is not visible, in one line.
    pub reason: String,
}

/// Body of an `inventory` event: what a client sends to a destination changed
/// (a new client, a new build, a new destination, new fact kinds or
/// identifier fields).
#[derive(Debug, Serialize)]
pub struct InventoryEvent {
    /// The process whose request changed the inventory.
    pub process: ProcessOut,
    /// The change and the client's whole entry for that destination.
    pub inventory: telltale::inventory::Change,
}

/// Body of a `sensor.status` event.
#[derive(Debug, Serialize)]
pub struct Status {
    /// `started`, `running` or `stopped`.
    pub state: &'static str,
    /// Milliseconds since the sensor started.
    pub uptime_ms: u64,
    /// What is hooked.
    pub targets: TargetStats,
    /// Kernel-side counters, including every loss.
    pub kernel: KernelCounters,
    /// Reassembly counters, including messages given up.
    pub reassembly: ReassemblyStats,
    /// User-space counters.
    pub pipeline: PipelineStats,
    /// Process-context cache counters.
    pub processes: ProcessCacheStats,
    /// Protocol-decode counters.
    pub decode: telltale::decode::DecodeStats,
    /// Detection counters.
    pub detect: crate::detection::DetectStats,
    /// Enforcement counters.
    pub enforce: crate::enforce::EnforceStats,
    /// Per sink: delivered, spooled, dropped, queue depth, health.
    pub sinks: Vec<telltale::deliver::worker::SinkStats>,
}

impl ProcessOut {
    /// This context with every occurrence of `values` in its command line
    /// replaced by `[REDACTED]`: a value an alert matched in a request must not
    /// come back in clear through the command line that carried it.
    pub fn without(self, values: &[String]) -> Self {
        if values.is_empty() {
            return self;
        }
        let Ok(mut v) = serde_json::to_value(&self) else {
            return self;
        };
        if let Some(args) = v.get_mut("cmdline").and_then(|c| c.as_array_mut()) {
            for a in args.iter_mut() {
                if let Some(text) = a.as_str() {
                    let mut t = text.to_owned();
                    for value in values.iter().filter(|x| x.len() >= 3) {
                        t = t.replace(value.as_str(), "[REDACTED]");
                    }
                    *a = serde_json::Value::String(t);
                }
            }
        }
        Self::Redacted(v)
    }
}

/// The delivery level of an event (see [`telltale::deliver::format::level`]).
pub fn level(event_type: &str, json: &[u8]) -> telltale::deliver::Level {
    match event_type {
        // Their level depends on their content: read it the way the sinks'
        // formats do (rare events; the others need no parsing).
        "alert" | "enforcement" => serde_json::from_slice::<serde_json::Value>(json)
            .map_or(telltale::deliver::Level::Info, |v| {
                telltale::deliver::format::level(&v)
            }),
        _ => telltale::deliver::format::level_of_type(event_type),
    }
}

/// Body of an `enforcement` event: what a policy did (or in dry-run would
/// have done) with a request.
#[derive(Debug, Serialize)]
pub struct EnforcementEvent {
    /// The process.
    pub process: ProcessOut,
    /// The connection.
    pub tls: ConnOut,
    /// The decision and what was done.
    pub enforcement: crate::enforce::EnforcementOut,
}

/// Body of an `alert` event.
#[derive(Debug, Serialize)]
pub struct AlertEvent {
    /// Suricata-style flow id of the connection's flow (see [`SocketOut::flow`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow_id: Option<i64>,
    /// Community ID of the connection's flow, when its socket is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub community_id: Option<String>,
    /// The process that sent the request.
    pub process: ProcessOut,
    /// The connection.
    pub tls: ConnOut,
    /// The request.
    pub request: crate::detection::RequestOut,
    /// What was found, where, and by which rule.
    pub alert: crate::detection::AlertOut,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_has_nanoseconds_and_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(1_500_000_001), "1970-01-01T00:00:01.500000001Z");
    }
}
