//! The webhook sink: events POSTed over HTTP(S) in batches, as JSON lines, as a
//! JSON array, or in the Splunk HTTP Event Collector (HEC) event format.
//!
//! A batch counts as delivered only once the server answered 2xx (and, for HEC,
//! acknowledged it with `{"code":0}`), so delivery is at least once: a server that
//! stored a batch but died before answering gets it again.
//!
//! Status codes: 408, 429 and 5xx, like connection failures and timeouts, are
//! worth retrying (the worker spools and retries the batch; a `Retry-After` is
//! quoted in the error message, since the shared [`DeliveryError`] has no field
//! for it). 413 makes the transport split the request in halves and send them
//! itself. Any other answer (other 4xx, an unfollowed 3xx, a HEC refusal) cannot
//! be fixed by sending the same bytes again, so the batch is reported as fatal and
//! the worker drops and counts it.
//!
//! Limits: HEC indexer acknowledgement (`useACK`, channels) is not used: a 2xx
//! with `{"code":0}` means HEC accepted the events, not that they are indexed.
//! A 413 on a single record drops it (fatal). `max_batch_bytes` counts the body
//! before gzip.
//!
//! The client is `ureq` 3 (synchronous, rustls with the ring provider): the
//! worker thread may block, so an async runtime would only add weight. Its
//! agent pools connections, which keeps them alive across batches.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use ureq::http::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use ureq::http::{HeaderName, HeaderValue, Uri};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use super::{DeliveryError, Record, Transport};

/// The body format of the webhook's requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookMode {
    /// One record per line (`Content-Type: application/x-ndjson`). The default.
    #[default]
    Ndjson,
    /// One JSON array of the records (`Content-Type: application/json`).
    JsonArray,
    /// Splunk HEC's event endpoint (`/services/collector/event`): one envelope
    /// object per record, concatenated, with `Authorization: Splunk <hec_token>`.
    SplunkHec,
}

/// Configuration of one webhook sink.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookCfg {
    /// Where to POST: `http://` or `https://`, e.g.
    /// `https://splunk.example:8088/services/collector/event`. Required.
    /// Credentials belong in `headers` or `hec_token`, not in the URL.
    pub url: String,
    /// Body format; default `ndjson`.
    #[serde(default)]
    pub mode: WebhookMode,
    /// Extra request headers, e.g. `Authorization = "Bearer …"`. A `Content-Type`
    /// here replaces the mode's; `Content-Encoding`, `Content-Length`, `Host` and
    /// `Transfer-Encoding` are the transport's own and refused. Default none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The HEC token (`splunk_hec`, required there unless `headers` has an
    /// `Authorization`). Default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hec_token: Option<String>,
    /// HEC `sourcetype` of every event; default `telltale:event`.
    #[serde(default = "default_sourcetype")]
    pub sourcetype: String,
    /// HEC `index`; default none (the token's default index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// A PEM file of CA certificates to trust besides the system's bundle (a
    /// private CA). Default none. Without it, the system's bundle is trusted, or,
    /// on a host without one, the Mozilla roots built into the sensor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Most records per batch; default 500.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Most bytes per request body before compression; a batch is split into
    /// several requests to stay under it (a single larger record goes alone).
    /// Default 4 MiB.
    #[serde(default = "default_max_batch_bytes")]
    pub max_batch_bytes: usize,
    /// Timeout of one request, connecting and reading the answer included, in
    /// milliseconds; default 10000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Compress bodies (`Content-Encoding: gzip`); default false.
    #[serde(default)]
    pub gzip: bool,
}

fn default_sourcetype() -> String {
    "telltale:event".to_owned()
}

fn default_max_batch() -> usize {
    500
}

fn default_max_batch_bytes() -> usize {
    4 << 20
}

fn default_timeout_ms() -> u64 {
    10_000
}

