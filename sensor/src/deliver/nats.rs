//! The NATS JetStream sink: every record is published to a JetStream subject
//! and counts as delivered only once JetStream acknowledged it (its PubAck,
//! `{"stream":…,"seq":…}`, says the message is stored in a stream).
//!
//! Each message carries the record id in the `Nats-Msg-Id` header. JetStream
//! remembers the ids it stored for the stream's duplicate window (2 minutes
//! unless the stream says otherwise) and acknowledges a repeated id as a
//! duplicate without storing it again. So when the worker retries a batch
//! after a failure (a lost ack, a server restart), records that did reach the
//! stream are not stored twice: within the duplicate window delivery is
//! exactly once; a retry that comes later than the window (a long outage with
//! a spool) is at least once, and consumers de-duplicate on the event id.
//!
//! Order: JetStream stores messages in the order they arrive, so the
//! transport never lets messages of a failed attempt reach the server after
//! its retry. The client (`async-nats`, below) buffers publishes while it is
//! disconnected and sends them after reconnecting; had the server lost the
//! messages written just before it died, that buffered tail would be stored
//! ahead of them and the retry would fill the gap out of order. So the
//! transport reconnects by itself: the client is told not to, and a failed
//! batch tears the connection down with everything it still buffers.
//!
//! The client is `async-nats`, the official and maintained one. It is async,
//! so each connection gets a private tokio runtime with one worker thread;
//! that thread keeps the connection serviced between batches (it answers the
//! server's PINGs), so an idle sink is not dropped as a stale connection.
//! [`Transport::deliver`] blocks the calling (worker) thread on it and must
//! not be called from inside another tokio runtime.

use std::borrow::Cow;
use std::cell::Cell;
use std::error::Error as _;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind, message::PublishMessage};
use async_nats::{ServerAddr, connection::State};
use serde::{Deserialize, Serialize};

use super::{DeliveryError, Record, Transport};

/// Default server: a local NATS server on its standard port.
pub const DEFAULT_URL: &str = "nats://127.0.0.1:4222";
/// Default subject.
pub const DEFAULT_SUBJECT: &str = "telltale.events";
/// Default wait for a batch's acknowledgements, in milliseconds.
pub const DEFAULT_ACK_TIMEOUT_MS: u64 = 5000;

/// Placeholder in [`NatsCfg::subject`] replaced by the record's event type.
const TYPE_PLACEHOLDER: &str = "{type}";
/// Longest accepted [`NatsCfg::ack_timeout_ms`]: ten minutes. A longer wait
/// would only hide a dead server from the worker.
const MAX_ACK_TIMEOUT_MS: u64 = 600_000;

/// Configuration of a NATS JetStream sink (`[[sinks]] type = "nats"` tables).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsCfg {
    /// Server URL, `nats://host:port` or `tls://host:port` (TLS required);
    /// several servers of one cluster may be given separated by commas.
    /// Default `nats://127.0.0.1:4222`.
    #[serde(default = "default_url")]
    pub url: String,
    /// Subject to publish on. Default `telltale.events`. A final token
    /// `{type}` is replaced by the event type, e.g. `telltale.{type}` gives
    /// `telltale.alert` and `telltale.sensor.status`; `{type}` may appear only
    /// as the last token, so that one `prefix.>` stream subject covers every
    /// type whatever its dots.
    #[serde(default = "default_subject")]
    pub subject: String,
    /// Stream to create if missing (file storage, listening on the subject, or
    /// on `prefix.>` for a `{type}` subject). An existing stream is used as it
    /// is, never changed. When absent, a stream covering the subject must
    /// already exist on the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// A NATS credentials file (`.creds`: user JWT and NKey seed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<PathBuf>,
    /// Token authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// User name for user/password authentication (needs `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Password for user/password authentication (needs `user`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// PEM file of the CA certificates that sign the server's certificate.
    /// Setting it requires TLS, whatever the URL's scheme.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// How long to wait, once a batch is sent, for all its acknowledgements
    /// (and for connecting). Default 5000.
    #[serde(default = "default_ack_timeout_ms")]
    pub ack_timeout_ms: u64,
}

