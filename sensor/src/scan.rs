//! Offline detection (`telltale scan`): the same decoding and detection as the
//! sensor, over recorded traffic, without root or BPF. Understood inputs:
//! - a request body (a JSON document), whose API is recognised from its shape;
//! - JSON lines of the sensor's own `tls.data` events (decoded like live
//!   traffic) or `http` events recorded with bodies;
//! - JSON lines of request records: `{"body": …, "api": …, "authority": …,
//!   "path": …, "headers": {…}}` (the format of the test corpus).

use std::collections::HashMap;

use base64::Engine as _;
use sensor_common::Direction;
use serde::Serialize;
use serde_json::Value;

use crate::{
    decode::{ConnView, Decoder, Header, Limits, Output, Side, Start},
    detect::{Detector, Finding, Request},
    llm::{self, Api, Catalog, Endpoint, Role, TextPart},
};

/// The text parts of a request: its body read as the endpoint's API (when it
/// can be), then its headers. Returns the parts, the model and whether the body
/// was readable.
pub fn request_parts(
    endpoint: &Endpoint,
    body: &[u8],
    headers: &[Header],
) -> (Vec<TextPart>, Option<String>, bool) {
    let (mut parts, model, ok) = match llm::parse_request(endpoint, body) {
        Ok(r) => (r.parts, r.model, true),
        Err(_) => (Vec::new(), endpoint.model_from_path.clone(), false),
    };
    parts.extend(headers.iter().map(|h| TextPart {
        path: format!("header:{}", h.name),
        role: Role::Header,
        text: String::from_utf8_lossy(&h.value).into_owned(),
    }));
    (parts, model, ok)
}

/// The API a bare request body looks like, from its top-level keys.
pub fn guess_api(body: &Value) -> Option<Api> {
    let has = |k: &str| body.get(k).is_some();
    Some(if has("contents") {
        Api::GeminiGenerate
    } else if body
        .get("input")
        .is_some_and(|i| i.get("messages").is_some() || i.get("prompt").is_some())
    {
        Api::DashScopeGeneration
    } else if has("input") || has("instructions") {
        Api::OpenAiResponses
    } else if has("messages") && (has("anthropic_version") || has("system")) {
        // Anthropic carries the system prompt beside the messages; OpenAI in them.
        Api::AnthropicMessages
    } else if has("messages") {
        Api::OpenAiChat
    } else if has("prompt") {
        Api::OpenAiCompletions
    } else {
        return None;
    })
}

/// One scanned request and what was found in it.
#[derive(Debug, Clone, Serialize)]
pub struct Scanned {
    /// `FILE:LINE` (or `FILE`), and the connection for decoded traffic.
    pub source: String,
    /// Provider, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// API shape.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api: Option<Api>,
    /// Destination.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// Path.
    pub path: String,
    /// Rules that fired.
    pub findings: Vec<Finding>,
    /// The record's id, when it had one (corpus records).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// Counters of a scan.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ScanStats {
    /// Requests inspected.
    pub requests: u64,
    /// Requests with at least one finding.
    pub alerted: u64,
    /// Lines or records that were not requests (skipped).
    pub skipped: u64,
    /// Lines that were not JSON.
    pub bad_lines: u64,
}

/// Runs detection over recorded traffic.
pub struct Scanner<'a> {
    detector: &'a Detector,
    catalog: &'a Catalog,
}

impl<'a> Scanner<'a> {
    /// A scanner with a compiled detector and a provider catalogue.
    pub fn new(detector: &'a Detector, catalog: &'a Catalog) -> Self {
        Self { detector, catalog }
    }