impl WebhookCfg {
    /// A configuration for `url` with every other setting at its default.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            mode: WebhookMode::default(),
            headers: BTreeMap::new(),
            hec_token: None,
            sourcetype: default_sourcetype(),
            index: None,
            ca_file: None,
            max_batch: default_max_batch(),
            max_batch_bytes: default_max_batch_bytes(),
            timeout_ms: default_timeout_ms(),
            gzip: false,
        }
    }
}

// By hand, so that logging a configuration never prints a token.
impl fmt::Debug for WebhookCfg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: BTreeMap<&str, &str> = self
            .headers
            .keys()
            .map(|k| (k.as_str(), "<redacted>"))
            .collect();
        f.debug_struct("WebhookCfg")
            .field("url", &redact_url(&self.url))
            .field("mode", &self.mode)
            .field("headers", &headers)
            .field("hec_token", &self.hec_token.as_ref().map(|_| "<redacted>"))
            .field("sourcetype", &self.sourcetype)
            .field("index", &self.index)
            .field("ca_file", &self.ca_file)
            .field("max_batch", &self.max_batch)
            .field("max_batch_bytes", &self.max_batch_bytes)
            .field("timeout_ms", &self.timeout_ms)
            .field("gzip", &self.gzip)
            .finish()
    }
}

/// Largest response body read; a larger one is dropped with its connection.
const MAX_RESPONSE: u64 = 64 << 10;

/// The usual places of the system's CA bundle (Debian, RHEL, SUSE, Alpine/BSD).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// A webhook destination (see the [module docs](self)).
pub struct WebhookTransport {
    agent: ureq::Agent,
    url: String,
    /// The URL without user info and query, for messages: a query may hold a token.
    shown: String,
    mode: WebhookMode,
    gzip: bool,
    max_batch: usize,
    max_batch_bytes: usize,
    /// Every header of a request but `Content-Encoding`, validated once.
    headers: Vec<(HeaderName, HeaderValue)>,
    /// `"sourcetype":…,` and `"index":…,` of the HEC envelope, as JSON.
    hec_fixed: String,
}