fn default_url() -> String {
    DEFAULT_URL.to_string()
}

fn default_subject() -> String {
    DEFAULT_SUBJECT.to_string()
}

fn default_ack_timeout_ms() -> u64 {
    DEFAULT_ACK_TIMEOUT_MS
}

impl Default for NatsCfg {
    fn default() -> Self {
        Self {
            url: default_url(),
            subject: default_subject(),
            stream: None,
            credentials: None,
            token: None,
            user: None,
            password: None,
            ca_file: None,
            ack_timeout_ms: DEFAULT_ACK_TIMEOUT_MS,
        }
    }
}

// Written by hand so that secrets never reach a log line.
impl fmt::Debug for NatsCfg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("NatsCfg")
            .field("url", &redact_urls(&self.url))
            .field("subject", &self.subject)
            .field("stream", &self.stream)
            .field("credentials", &self.credentials)
            .field("token", &redacted(&self.token))
            .field("user", &self.user)
            .field("password", &redacted(&self.password))
            .field("ca_file", &self.ca_file)
            .field("ack_timeout_ms", &self.ack_timeout_ms)
            .finish()
    }
}

/// The subject, split once at [`NatsTransport::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum SubjectTemplate {
    /// Every record on this subject.
    Fixed(String),
    /// `prefix` (ending with a dot) followed by the event type.
    PerType { prefix: String },
}

impl SubjectTemplate {
    /// Checks `subject` and splits off its `{type}` placeholder.
    fn parse(subject: &str) -> Result<Self, String> {
        let (literal, templated) = match subject.strip_suffix(TYPE_PLACEHOLDER) {
            Some(prefix) => (prefix, true),
            None => (subject, false),
        };
        if literal.contains(TYPE_PLACEHOLDER) {
            return Err(format!(
                "nats subject {subject:?}: {TYPE_PLACEHOLDER} may appear once, as the last token"
            ));
        }
        if templated {
            // `prefix.{type}`: the prefix must be whole tokens, and there must
            // be one, else the stream would have to capture every subject.
            let Some(prefix_tokens) = literal.strip_suffix('.') else {
                return Err(format!(
                    "nats subject {subject:?}: {TYPE_PLACEHOLDER} must be a whole last token \
                     after at least one other (e.g. telltale.{TYPE_PLACEHOLDER})"
                ));
            };
            check_tokens(subject, prefix_tokens)?;
            Ok(Self::PerType {
                prefix: literal.to_string(),
            })
        } else {
            check_tokens(subject, literal)?;
            Ok(Self::Fixed(literal.to_string()))
        }
    }

    /// The subject for a record of type `event_type`.
    fn subject(&self, event_type: &str) -> Cow<'_, str> {
        match self {
            Self::Fixed(subject) => Cow::Borrowed(subject),
            Self::PerType { prefix } => {
                Cow::Owned(format!("{prefix}{}", subject_tokens(event_type)))
            }
        }
    }

    /// The stream subject that covers every subject this template produces.
    fn stream_subject(&self) -> String {
        match self {
            Self::Fixed(subject) => subject.clone(),
            Self::PerType { prefix } => format!("{prefix}>"),
        }
    }
}

/// Checks that `tokens` is a valid literal subject to publish on: no empty
/// token, no whitespace or control characters, no wildcard.
fn check_tokens(subject: &str, tokens: &str) -> Result<(), String> {
    if tokens.is_empty() {
        return Err("nats subject is empty".to_string());
    }
    for token in tokens.split('.') {
        if token.is_empty() {
            return Err(format!("nats subject {subject:?} has an empty token"));
        }
        if token == "*" || token == ">" {
            return Err(format!(
                "nats subject {subject:?}: wildcards cannot be published to"
            ));
        }
        if token
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '*' || c == '>')
        {
            return Err(format!(
                "nats subject {subject:?}: no whitespace, control characters, '*' or '>'"
            ));
        }
    }
    Ok(())
}