    /// Scans the text of one file named `origin`; every inspected request is
    /// passed to `out`.
    pub fn scan_text(&self, text: &str, origin: &str, out: &mut dyn FnMut(Scanned)) -> ScanStats {
        let mut stats = ScanStats::default();
        // A whole JSON document: a request body.
        if let Ok(v) = serde_json::from_str::<Value>(text)
            && v.is_object()
            && v.get("event_type").is_none()
            && v.get("body").is_none()
        {
            self.body_value(
                &v,
                text.as_bytes(),
                None,
                origin.to_owned(),
                None,
                &mut stats,
                out,
            );
            return stats;
        }
        let mut decoder: Decoder<String> = Decoder::new(Limits::default());
        let mut pending: Vec<(String, crate::decode::Exchange)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let source = format!("{origin}:{}", i + 1);
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                stats.bad_lines += 1;
                continue;
            };
            match v.get("event_type").and_then(Value::as_str) {
                Some("tls.data") => {
                    self.tls_data(&v, &mut decoder, &mut pending, &mut stats);
                }
                Some("http") => self.http_event(&v, source, &mut stats, out),
                Some(_) => stats.skipped += 1,
                None if v.get("body").is_some() => self.record(&v, source, &mut stats, out),
                None => stats.skipped += 1,
            }
            for (conn, x) in pending.drain(..) {
                self.exchange(&x, format!("{origin} connection {conn}"), &mut stats, out);
            }
        }
        decoder.flush(&mut |k: &String, v: ConnView, o: Output<'_>| {
            if let (Output::Request(x), Some(Side::Client)) = (o, v.role) {
                pending.push((k.clone(), x.clone()));
            }
        });
        for (conn, x) in pending.drain(..) {
            self.exchange(&x, format!("{origin} connection {conn}"), &mut stats, out);
        }
        stats
    }

    fn tls_data(
        &self,
        v: &Value,
        decoder: &mut Decoder<String>,
        pending: &mut Vec<(String, crate::decode::Exchange)>,
        stats: &mut ScanStats,
    ) {
        let conn = v["tls"]["connection"].as_str().unwrap_or("?").to_owned();
        let dir = match v["tls"]["direction"].as_str() {
            Some("egress") => Direction::Egress,
            Some("ingress") => Direction::Ingress,
            _ => {
                stats.skipped += 1;
                return;
            }
        };
        let m = &v["message"];
        let data = match (m["encoding"].as_str(), m["data"].as_str()) {
            (Some("utf8"), Some(d)) => d.as_bytes().to_vec(),
            (Some("base64"), Some(d)) => {
                match base64::engine::general_purpose::STANDARD.decode(d) {
                    Ok(b) => b,
                    Err(_) => {
                        stats.bad_lines += 1;
                        return;
                    }
                }
            }
            _ => {
                stats.skipped += 1;
                return;
            }
        };
        let lost = m["complete"] == false || m["truncated"] == true;
        let ts = m["mono_ns"].as_u64().unwrap_or(0);
        decoder.feed(&conn, dir, &data, ts, lost, &mut |k, view, o| {
            if let (Output::Request(x), Some(Side::Client)) = (o, view.role) {
                pending.push((k.clone(), x.clone()));
            }
        });
    }

    fn exchange(
        &self,
        x: &crate::decode::Exchange,
        source: String,
        stats: &mut ScanStats,
        out: &mut dyn FnMut(Scanned),
    ) {
        let Some(req) = &x.request else { return };
        let Start::Request { method, target, .. } = &req.head.start else {
            return;
        };
        let authority = match &req.head.start {
            Start::Request {
                authority: Some(a), ..
            } => Some(a.as_str()),
            _ => req.head.value("host"),
        };
        let path = target.split('?').next().unwrap_or(target);
        let Some(endpoint) = self.catalog.recognise(method, authority, target) else {
            stats.skipped += 1;
            return;
        };
        let (parts, _, _) = request_parts(&endpoint, req.body.content(), &req.head.headers);
        self.inspect(&endpoint, authority, path, &parts, source, None, stats, out);
    }

    fn http_event(
        &self,
        v: &Value,
        source: String,
        stats: &mut ScanStats,
        out: &mut dyn FnMut(Scanned),
    ) {
        let q = &v["http"]["request"];
        let (Some(method), Some(path)) = (q["method"].as_str(), q["path"].as_str()) else {
            stats.skipped += 1;
            return;
        };
        let Some(body) = q["body"]["content"].as_str() else {
            stats.skipped += 1;
            return;
        };
        let authority = q["authority"].as_str();
        let headers = headers_of(&q["headers"]);
        let Some(endpoint) = self.catalog.recognise(method, authority, path) else {
            stats.skipped += 1;
            return;
        };
        let (parts, _, _) = request_parts(&endpoint, body.as_bytes(), &headers);
        self.inspect(&endpoint, authority, path, &parts, source, None, stats, out);
    }

    fn record(
        &self,
        v: &Value,
        source: String,
        stats: &mut ScanStats,
        out: &mut dyn FnMut(Scanned),
    ) {
        let body_text = match &v["body"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let api = v["api"]
            .as_str()
            .and_then(|a| serde_json::from_value::<Api>(Value::String(a.into())).ok());
        let id = v["id"].as_str().map(str::to_owned);
        let headers = headers_of(&v["headers"]);
        let authority = v["authority"].as_str();
        let path = v["path"].as_str().unwrap_or("/");
        // The catalogue decides when it knows the endpoint; else the record's api.
        let endpoint = self
            .catalog
            .recognise("POST", authority, path)
            .or_else(|| api.map(|api| bare_endpoint(api, v["provider"].as_str())));
        let Some(endpoint) = endpoint else {
            stats.skipped += 1;
            return;
        };
        let (parts, _, _) = request_parts(&endpoint, body_text.as_bytes(), &headers);
        self.inspect(&endpoint, authority, path, &parts, source, id, stats, out);
    }

    #[allow(clippy::too_many_arguments)]
    fn body_value(
        &self,
        v: &Value,
        raw: &[u8],
        api: Option<Api>,
        source: String,
        id: Option<String>,
        stats: &mut ScanStats,
        out: &mut dyn FnMut(Scanned),
    ) {
        let Some(api) = api.or_else(|| guess_api(v)) else {
            stats.skipped += 1;
            return;
        };
        let endpoint = bare_endpoint(api, None);
        let (parts, _, _) = request_parts(&endpoint, raw, &[]);
        self.inspect(&endpoint, None, "/", &parts, source, id, stats, out);
    }

    #[allow(clippy::too_many_arguments)]
    fn inspect(
        &self,
        endpoint: &Endpoint,
        authority: Option<&str>,
        path: &str,
        parts: &[TextPart],
        source: String,
        id: Option<String>,
        stats: &mut ScanStats,
        out: &mut dyn FnMut(Scanned),
    ) {
        let request = Request {
            provider: Some(&endpoint.provider),
            api: Some(endpoint.api),
            authority,
            method: "POST",
            path,
            exe: None,
            comm: "scan",
            parts,
        };
        let findings = self.detector.inspect(&request, None);
        stats.requests += 1;
        if !findings.is_empty() {
            stats.alerted += 1;
        }
        out(Scanned {
            source,
            provider: Some(endpoint.provider.clone()),
            api: Some(endpoint.api),
            authority: authority.map(str::to_owned),
            path: path.to_owned(),
            findings,
            id,
        });
    }
}

