//! `http` and `decode.error` event bodies: what the decode stage found on a
//! connection, with credentials redacted and bodies only when the operator asks.

use std::collections::HashSet;

use base64::Engine as _;
use serde::{Serialize, ser::SerializeMap};
use telltale::{
    decode::{Body, Coding, ConnView, DecodeError, Exchange, Head, Message, Protocol, Side, Start},
    llm,
};

use super::{ProcessOut, SocketOut, rfc3339};
use crate::{clock::Clock, conn::SocketView};

/// Replaced for a redacted value.
pub const REDACTED: &str = "[redacted]";

/// What the operator allows into `http` events.
#[derive(Debug, Clone, Default)]
pub struct HttpPolicy {
    /// Include decoded bodies (plaintext).
    pub bodies: bool,
    /// Header names (lower-case) whose values are replaced by [`REDACTED`].
    pub redact_headers: HashSet<String>,
    /// Query parameter names (lower-case) whose values are replaced.
    pub redact_query: HashSet<String>,
}

/// The TLS connection a decode event is about.
#[derive(Debug, Serialize)]
pub struct ConnOut {
    /// `pid:0xSSL*:id`.
    pub connection: String,
    /// Library family.
    pub library_kind: &'static str,
    /// The library or executable the probe sat in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub library: Option<String>,
    /// SNI the client asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// The network flow, or why it is not known.
    pub socket: SocketOut,
}

impl ConnOut {
    /// Describes a connection.
    pub fn new(
        connection: String,
        library: Option<&super::LibraryRef>,
        server_name: Option<&str>,
        socket: &SocketView,
    ) -> Self {
        Self {
            connection,
            library_kind: library.map_or("openssl", |l| l.kind),
            library: library.and_then(|l| l.path.clone()),
            server_name: server_name.map(str::to_owned),
            socket: SocketOut::new(socket),
        }
    }
}

/// Body of an `http` event: one request/response exchange.
#[derive(Debug, Serialize)]
pub struct HttpEvent {
    /// The process that made or served the requests.
    pub process: ProcessOut,
    /// The connection.
    pub tls: ConnOut,
    /// The exchange.
    pub http: HttpOut,
    /// The LLM API request, when the request is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub llm: Option<LlmOut>,
}

/// The `http` object.
#[derive(Debug, Serialize)]
pub struct HttpOut {
    /// `HTTP/1.1`, `HTTP/2`, …
    pub version: &'static str,
    /// `client` when the watched process sent the request, `server` when it
    /// received it.
    pub role: Option<Side>,
    /// HTTP/2 stream id or the request's ordinal on an HTTP/1 connection.
    pub stream: u64,
    /// The request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<MessageOut>,
    /// The response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<MessageOut>,
    /// Server-Sent Events of the response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sse: Option<SseOut>,
    /// Request start to response end, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
}

/// A request or response.
#[derive(Debug, Serialize)]
pub struct MessageOut {
    /// Request method.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// `https` (HTTP/2 `:scheme`; HTTP/1 over TLS is https).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// Host and port the request was for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// Path without the query.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Query string, credentials redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Response status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Header fields; repeated fields joined with `, `; credentials redacted.
    pub headers: Headers,
    /// Trailer fields.
    #[serde(skip_serializing_if = "Headers::is_empty")]
    pub trailers: Headers,
    /// The body.
    pub body: BodyOut,
    /// When the head was complete (RFC 3339).
    pub time: String,
    /// Head complete to message end, ms.
    pub duration_ms: f64,
    /// Why the message did not complete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aborted: Option<&'static str>,
}

/// Header fields in wire order.
#[derive(Debug, Default)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn new(fields: &[telltale::decode::Header], policy: &HttpPolicy) -> Self {
        let mut out: Vec<(String, String)> = Vec::new();
        for h in fields {
            let value = if policy.redact_headers.contains(&h.name) {
                REDACTED.to_owned()
            } else {
                String::from_utf8_lossy(&h.value).into_owned()
            };
            match out.iter_mut().find(|(n, _)| *n == h.name) {
                Some((_, v)) => {
                    v.push_str(", ");
                    v.push_str(&value);
                }
                None => out.push((h.name.clone(), value)),
            }
        }
        Self(out)
    }
}