/// The event type as subject tokens: its dots stay token separators (so
/// `sensor.status` can be selected with `prefix.sensor.>`), characters a
/// subject cannot hold become `_`, and empty tokens become `_`. Event types
/// come from the sensor, but a subject that the server rejects would fail
/// every retry, so this never produces one.
fn subject_tokens(event_type: &str) -> String {
    if event_type.is_empty() {
        return "unknown".to_string();
    }
    let mut out = String::with_capacity(event_type.len());
    for (i, token) in event_type.split('.').enumerate() {
        if i > 0 {
            out.push('.');
        }
        if token.is_empty() {
            out.push('_');
            continue;
        }
        out.extend(token.chars().map(|c| {
            if c.is_ascii_graphic() && c != '*' && c != '>' {
                c
            } else {
                '_'
            }
        }));
    }
    out
}

/// Checks a stream name the way the server does: no whitespace, `.`, `*`,
/// `>`, path separators.
fn check_stream_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("nats stream name is empty".to_string());
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
    {
        return Err(format!(
            "nats stream name {name:?}: no whitespace, '.', '*', '>', '/' or '\\'"
        ));
    }
    Ok(())
}

/// Parses the comma-separated server URLs.
fn parse_servers(url: &str) -> Result<Vec<ServerAddr>, String> {
    let mut servers = Vec::new();
    for part in url.split(',').map(str::trim) {
        if !(part.starts_with("nats://") || part.starts_with("tls://")) {
            return Err(format!(
                "nats url {:?}: expected nats://host:port or tls://host:port",
                redact_url(part)
            ));
        }
        let server: ServerAddr = part
            .parse()
            .map_err(|e| format!("nats url {:?}: {e}", redact_url(part)))?;
        if server.host().is_empty() {
            return Err(format!("nats url {:?} has no host", redact_url(part)));
        }
        servers.push(server);
    }
    Ok(servers)
}

/// `url` without the `user:password@` part, for logs and errors.
fn redact_url(url: &str) -> Cow<'_, str> {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            Cow::Owned(format!("{}{}", &url[..scheme_end + 3], &url[at + 1..]))
        }
        _ => Cow::Borrowed(url),
    }
}

/// [`redact_url`] for a comma-separated list.
fn redact_urls(urls: &str) -> String {
    urls.split(',')
        .map(|u| redact_url(u.trim()).into_owned())
        .collect::<Vec<_>>()
        .join(",")
}

/// A connection, the JetStream context over it, and the runtime that runs
/// them: dropping the runtime ends every task of the client, so nothing it
/// buffered can be sent later.
struct Conn {
    runtime: tokio::runtime::Runtime,
    client: async_nats::Client,
    js: jetstream::Context,
    /// The configured stream was found or created on this connection (a new
    /// connection, as after any failure, looks again: the server may have come
    /// back with an empty store). A `Cell`: batches share the connection.
    stream_ready: Cell<bool>,
}

/// What [`deliver_batch`] needs besides the connection.
struct Settings {
    cfg: NatsCfg,
    servers: Vec<ServerAddr>,
    subject: SubjectTemplate,
    ack_timeout: Duration,
    /// The servers as given, without credentials: names them in errors.
    server_names: String,
}

/// A [`Transport`] that publishes records to NATS JetStream and waits for
/// their acknowledgements. Connects lazily, in [`Transport::deliver`].
pub struct NatsTransport {
    settings: Settings,
    conn: Option<Conn>,
    duplicates: u64,
}