fn bare_endpoint(api: Api, provider: Option<&str>) -> Endpoint {
    Endpoint {
        provider: provider.unwrap_or("unknown").to_owned(),
        provider_name: provider.unwrap_or("unknown").to_owned(),
        api,
        model_from_path: None,
        self_hosted: false,
        streaming: false,
    }
}

fn headers_of(v: &Value) -> Vec<Header> {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| Header::new(k, s.as_bytes())))
                .collect()
        })
        .unwrap_or_default()
}

/// Detection quality over a labelled corpus (tests/corpus).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Quality {
    /// Cases labelled to alert that alerted.
    pub true_positives: u64,
    /// Cases labelled to alert that did not.
    pub false_negatives: u64,
    /// Cases labelled quiet that alerted.
    pub false_positives: u64,
    /// Cases labelled quiet that stayed quiet.
    pub true_negatives: u64,
    /// Labelled fact kinds named by an alert of the case / labelled kinds.
    pub kinds_found: u64,
    /// Labelled fact kinds in alerting cases.
    pub kinds_labelled: u64,
    /// Ids of the cases that went wrong, for the report.
    pub wrong: Vec<String>,
}

impl Quality {
    /// Share of alert-worthy cases that alerted.
    pub fn recall(&self) -> f64 {
        ratio(
            self.true_positives,
            self.true_positives + self.false_negatives,
        )
    }

    /// Share of quiet cases that alerted.
    pub fn false_positive_rate(&self) -> f64 {
        ratio(
            self.false_positives,
            self.false_positives + self.true_negatives,
        )
    }

