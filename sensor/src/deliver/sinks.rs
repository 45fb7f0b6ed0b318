//! The configured sinks, started together: each event is filtered, formatted
//! and offered to every sink that wants it.

use std::{
    io::Write as _,
    path::Path,
    sync::{Arc, OnceLock},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use super::{
    DeliveryError, Level, Record, Transport,
    file::{self, FileCfg},
    format::{self, Format},
    kafka::{self, KafkaCfg},
    nats::{NatsCfg, NatsTransport},
    spool::Spool,
    syslog::{self, SyslogCfg},
    webhook::{self, WebhookCfg},
    worker::{Sink, SinkLimits, SinkStats},
};

/// `[[sinks]]`: one destination. Exactly one of `stdout`, `file`, `syslog`,
/// `kafka`, `nats`, `webhook` says where and how.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SinkCfg {
    /// Unique name: in logs, status and the spool directory.
    pub name: String,
    /// `native` (default), `ocsf` or `ecs`.
    #[serde(default)]
    pub format: Format,
    /// Event types sent (`alert`, `http`, …); empty: all.
    #[serde(default)]
    pub events: Vec<String>,
    /// Least level sent (`info` sends everything; `medium` only medium, high and
    /// critical alerts).
    #[serde(default = "info")]
    pub min_level: Level,
    /// Records queued in memory.
    #[serde(default = "queue")]
    pub queue: usize,
    /// Bytes queued in memory.
    #[serde(default = "queue_bytes")]
    pub queue_bytes: usize,
    /// Bound of the on-disk spool (in the state directory) used while the
    /// destination is down or slow; 0: no spool, the pipeline waits instead.
    /// Stdout never spools.
    #[serde(default = "spool_bytes")]
    pub spool_bytes: u64,
    /// Longest wait between retries (seconds).
    #[serde(default = "max_backoff_secs")]
    pub max_backoff_secs: u64,
    /// JSON lines on standard output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<StdoutCfg>,
    /// JSON lines in a rotated file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileCfg>,
    /// RFC 5424 syslog over TCP or TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syslog: Option<SyslogCfg>,
    /// Kafka.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaCfg>,
    /// NATS JetStream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats: Option<NatsCfg>,
    /// HTTP(S) webhook (also Splunk HEC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookCfg>,
}

fn info() -> Level {
    Level::Info
}
fn queue() -> usize {
    8192
}
fn queue_bytes() -> usize {
    16 << 20
}
fn spool_bytes() -> u64 {
    256 << 20
}
fn max_backoff_secs() -> u64 {
    30
}

/// `stdout = {}`: nothing to set.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutCfg {}

impl SinkCfg {
    /// Checks the sink names one destination and sane bounds.
    pub fn validate(&self) -> Result<(), String> {
        let kinds = [
            self.stdout.is_some(),
            self.file.is_some(),
            self.syslog.is_some(),
            self.kafka.is_some(),
            self.nats.is_some(),
            self.webhook.is_some(),
        ];
        match kinds.iter().filter(|k| **k).count() {
            1 => {}
            0 => {
                return Err(format!(
                    "sink {:?}: say where it goes: one of stdout, file, syslog, kafka, nats, webhook",
                    self.name
                ));
            }
            _ => return Err(format!("sink {:?}: more than one destination", self.name)),
        }
        if self.name.is_empty()
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "sink name {:?}: use letters, digits, '-' and '_' (it names a directory)",
                self.name
            ));
        }
        if self.queue == 0 || self.queue_bytes < 1 << 16 {
            return Err(format!(
                "sink {:?}: queue must be at least 1 and queue_bytes at least 65536",
                self.name
            ));
        }
        Ok(())
    }

    fn transport(&self) -> Result<Box<dyn Transport>, String> {
        if self.stdout.is_some() {
            return Ok(Box::new(Stdout));
        }
        if let Some(c) = &self.file {
            return Ok(Box::new(file::open(c)?));
        }
        if let Some(c) = &self.syslog {
            return Ok(Box::new(syslog::open(c)?));
        }
        if let Some(c) = &self.kafka {
            return Ok(Box::new(kafka::open(c)?));
        }
        if let Some(c) = &self.nats {
            return Ok(Box::new(NatsTransport::open(c)?));
        }
        if let Some(c) = &self.webhook {
            return Ok(Box::new(webhook::open(c)?));
        }
        Err(format!("sink {:?}: no destination", self.name))
    }

    fn wants(&self, event_type: &str, level: Level) -> bool {
        level >= self.min_level
            && (self.events.is_empty() || self.events.iter().any(|e| e == event_type))
    }
}