impl NatsTransport {
    /// Validates `cfg` and prepares the transport; connects on the first
    /// delivery, so a server that is down at start-up is no error here.
    pub fn open(cfg: &NatsCfg) -> Result<NatsTransport, String> {
        let servers = parse_servers(&cfg.url)?;
        let subject = SubjectTemplate::parse(&cfg.subject)?;
        if let Some(stream) = &cfg.stream {
            check_stream_name(stream)?;
        }
        let auth_methods = [
            cfg.credentials.is_some(),
            cfg.token.is_some(),
            cfg.user.is_some() || cfg.password.is_some(),
        ];
        if auth_methods.iter().filter(|&&set| set).count() > 1 {
            return Err(
                "nats: choose one authentication: credentials, token, or user and password"
                    .to_string(),
            );
        }
        if cfg.user.is_some() != cfg.password.is_some() {
            return Err("nats: user and password go together".to_string());
        }
        if cfg.token.as_deref() == Some("") {
            return Err("nats: token is empty".to_string());
        }
        for (what, path) in [("credentials", &cfg.credentials), ("ca_file", &cfg.ca_file)] {
            if let Some(path) = path {
                // Checked now so that a typo shows at start-up, not as a
                // retried connection error.
                std::fs::metadata(path)
                    .map_err(|e| format!("nats {what} {}: {e}", path.display()))?;
            }
        }
        if cfg.ack_timeout_ms == 0 || cfg.ack_timeout_ms > MAX_ACK_TIMEOUT_MS {
            return Err(format!(
                "nats ack_timeout_ms {} is out of range 1..={MAX_ACK_TIMEOUT_MS}",
                cfg.ack_timeout_ms
            ));
        }
        Ok(NatsTransport {
            settings: Settings {
                cfg: cfg.clone(),
                servers,
                subject,
                ack_timeout: Duration::from_millis(cfg.ack_timeout_ms),
                server_names: redact_urls(&cfg.url),
            },
            conn: None,
            duplicates: 0,
        })
    }

    /// Records that JetStream acknowledged as duplicates of ones it already
    /// stored (retries within the duplicate window), since the transport
    /// opened.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }
}

impl Drop for NatsTransport {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Dropping a runtime blocks on its threads, which panics when the
            // transport happens to be dropped inside an async context;
            // shutting it down in the background never blocks.
            let Conn { runtime, .. } = conn;
            runtime.shutdown_background();
        }
    }
}

/// Ends a connection and every task of its client before returning, so that
/// none of its buffered publishes can reach the server after a retry.
fn tear_down(conn: Conn) {
    let Conn {
        runtime,
        client,
        js,
        ..
    } = conn;
    drop((js, client));
    runtime.shutdown_timeout(Duration::from_secs(1));
}

impl Transport for NatsTransport {
    fn describe(&self) -> String {
        format!(
            "nats jetstream {} subject {}",
            self.settings.server_names, self.settings.cfg.subject
        )
    }

    fn deliver(&mut self, batch: &[Record]) -> Result<(), DeliveryError> {
        if batch.is_empty() {
            return Ok(());
        }
        if tokio::runtime::Handle::try_current().is_ok() {
            // block_on would panic: a programming error in the caller.
            return Err(DeliveryError::fatal(
                "nats: deliver was called from inside an async runtime",
            ));
        }
        if let Some(conn) = self
            .conn
            .take_if(|c| c.client.connection_state() != State::Connected)
        {
            // Lost since the last batch (the client does not reconnect by
            // itself): start afresh.
            tear_down(conn);
        }
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => connect(&self.settings)?,
        };
        let mut duplicates = 0;
        let result =
            conn.runtime
                .block_on(deliver_batch(&self.settings, &conn, batch, &mut duplicates));
        self.duplicates += duplicates;
        match result {
            Ok(()) => self.conn = Some(conn),
            // Whatever the failure, the connection may still hold publishes
            // of this batch: end it before the worker retries.
            Err(_) => tear_down(conn),
        }
        result
    }
}

/// Makes sure of the stream, publishes the whole batch, then awaits every
/// acknowledgement.
async fn deliver_batch(
    settings: &Settings,
    conn: &Conn,
    batch: &[Record],
    duplicates: &mut u64,
) -> Result<(), DeliveryError> {
    let server = &settings.server_names;
    if !conn.stream_ready.get() {
        ensure_stream(settings, &conn.js).await?;
        conn.stream_ready.set(true);
    }

    // Pipeline: send every message first, so the batch costs one round trip
    // rather than one per record; the connection keeps them in order.
    let mut acks = Vec::with_capacity(batch.len());
    for record in batch {
        let subject = settings.subject.subject(&record.event_type).into_owned();
        let message = PublishMessage::build()
            .payload(record.body.clone().into())
            // JetStream de-duplicates retries on this id within the stream's
            // duplicate window.
            .message_id(&*record.id);
        let ack = conn
            .js
            .send_publish(subject, message)
            .await
            .map_err(|e| publish_error(settings, conn, &record.id, &e))?;
        acks.push((ack, &record.id));
    }

    // One deadline for the whole batch: each ack future also has its own
    // (the context timeout), but awaiting them one after another could
    // otherwise add their waits up.
    let wait_all = async {
        for (ack, id) in acks {
            let ack = ack
                .await
                .map_err(|e| publish_error(settings, conn, id, &e))?;
            if ack.duplicate {
                *duplicates += 1;
            }
        }
        Ok(())
    };
    match tokio::time::timeout(settings.ack_timeout, wait_all).await {
        Ok(result) => result,
        Err(_) => Err(DeliveryError::retry(format!(
            "nats {server}: batch of {} not acknowledged within {} ms",
            batch.len(),
            settings.cfg.ack_timeout_ms
        ))),
    }
}