    /// Share of labelled fact kinds that alerts named.
    pub fn kind_recall(&self) -> f64 {
        ratio(self.kinds_found, self.kinds_labelled)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

/// Scores a scanner over corpus lines (`{"id", "label": {"alert", "kinds"}, …}`).
pub fn evaluate(scanner: &Scanner<'_>, corpus: &str) -> Quality {
    let labels: HashMap<String, (bool, Vec<String>)> = corpus
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| {
            let id = v["id"].as_str()?.to_owned();
            let alert = v["label"]["alert"].as_bool()?;
            let kinds = v["label"]["kinds"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|k| k.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            Some((id, (alert, kinds)))
        })
        .collect();
    let mut q = Quality::default();
    scanner.scan_text(corpus, "corpus", &mut |s| {
        let Some(id) = s.id.clone() else { return };
        let Some((want, kinds)) = labels.get(&id) else {
            return;
        };
        // The corpus labels host facts: identifier-only findings do not count.
        let got = s.findings.iter().any(|f| !f.facts.is_empty());
        match (want, got) {
            (true, true) => q.true_positives += 1,
            (true, false) => q.false_negatives += 1,
            (false, true) => q.false_positives += 1,
            (false, false) => q.true_negatives += 1,
        }
        if want != &got {
            q.wrong.push(id.clone());
        }
        if *want {
            let named: std::collections::BTreeSet<&str> = s
                .findings
                .iter()
                .flat_map(|f| f.facts.iter().map(|x| x.kind.as_str()))
                .collect();
            q.kinds_labelled += kinds.len() as u64;
            q.kinds_found += kinds.iter().filter(|k| named.contains(k.as_str())).count() as u64;
        }
    });
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{RuleSet, example_facts};

    fn corpus() -> String {
        let path = format!("{}/../tests/corpus/cases.jsonl", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn the_labelled_corpus_is_detected_with_high_recall_and_few_false_positives() {
        let d = Detector::new(&RuleSet::embedded().unwrap(), &example_facts(), [3u8; 32]).unwrap();
        let catalog = Catalog::embedded();
        let q = evaluate(&Scanner::new(&d, catalog), &corpus());
        let total = q.true_positives + q.false_negatives + q.false_positives + q.true_negatives;
        assert!(total >= 400, "{q:?}");
        eprintln!(
            "recall {:.3}, false-positive rate {:.3}, kind recall {:.3}; wrong: {:?}",
            q.recall(),
            q.false_positive_rate(),
            q.kind_recall(),
            q.wrong
        );
        assert!(
            q.recall() >= 0.95,
            "recall {:.3}: {:?}",
            q.recall(),
            q.wrong
        );
        assert!(
            q.false_positive_rate() <= 0.02,
            "FP rate {:.3}: {:?}",
            q.false_positive_rate(),
            q.wrong
        );
        assert!(
            q.kind_recall() >= 0.90,
            "kind recall {:.3}",
            q.kind_recall()
        );
    }

    #[test]
    fn bare_bodies_tls_data_and_http_events_are_scanned() {
        let d = Detector::new(&RuleSet::embedded().unwrap(), &example_facts(), [3u8; 32]).unwrap();
        let catalog = Catalog::embedded();
        let s = Scanner::new(&d, catalog);
        let body = r#"{"model":"m","max_tokens":9,"system":"OS Version: Linux 6.1.0-18-amd64","messages":[]}"#;
        let mut got = Vec::new();
        let st = s.scan_text(body, "body.json", &mut |x| got.push(x));
        assert_eq!((st.requests, st.alerted), (1, 1));
        assert_eq!(got[0].api, Some(Api::AnthropicMessages));
        let req = format!(
            "POST /v1/messages HTTP/1.1\r\nHost: api.anthropic.com\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let line = serde_json::json!({"event_type":"tls.data","tls":{"connection":"1:0x1:1","direction":"egress"},
            "message":{"encoding":"utf8","data":req,"complete":true,"truncated":false,"mono_ns":1}});
        let mut got = Vec::new();
        let st = s.scan_text(&format!("{line}\nnot json\n"), "cap.jsonl", &mut |x| {
            got.push(x)
        });
        assert_eq!((st.requests, st.alerted, st.bad_lines), (1, 1, 1), "{st:?}");
        assert_eq!(got[0].authority.as_deref(), Some("api.anthropic.com"));
        let http = serde_json::json!({"event_type":"http","http":{"request":{"method":"POST","authority":"api.anthropic.com",
            "path":"/v1/messages","headers":{"x-tz":"Europe/Berlin"},"body":{"content":body}}}});
        let st = s.scan_text(&http.to_string(), "http.jsonl", &mut |_| {});
        assert_eq!((st.requests, st.alerted), (1, 1));
    }
}
