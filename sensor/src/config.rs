//! Configuration: an embedded default (`config/default.toml`) overridden by an
//! optional operator file and then by command-line flags.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The embedded default configuration text.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// What the sensor prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Emit {
    /// Detection alerts.
    Alerts,
    /// Every captured TLS message with its plaintext (`tls.data`).
    Data,
    /// An `http` event per request/response exchange.
    Http,
    /// A `decode.error` event when a connection's traffic cannot be decoded.
    Errors,
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Output settings.
    pub output: Output,
    /// Capture settings.
    pub capture: CaptureCfg,
    /// Reassembly bounds.
    pub reassembly: Reassembly,
    /// Protocol decoding.
    pub decode: DecodeCfg,
    /// LLM API recognition.
    pub llm: LlmCfg,
    /// Detection.
    pub detect: DetectCfg,
    /// Where the sensor keeps state across restarts.
    pub state: StateCfg,
    /// The metrics and health endpoint.
    pub metrics: MetricsCfg,
    /// Where events go (`[[sinks]]`; an operator file's list replaces the
    /// default, which is stdout).
    pub sinks: Vec<telltale::deliver::sinks::SinkCfg>,
    /// Status events.
    pub status: StatusCfg,
    /// Enforcement policies (`alert`, `block`, `kill`).
    pub enforce: crate::enforce::EnforceCfg,
}

/// `[output]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Output {
    /// Event kinds printed.
    pub emit: Vec<Emit>,
    /// Sink queue length.
    pub queue: usize,
    /// Sink queue size in bytes.
    pub queue_bytes: usize,
}

/// `[capture]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureCfg {
    /// Ring buffer size in bytes.
    pub ring_buffer_bytes: u32,
    /// Library directories.
    pub library_dirs: Vec<PathBuf>,
    /// Runtime executables looked up on PATH.
    pub runtimes: Vec<String>,
    /// Operator-named targets.
    pub extra_targets: Vec<PathBuf>,
    /// Scan running processes' mappings.
    pub scan_processes: bool,
    /// Rescan period in ms.
    pub rescan_interval_ms: u64,
    /// Unread ring-buffer bytes above which the kernel wakes the reader (0: every record).
    pub wakeup_bytes: u64,
    /// Period of the reader's timer poll in ms.
    pub poll_interval_ms: u64,
    /// Place probes on emulated instructions where the analysis allows.
    pub emulated_sites: bool,
    /// Destination ports of TLS connections, for coverage events.
    pub tls_ports: Vec<u16>,
}

/// `[reassembly]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reassembly {
    /// Partial messages held.
    pub max_pending_messages: usize,
    /// Bytes held in partial messages.
    pub max_pending_bytes: usize,
    /// Staleness in ms.
    pub stale_after_ms: u64,
    /// Open connections remembered.
    pub max_connections: usize,
}

/// `[decode]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecodeCfg {
    /// Body bytes kept per message for inspection.
    pub max_body_bytes: usize,
    /// Decoded (decompressed) bytes kept per body.
    pub max_decoded_bytes: usize,
    /// Largest decompression ratio accepted past the first MiB.
    pub max_decompression_ratio: u64,
    /// Header fields per message.
    pub max_header_count: usize,
    /// Bytes of one message head.
    pub max_header_bytes: usize,
    /// Exchanges in flight per connection.
    pub max_streams_per_connection: usize,
    /// Largest HTTP/2 frame buffered whole.
    pub max_frame_bytes: usize,
    /// WebSocket message bytes kept.
    pub max_websocket_message_bytes: usize,
    /// Server-Sent Events kept per response.
    pub max_sse_events: usize,
    /// Connections decoded at once.
    pub max_connections: usize,
    /// Bytes held by the decoder in total.
    pub max_total_bytes: usize,
    /// Idle connections are closed after this many seconds.
    pub idle_timeout_secs: u64,
    /// Include decoded bodies (plaintext) in `http` events.
    pub http_bodies: bool,
    /// Header names whose values `http` events redact.
    pub redact_headers: Vec<String>,
    /// Query parameter names whose values `http` events redact.
    pub redact_query_params: Vec<String>,
}

impl DecodeCfg {
    /// The decoder's bounds.
    pub fn limits(&self) -> telltale::decode::Limits {
        telltale::decode::Limits {
            wire: telltale::decode::WireLimits {
                max_header_count: self.max_header_count,
                max_header_bytes: self.max_header_bytes,
                max_streams: self.max_streams_per_connection,
                max_frame_bytes: self.max_frame_bytes,
                max_ws_message_bytes: self.max_websocket_message_bytes,
            },
            max_body_bytes: self.max_body_bytes,
            body: telltale::decode::BodyLimits {
                max_decoded_bytes: self.max_decoded_bytes,
                max_ratio: self.max_decompression_ratio,
            },
            max_sse_events: self.max_sse_events,
            max_connections: self.max_connections,
            max_total_bytes: self.max_total_bytes,
            idle_timeout_ns: self.idle_timeout_secs.saturating_mul(1_000_000_000),
        }
    }
}