/// Standard output, JSON lines, flushed after every batch.
struct Stdout;

impl Transport for Stdout {
    fn describe(&self) -> String {
        "stdout".into()
    }

    fn deliver(&mut self, batch: &[Record]) -> Result<(), DeliveryError> {
        let stdout = std::io::stdout();
        let mut w = std::io::BufWriter::with_capacity(256 * 1024, stdout.lock());
        for r in batch {
            w.write_all(&r.body)
                .and_then(|()| w.write_all(b"\n"))
                .map_err(|e| DeliveryError::retry(format!("stdout: {e}")))?;
        }
        w.flush()
            .map_err(|e| DeliveryError::retry(format!("stdout: {e}")))
    }

    fn max_batch(&self) -> usize {
        1024
    }
}

/// An event on its way to the sinks: the native JSON and what filters need.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Event type.
    pub event_type: Arc<str>,
    /// Event id.
    pub id: Arc<str>,
    /// RFC 3339 time.
    pub time: Arc<str>,
    /// Level.
    pub level: Level,
    /// Host name.
    pub host: Arc<str>,
    /// The native event (one JSON document).
    pub json: Vec<u8>,
}

/// The running sinks.
pub struct Sinks {
    sinks: Vec<(SinkCfg, Sink)>,
}

impl Sinks {
    /// Starts every sink; spools live under `spool_root/NAME` (no root: no spools).
    pub fn start(cfgs: &[SinkCfg], spool_root: Option<&Path>) -> Result<Self, String> {
        let mut names = std::collections::HashSet::new();
        let mut sinks = Vec::new();
        for c in cfgs {
            c.validate()?;
            if !names.insert(c.name.clone()) {
                return Err(format!("two sinks are named {:?}", c.name));
            }
            let transport = c.transport()?;
            let spool = match (spool_root, c.spool_bytes, c.stdout.is_some()) {
                (Some(root), n, false) if n > 0 => {
                    Some(Spool::open(&root.join(&c.name), n).map_err(|e| {
                        format!("sink {:?}: spool in {}: {e}", c.name, root.display())
                    })?)
                }
                _ => None,
            };
            let limits = SinkLimits {
                queue: c.queue,
                queue_bytes: c.queue_bytes,
                max_backoff: Duration::from_secs(c.max_backoff_secs.max(1)),
            };
            let sink = Sink::start(&c.name, transport, spool, limits)
                .map_err(|e| format!("sink {:?}: starting its worker: {e}", c.name))?;
            sinks.push((c.clone(), sink));
        }
        Ok(Self { sinks })
    }

    /// Offers an event to every sink that wants it, in its format.
    pub fn send(&self, ev: &Outgoing) {
        let parsed: OnceLock<Option<serde_json::Value>> = OnceLock::new();
        for (cfg, sink) in &self.sinks {
            if !cfg.wants(&ev.event_type, ev.level) {
                continue;
            }
            let body = match cfg.format {
                Format::Native => ev.json.clone(),
                other => {
                    let native = parsed.get_or_init(|| serde_json::from_slice(&ev.json).ok());
                    let Some(rendered) = native.as_ref().and_then(|v| format::render(other, v))
                    else {
                        continue;
                    };
                    match serde_json::to_vec(&rendered) {
                        Ok(b) => b,
                        Err(_) => continue,
                    }
                }
            };
            sink.offer(Record {
                id: ev.id.clone(),
                event_type: ev.event_type.clone(),
                time: ev.time.clone(),
                level: ev.level,
                host: ev.host.clone(),
                body,
            });
        }
    }

    /// Counters of every sink.
    pub fn stats(&self) -> Vec<SinkStats> {
        self.sinks.iter().map(|(_, s)| s.stats()).collect()
    }

    /// Stops every sink, giving each `grace` to deliver what it holds.
    pub fn close(self, grace: Duration) -> Vec<SinkStats> {
        self.sinks
            .into_iter()
            .map(|(_, s)| s.close(grace))
            .collect()
    }
}