/// Checks `cfg` and prepares the client. Nothing is connected yet: the first
/// [`Transport::deliver`] connects, so a destination that is down at start-up
/// only delays delivery.
pub fn open(cfg: &WebhookCfg) -> Result<WebhookTransport, String> {
    let shown = redact_url(&cfg.url);
    let uri: Uri = cfg
        .url
        .parse()
        .map_err(|e| format!("webhook url {shown}: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(format!("webhook url {shown}: must be http:// or https://")),
    }
    let Some(authority) = uri.authority() else {
        return Err(format!("webhook url {shown}: no host"));
    };
    if authority.as_str().contains('@') {
        return Err(format!(
            "webhook url {shown}: credentials in the URL are not supported; use headers or hec_token"
        ));
    }
    if cfg.max_batch == 0 || cfg.max_batch_bytes == 0 || cfg.timeout_ms == 0 {
        return Err(format!(
            "webhook {shown}: max_batch, max_batch_bytes and timeout_ms must be positive"
        ));
    }

    let content_type = match cfg.mode {
        WebhookMode::Ndjson => "application/x-ndjson",
        WebhookMode::JsonArray | WebhookMode::SplunkHec => "application/json",
    };
    let mut headers = vec![(CONTENT_TYPE, HeaderValue::from_static(content_type))];
    for (name, value) in &cfg.headers {
        let name = HeaderName::try_from(name.as_str())
            .map_err(|_| format!("webhook {shown}: bad header name {name:?}"))?;
        if [
            "content-encoding",
            "content-length",
            "host",
            "transfer-encoding",
        ]
        .contains(&name.as_str())
        {
            return Err(format!(
                "webhook {shown}: header {name} is set by the transport"
            ));
        }
        // The value is never quoted: it is likely a credential.
        let mut value = HeaderValue::try_from(value.as_str())
            .map_err(|_| format!("webhook {shown}: bad value for header {name}"))?;
        if name == AUTHORIZATION {
            value.set_sensitive(true);
        }
        headers.retain(|(n, _)| *n != name);
        headers.push((name, value));
    }

    let mut hec_fixed = String::new();
    if cfg.mode == WebhookMode::SplunkHec {
        let has_auth = headers.iter().any(|(n, _)| *n == AUTHORIZATION);
        match (&cfg.hec_token, has_auth) {
            (Some(_), true) => {
                return Err(format!(
                    "webhook {shown}: set either hec_token or an Authorization header, not both"
                ));
            }
            (None, false) => return Err(format!("webhook {shown}: splunk_hec needs hec_token")),
            (Some(token), false) => {
                let mut value = HeaderValue::try_from(format!("Splunk {token}")).map_err(|_| {
                    format!("webhook {shown}: hec_token is not a valid header value")
                })?;
                value.set_sensitive(true);
                headers.push((AUTHORIZATION, value));
            }
            (None, true) => {}
        }
        hec_fixed.push_str("\"source\":\"telltale\",\"sourcetype\":");
        hec_fixed.push_str(&json_string(&cfg.sourcetype));
        if let Some(index) = &cfg.index {
            hec_fixed.push_str(",\"index\":");
            hec_fixed.push_str(&json_string(index));
        }
    } else if cfg.hec_token.is_some() {
        return Err(format!(
            "webhook {shown}: hec_token is only for mode splunk_hec"
        ));
    }

    let tls = TlsConfig::builder()
        .root_certs(root_certs(cfg.ca_file.as_deref())?)
        .build();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_millis(cfg.timeout_ms)))
        // Statuses are classified here, not turned into errors that lose the
        // headers (Retry-After) and the HEC answer.
        .http_status_as_error(false)
        // A POST must not silently become a GET at another address: a 3xx is
        // reported as a configuration error instead.
        .max_redirects(0)
        .max_redirects_will_error(false)
        .user_agent(concat!("telltale/", env!("CARGO_PKG_VERSION")))
        .tls_config(tls)
        .build()
        .into();

    Ok(WebhookTransport {
        agent,
        url: cfg.url.clone(),
        shown,
        mode: cfg.mode,
        gzip: cfg.gzip,
        max_batch: cfg.max_batch,
        max_batch_bytes: cfg.max_batch_bytes,
        headers,
        hec_fixed,
    })
}

/// The roots to trust: the system's bundle (so hosts whose administrators added
/// a corporate CA there just work) plus `ca_file`; Mozilla's built-in roots when
/// neither gives a certificate.
fn root_certs(ca_file: Option<&Path>) -> Result<RootCerts, String> {
    let mut certs: Vec<Certificate<'static>> = Vec::new();
    for bundle in SYSTEM_BUNDLES {
        // A missing or unreadable system bundle only means the next candidate.
        if let Ok(pem) = std::fs::read(bundle) {
            certs.extend(pem_certs(&pem));
            if !certs.is_empty() {
                break;
            }
        }
    }
    if let Some(path) = ca_file {
        let pem =
            std::fs::read(path).map_err(|e| format!("webhook ca_file {}: {e}", path.display()))?;
        let extra: Vec<_> = pem_certs(&pem).collect();
        if extra.is_empty() {
            return Err(format!(
                "webhook ca_file {}: no PEM certificate in it",
                path.display()
            ));
        }
        certs.extend(extra);
    }
    Ok(if certs.is_empty() {
        RootCerts::WebPki
    } else {
        RootCerts::new_with_certs(&certs)
    })
}

fn pem_certs(pem: &[u8]) -> impl Iterator<Item = Certificate<'static>> + '_ {
    ureq::tls::parse_pem(pem).filter_map(|item| match item {
        Ok(PemItem::Certificate(cert)) => Some(cert),
        _ => None,
    })
}

/// `url` without user info and query string, which may hold credentials.
fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = authority.rsplit('@').next().unwrap_or_default();
    match scheme {
        Some(scheme) => format!("{scheme}://{host}{path}"),
        None => format!("{host}{path}"),
    }
}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    // Display of a Value cannot fail, unlike to_string on a generic Serialize.
    serde_json::Value::from(s).to_string()
}