/// `[llm]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmCfg {
    /// Provider catalogue files whose entries add to and override the embedded one.
    pub catalogs: Vec<PathBuf>,
}

/// `[detect]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectCfg {
    /// Rule files over the embedded pack.
    pub rule_files: Vec<PathBuf>,
    /// Directories of rule files (`*.yaml`, `*.yml`, in name order).
    pub rule_dirs: Vec<PathBuf>,
    /// Repeats of one finding within this many seconds become one aggregate.
    pub aggregate_window_secs: u64,
    /// How often host facts are read again (seconds).
    pub facts_refresh_secs: u64,
    /// Identifiers remembered across requests and restarts.
    pub identifier_memory: usize,
}

/// `[state]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateCfg {
    /// The state directory (created 0700): the evidence key and the identifier
    /// memory.
    pub dir: PathBuf,
}

/// `[metrics]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsCfg {
    /// Address of the HTTP endpoint (`/metrics`, `/healthz`); "" for none.
    pub listen: String,
}

/// `[status]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusCfg {
    /// Period in seconds, 0 for never.
    pub interval_secs: u64,
}

/// A configuration that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown keys or wrong types.
    #[error("{origin}: {message}")]
    Parse {
        /// File name or "embedded default".
        origin: String,
        /// Parser message, with line and column.
        message: String,
    },
    /// A value is out of range.
    #[error("{origin}: {key}: {message}")]
    Invalid {
        /// File name or "embedded default".
        origin: String,
        /// Dotted key.
        key: &'static str,
        /// What is wrong and what is allowed.
        message: String,
    },
}

impl Config {
    /// The embedded defaults.
    pub fn embedded() -> Result<Self, ConfigError> {
        Self::from_toml(DEFAULT_TOML, "embedded default", None)
    }

    /// Defaults overridden by the file at `path`, if any.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Self::embedded();
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(DEFAULT_TOML, &path.display().to_string(), Some(&text))
    }

    /// Parses `base` overlaid with `overlay` (both TOML) and validates the result.
    fn from_toml(base: &str, origin: &str, overlay: Option<&str>) -> Result<Self, ConfigError> {
        let parse = |text: &str, origin: &str| {
            text.parse::<toml::Table>().map_err(|e| ConfigError::Parse {
                origin: origin.to_owned(),
                message: e.to_string(),
            })
        };
        let mut table = parse(base, "embedded default")?;
        if let Some(text) = overlay {
            merge(&mut table, parse(text, origin)?);
        }
        let cfg: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                origin: origin.to_owned(),
                message: e.to_string(),
            })?;
        cfg.validate(origin)?;
        Ok(cfg)
    }

    /// Checks value ranges.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| ConfigError::Invalid {
            origin: origin.to_owned(),
            key,
            message: message.to_owned(),
        };
        let ring = self.capture.ring_buffer_bytes;
        if !ring.is_power_of_two() || ring < 64 * 1024 {
            return Err(invalid(
                "capture.ring_buffer_bytes",
                &format!("{ring} must be a power of two of at least 65536"),
            ));
        }
        if self.capture.tls_ports.len() > sensor_common::MAX_TLS_PORTS as usize {
            return Err(invalid(
                "capture.tls_ports",
                &format!("at most {} ports", sensor_common::MAX_TLS_PORTS),
            ));
        }
        if self.capture.tls_ports.contains(&0) {
            return Err(invalid("capture.tls_ports", "port 0 is not a destination"));
        }
        if self.output.queue == 0 {
            return Err(invalid("output.queue", "must be at least 1"));
        }
        if self.enforce.decision_timeout_ms == 0 {
            return Err(invalid("enforce.decision_timeout_ms", "must be at least 1"));
        }
        if self.enforce.max_request_bytes < 1024 {
            return Err(invalid(
                "enforce.max_request_bytes",
                "must be at least 1024",
            ));
        }
        if let Err(e) = crate::enforce::Policies::new(&self.enforce.policies) {
            return Err(invalid("enforce.policies", &e.to_string()));
        }
        if self.output.queue_bytes < 64 * 1024 {
            return Err(invalid("output.queue_bytes", "must be at least 65536"));
        }
        if self.reassembly.max_connections < 2 {
            return Err(invalid("reassembly.max_connections", "must be at least 2"));
        }
        if self.reassembly.max_pending_messages == 0 {
            return Err(invalid(
                "reassembly.max_pending_messages",
                "must be at least 1",
            ));
        }
        if self.reassembly.max_pending_bytes < sensor_common::CHUNK_MAX {
            return Err(invalid(
                "reassembly.max_pending_bytes",
                "must hold at least one 16 KiB chunk (16384)",
            ));
        }
        if !(1..=1000).contains(&self.capture.poll_interval_ms) {
            return Err(invalid(
                "capture.poll_interval_ms",
                "must be between 1 and 1000",
            ));
        }
        let d = &self.decode;
        for (key, value, min) in [
            ("decode.max_header_count", d.max_header_count, 8),
            ("decode.max_header_bytes", d.max_header_bytes, 1024),
            (
                "decode.max_streams_per_connection",
                d.max_streams_per_connection,
                1,
            ),
            ("decode.max_frame_bytes", d.max_frame_bytes, 16384),
            ("decode.max_connections", d.max_connections, 1),
            ("decode.max_total_bytes", d.max_total_bytes, 1 << 20),
        ] {
            if value < min {
                return Err(invalid(key, &format!("{value} is below the minimum {min}")));
            }
        }
        if d.max_decompression_ratio < 2 {
            return Err(invalid(
                "decode.max_decompression_ratio",
                "must be at least 2",
            ));
        }
        if self.sinks.is_empty() {
            return Err(invalid(
                "sinks",
                "at least one sink is needed (e.g. [[sinks]] name = \"stdout\" stdout = {})",
            ));
        }
        for sink in &self.sinks {
            sink.validate().map_err(|m| invalid("sinks", &m))?;
        }
        if self.detect.aggregate_window_secs == 0 {
            return Err(invalid(
                "detect.aggregate_window_secs",
                "must be at least 1",
            ));
        }
        if self.detect.facts_refresh_secs == 0 {
            return Err(invalid("detect.facts_refresh_secs", "must be at least 1"));
        }
        if d.idle_timeout_secs == 0 {
            return Err(invalid("decode.idle_timeout_secs", "must be at least 1"));
        }
        if self.capture.rescan_interval_ms < 100 {
            return Err(invalid(
                "capture.rescan_interval_ms",
                "must be at least 100",
            ));
        }
        Ok(())
    }

    /// The configuration as TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// Overlays `top` onto `base`, recursing into tables so that a file may set one