impl Serialize for Headers {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// A body's sizes and, when allowed, its content.
#[derive(Debug, Serialize)]
pub struct BodyOut {
    /// Bytes on the wire (after transfer decoding).
    pub length: u64,
    /// Content codings applied, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub content_encoding: Vec<Coding>,
    /// Bytes of decoded content inspected.
    pub decoded_length: u64,
    /// Not all of the body was inspected (too long, or cut).
    pub truncated: bool,
    /// Why decoding stopped early.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// `utf8` or `base64`: how `content` is written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<&'static str>,
    /// The decoded content (only with `decode.http_bodies`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

impl BodyOut {
    fn new(b: &Body, policy: &HttpPolicy) -> Self {
        let content = b.content();
        let (encoding, text) = if policy.bodies && !content.is_empty() {
            match std::str::from_utf8(content) {
                Ok(s) => (Some("utf8"), Some(s.to_owned())),
                Err(_) => (
                    Some("base64"),
                    Some(base64::engine::general_purpose::STANDARD.encode(content)),
                ),
            }
        } else {
            (None, None)
        };
        Self {
            length: b.length,
            content_encoding: b.codings.clone(),
            decoded_length: content.len() as u64,
            truncated: b.truncated,
            problem: b.problem.clone(),
            encoding,
            content: text,
        }
    }
}

/// Server-Sent Events of a response.
#[derive(Debug, Serialize)]
pub struct SseOut {
    /// Events kept.
    pub count: usize,
    /// More events came than were kept.
    pub truncated: bool,
    /// Event names in order, e.g. `message_start`, `content_block_delta`.
    pub types: Vec<String>,
    /// The events (only with `decode.http_bodies`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<telltale::decode::SseEvent>>,
}

/// Summary of an LLM API request.
#[derive(Debug, Serialize)]
pub struct LlmOut {
    /// Provider id from the catalogue.
    pub provider: String,
    /// API shape.
    pub api: llm::Api,
    /// Model asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Streaming response asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Recognised by path shape only (a self-hosted compatible endpoint).
    pub self_hosted: bool,
    /// Text parts found, by role.
    pub parts: std::collections::BTreeMap<String, usize>,
    /// Why the body could not be read as that API's request, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Splits a request target into path and query.
fn split_target(target: &str) -> (&str, Option<&str>) {
    match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    }
}

/// Redacts the values of credential-like query parameters.
fn redact_query(query: &str, policy: &HttpPolicy) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if policy.redact_query.contains(&k.to_ascii_lowercase()) => {
                format!("{k}={REDACTED}")
            }
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The authority a request was for: HTTP/2 `:authority`, else `Host`.
pub fn authority(head: &Head) -> Option<&str> {
    match &head.start {
        Start::Request {
            authority: Some(a), ..
        } => Some(a.as_str()),
        _ => head.value("host"),
    }
}

fn ms(from: u64, to: u64) -> f64 {
    to.saturating_sub(from) as f64 / 1e6
}

impl MessageOut {
    fn new(m: &Message, clock: Clock, policy: &HttpPolicy) -> Self {
        let mut out = Self {
            method: None,
            scheme: None,
            authority: None,
            path: None,
            query: None,
            status: None,
            headers: Headers::new(&m.head.headers, policy),
            trailers: Headers::new(&m.trailers, policy),
            body: BodyOut::new(&m.body, policy),
            time: rfc3339(clock.to_unix_ns(m.start_ns)),
            duration_ms: ms(m.start_ns, m.end_ns),
            aborted: m.aborted,
        };
        match &m.head.start {
            Start::Request {
                method,
                target,
                scheme,
                ..
            } => {
                let (path, query) = split_target(target);
                out.method = Some(method.clone());
                out.scheme = Some(scheme.clone().unwrap_or_else(|| "https".into()));
                out.authority = authority(&m.head).map(str::to_owned);
                out.path = Some(path.to_owned());
                out.query = query.map(|q| redact_query(q, policy));
            }
            Start::Response { status } => out.status = Some(*status),
        }
        out
    }
}

/// Reads an exchange's request as an LLM API request, if the catalogue knows
/// its endpoint.
pub fn llm_summary(x: &Exchange, catalog: &llm::Catalog) -> Option<LlmOut> {
    let req = x.request.as_ref()?;
    let Start::Request { method, target, .. } = &req.head.start else {
        return None;
    };
    let endpoint = catalog.recognise(method, authority(&req.head), target)?;
    let (parts, problem, model, stream) = match llm::parse_request(&endpoint, req.body.content()) {
        Ok(r) => {
            let mut by_role = std::collections::BTreeMap::new();
            for p in &r.parts {
                *by_role.entry(role_name(p.role)).or_insert(0) += 1;
            }
            (by_role, None, r.model, r.stream)
        }
        Err(e) => (
            Default::default(),
            Some(e.to_string()),
            endpoint.model_from_path.clone(),
            None,
        ),
    };
    Some(LlmOut {
        provider: endpoint.provider.clone(),
        api: endpoint.api,
        model,
        stream,
        self_hosted: endpoint.self_hosted,
        parts,
        problem,
    })
}

fn role_name(r: llm::Role) -> String {
    serde_json::to_value(r)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl HttpOut {
    /// Describes an exchange.
    pub fn new(x: &Exchange, view: ConnView, clock: Clock, policy: &HttpPolicy) -> Self {
        let sse = x.sse.as_ref().map(|s| SseOut {
            count: s.events.len(),
            truncated: s.truncated,
            types: s
                .events
                .iter()
                .map(|e| e.event.clone().unwrap_or_else(|| "message".into()))
                .collect(),
            events: policy.bodies.then(|| s.events.clone()),
        });
        let duration_ms = match (&x.request, &x.response) {
            (Some(q), Some(r)) => Some(ms(q.start_ns, r.end_ns)),
            _ => None,
        };
        Self {
            version: match x.version() {
                Some(telltale::decode::Version::Http10) => "HTTP/1.0",
                Some(telltale::decode::Version::Http2) => "HTTP/2",
                _ => match view.protocol {
                    Protocol::Http2 => "HTTP/2",
                    _ => "HTTP/1.1",
                },
            },
            role: view.role,
            stream: x.stream,
            request: x
                .request
                .as_ref()
                .map(|m| MessageOut::new(m, clock, policy)),
            response: x
                .response
                .as_ref()
                .map(|m| MessageOut::new(m, clock, policy)),
            sse,
            duration_ms,
        }
    }
}

/// Body of a `decode.error` event.
#[derive(Debug, Serialize)]
pub struct DecodeErrorEvent {
    /// The process.
    pub process: ProcessOut,
    /// The connection.
    pub tls: ConnOut,
    /// Protocol and the watched process's role.
    pub decode: DecodeOut,
}

/// The `decode` object of a `decode.error`.
#[derive(Debug, Serialize)]
pub struct DecodeOut {
    /// Protocol of the connection.
    pub protocol: Protocol,
    /// The watched process's end.
    pub role: Option<Side>,
    /// The error.
    #[serde(flatten)]
    pub error: DecodeError,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> HttpPolicy {
        HttpPolicy {
            bodies: false,
            redact_headers: ["authorization", "x-api-key"].map(String::from).into(),
            redact_query: ["key"].map(String::from).into(),
        }
    }

    #[test]
    fn redacts_credentials_and_joins_repeats() {
        use telltale::decode::Header;
        let h = Headers::new(
            &[
                Header::new("Authorization", "Bearer sk-secret"),
                Header::new("accept", "a"),
                Header::new("accept", "b"),
            ],
            &policy(),
        );
        let v = serde_json::to_value(&h).unwrap();
        assert_eq!(v["authorization"], REDACTED);
        assert_eq!(v["accept"], "a, b");
        assert_eq!(
            redact_query("alt=sse&key=AIzaSecret&Key=x", &policy()),
            "alt=sse&key=[redacted]&Key=[redacted]"
        );
    }
}