/// What an HTTP status means for the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// 2xx: delivered.
    Delivered,
    /// 408, 429, 5xx: the server may take it later.
    Retry,
    /// 413: the body is too large; smaller requests may pass.
    TooLarge,
    /// Anything else: the server refuses these bytes.
    Refused,
}

fn classify(status: u16) -> Status {
    match status {
        200..=299 => Status::Delivered,
        408 | 429 | 500..=599 => Status::Retry,
        413 => Status::TooLarge,
        _ => Status::Refused,
    }
}

/// Whether a 2xx HEC answer acknowledges the events: `Ok` for `{"code":0}`;
/// `Err((retryable, why))` otherwise.
fn hec_ack(answer: &str) -> Result<(), (bool, String)> {
    let parsed: Option<serde_json::Value> = serde_json::from_str(answer).ok();
    match parsed
        .as_ref()
        .and_then(|v| v.get("code"))
        .and_then(|c| c.as_i64())
    {
        Some(0) => Ok(()),
        Some(code) => {
            let text = parsed
                .as_ref()
                .and_then(|v| v.get("text"))
                .and_then(|t| t.as_str())
                .unwrap_or("");
            Err((
                false,
                format!("HEC refused the events: code {code} {text:?}"),
            ))
        }
        // Not HEC's answer (a proxy's page?): nothing says the events were kept.
        None => Err((true, "answer is not a HEC acknowledgement".to_owned())),
    }
}

/// The `Retry-After` hint for the message, if the server sent one.
fn retry_after_note(value: Option<&str>) -> String {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return String::new();
    };
    match value.parse::<u64>() {
        Ok(secs) => format!("; server asks to retry after {secs} s (Retry-After)"),
        Err(_) => format!(
            "; server asks to retry after {} (Retry-After)",
            printable(value, 40)
        ),
    }
}

/// At most `max` chars of `s`, control characters replaced, for a log line.
fn printable(s: &str, max: usize) -> String {
    s.chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Seconds since the epoch, with the fraction given, of an RFC 3339 time, as a
/// JSON number (`1714566896.123456789`): HEC's `time`. Text, not `f64`, so the
/// nanoseconds survive. `None` for a malformed or pre-1970 time.
fn epoch_seconds(rfc3339: &str) -> Option<String> {
    let b = rfc3339.as_bytes();
    let num = |r: Range<usize>| -> Option<i64> {
        let digits = b.get(r)?;
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(
            digits
                .iter()
                .fold(0i64, |n, d| n * 10 + i64::from(d - b'0')),
        )
    };
    let year = num(0..4)?;
    let month = num(5..7)?;
    let day = num(8..10)?;
    let hour = num(11..13)?;
    let minute = num(14..16)?;
    let second = num(17..19)?;
    if b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || !matches!(b.get(10), Some(b'T' | b't' | b' '))
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut fraction = "";
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        // Past nanoseconds nothing is meaningful; get() cannot fail on ASCII.
        fraction = rfc3339.get(start..i.min(start + 9))?;
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let hours = num(i + 1..i + 3)?;
            let minutes = num(i + 4..i + 6)?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = hours * 3600 + minutes * 60;
            if *sign == b'-' { -offset } else { offset }
        }
        _ => return None,
    };
    let secs =
        days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset;
    if secs < 0 {
        return None;
    }
    let fraction = fraction.trim_end_matches('0');
    Some(if fraction.is_empty() {
        secs.to_string()
    } else {
        format!("{secs}.{fraction}")
    })
}

/// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Why one request failed.
enum Failure {
    /// 413 Payload Too Large.
    TooLarge,
    /// Anything else.
    Error(DeliveryError),
}