/// key of a section without repeating the others.
fn merge(base: &mut toml::Table, top: toml::Table) {
    for (k, v) in top {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(t)) => merge(b, t),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid_and_quiet() {
        let c = Config::embedded().expect("default parses");
        // No plaintext by default: no tls.data, no http events, no bodies.
        assert_eq!(c.output.emit, vec![Emit::Alerts, Emit::Errors]);
        assert!(!c.decode.http_bodies);
        assert!(c.decode.redact_headers.iter().any(|h| h == "authorization"));
        assert_eq!(c.capture.ring_buffer_bytes, 64 << 20);
        assert_eq!(c.decode.limits().max_body_bytes, 8 << 20);
    }

    #[test]
    fn decode_bounds_are_checked() {
        let err = Config::from_toml(
            DEFAULT_TOML,
            "t.toml",
            Some("[decode]\nmax_decompression_ratio = 1\n"),
        )
        .expect_err("ratio 1 refused");
        assert!(
            err.to_string().contains("decode.max_decompression_ratio"),
            "{err}"
        );
        let err = Config::from_toml(
            DEFAULT_TOML,
            "t.toml",
            Some("[decode]\nmax_frame_bytes = 10\n"),
        )
        .expect_err("tiny frames refused");
        assert!(
            err.to_string().contains("t.toml: decode.max_frame_bytes"),
            "{err}"
        );
    }

    #[test]
    fn overlay_changes_only_what_it_names() {
        let c = Config::from_toml(
            DEFAULT_TOML,
            "t.toml",
            Some("[output]\nemit = [\"data\"]\n[capture]\nring_buffer_bytes = 1048576\n"),
        )
        .expect("valid");
        assert_eq!(c.output.emit, vec![Emit::Data]);
        assert_eq!(c.output.queue, 8192);
        assert_eq!(c.capture.ring_buffer_bytes, 1 << 20);
        assert!(c.capture.scan_processes);
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let e = Config::from_toml(DEFAULT_TOML, "t.toml", Some("[output]\nemitt = []\n"))
            .expect_err("unknown key");
        let msg = e.to_string();
        assert!(
            msg.starts_with("t.toml: ") && msg.contains("emitt"),
            "{msg}"
        );
        let e = Config::from_toml(
            DEFAULT_TOML,
            "t.toml",
            Some("[capture]\nring_buffer_bytes = 1000\n"),
        )
        .expect_err("bad size");
        assert!(e.to_string().contains("capture.ring_buffer_bytes"), "{e}");
        let e = Config::from_toml(DEFAULT_TOML, "t.toml", Some("[output\n")).expect_err("syntax");
        assert!(e.to_string().contains("line 1"), "{e}");
    }
}
