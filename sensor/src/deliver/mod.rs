//! Delivery of events to the systems a SOC runs: stdout, files, syslog, Kafka,
//! NATS JetStream and HTTP(S) webhooks (Splunk HEC too), several at once, each
//! with its own format, filter, bounded queue and bounded on-disk spool.
//!
//! A sink is a [`Transport`] (the protocol: framing, connection, acknowledgement)
//! driven by a worker thread that owns the sink's queue and spool: when the
//! destination is down or slow, records go to the spool and are delivered in
//! order once it is back. Delivery is at least once: a record is removed from
//! the spool only after the destination acknowledged it, so a crash or a lost
//! acknowledgement can repeat records; every record carries its event id for
//! de-duplication.

pub mod file;
pub mod format;
pub mod kafka;
pub mod nats;
pub mod sinks;
pub mod spool;
pub mod syslog;
pub mod webhook;
pub mod worker;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// How important an event is, for filters and for syslog severities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Status and data events.
    Info,
    /// Low-severity alerts, decode errors.
    Low,
    /// Medium-severity alerts.
    Medium,
    /// High-severity alerts.
    High,
    /// Critical alerts.
    Critical,
}

/// One event, formatted for one sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The event's id (UUIDv7): unique, for de-duplication downstream.
    pub id: Arc<str>,
    /// `alert`, `http`, `sensor.status`, …
    pub event_type: Arc<str>,
    /// RFC 3339 time of the event.
    pub time: Arc<str>,
    /// Its level.
    pub level: Level,
    /// The sensor host's name (Kafka key, syslog HOSTNAME).
    pub host: Arc<str>,
    /// The formatted event: one JSON document, no trailing newline.
    pub body: Vec<u8>,
}

/// Why a delivery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DeliveryError {
    /// What happened (no event content).
    pub message: String,
    /// `false` when retrying cannot help (a configuration error, a record the
    /// destination refuses): the worker then reports and drops the batch.
    pub retryable: bool,
}

impl DeliveryError {
    /// A failure worth retrying (connection refused, timeout, broker down).
    pub fn retry(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
        }
    }

    /// A failure retrying cannot fix.
    pub fn fatal(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
        }
    }
}

/// A destination's protocol. Called from the sink's own worker thread; may block.
pub trait Transport: Send {
    /// Names the destination in logs and status (`syslog tcp 10.0.0.5:6514`).
    fn describe(&self) -> String;

    /// Delivers `batch` (oldest first) and returns once the destination has
    /// acknowledged every record, as far as its protocol acknowledges. On an
    /// error none of the batch counts as delivered: the worker retries the whole
    /// batch (at least once). Connections are opened (again) here as needed.
    fn deliver(&mut self, batch: &[Record]) -> Result<(), DeliveryError>;

    /// Most records per [`deliver`](Self::deliver) call.
    fn max_batch(&self) -> usize {
        256
    }
}