impl WebhookTransport {
    /// One record as it appears in a body: a line, an array element or a HEC
    /// envelope.
    fn encode(&self, record: &Record) -> Vec<u8> {
        match self.mode {
            WebhookMode::Ndjson => {
                let mut item = Vec::with_capacity(record.body.len() + 1);
                item.extend_from_slice(&record.body);
                item.push(b'\n');
                item
            }
            WebhookMode::JsonArray => record.body.clone(),
            WebhookMode::SplunkHec => {
                let mut item = Vec::with_capacity(record.body.len() + 160);
                item.push(b'{');
                // Without a time HEC stamps the arrival, which beats refusing the event.
                if let Some(time) = epoch_seconds(&record.time) {
                    item.extend_from_slice(b"\"time\":");
                    item.extend_from_slice(time.as_bytes());
                    item.push(b',');
                }
                item.extend_from_slice(b"\"host\":");
                item.extend_from_slice(json_string(&record.host).as_bytes());
                item.push(b',');
                item.extend_from_slice(self.hec_fixed.as_bytes());
                item.extend_from_slice(b",\"event\":");
                // One invalid event would make HEC refuse the whole request, so a
                // body that is not JSON goes as a JSON string.
                if serde_json::from_slice::<serde::de::IgnoredAny>(&record.body).is_ok() {
                    item.extend_from_slice(&record.body);
                } else {
                    let text = String::from_utf8_lossy(&record.body);
                    item.extend_from_slice(json_string(&text).as_bytes());
                }
                item.push(b'}');
                item
            }
        }
    }

    /// The body of `items`, uncompressed.
    fn assemble(&self, items: &[Vec<u8>]) -> Vec<u8> {
        let len: usize = items.iter().map(|i| i.len() + 1).sum::<usize>() + 2;
        let mut body = Vec::with_capacity(len);
        if self.mode == WebhookMode::JsonArray {
            body.push(b'[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(item);
            }
            body.push(b']');
        } else {
            for item in items {
                body.extend_from_slice(item);
            }
        }
        body
    }

    /// Splits `items` into runs whose bodies stay within `max_batch_bytes`.
    fn split_by_bytes(&self, items: &[Vec<u8>]) -> Vec<Range<usize>> {
        // The array's brackets and commas: at most one byte per item plus one.
        let framing = usize::from(self.mode == WebhookMode::JsonArray);
        let mut runs = Vec::new();
        let mut start = 0;
        let mut size = framing;
        for (i, item) in items.iter().enumerate() {
            let add = item.len() + framing;
            if i > start && size + add > self.max_batch_bytes {
                runs.push(start..i);
                start = i;
                size = framing;
            }
            size += add;
        }
        if start < items.len() {
            runs.push(start..items.len());
        }
        runs
    }

    /// Sends `items`, halving on 413 until the server takes them.
    fn send_halving(&mut self, items: &[Vec<u8>]) -> Result<(), DeliveryError> {
        match self.post(items) {
            Ok(()) => Ok(()),
            Err(Failure::Error(e)) => Err(e),
            Err(Failure::TooLarge) if items.len() > 1 => {
                let (first, second) = items.split_at(items.len() / 2);
                self.send_halving(first)?;
                self.send_halving(second)
            }
            Err(Failure::TooLarge) => Err(DeliveryError::fatal(format!(
                "webhook {}: 413 Payload Too Large for a single record of {} bytes",
                self.shown,
                items.first().map_or(0, Vec::len)
            ))),
        }
    }