/// Opens a connection, on a runtime of its own.
fn connect(settings: &Settings) -> Result<Conn, DeliveryError> {
    // One worker thread services the connection between batches (PINGs);
    // `deliver` drives the publishing itself with block_on.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("telltale-nats")
        .enable_all()
        .build()
        .map_err(|e| DeliveryError::retry(format!("nats: cannot start the client runtime: {e}")))?;
    match runtime.block_on(open_client(settings)) {
        Ok((client, js)) => Ok(Conn {
            runtime,
            client,
            js,
            stream_ready: Cell::new(false),
        }),
        Err(e) => {
            runtime.shutdown_background();
            Err(e)
        }
    }
}

/// Connects with the configured authentication and TLS.
async fn open_client(
    settings: &Settings,
) -> Result<(async_nats::Client, jetstream::Context), DeliveryError> {
    let cfg = &settings.cfg;
    let server = &settings.server_names;
    let mut options = match &cfg.credentials {
        Some(path) => async_nats::ConnectOptions::with_credentials_file(path)
            .await
            .map_err(|e| {
                DeliveryError::retry(format!(
                    "nats {server}: credentials {}: {e}",
                    path.display()
                ))
            })?,
        None => async_nats::ConnectOptions::new(),
    };
    if let Some(token) = &cfg.token {
        options = options.token(token.clone());
    }
    if let (Some(user), Some(password)) = (&cfg.user, &cfg.password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(ca_file) = &cfg.ca_file {
        options = options
            .add_root_certificates(ca_file.clone())
            .require_tls(true);
    }
    // The transport reconnects itself (see the module's documentation): the
    // first connection tries each server at once; once connected, the
    // client's own reconnect would wait a day, by when a failed batch has long
    // torn it down.
    let connected = Arc::new(AtomicBool::new(false));
    let connected_cb = Arc::clone(&connected);
    let client = options
        .name("telltale")
        .max_reconnects(settings.servers.len())
        .reconnect_delay_callback(move |_| {
            if connected_cb.load(Ordering::Relaxed) {
                Duration::from_secs(24 * 3600)
            } else {
                Duration::ZERO
            }
        })
        .connection_timeout(settings.ack_timeout)
        .request_timeout(Some(settings.ack_timeout))
        .connect(settings.servers.as_slice())
        .await
        // Retryable even for authentication and TLS errors: they are fixed on
        // the server or in files without restarting the sensor, and a fatal
        // error would make the worker drop every batch meanwhile.
        .map_err(|e| DeliveryError::retry(format!("nats {server}: cannot connect: {e}")))?;
    connected.store(true, Ordering::Relaxed);
    let js = jetstream::ContextBuilder::new()
        .timeout(settings.ack_timeout)
        .build(client.clone());
    Ok((client, js))
}

/// Creates the configured stream when the server has none of that name.
async fn ensure_stream(settings: &Settings, js: &jetstream::Context) -> Result<(), DeliveryError> {
    let Some(name) = &settings.cfg.stream else {
        return Ok(());
    };
    let config = jetstream::stream::Config {
        name: name.clone(),
        subjects: vec![settings.subject.stream_subject()],
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    };
    js.get_or_create_stream(config).await.map_err(|e| {
        DeliveryError::retry(format!(
            "nats {}: cannot find or create stream {name}: {e}",
            settings.server_names
        ))
    })?;
    Ok(())
}

/// Maps a publish or acknowledgement error. Only a record the server refuses
/// is fatal; the rest (timeouts, lost connections, a missing stream, a full
/// stream) can be fixed while the worker keeps the batch.
fn publish_error(
    settings: &Settings,
    conn: &Conn,
    id: &str,
    err: &jetstream::context::PublishError,
) -> DeliveryError {
    let server = &settings.server_names;
    let detail = match err.source() {
        Some(source) => format!("{err}: {source}"),
        None => err.to_string(),
    };
    match err.kind() {
        PublishErrorKind::MaxPayloadExceeded => DeliveryError::fatal(format!(
            "nats {server}: record {id} is larger than the server accepts \
             (max_payload {} bytes): {detail}",
            conn.client.max_payload()
        )),
        PublishErrorKind::StreamNotFound => DeliveryError::retry(format!(
            "nats {server}: no JetStream stream stores subject {} \
                 (create one, or set `stream` to have it created)",
            settings.subject.stream_subject()
        )),
        PublishErrorKind::Other
            if err
                .source()
                .and_then(|s| s.downcast_ref::<jetstream::Error>())
                .is_some_and(|e| {
                    e.error_code() == jetstream::ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM
                }) =>
        {
            DeliveryError::fatal(format!(
                "nats {server}: record {id} is larger than the stream accepts: {detail}"
            ))
        }
        _ => DeliveryError::retry(format!("nats {server}: record {id}: {detail}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_from_empty_toml() {
        let cfg: NatsCfg = toml::from_str("").unwrap();
        assert_eq!(cfg, NatsCfg::default());
        assert_eq!(cfg.url, "nats://127.0.0.1:4222");
        assert_eq!(cfg.subject, "telltale.events");
        assert_eq!(cfg.ack_timeout_ms, 5000);
        assert!(NatsTransport::open(&cfg).is_ok());
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = toml::from_str::<NatsCfg>("subjet = \"x\"").unwrap_err();
        assert!(err.to_string().contains("subjet"), "{err}");
    }

    #[test]
    fn fixed_subject() {
        let t = SubjectTemplate::parse("telltale.events").unwrap();
        assert_eq!(t.subject("alert"), "telltale.events");
        assert_eq!(t.stream_subject(), "telltale.events");
    }

    #[test]
    fn per_type_subject() {
        let t = SubjectTemplate::parse("telltale.{type}").unwrap();
        assert_eq!(t.subject("alert"), "telltale.alert");
        assert_eq!(t.subject("sensor.status"), "telltale.sensor.status");
        assert_eq!(t.stream_subject(), "telltale.>");
        let t = SubjectTemplate::parse("soc.edr.{type}").unwrap();
        assert_eq!(t.subject("http"), "soc.edr.http");
        assert_eq!(t.stream_subject(), "soc.edr.>");
    }

    #[test]
    fn event_types_that_are_no_valid_subject_are_mended() {
        let t = SubjectTemplate::parse("t.{type}").unwrap();
        assert_eq!(t.subject(""), "t.unknown");
        assert_eq!(t.subject("a b"), "t.a_b");
        assert_eq!(t.subject("a.*.>"), "t.a._._");
        assert_eq!(t.subject("a..b."), "t.a._.b._");
        assert_eq!(t.subject("ré\tsumé"), "t.r__sum_");
        for ty in ["", "a b", "a.*.>", "a..b.", "x\ny"] {
            let subject = t.subject(ty);
            check_tokens(&subject, &subject).unwrap();
        }
    }

    #[test]
    fn bad_subjects_are_rejected() {
        for bad in [
            "",
            "{type}",
            "a{type}",
            "{type}.a",
            "a.{type}.b",
            "a.{type}.{type}",
            "a..b",
            ".a",
            "a.",
            "a.*",
            "a.>",
            "a b",
            "a.b*",
            "a.\t",
        ] {
            assert!(SubjectTemplate::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    fn open(f: impl FnOnce(&mut NatsCfg)) -> Result<NatsTransport, String> {
        let mut cfg = NatsCfg::default();
        f(&mut cfg);
        NatsTransport::open(&cfg)
    }

    #[test]
    fn urls() {
        assert!(open(|c| c.url = "tls://nats.example:4443".into()).is_ok());
        assert!(open(|c| c.url = "nats://a:4222, nats://b:4222".into()).is_ok());
        assert!(open(|c| c.url = "nats://u:p@a:4222".into()).is_ok());
        for bad in [
            "127.0.0.1:4222",
            "http://a:4222",
            "nats://",
            "nats://a:99999",
            "",
        ] {
            assert!(open(|c| c.url = bad.into()).is_err(), "{bad:?} accepted");
        }
        let err = open(|c| c.url = "nats://u:secret@a:99999".into())
            .err()
            .unwrap();
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn auth_combinations() {
        assert!(open(|c| c.token = Some("t".into())).is_ok());
        assert!(
            open(|c| {
                c.user = Some("u".into());
                c.password = Some("p".into());
            })
            .is_ok()
        );
        assert!(open(|c| c.user = Some("u".into())).is_err());
        assert!(open(|c| c.password = Some("p".into())).is_err());
        assert!(open(|c| c.token = Some(String::new())).is_err());
        assert!(
            open(|c| {
                c.token = Some("t".into());
                c.user = Some("u".into());
                c.password = Some("p".into());
            })
            .is_err()
        );
        let err = open(|c| c.credentials = Some("/nonexistent/x.creds".into()))
            .err()
            .unwrap();
        assert!(err.contains("/nonexistent/x.creds"), "{err}");
        assert!(open(|c| c.ca_file = Some("/nonexistent/ca.pem".into())).is_err());
    }

    #[test]
    fn stream_names_and_timeouts() {
        assert!(open(|c| c.stream = Some("TELLTALE".into())).is_ok());
        for bad in ["", "a.b", "a b", "a*", "a/b"] {
            assert!(
                open(|c| c.stream = Some(bad.into())).is_err(),
                "{bad:?} accepted"
            );
        }
        assert!(open(|c| c.ack_timeout_ms = 0).is_err());
        assert!(open(|c| c.ack_timeout_ms = MAX_ACK_TIMEOUT_MS + 1).is_err());
        assert!(open(|c| c.ack_timeout_ms = 1).is_ok());
    }

    #[test]
    fn secrets_stay_out_of_debug_and_describe() {
        let cfg = NatsCfg {
            url: "nats://user:hunter2@a:4222".into(),
            token: Some("s3cr3t".into()),
            ..NatsCfg::default()
        };
        let debug = format!("{cfg:?}");
        assert!(
            !debug.contains("s3cr3t") && !debug.contains("hunter2"),
            "{debug}"
        );
        let t = NatsTransport::open(&cfg).unwrap();
        let described = t.describe();
        assert!(!described.contains("hunter2"), "{described}");
        assert_eq!(
            described,
            "nats jetstream nats://a:4222 subject telltale.events"
        );
    }

    #[test]
    fn config_round_trips() {
        let cfg = NatsCfg {
            subject: "telltale.{type}".into(),
            stream: Some("TELLTALE".into()),
            user: Some("u".into()),
            password: Some("p".into()),
            ack_timeout_ms: 250,
            ..NatsCfg::default()
        };
        let text = toml::to_string(&cfg).unwrap();
        assert_eq!(toml::from_str::<NatsCfg>(&text).unwrap(), cfg);
    }

    #[test]
    fn unreachable_server_is_a_retryable_error_naming_it() {
        // A port nothing listens on: bind one, then free it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut t = open(|c| {
            c.url = format!("nats://127.0.0.1:{port}");
            c.ack_timeout_ms = 2000;
        })
        .unwrap();
        let record = Record {
            id: "0190f0aa-0000-7000-8000-000000000001".into(),
            event_type: "alert".into(),
            time: "2025-01-01T00:00:00Z".into(),
            level: super::super::Level::High,
            host: "h".into(),
            body: b"{}".to_vec(),
        };
        let err = t.deliver(std::slice::from_ref(&record)).unwrap_err();
        assert!(err.retryable, "{err}");
        assert!(err.message.contains(&format!("127.0.0.1:{port}")), "{err}");
        assert!(t.deliver(&[]).is_ok());
    }
}