    /// One POST of `items`.
    fn post(&mut self, items: &[Vec<u8>]) -> Result<(), Failure> {
        let shown = &self.shown;
        let mut body = self.assemble(items);
        if self.gzip {
            let mut gz = flate2::write::GzEncoder::new(
                Vec::with_capacity(body.len() / 4),
                flate2::Compression::fast(),
            );
            body = gz
                .write_all(&body)
                .and_then(|()| gz.finish())
                .map_err(|e| {
                    Failure::Error(DeliveryError::retry(format!("webhook {shown}: gzip: {e}")))
                })?;
        }
        let mut request = self.agent.post(&self.url);
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        if self.gzip {
            request = request.header(CONTENT_ENCODING, "gzip");
        }
        let mut response = match request.send(&body[..]) {
            Ok(response) => response,
            Err(e) => {
                return Err(Failure::Error(match e {
                    // Only a malformed request is certain to fail again (and its
                    // text may quote the URL with its query, so it is left out).
                    ureq::Error::BadUri(_) | ureq::Error::Http(_) => {
                        DeliveryError::fatal(format!("webhook {shown}: malformed request"))
                    }
                    // TLS and name errors may be fixed on the server side meanwhile.
                    e => DeliveryError::retry(format!("webhook {shown}: {e}")),
                }));
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // Reading the answer to its end returns the connection to the pool
        // (keep-alive); a failed read only costs that connection.
        let answer = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE)
            .read_to_vec()
            .unwrap_or_default();
        let answer = String::from_utf8_lossy(&answer);
        let reason = status.canonical_reason().unwrap_or("");
        let code = status.as_u16();
        match classify(code) {
            Status::Delivered if self.mode == WebhookMode::SplunkHec => {
                hec_ack(&answer).map_err(|(retryable, why)| {
                    let message = format!("webhook {shown}: {code} {reason}, but {why}");
                    Failure::Error(if retryable {
                        DeliveryError::retry(message)
                    } else {
                        DeliveryError::fatal(message)
                    })
                })
            }
            Status::Delivered => Ok(()),
            Status::TooLarge => Err(Failure::TooLarge),
            Status::Retry => Err(Failure::Error(DeliveryError::retry(format!(
                "webhook {shown}: {code} {reason}{}",
                retry_after_note(retry_after.as_deref())
            )))),
            Status::Refused => Err(Failure::Error(DeliveryError::fatal(format!(
                "webhook {shown}: refused with {code} {reason}: {}",
                printable(answer.trim(), 200)
            )))),
        }
    }
}

impl Transport for WebhookTransport {
    fn describe(&self) -> String {
        let mode = match self.mode {
            WebhookMode::Ndjson => "ndjson",
            WebhookMode::JsonArray => "json_array",
            WebhookMode::SplunkHec => "splunk_hec",
        };
        format!("webhook {mode} {}", self.shown)
    }

    /// POSTs the batch in as many requests as `max_batch_bytes` (and 413
    /// answers) require, in order. When a later request fails the earlier ones
    /// were delivered but the whole batch is retried: at least once.
    fn deliver(&mut self, batch: &[Record]) -> Result<(), DeliveryError> {
        let items: Vec<Vec<u8>> = batch.iter().map(|r| self.encode(r)).collect();
        for run in self.split_by_bytes(&items) {
            self.send_halving(&items[run])?;
        }
        Ok(())
    }

    fn max_batch(&self) -> usize {
        self.max_batch
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::deliver::Level;

    fn record(id: &str, time: &str, body: &str) -> Record {
        Record {
            id: Arc::from(id),
            event_type: Arc::from("alert"),
            time: Arc::from(time),
            level: Level::High,
            host: Arc::from("web-1"),
            body: body.as_bytes().to_vec(),
        }
    }

    fn transport(mode: WebhookMode, edit: impl FnOnce(&mut WebhookCfg)) -> WebhookTransport {
        let mut cfg = WebhookCfg::new("https://collector.example:8088/services/collector/event");
        cfg.mode = mode;
        if mode == WebhookMode::SplunkHec {
            cfg.hec_token = Some("secret-token".into());
        }
        edit(&mut cfg);
        open(&cfg).expect("valid config")
    }

    #[test]
    fn epoch_seconds_from_rfc3339() {
        assert_eq!(epoch_seconds("1970-01-01T00:00:00Z").as_deref(), Some("0"));
        assert_eq!(
            epoch_seconds("2024-05-01T12:34:56.123456789Z").as_deref(),
            Some("1714566896.123456789")
        );
        assert_eq!(
            epoch_seconds("2024-05-01T14:34:56.120+02:00").as_deref(),
            Some("1714566896.12")
        );
        assert_eq!(
            epoch_seconds("2024-02-29t00:00:00.000000001-01:30").as_deref(),
            Some("1709170200.000000001")
        );
        // Leap day of a century leap year, and digits past nanoseconds.
        assert_eq!(
            epoch_seconds("2000-02-29T23:59:59.9999999999Z").as_deref(),
            Some("951868799.999999999")
        );
        for bad in [
            "",
            "2024-05-01",
            "2024-05-01T12:34:56",
            "2024-13-01T00:00:00Z",
            "2024-05-01T12:34:56.Z",
            "2024-05-01T12:34:56+0200",
            "2024-05-01T12:34:56Zjunk",
            "1969-12-31T23:59:59Z",
            "2024-05-01T12:34:56.1é",
        ] {
            assert_eq!(epoch_seconds(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn hec_body_is_concatenated_envelopes() {
        let t = transport(WebhookMode::SplunkHec, |c| c.index = Some("soc".into()));
        let items = vec![
            t.encode(&record(
                "a",
                "2024-05-01T12:34:56.123456789Z",
                r#"{"id":"a","n":1}"#,
            )),
            t.encode(&record("b", "not a time", "not json")),
        ];
        let body = String::from_utf8(t.assemble(&items)).expect("utf-8");
        assert_eq!(
            body,
            concat!(
                r#"{"time":1714566896.123456789,"host":"web-1","source":"telltale","#,
                r#""sourcetype":"telltale:event","index":"soc","event":{"id":"a","n":1}}"#,
                r#"{"host":"web-1","source":"telltale","sourcetype":"telltale:event","#,
                r#""index":"soc","event":"not json"}"#
            )
        );
        // Each envelope parses, and the time keeps its nanoseconds as a number.
        let envelopes: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&body)
            .into_iter()
            .collect::<Result<_, _>>()
            .expect("JSON objects");
        assert_eq!(envelopes.len(), 2);
        assert_eq!(envelopes[0]["event"]["n"], 1);
        assert!(envelopes[0]["time"].is_number());
        let auth = t
            .headers
            .iter()
            .find(|(n, _)| *n == AUTHORIZATION)
            .expect("auth");
        assert_eq!(auth.1, "Splunk secret-token");
    }

    #[test]
    fn ndjson_and_array_bodies() {
        let records = [record("a", "", r#"{"a":1}"#), record("b", "", r#"{"b":2}"#)];
        let t = transport(WebhookMode::Ndjson, |_| {});
        let items: Vec<_> = records.iter().map(|r| t.encode(r)).collect();
        assert_eq!(t.assemble(&items), b"{\"a\":1}\n{\"b\":2}\n");
        assert_eq!(t.headers[0].1, "application/x-ndjson");

        let t = transport(WebhookMode::JsonArray, |_| {});
        let items: Vec<_> = records.iter().map(|r| t.encode(r)).collect();
        assert_eq!(t.assemble(&items), br#"[{"a":1},{"b":2}]"#);
        assert_eq!(t.assemble(&items[..1]), br#"[{"a":1}]"#);
        assert_eq!(t.headers[0].1, "application/json");
    }

    #[test]
    fn batches_split_by_bytes() {
        for mode in [
            WebhookMode::Ndjson,
            WebhookMode::JsonArray,
            WebhookMode::SplunkHec,
        ] {
            let t = transport(mode, |c| c.max_batch_bytes = 1000);
            let records: Vec<_> = (0..50)
                .map(|i| {
                    record(
                        &i.to_string(),
                        "2024-05-01T00:00:00Z",
                        &format!("{{\"pad\":\"{}\"}}", "x".repeat(i * 7)),
                    )
                })
                .collect();
            let items: Vec<_> = records.iter().map(|r| t.encode(r)).collect();
            let runs = t.split_by_bytes(&items);
            // In order, every record once, each body within the limit unless alone.
            assert_eq!(runs.first().map(|r| r.start), Some(0));
            assert_eq!(runs.last().map(|r| r.end), Some(50));
            for pair in runs.windows(2) {
                assert_eq!(pair[0].end, pair[1].start);
            }
            for run in &runs {
                let len = t.assemble(&items[run.clone()]).len();
                assert!(len <= 1000 || run.len() == 1, "{mode:?} {run:?} {len}");
                // Greedy: the next record would not have fitted.
                if run.end < 50 {
                    let longer = t.assemble(&items[run.start..run.end + 1]).len();
                    assert!(longer > 1000, "{mode:?} {run:?}");
                }
            }
            assert!(runs.len() > 5);
        }
        let t = transport(WebhookMode::Ndjson, |_| {});
        assert!(t.split_by_bytes(&[]).is_empty());
    }

    #[test]
    fn status_classes() {
        assert_eq!(classify(200), Status::Delivered);
        assert_eq!(classify(204), Status::Delivered);
        for code in [408, 429, 500, 502, 503, 504] {
            assert_eq!(classify(code), Status::Retry, "{code}");
        }
        assert_eq!(classify(413), Status::TooLarge);
        for code in [100, 301, 302, 400, 401, 403, 404, 422] {
            assert_eq!(classify(code), Status::Refused, "{code}");
        }
        assert_eq!(hec_ack(r#"{"text":"Success","code":0}"#), Ok(()));
        assert!(matches!(
            hec_ack(r#"{"text":"Invalid data format","code":6}"#),
            Err((false, _))
        ));
        assert!(matches!(hec_ack("<html>ok</html>"), Err((true, _))));
        assert_eq!(
            retry_after_note(Some(" 30 ")),
            "; server asks to retry after 30 s (Retry-After)"
        );
        assert_eq!(retry_after_note(None), "");
    }

    #[test]
    fn config_defaults_checks_and_redaction() {
        let cfg: WebhookCfg =
            toml::from_str(r#"url = "https://h.example/in?token=s3cret""#).expect("minimal config");
        assert_eq!(cfg.mode, WebhookMode::Ndjson);
        assert_eq!(
            (cfg.max_batch, cfg.max_batch_bytes, cfg.timeout_ms),
            (500, 4 << 20, 10_000)
        );
        assert_eq!(cfg.sourcetype, "telltale:event");
        assert!(!cfg.gzip);
        let t = open(&cfg).expect("opens");
        assert_eq!(t.describe(), "webhook ndjson https://h.example/in");
        assert_eq!(t.max_batch(), 500);

        assert!(toml::from_str::<WebhookCfg>("url = \"http://h\"\nbatch = 3").is_err());
        let with_secrets = WebhookCfg {
            hec_token: Some("tok-123".into()),
            headers: BTreeMap::from([("Authorization".into(), "Bearer abc".into())]),
            ..WebhookCfg::new("https://user:pw@h.example/x?k=v")
        };
        let debug = format!("{with_secrets:?}");
        assert!(
            !debug.contains("tok-123") && !debug.contains("abc") && !debug.contains("pw"),
            "{debug}"
        );

        for (mode, url, token, why) in [
            (WebhookMode::Ndjson, "ftp://h/x", None, "http"),
            (WebhookMode::Ndjson, "https://u:p@h/x", None, "credentials"),
            (WebhookMode::SplunkHec, "https://h/x", None, "hec_token"),
            (
                WebhookMode::Ndjson,
                "https://h/x",
                Some("t0ken"),
                "only for",
            ),
        ] {
            let cfg = WebhookCfg {
                mode,
                hec_token: token.map(str::to_owned),
                ..WebhookCfg::new(url)
            };
            let err = open(&cfg).err().expect("refused");
            assert!(err.contains(why), "{err}");
            assert!(!err.contains("t0ken") && !err.contains("u:p"), "{err}");
        }
        let cfg = WebhookCfg {
            headers: BTreeMap::from([("Content-Encoding".into(), "br".into())]),
            ..WebhookCfg::new("http://h/x")
        };
        assert!(open(&cfg).is_err());
    }
}
