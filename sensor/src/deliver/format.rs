//! The formats a sink can deliver events in: Telltale's native JSON (see
//! `schema/telltale-event.schema.json`), OCSF 1.3 and ECS 8.x.
//!
//! Both alternatives are computed from the native event as JSON, so they follow
//! whatever the sensor printed and never see more than it did (credentials stay
//! `[redacted]`, alert evidence stays masked and hashed).
//!
//! - **OCSF 1.3**: `alert` is a Detection Finding (class 2004) and `http` an HTTP
//!   Activity (class 4002). `tls.data` (raw plaintext), `decode.error` and
//!   `sensor.status` (the sensor's own health) are neither findings nor network
//!   activities of the host: they have no OCSF mapping and [`render`] returns
//!   `None` for them, so an OCSF sink skips them.
//! - **ECS 8.x**: every event type maps to an ECS document; what ECS has no
//!   field for stays under `telltale.*` with its native name.
//!
//! Endpoints follow the HTTP roles: the client end of a connection is the
//! source, the server end the destination, whichever end the watched process is
//! (`http.role`; alerts are always about requests the process sent). Without a
//! known role, the process's own end is the source.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::Level;

/// A sink's output format.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Telltale's own events, unchanged.
    #[default]
    Native,
    /// Open Cybersecurity Schema Framework 1.3 (alerts and HTTP exchanges only).
    Ocsf,
    /// Elastic Common Schema 8.x.
    Ecs,
}

/// OCSF schema version the mapping follows.
pub const OCSF_VERSION: &str = "1.3.0";
/// ECS version the mapping follows.
pub const ECS_VERSION: &str = "8.11.0";
/// Product and vendor name in both formats.
const PRODUCT: &str = "Telltale";
/// OCSF `finding_info.data_sources` / ECS `event.provider`.
const DATA_SOURCE: &str = "TLS plaintext (eBPF uprobes)";

/// `native` in `format`, or `None` when the format has no mapping for its event
/// type (OCSF for `tls.data`, `decode.error` and `sensor.status`) or the event is
/// not a Telltale event (no `event_type`).
pub fn render(format: Format, native: &Value) -> Option<Value> {
    match format {
        Format::Native => Some(native.clone()),
        Format::Ocsf => match event_type(native)? {
            "alert" => Some(ocsf_alert(native)),
            "http" => Some(ocsf_http(native)),
            _ => None,
        },
        Format::Ecs => {
            event_type(native)?;
            Some(ecs(native))
        }
    }
}

/// The level of a native event: an alert's severity; what an enforcement
/// policy did; `Low` for decode errors, coverage gaps and inventory changes;
/// `Info` for everything else (and for alerts of unknown severity).
pub fn level(native: &Value) -> Level {
    match event_type(native) {
        Some("alert") => match str_at(native, "/alert/severity") {
            Some("low") => Level::Low,
            Some("medium") => Level::Medium,
            Some("high") => Level::High,
            Some("critical") => Level::Critical,
            _ => Level::Info,
        },
        // What a policy did to a process.
        Some("enforcement") => match str_at(native, "/enforcement/action") {
            Some("blocked" | "killed") => Level::High,
            Some("would_block" | "would_kill" | "not_held" | "alerted") => Level::Medium,
            _ if str_at(native, "/enforcement/reason").is_some_and(|r| r != "policy") => Level::Low,
            _ => Level::Info,
        },
        Some(t) => level_of_type(t),
        None => Level::Info,
    }
}

/// The level of events of type `event_type` whose level does not depend on
/// their content (all but alerts and enforcement events).
pub fn level_of_type(event_type: &str) -> Level {
    match event_type {
        // A process whose TLS the sensor cannot see: worth a look.
        "decode.error" | "coverage" | "inventory" => Level::Low,
        _ => Level::Info,
    }
}

/// Suricata-style flow id of a flow: the first 8 bytes (big-endian) of SHA-256
/// of its Community ID string, with the top bit cleared so it is a positive
/// `i64` (Suricata's `flow_id` is a signed 64-bit integer). Both ends of a flow
/// have the same Community ID, hence the same flow id.
pub fn flow_id(community_id: &str) -> i64 {
    let digest = Sha256::digest(community_id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) & (i64::MAX as u64)) as i64
}

// ---------------------------------------------------------------------------
// Reading the native event.

fn event_type(v: &Value) -> Option<&str> {
    v.get("event_type")?.as_str()
}

fn at<'a>(v: &'a Value, pointer: &str) -> Option<&'a Value> {
    v.pointer(pointer).filter(|x| !x.is_null())
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer)?.as_str()
}

fn u64_at(v: &Value, pointer: &str) -> Option<u64> {
    v.pointer(pointer)?.as_u64()
}

/// Inserts `value` under `key` unless it is null (absent in the native event).
fn put(m: &mut Map<String, Value>, key: &str, value: impl Into<Value>) {
    let value = value.into();
    if !value.is_null() && value != json!({}) && value != json!([]) {
        m.insert(key.to_owned(), value);
    }
}

/// A JSON object from `(key, value)` pairs, without the null ones.
fn obj<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    let mut m = Map::new();
    for (k, v) in pairs {
        put(&mut m, k, v);
    }
    Value::Object(m)
}

fn opt<T: Into<Value>>(x: Option<T>) -> Value {
    x.map_or(Value::Null, Into::into)
}

/// The native fields `keys` of `v` (those present).
fn pick(v: &Value, keys: &[&str]) -> Value {
    let mut m = Map::new();
    for k in keys {
        if let Some(x) = v.get(*k) {
            m.insert((*k).to_owned(), x.clone());
        }
    }
    Value::Object(m)
}

/// Milliseconds since the Unix epoch of an RFC 3339 time
/// (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`), or `None` if it is not one.
pub fn rfc3339_to_unix_ms(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let s = t.get(from..from + len)?;
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, min, sec) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..3 {
            millis *= 10;
        }
    }
    let offset_min = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let m = num(i + 1, 2)? * 60 + num(i + 4, 2)?;
            if *sign == b'-' { -m } else { m }
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_min * 60;
    Some(secs * 1000 + millis)
}

/// Host and port of an authority (`host`, `host:port`, `[v6]:port`).
fn split_authority(a: &str) -> (&str, Option<u16>) {
    if let Some(rest) = a.strip_prefix('[') {
        if let Some((host, tail)) = rest.split_once(']') {
            return (host, tail.strip_prefix(':').and_then(|p| p.parse().ok()));
        }
        return (a, None);
    }
    match a.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(port) => (h, Some(port)),
            Err(_) => (a, None),
        },
        _ => (a, None),
    }
}

/// The client and server ends of the connection as `(ip, port)`, from
/// `tls.socket` and the watched process's role.
struct Flow<'a> {
    client: (&'a str, u64),
    server: (&'a str, u64),
    transport: Option<&'a str>,
    community_id: Option<&'a str>,
}

fn flow<'a>(e: &'a Value, process_is_server: bool) -> Option<Flow<'a>> {
    let s = at(e, "/tls/socket")?;
    let local = (str_at(s, "/local_ip")?, u64_at(s, "/local_port")?);
    let remote = (str_at(s, "/remote_ip")?, u64_at(s, "/remote_port")?);
    let (client, server) = if process_is_server {
        (remote, local)
    } else {
        (local, remote)
    };
    Some(Flow {
        client,
        server,
        transport: str_at(s, "/transport"),
        community_id: str_at(s, "/community_id"),
    })
}

/// Whether the watched process is the server end (an `http` event with role
/// `server`); alerts and everything else are seen from the sending process.
fn process_is_server(e: &Value) -> bool {
    str_at(e, "/http/role") == Some("server")
}

/// The request of an event: `request` of an alert, `http.request` of an exchange.
fn request(e: &Value) -> Option<&Value> {
    at(e, "/request").or_else(|| at(e, "/http/request"))
}

/// The server's name as the request named it, else the SNI.
fn server_domain(e: &Value) -> Option<&str> {
    request(e)
        .and_then(|r| str_at(r, "/authority"))
        .map(|a| split_authority(a).0)
        .filter(|h| !h.is_empty())
        .or_else(|| str_at(e, "/tls/server_name"))
}

fn header<'a>(msg: &'a Value, name: &str) -> Option<&'a str> {
    str_at(msg, &format!("/headers/{name}"))
}

/// The class of finding an alert reports, from what its hits matched.
fn alert_category(e: &Value) -> &'static str {
    let hits = at(e, "/alert/hits")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let source = |t: &str| hits.iter().any(|h| str_at(h, "/source/type") == Some(t));
    let facts = at(e, "/alert/facts")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    if facts || source("fact") {
        "Host fingerprint exfiltration"
    } else if source("identifier") {
        "Tracking identifier"
    } else {
        "Custom pattern"
    }
}

/// The ATT&CK ids of an alert.
fn attack_ids(e: &Value) -> Vec<&str> {
    at(e, "/alert/attack")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Names and tactics of the ATT&CK techniques Telltale's rules use.
fn technique(id: &str) -> Option<(&'static str, &'static str, &'static str)> {
    let parent = id.split('.').next().unwrap_or(id);
    Some(match parent {
        "T1082" => ("System Information Discovery", "TA0007", "Discovery"),
        "T1083" => ("File and Directory Discovery", "TA0007", "Discovery"),
        "T1016" => (
            "System Network Configuration Discovery",
            "TA0007",
            "Discovery",
        ),
        "T1124" => ("System Time Discovery", "TA0007", "Discovery"),
        "T1033" => ("System Owner/User Discovery", "TA0007", "Discovery"),
        "T1018" => ("Remote System Discovery", "TA0007", "Discovery"),
        "T1087" => ("Account Discovery", "TA0007", "Discovery"),
        "T1567" => ("Exfiltration Over Web Service", "TA0010", "Exfiltration"),
        "T1048" => (
            "Exfiltration Over Alternative Protocol",
            "TA0010",
            "Exfiltration",
        ),
        "T1041" => ("Exfiltration Over C2 Channel", "TA0010", "Exfiltration"),
        "T1005" => ("Data from Local System", "TA0009", "Collection"),
        "T1552" => ("Unsecured Credentials", "TA0006", "Credential Access"),
        _ => return None,
    })
}

fn attack_url(id: &str) -> String {
    format!(
        "https://attack.mitre.org/techniques/{}/",
        id.replace('.', "/")
    )
}

// ---------------------------------------------------------------------------
// OCSF 1.3.

/// OCSF `severity_id` and caption of a native severity.
fn ocsf_severity(sev: Option<&str>) -> (u8, &'static str) {
    match sev {
        Some("info") => (1, "Informational"),
        Some("low") => (2, "Low"),
        Some("medium") => (3, "Medium"),
        Some("high") => (4, "High"),
        Some("critical") => (5, "Critical"),
        _ => (0, "Unknown"),
    }
}

fn ocsf_metadata(e: &Value, correlation_uid: Option<String>) -> Value {
    obj([
        ("version", json!(OCSF_VERSION)),
        (
            "product",
            obj([
                ("name", json!(PRODUCT)),
                ("vendor_name", json!(PRODUCT)),
                ("version", opt(str_at(e, "/sensor/version"))),
            ]),
        ),
        ("uid", opt(str_at(e, "/event_id"))),
        ("correlation_uid", opt(correlation_uid)),
        ("log_name", opt(event_type(e))),
        ("original_time", opt(str_at(e, "/time"))),
    ])
}

fn ocsf_device(e: &Value) -> Value {
    obj([
        ("hostname", opt(str_at(e, "/host/hostname"))),
        ("uid", opt(str_at(e, "/host/machine_id"))),
        ("type_id", json!(0)),
        ("type", json!("Unknown")),
    ])
}

/// OCSF `process` of the native `process`.
fn ocsf_process(e: &Value) -> Value {
    let Some(p) = at(e, "/process") else {
        return Value::Null;
    };
    let exe = str_at(p, "/exe");
    let file = exe.map(|path| {
        obj([
            ("path", json!(path)),
            ("name", json!(path.rsplit('/').next().unwrap_or(path))),
            ("type_id", json!(1)),
            ("type", json!("Regular File")),
            (
                "hashes",
                opt(str_at(p, "/exe_sha256")
                    .map(|h| json!([{"algorithm_id": 3, "algorithm": "SHA-256", "value": h}]))),
            ),
        ])
    });
    let cmd_line = at(p, "/cmdline").and_then(Value::as_array).map(|a| {
        a.iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" ")
    });
    let user = (at(p, "/user").is_some() || at(p, "/uid").is_some()).then(|| {
        obj([
            ("name", opt(str_at(p, "/user"))),
            ("uid", opt(u64_at(p, "/uid").map(|u| u.to_string()))),
        ])
    });
    let parent = u64_at(p, "/ppid").map(|ppid| {
        let first = at(p, "/ancestry/0").filter(|a| u64_at(a, "/pid") == Some(ppid));
        obj([
            ("pid", json!(ppid)),
            ("name", opt(first.and_then(|a| str_at(a, "/comm")))),
            (
                "file",
                opt(first.and_then(|a| str_at(a, "/exe")).map(
                    |x| json!({"path": x, "name": x.rsplit('/').next().unwrap_or(x), "type_id": 1}),
                )),
            ),
        ])
    });
    let container = at(p, "/container").map(|c| {
        obj([
            ("uid", opt(str_at(c, "/id"))),
            ("runtime", opt(str_at(c, "/runtime"))),
        ])
    });
    obj([
        ("pid", opt(u64_at(p, "/pid"))),
        ("name", opt(str_at(p, "/comm"))),
        ("file", opt(file)),
        ("cmd_line", opt(cmd_line.filter(|c| !c.is_empty()))),
        ("user", opt(user)),
        ("parent_process", opt(parent)),
        ("container", opt(container)),
        ("tid", opt(u64_at(e, "/thread/tid"))),
    ])
}

fn ocsf_endpoint(ip: Option<(&str, u64)>, hostname: Option<&str>) -> Value {
    obj([
        ("ip", opt(ip.map(|x| x.0))),
        ("port", opt(ip.map(|x| x.1))),
        ("hostname", opt(hostname)),
    ])
}

fn ocsf_connection_info(f: Option<&Flow<'_>>, process_is_server: bool) -> Value {
    let Some(f) = f else {
        return Value::Null;
    };
    let proto_num = match f.transport {
        Some("udp") => 17,
        _ => 6,
    };
    let v6 = f.server.0.contains(':');
    obj([
        ("protocol_name", opt(f.transport)),
        ("protocol_num", json!(proto_num)),
        ("protocol_ver_id", json!(if v6 { 6 } else { 4 })),
        ("direction_id", json!(if process_is_server { 1 } else { 2 })),
        (
            "direction",
            json!(if process_is_server {
                "Inbound"
            } else {
                "Outbound"
            }),
        ),
        ("community_uid", opt(f.community_id)),
    ])
}

fn ocsf_alert(e: &Value) -> Value {
    let (severity_id, severity) = ocsf_severity(str_at(e, "/alert/severity"));
    let event_id = str_at(e, "/event_id");
    let rule_id = str_at(e, "/alert/id");
    let title = str_at(e, "/alert/title");
    let version = u64_at(e, "/alert/version");
    let f = flow(e, false);
    let domain = server_domain(e);
    let correlation = rule_id.map(|id| {
        let mut s = format!("{id}@{}", version.unwrap_or(0));
        let mut names: Vec<&str> = at(e, "/alert/facts")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|x| str_at(x, "/name")).collect())
            .unwrap_or_default();
        if names.is_empty() {
            names = at(e, "/alert/hits")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|x| str_at(x, "/evidence/hash"))
                        .collect()
                })
                .unwrap_or_default();
        }
        names.sort_unstable();
        names.dedup();
        for n in names {
            s.push('|');
            s.push_str(n);
        }
        s
    });
    let attacks: Vec<Value> = attack_ids(e)
        .into_iter()
        .map(|id| {
            let known = technique(id);
            obj([
                (
                    "technique",
                    obj([("uid", json!(id)), ("name", opt(known.map(|k| k.0)))]),
                ),
                (
                    "tactic",
                    opt(known.map(|k| json!({"uid": k.1, "name": k.2}))),
                ),
            ])
        })
        .collect();
    let url = request(e).map(|r| {
        let (_, port) = str_at(r, "/authority").map_or(("", None), split_authority);
        obj([
            ("hostname", opt(domain)),
            ("port", opt(port)),
            ("path", opt(str_at(r, "/path"))),
            ("scheme", json!("https")),
        ])
    });
    let evidence = obj([
        ("process", ocsf_process(e)),
        (
            "src_endpoint",
            ocsf_endpoint(f.as_ref().map(|f| f.client), None),
        ),
        (
            "dst_endpoint",
            ocsf_endpoint(f.as_ref().map(|f| f.server), domain),
        ),
        ("connection_info", ocsf_connection_info(f.as_ref(), false)),
        ("url", opt(url)),
        (
            "data",
            obj([
                ("request", opt(at(e, "/request").cloned())),
                ("hits", opt(at(e, "/alert/hits").cloned())),
            ]),
        ),
    ]);
    let mut observables = Vec::new();
    if let Some(d) = domain {
        observables.push(json!({"name": "evidences[0].dst_endpoint.hostname", "type_id": 1, "type": "Hostname", "value": d}));
    }
    if let Some(f) = &f {
        observables.push(json!({"name": "evidences[0].dst_endpoint.ip", "type_id": 2, "type": "IP Address", "value": f.server.0}));
    }
    if let Some(c) = str_at(e, "/process/comm") {
        observables.push(json!({"name": "evidences[0].process.name", "type_id": 9, "type": "Process Name", "value": c}));
    }
    if let Some(h) = str_at(e, "/process/exe_sha256") {
        observables.push(json!({"name": "evidences[0].process.file.hashes[0].value", "type_id": 8, "type": "Hash", "value": h}));
    }
    for (i, h) in at(e, "/alert/hits")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if let Some(hash) = str_at(h, "/evidence/hash") {
            observables.push(json!({"name": format!("unmapped.alert.hits[{i}].evidence.hash"), "type_id": 99, "type": "Other", "value": hash}));
        }
    }
    let window = at(e, "/alert/window");
    let start = window.and_then(|w| str_at(w, "/first").and_then(rfc3339_to_unix_ms));
    let end = window.and_then(|w| str_at(w, "/last").and_then(rfc3339_to_unix_ms));
    let finding_info = obj([
        ("uid", opt(event_id)),
        ("title", opt(title)),
        ("desc", opt(str_at(e, "/alert/summary"))),
        ("types", json!([alert_category(e)])),
        (
            "analytic",
            obj([
                ("uid", opt(rule_id)),
                ("name", opt(title)),
                ("type_id", json!(1)),
                ("type", json!("Rule")),
                ("version", opt(version.map(|v| v.to_string()))),
            ]),
        ),
        ("attacks", json!(attacks)),
        ("data_sources", json!([DATA_SOURCE])),
        ("first_seen_time", opt(start)),
        ("last_seen_time", opt(end)),
    ]);
    let mut unmapped = Map::new();
    put(
        &mut unmapped,
        "alert",
        pick(
            at(e, "/alert").unwrap_or(&Value::Null),
            &["facts", "hits", "total_hits", "severity"],
        ),
    );
    put(&mut unmapped, "request", opt(at(e, "/request").cloned()));
    put(&mut unmapped, "flow_id", opt(at(e, "/flow_id").cloned()));
    put(
        &mut unmapped,
        "tls",
        pick(
            at(e, "/tls").unwrap_or(&Value::Null),
            &["connection", "library_kind", "library", "server_name"],
        ),
    );
    put(&mut unmapped, "process", opt(at(e, "/process").cloned()));
    put(&mut unmapped, "host", opt(at(e, "/host").cloned()));
    obj([
        ("activity_id", json!(1)),
        ("activity_name", json!("Create")),
        ("category_uid", json!(2)),
        ("category_name", json!("Findings")),
        ("class_uid", json!(2004)),
        ("class_name", json!("Detection Finding")),
        ("type_uid", json!(200401)),
        ("type_name", json!("Detection Finding: Create")),
        ("severity_id", json!(severity_id)),
        ("severity", json!(severity)),
        ("status_id", json!(1)),
        ("status", json!("New")),
        ("time", opt(str_at(e, "/time").and_then(rfc3339_to_unix_ms))),
        ("start_time", opt(start)),
        ("end_time", opt(end)),
        ("count", opt(u64_at(e, "/alert/occurrences"))),
        ("message", opt(str_at(e, "/alert/summary"))),
        ("metadata", ocsf_metadata(e, correlation)),
        ("finding_info", finding_info),
        ("evidences", json!([evidence])),
        ("observables", json!(observables)),
        ("device", ocsf_device(e)),
        ("unmapped", Value::Object(unmapped)),
    ])
}

/// OCSF 1.3 HTTP Activity `activity_id` of a method (1.3 has no PATCH: Other).
fn ocsf_http_activity(method: Option<&str>) -> (u8, String) {
    let m = method.unwrap_or("");
    let id = match m.to_ascii_uppercase().as_str() {
        "CONNECT" => 1,
        "DELETE" => 2,
        "GET" => 3,
        "HEAD" => 4,
        "OPTIONS" => 5,
        "POST" => 6,
        "PUT" => 7,
        "TRACE" => 8,
        "" => 0,
        _ => 99,
    };
    let name = match id {
        0 => "Unknown".to_owned(),
        99 => m.to_owned(),
        _ => {
            let mut c = m.to_ascii_lowercase();
            if let Some(first) = c.get_mut(0..1) {
                first.make_ascii_uppercase();
            }
            c
        }
    };
    (id, name)
}

fn ocsf_headers(msg: &Value) -> Value {
    let Some(h) = at(msg, "/headers").and_then(Value::as_object) else {
        return Value::Null;
    };
    Value::Array(
        h.iter()
            .map(|(k, v)| json!({"name": k, "value": v}))
            .collect(),
    )
}

fn ocsf_http(e: &Value) -> Value {
    let req = at(e, "/http/request");
    let resp = at(e, "/http/response");
    let method = req.and_then(|r| str_at(r, "/method"));
    let (activity_id, activity_name) = ocsf_http_activity(method);
    let server = process_is_server(e);
    let f = flow(e, server);
    let domain = server_domain(e);
    let version = str_at(e, "/http/version");
    let http_request = req.map(|r| {
        let authority = str_at(r, "/authority");
        let (_, port) = authority.map_or(("", None), split_authority);
        let scheme = str_at(r, "/scheme");
        let path = str_at(r, "/path");
        let query = str_at(r, "/query");
        let url_string = authority.map(|a| {
            let mut s = format!("{}://{a}{}", scheme.unwrap_or("https"), path.unwrap_or("/"));
            if let Some(q) = query {
                s.push('?');
                s.push_str(q);
            }
            s
        });
        obj([
            ("http_method", opt(method)),
            (
                "url",
                obj([
                    ("hostname", opt(domain)),
                    ("port", opt(port)),
                    ("path", opt(path)),
                    ("query_string", opt(query)),
                    ("scheme", opt(scheme)),
                    ("url_string", opt(url_string)),
                ]),
            ),
            ("user_agent", opt(header(r, "user-agent"))),
            ("version", opt(version)),
            ("http_headers", ocsf_headers(r)),
        ])
    });
    let http_response = resp.map(|r| {
        obj([
            ("code", opt(u64_at(r, "/status"))),
            ("content_type", opt(header(r, "content-type"))),
            ("http_headers", ocsf_headers(r)),
            (
                "latency",
                opt(at(e, "/http/duration_ms")
                    .and_then(Value::as_f64)
                    .map(|d| d.round() as u64)),
            ),
        ])
    });
    let process = ocsf_process(e);
    let mut unmapped = Map::new();
    put(
        &mut unmapped,
        "http",
        pick(
            at(e, "/http").unwrap_or(&Value::Null),
            &["role", "stream", "sse", "duration_ms"],
        ),
    );
    for (side, m) in [("request", req), ("response", resp)] {
        if let Some(m) = m {
            put(
                &mut unmapped,
                &format!("http_{side}"),
                pick(m, &["body", "trailers", "time", "duration_ms", "aborted"]),
            );
        }
    }
    put(&mut unmapped, "llm", opt(at(e, "/llm").cloned()));
    put(
        &mut unmapped,
        "tls",
        pick(
            at(e, "/tls").unwrap_or(&Value::Null),
            &["connection", "library_kind", "library", "server_name"],
        ),
    );
    put(&mut unmapped, "process", opt(at(e, "/process").cloned()));
    put(&mut unmapped, "host", opt(at(e, "/host").cloned()));
    obj([
        ("activity_id", json!(activity_id)),
        ("activity_name", json!(activity_name)),
        ("category_uid", json!(4)),
        ("category_name", json!("Network Activity")),
        ("class_uid", json!(4002)),
        ("class_name", json!("HTTP Activity")),
        ("type_uid", json!(400_200 + u32::from(activity_id))),
        (
            "type_name",
            json!(format!("HTTP Activity: {activity_name}")),
        ),
        ("severity_id", json!(1)),
        ("severity", json!("Informational")),
        ("time", opt(str_at(e, "/time").and_then(rfc3339_to_unix_ms))),
        (
            "start_time",
            opt(req
                .and_then(|r| str_at(r, "/time"))
                .and_then(rfc3339_to_unix_ms)),
        ),
        (
            "duration",
            opt(at(e, "/http/duration_ms")
                .and_then(Value::as_f64)
                .map(|d| d.round() as u64)),
        ),
        ("metadata", ocsf_metadata(e, None)),
        ("http_request", opt(http_request)),
        ("http_response", opt(http_response)),
        (
            "src_endpoint",
            ocsf_endpoint(f.as_ref().map(|f| f.client), None),
        ),
        (
            "dst_endpoint",
            ocsf_endpoint(f.as_ref().map(|f| f.server), domain),
        ),
        ("connection_info", ocsf_connection_info(f.as_ref(), server)),
        (
            "traffic",
            obj([
                (
                    "bytes_out",
                    opt(req.and_then(|r| u64_at(r, "/body/length"))),
                ),
                (
                    "bytes_in",
                    opt(resp.and_then(|r| u64_at(r, "/body/length"))),
                ),
            ]),
        ),
        (
            "actor",
            if process.is_null() {
                Value::Null
            } else {
                json!({ "process": process })
            },
        ),
        ("device", ocsf_device(e)),
        ("unmapped", Value::Object(unmapped)),
    ])
}

// ---------------------------------------------------------------------------
// ECS 8.x.

/// ECS `event.severity` of a native alert severity (Elastic's risk scale).
fn ecs_severity(sev: Option<&str>) -> Option<u64> {
    Some(match sev? {
        "info" => 1,
        "low" => 21,
        "medium" => 47,
        "high" => 73,
        "critical" => 99,
        _ => return None,
    })
}

fn ecs_process(e: &Value) -> Value {
    let Some(p) = at(e, "/process") else {
        return Value::Null;
    };
    let args: Option<Vec<&str>> = at(p, "/cmdline")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect());
    let exe = str_at(p, "/exe");
    let parent = u64_at(p, "/ppid").map(|ppid| {
        let first = at(p, "/ancestry/0").filter(|a| u64_at(a, "/pid") == Some(ppid));
        obj([
            ("pid", json!(ppid)),
            ("name", opt(first.and_then(|a| str_at(a, "/comm")))),
            ("executable", opt(first.and_then(|a| str_at(a, "/exe")))),
        ])
    });
    let user = obj([
        ("id", opt(u64_at(p, "/uid").map(|u| u.to_string()))),
        ("name", opt(str_at(p, "/user"))),
    ]);
    let thread = at(e, "/thread").map(|t| {
        obj([
            ("id", opt(u64_at(t, "/tid"))),
            ("name", opt(str_at(t, "/comm"))),
        ])
    });
    obj([
        ("pid", opt(u64_at(p, "/pid"))),
        ("name", opt(str_at(p, "/comm").filter(|c| !c.is_empty()))),
        ("executable", opt(exe)),
        (
            "command_line",
            opt(args.as_ref().map(|a| a.join(" ")).filter(|c| !c.is_empty())),
        ),
        ("args", opt(args.as_ref().map(|a| json!(a)))),
        ("args_count", opt(args.as_ref().map(Vec::len))),
        ("hash", obj([("sha256", opt(str_at(p, "/exe_sha256")))])),
        ("parent", opt(parent)),
        ("user", user),
        (
            "real_user",
            obj([("id", opt(u64_at(e, "/thread/uid").map(|u| u.to_string())))]),
        ),
        (
            "group",
            obj([("id", opt(u64_at(e, "/thread/gid").map(|g| g.to_string())))]),
        ),
        ("thread", opt(thread)),
    ])
}

fn ecs(e: &Value) -> Value {
    let kind = event_type(e).unwrap_or("");
    let is_alert = kind == "alert";
    let server = process_is_server(e);
    let f = flow(e, server);
    let domain = server_domain(e);
    let req = request(e);
    let resp = at(e, "/http/response");

    let (event_kind, category, types): (&str, Vec<&str>, Vec<&str>) = match kind {
        "alert" => (
            "alert",
            vec!["network", "intrusion_detection"],
            vec!["info"],
        ),
        "http" => ("event", vec!["network", "web"], vec!["access", "protocol"]),
        "tls.data" => ("event", vec!["network"], vec!["protocol"]),
        "decode.error" => ("event", vec!["network"], vec!["protocol", "info"]),
        "sensor.status" => ("metric", vec!["host"], vec!["info"]),
        "coverage" => ("event", vec!["host", "network"], vec!["info"]),
        "inventory" => ("event", vec!["host", "network"], vec!["change"]),
        "enforcement" => (
            "event",
            vec!["network", "intrusion_detection"],
            match str_at(e, "/enforcement/action") {
                Some("blocked" | "killed") => vec!["denied"],
                Some("allowed") => vec!["allowed"],
                _ => vec!["info"],
            },
        ),
        _ => ("event", vec!["network"], vec!["info"]),
    };
    let window = at(e, "/alert/window");
    let event = obj([
        ("kind", json!(event_kind)),
        ("category", json!(category)),
        ("type", json!(types)),
        ("action", json!(kind)),
        ("id", opt(str_at(e, "/event_id"))),
        (
            "severity",
            match kind {
                "alert" => opt(ecs_severity(str_at(e, "/alert/severity"))),
                "decode.error" => json!(21),
                _ => Value::Null,
            },
        ),
        ("dataset", json!(format!("telltale.{kind}"))),
        ("module", json!("telltale")),
        ("provider", json!(DATA_SOURCE)),
        (
            "outcome",
            if kind == "decode.error" {
                json!("failure")
            } else {
                Value::Null
            },
        ),
        ("start", opt(window.and_then(|w| str_at(w, "/first")))),
        ("end", opt(window.and_then(|w| str_at(w, "/last")))),
        (
            "duration",
            opt(at(e, "/http/duration_ms")
                .and_then(Value::as_f64)
                .map(|ms| (ms * 1e6).round() as u64)),
        ),
        ("reason", opt(str_at(e, "/alert/summary"))),
    ]);

    let (rule, threat) = if is_alert {
        let ids = attack_ids(e);
        let mut parents: Vec<&str> = ids
            .iter()
            .map(|i| i.split('.').next().unwrap_or(i))
            .collect();
        parents.dedup();
        let subs: Vec<&str> = ids.iter().copied().filter(|i| i.contains('.')).collect();
        let names: Option<Vec<&str>> = parents.iter().map(|i| technique(i).map(|k| k.0)).collect();
        let mut tactics: Vec<(&str, &str)> = parents
            .iter()
            .filter_map(|i| technique(i).map(|k| (k.1, k.2)))
            .collect();
        tactics.sort_unstable();
        tactics.dedup();
        let tactic = (!tactics.is_empty()).then(|| {
            json!({
                "id": tactics.iter().map(|t| t.0).collect::<Vec<_>>(),
                "name": tactics.iter().map(|t| t.1).collect::<Vec<_>>(),
            })
        });
        let rule = obj([
            ("id", opt(str_at(e, "/alert/id"))),
            ("name", opt(str_at(e, "/alert/title"))),
            (
                "version",
                opt(u64_at(e, "/alert/version").map(|v| v.to_string())),
            ),
            ("category", json!(alert_category(e))),
            ("ruleset", json!("telltale")),
            ("description", opt(str_at(e, "/alert/summary"))),
        ]);
        let threat = (!ids.is_empty()).then(|| {
            obj([
                ("framework", json!("MITRE ATT&CK")),
                (
                    "technique",
                    obj([
                        ("id", json!(parents)),
                        ("name", opt(names.map(|n| json!(n)))),
                        (
                            "reference",
                            json!(parents.iter().map(|i| attack_url(i)).collect::<Vec<_>>()),
                        ),
                        (
                            "subtechnique",
                            if subs.is_empty() {
                                Value::Null
                            } else {
                                json!({
                                    "id": subs,
                                    "reference": subs.iter().map(|i| attack_url(i)).collect::<Vec<_>>(),
                                })
                            },
                        ),
                    ]),
                ),
                ("tactic", opt(tactic)),
            ])
        });
        (rule, opt(threat))
    } else {
        (Value::Null, Value::Null)
    };

    let host = obj([
        ("hostname", opt(str_at(e, "/host/hostname"))),
        ("name", opt(str_at(e, "/host/hostname"))),
        ("id", opt(str_at(e, "/host/machine_id"))),
        ("boot", obj([("id", opt(str_at(e, "/host/boot_id")))])),
    ]);
    let (source, destination, network) = match &f {
        Some(f) => (
            obj([("ip", json!(f.client.0)), ("port", json!(f.client.1))]),
            obj([
                ("ip", json!(f.server.0)),
                ("port", json!(f.server.1)),
                ("domain", opt(domain)),
            ]),
            obj([
                ("community_id", opt(f.community_id)),
                ("transport", opt(f.transport)),
                (
                    "type",
                    json!(if f.server.0.contains(':') {
                        "ipv6"
                    } else {
                        "ipv4"
                    }),
                ),
                (
                    "protocol",
                    json!(if kind == "tls.data" { "tls" } else { "http" }),
                ),
                (
                    "direction",
                    json!(if server { "ingress" } else { "egress" }),
                ),
            ]),
        ),
        None => (
            Value::Null,
            obj([("domain", opt(domain))]),
            obj([(
                "protocol",
                match kind {
                    "tls.data" => json!("tls"),
                    "http" | "alert" => json!("http"),
                    _ => Value::Null,
                },
            )]),
        ),
    };
    let http = (kind == "http" || is_alert).then(|| {
        let version = str_at(e, "/http/version").map(|v| v.trim_start_matches("HTTP/"));
        obj([
            (
                "request",
                obj([
                    ("method", opt(req.and_then(|r| str_at(r, "/method")))),
                    (
                        "body",
                        obj([("bytes", opt(req.and_then(|r| u64_at(r, "/body/length"))))]),
                    ),
                    (
                        "mime_type",
                        opt(req.and_then(|r| header(r, "content-type"))),
                    ),
                ]),
            ),
            (
                "response",
                obj([
                    ("status_code", opt(resp.and_then(|r| u64_at(r, "/status")))),
                    (
                        "body",
                        obj([("bytes", opt(resp.and_then(|r| u64_at(r, "/body/length"))))]),
                    ),
                    (
                        "mime_type",
                        opt(resp.and_then(|r| header(r, "content-type"))),
                    ),
                ]),
            ),
            ("version", opt(version)),
        ])
    });
    let url = req.map(|r| {
        let authority = str_at(r, "/authority");
        let port = authority.and_then(|a| split_authority(a).1);
        let path = str_at(r, "/path");
        let query = str_at(r, "/query");
        let scheme = str_at(r, "/scheme").unwrap_or("https");
        let original = path.map(|p| match query {
            Some(q) => format!("{p}?{q}"),
            None => p.to_owned(),
        });
        let full = authority
            .zip(original.as_deref())
            .map(|(a, o)| format!("{scheme}://{a}{o}"));
        obj([
            ("domain", opt(domain)),
            ("port", opt(port)),
            ("path", opt(path)),
            ("query", opt(query)),
            ("scheme", json!(scheme)),
            ("original", opt(original)),
            ("full", opt(full)),
        ])
    });
    let user_agent = req
        .and_then(|r| header(r, "user-agent"))
        .map(|ua| json!({ "original": ua }));
    let container = at(e, "/process/container").map(|c| {
        obj([
            ("id", opt(str_at(c, "/id"))),
            ("runtime", opt(str_at(c, "/runtime"))),
        ])
    });
    let tls = str_at(e, "/tls/server_name").map(|sni| json!({"client": {"server_name": sni}}));
    let error = (kind == "decode.error").then(|| {
        obj([
            ("type", opt(str_at(e, "/decode/kind"))),
            ("message", opt(str_at(e, "/decode/detail"))),
        ])
    });
    let message = match kind {
        "alert" => opt(str_at(e, "/alert/summary")),
        "decode.error" => opt(str_at(e, "/decode/detail")),
        _ => Value::Null,
    };

    // What ECS has no field for, under its native name.
    let mut telltale = Map::new();
    put(&mut telltale, "event_type", json!(kind));
    put(
        &mut telltale,
        "schema_version",
        opt(at(e, "/schema_version").cloned()),
    );
    put(
        &mut telltale,
        "tls",
        pick(
            at(e, "/tls").unwrap_or(&Value::Null),
            &[
                "connection",
                "direction",
                "function",
                "library_kind",
                "library",
            ],
        ),
    );
    if let Some(reason) = str_at(e, "/tls/socket/reason") {
        put(&mut telltale, "socket_unknown_reason", json!(reason));
    }
    if let Some(p) = at(e, "/process") {
        put(
            &mut telltale,
            "process",
            pick(
                p,
                &[
                    "exe_build_id",
                    "login_uid",
                    "cgroup",
                    "start_time",
                    "ancestry",
                    "container",
                ],
            ),
        );
    }
    put(&mut telltale, "flow_id", opt(at(e, "/flow_id").cloned()));
    match kind {
        "alert" => {
            put(
                &mut telltale,
                "alert",
                pick(
                    at(e, "/alert").unwrap_or(&Value::Null),
                    &[
                        "severity",
                        "facts",
                        "hits",
                        "total_hits",
                        "occurrences",
                        "window",
                    ],
                ),
            );
            put(
                &mut telltale,
                "request",
                pick(
                    at(e, "/request").unwrap_or(&Value::Null),
                    &["authority", "provider", "api", "model"],
                ),
            );
        }
        "http" => {
            if let Some(h) = at(e, "/http") {
                put(&mut telltale, "http", pick(h, &["role", "stream", "sse"]));
                for (side, m) in [("request", req), ("response", resp)] {
                    if let Some(m) = m {
                        let mut x = pick(
                            m,
                            &[
                                "authority",
                                "headers",
                                "trailers",
                                "body",
                                "time",
                                "duration_ms",
                                "aborted",
                            ],
                        );
                        if let Some(o) = x.as_object_mut() {
                            o.remove("authority");
                        }
                        put(&mut telltale, &format!("http_{side}"), x);
                    }
                }
            }
            put(&mut telltale, "llm", opt(at(e, "/llm").cloned()));
        }
        "tls.data" => {
            put(&mut telltale, "message", opt(at(e, "/message").cloned()));
        }
        "decode.error" => {
            put(
                &mut telltale,
                "decode",
                pick(
                    at(e, "/decode").unwrap_or(&Value::Null),
                    &["protocol", "role", "side", "stream"],
                ),
            );
        }
        "sensor.status" => {
            put(
                &mut telltale,
                "status",
                pick(
                    e,
                    &[
                        "state",
                        "uptime_ms",
                        "targets",
                        "kernel",
                        "reassembly",
                        "pipeline",
                        "processes",
                        "decode",
                        "detect",
                    ],
                ),
            );
        }
        _ => {}
    }

    obj([
        ("@timestamp", opt(str_at(e, "/time"))),
        ("ecs", json!({ "version": ECS_VERSION })),
        ("message", message),
        ("event", event),
        ("rule", rule),
        ("threat", threat),
        ("host", host),
        ("process", ecs_process(e)),
        ("container", opt(container)),
        ("source", source),
        ("destination", destination),
        ("network", network),
        ("http", opt(http)),
        ("url", opt(url)),
        ("user_agent", opt(user_agent)),
        ("tls", opt(tls)),
        ("error", opt(error)),
        (
            "observer",
            obj([
                ("type", json!("sensor")),
                ("product", json!(PRODUCT)),
                ("vendor", json!(PRODUCT)),
                ("name", opt(str_at(e, "/sensor/name"))),
                ("version", opt(str_at(e, "/sensor/version"))),
                ("hostname", opt(str_at(e, "/host/hostname"))),
            ]),
        ),
        ("telltale", Value::Object(telltale)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(event_type: &str) -> Value {
        json!({
            "schema_version": 1,
            "event_type": event_type,
            "event_id": "019ad0f2-6c1e-7a3b-9c4d-5e6f708192a3",
            "time": "2026-11-29T15:11:09.123456789Z",
            "sensor": {"name": "telltale", "version": "0.1.0"},
            "host": {"hostname": "build-7", "machine_id": "4c4c4544004d3610804cb4c04f4e4d32", "boot_id": "5a3e1c9e-8b1f-4f55-9d0e-2f7a1f1d2c3b"}
        })
    }

    fn merge(mut base: Value, body: Value) -> Value {
        if let (Some(b), Value::Object(extra)) = (base.as_object_mut(), body) {
            b.extend(extra);
        }
        base
    }

    fn process() -> Value {
        json!({
            "pid": 5120, "ppid": 5101, "comm": "python",
            "exe": "/usr/bin/python3.11",
            "exe_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "exe_build_id": "0a1b2c3d4e5f",
            "cmdline": ["python3", "agent.py", "--api-key", "[REDACTED]"],
            "uid": 1000, "user": "alice", "login_uid": 1000,
            "cgroup": "/user.slice/user-1000.slice/session-3.scope",
            "container": null,
            "ancestry": [{"pid": 5101, "comm": "bash", "exe": "/usr/bin/bash"}, {"pid": 1, "comm": "systemd"}],
            "start_time": 812345
        })
    }

    fn socket() -> Value {
        json!({
            "fd": 5, "fd_source": "nested_io", "transport": "tcp",
            "local_ip": "10.1.2.3", "local_port": 47840,
            "remote_ip": "203.0.113.7", "remote_port": 443,
            "community_id": "1:T/l2P5BDS5NnbVjkdzr395Gyu0k="
        })
    }

    fn alert() -> Value {
        merge(
            envelope("alert"),
            json!({
                "flow_id": flow_id("1:T/l2P5BDS5NnbVjkdzr395Gyu0k="),
                "community_id": "1:T/l2P5BDS5NnbVjkdzr395Gyu0k=",
                "process": process(),
                "tls": {"connection": "5120:0x1c8e4d0:3", "library_kind": "openssl",
                        "library": "/usr/lib/x86_64-linux-gnu/libssl.so.3",
                        "server_name": "api.anthropic.com", "socket": socket()},
                "request": {"method": "POST", "authority": "api.anthropic.com", "path": "/v1/messages",
                            "provider": "anthropic", "api": "anthropic_messages", "model": "claude-test"},
                "alert": {
                    "id": "TT-FP-010", "version": 1, "title": "Host fingerprint sent to an AI service",
                    "severity": "high", "attack": ["T1082", "T1016", "T1124", "T1033", "T1567"],
                    "summary": "python sent kernel_release, proxy, timezone to api.anthropic.com: Host fingerprint sent to an AI service",
                    "facts": [{"kind": "timezone", "name": "TZ"}, {"kind": "proxy", "name": "https_proxy"},
                              {"kind": "kernel_release", "name": "uname -r"}],
                    "hits": [{"path": "$.system", "role": "system", "encoding": "raw",
                              "source": {"type": "fact", "kind": "proxy", "name": "https_proxy", "strength": "strong"},
                              "offset": 252,
                              "evidence": {"excerpt": "ht••••••••••••28", "length": 39,
                                           "hash": "hmac-sha256:5f1c0a9b8e7d6c5b4a39281706f5e4d3"}}],
                    "total_hits": 3, "occurrences": 4,
                    "window": {"first": "2026-11-29T15:10:00.000000000Z", "last": "2026-11-29T15:11:09.123456789Z"}
                }
            }),
        )
    }

    fn http(role: &str) -> Value {
        let sock = if role == "server" {
            json!({"fd": 12, "fd_source": "nested_io", "transport": "tcp",
                   "local_ip": "127.0.0.1", "local_port": 45793,
                   "remote_ip": "127.0.0.1", "remote_port": 51000,
                   "community_id": "1:wCb3OG7yAFWelaUydu0D+125CLM="})
        } else {
            json!({"fd": 5, "fd_source": "nested_io", "transport": "tcp",
                   "local_ip": "127.0.0.1", "local_port": 51000,
                   "remote_ip": "127.0.0.1", "remote_port": 45793,
                   "community_id": "1:wCb3OG7yAFWelaUydu0D+125CLM="})
        };
        merge(
            envelope("http"),
            json!({
                "process": {"pid": 15047, "ppid": 15000, "comm": "curl", "exe": "/usr/bin/curl",
                            "exe_sha256": null, "exe_build_id": null,
                            "cmdline": ["curl", "--http2", "-H", "x-api-key: [REDACTED]", "https://127.0.0.1:45793/v1/messages"],
                            "uid": 0, "user": "root", "login_uid": null, "cgroup": "/",
                            "container": {"runtime": "docker", "id": "4f1e5b6c7d8e9fa0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4"},
                            "ancestry": [], "start_time": 99},
                "tls": {"connection": "15047:0x55903b710ae0:2", "library_kind": "openssl",
                        "library": "/usr/lib/x86_64-linux-gnu/libssl.so.3", "socket": sock},
                "http": {"version": "HTTP/2", "role": role, "stream": 1, "duration_ms": 0.58,
                         "request": {"method": "POST", "scheme": "https", "authority": "127.0.0.1:45793",
                                     "path": "/v1/messages", "query": "beta=true&key=[redacted]",
                                     "headers": {"user-agent": "curl/7.88.1", "content-type": "application/json",
                                                 "content-encoding": "gzip", "x-api-key": "[redacted]"},
                                     "body": {"length": 197, "content_encoding": ["gzip"], "decoded_length": 280, "truncated": false},
                                     "time": "2026-11-29T15:11:09.100000000Z", "duration_ms": 0.56},
                         "response": {"status": 200, "headers": {"content-type": "application/json"},
                                      "body": {"length": 204, "decoded_length": 204, "truncated": false},
                                      "time": "2026-11-29T15:11:09.120000000Z", "duration_ms": 0.01}},
                "llm": {"provider": "anthropic-compatible", "api": "anthropic_messages", "model": "claude-test",
                        "self_hosted": true, "parts": {"metadata": 1, "system": 1, "user": 1}}
            }),
        )
    }

    fn status() -> Value {
        merge(
            envelope("sensor.status"),
            json!({"state": "stopped", "uptime_ms": 9742, "targets": {"attached": 2, "failed": 0},
                   "kernel": {"calls": 741, "records": 852, "bytes": 6294704, "lost_records": 0, "lost_bytes": 0,
                              "read_faults": 0, "active_full": 0, "truncated_calls": 0, "truncated_bytes": 0, "orphan_returns": 0},
                   "pipeline": {"events": 742, "bytes": 6294704, "record_errors": 0}}),
        )
    }

    fn tls_data() -> Value {
        merge(
            envelope("tls.data"),
            json!({"process": {"pid": 7813, "comm": "curl"},
                   "thread": {"tid": 7813, "comm": "curl", "uid": 0, "gid": 0},
                   "tls": {"connection": "7813:0x55d0c8a1e2f0:4", "direction": "egress", "function": "SSL_write",
                           "library_kind": "openssl", "server_name": "api.example.com", "socket": socket()},
                   "message": {"mono_ns": 81723123, "length": 18, "captured": 18, "complete": true,
                               "truncated": false, "encoding": "utf8", "data": "GET / HTTP/1.1\r\n\r\n"}}),
        )
    }

    fn decode_error() -> Value {
        merge(
            envelope("decode.error"),
            json!({"process": {"pid": 7813, "comm": ""},
                   "tls": {"connection": "7813:0x55d0c8a1e2f0:4", "library_kind": "openssl",
                           "socket": {"status": "unknown", "reason": "not known"}},
                   "decode": {"protocol": "http1", "role": "client", "side": "client", "stream": 3,
                              "kind": "malformed", "detail": "invalid header name"}}),
        )
    }

    #[test]
    fn native_is_unchanged_and_default() {
        let a = alert();
        assert_eq!(Format::default(), Format::Native);
        assert_eq!(render(Format::Native, &a), Some(a.clone()));
        let f: Format = serde_json::from_value(json!("ocsf")).unwrap();
        assert_eq!(f, Format::Ocsf);
        assert_eq!(serde_json::to_value(Format::Ecs).unwrap(), json!("ecs"));
    }

    #[test]
    fn levels_follow_alert_severity() {
        assert_eq!(level(&alert()), Level::High);
        let mut low = alert();
        low["alert"]["severity"] = json!("low");
        assert_eq!(level(&low), Level::Low);
        low["alert"]["severity"] = json!("critical");
        assert_eq!(level(&low), Level::Critical);
        assert_eq!(level(&decode_error()), Level::Low);
        assert_eq!(level(&http("client")), Level::Info);
        assert_eq!(level(&status()), Level::Info);
        assert_eq!(level(&json!({"no": "type"})), Level::Info);
    }

    #[test]
    fn flow_id_is_positive_deterministic_and_from_sha256() {
        let id = flow_id("1:T/l2P5BDS5NnbVjkdzr395Gyu0k=");
        assert!(id > 0);
        assert_eq!(id, flow_id("1:T/l2P5BDS5NnbVjkdzr395Gyu0k="));
        assert_ne!(id, flow_id("1:LQU9qZlK+B5F3KDmev6m5PMibrg="));
        let d = Sha256::digest(b"1:T/l2P5BDS5NnbVjkdzr395Gyu0k=");
        let want = u64::from_be_bytes(d[..8].try_into().unwrap()) & (i64::MAX as u64);
        assert_eq!(id as u64, want);
    }

    #[test]
    fn rfc3339_times_convert_to_epoch_ms() {
        assert_eq!(rfc3339_to_unix_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            rfc3339_to_unix_ms("1970-01-01T00:00:01.500000001Z"),
            Some(1500)
        );
        assert_eq!(
            rfc3339_to_unix_ms("2026-11-29T15:11:09.123456789Z"),
            Some(1_795_965_069_123)
        );
        assert_eq!(
            rfc3339_to_unix_ms("2026-11-29T16:11:09.1+01:00"),
            Some(1_795_965_069_100)
        );
        assert_eq!(
            rfc3339_to_unix_ms("2000-02-29T00:00:00Z"),
            Some(951_782_400_000)
        );
        for bad in [
            "",
            "2026-11-29",
            "2026-13-01T00:00:00Z",
            "2026-11-29T15:11:09",
            "x026-11-29T15:11:09Z",
            "2026-11-29T15:11:09.Z",
        ] {
            assert_eq!(rfc3339_to_unix_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn alert_to_ocsf_detection_finding() {
        let o = render(Format::Ocsf, &alert()).expect("alerts map to OCSF");
        assert_eq!(o["class_uid"], 2004);
        assert_eq!(o["category_uid"], 2);
        assert_eq!(o["activity_id"], 1);
        assert_eq!(o["type_uid"], 200401);
        assert_eq!(o["severity_id"], 4);
        assert_eq!(o["severity"], "High");
        assert_eq!(o["status_id"], 1);
        assert_eq!(o["time"], 1_795_965_069_123i64);
        assert_eq!(o["count"], 4);
        assert_eq!(o["start_time"], 1_795_965_000_000i64);
        assert_eq!(o["metadata"]["version"], "1.3.0");
        assert_eq!(o["metadata"]["product"]["name"], "Telltale");
        assert_eq!(o["metadata"]["product"]["vendor_name"], "Telltale");
        assert_eq!(o["metadata"]["product"]["version"], "0.1.0");
        assert_eq!(o["metadata"]["uid"], "019ad0f2-6c1e-7a3b-9c4d-5e6f708192a3");
        assert_eq!(
            o["metadata"]["correlation_uid"],
            "TT-FP-010@1|TZ|https_proxy|uname -r"
        );
        let fi = &o["finding_info"];
        assert_eq!(fi["uid"], "019ad0f2-6c1e-7a3b-9c4d-5e6f708192a3");
        assert_eq!(fi["title"], "Host fingerprint sent to an AI service");
        assert!(fi["desc"].as_str().unwrap().starts_with("python sent"));
        assert_eq!(fi["types"], json!(["Host fingerprint exfiltration"]));
        assert_eq!(fi["analytic"]["uid"], "TT-FP-010");
        assert_eq!(fi["analytic"]["type_id"], 1);
        assert_eq!(fi["analytic"]["version"], "1");
        assert_eq!(fi["attacks"].as_array().unwrap().len(), 5);
        assert_eq!(fi["attacks"][0]["technique"]["uid"], "T1082");
        assert_eq!(
            fi["attacks"][0]["technique"]["name"],
            "System Information Discovery"
        );
        assert_eq!(fi["attacks"][4]["tactic"]["uid"], "TA0010");
        assert_eq!(fi["data_sources"], json!(["TLS plaintext (eBPF uprobes)"]));
        let ev = &o["evidences"][0];
        assert_eq!(ev["process"]["pid"], 5120);
        assert_eq!(ev["process"]["name"], "python");
        assert_eq!(ev["process"]["file"]["path"], "/usr/bin/python3.11");
        assert_eq!(ev["process"]["file"]["name"], "python3.11");
        assert_eq!(
            ev["process"]["cmd_line"],
            "python3 agent.py --api-key [REDACTED]"
        );
        assert_eq!(ev["process"]["user"]["name"], "alice");
        assert_eq!(ev["process"]["parent_process"]["pid"], 5101);
        assert_eq!(ev["process"]["parent_process"]["name"], "bash");
        assert_eq!(ev["dst_endpoint"]["ip"], "203.0.113.7");
        assert_eq!(ev["dst_endpoint"]["port"], 443);
        assert_eq!(ev["dst_endpoint"]["hostname"], "api.anthropic.com");
        assert_eq!(ev["src_endpoint"]["ip"], "10.1.2.3");
        assert_eq!(
            ev["connection_info"]["community_uid"],
            "1:T/l2P5BDS5NnbVjkdzr395Gyu0k="
        );
        assert_eq!(ev["connection_info"]["direction_id"], 2);
        assert_eq!(ev["url"]["path"], "/v1/messages");
        assert_eq!(o["device"]["hostname"], "build-7");
        assert_eq!(o["device"]["uid"], "4c4c4544004d3610804cb4c04f4e4d32");
        assert_eq!(o["unmapped"]["alert"]["facts"][2]["kind"], "kernel_release");
        assert_eq!(o["unmapped"]["flow_id"], alert()["flow_id"]);
        // Evidence stays redacted: the masked excerpt and the keyed hash only.
        let text = o.to_string();
        assert!(text.contains("ht••••••••••••28"));
        assert!(text.contains("hmac-sha256:5f1c0a9b8e7d6c5b4a39281706f5e4d3"));
        assert!(
            o["observables"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["type_id"] == 1 && x["value"] == "api.anthropic.com")
        );
    }

    #[test]
    fn http_to_ocsf_http_activity_on_both_ends() {
        let o = render(Format::Ocsf, &http("client")).expect("http maps to OCSF");
        assert_eq!(o["class_uid"], 4002);
        assert_eq!(o["category_uid"], 4);
        assert_eq!(o["activity_id"], 6);
        assert_eq!(o["activity_name"], "Post");
        assert_eq!(o["type_uid"], 400206);
        assert_eq!(o["severity_id"], 1);
        let rq = &o["http_request"];
        assert_eq!(rq["http_method"], "POST");
        assert_eq!(rq["version"], "HTTP/2");
        assert_eq!(rq["user_agent"], "curl/7.88.1");
        assert_eq!(rq["url"]["hostname"], "127.0.0.1");
        assert_eq!(rq["url"]["port"], 45793);
        assert_eq!(rq["url"]["path"], "/v1/messages");
        assert_eq!(rq["url"]["query_string"], "beta=true&key=[redacted]");
        assert_eq!(rq["url"]["scheme"], "https");
        assert_eq!(
            rq["url"]["url_string"],
            "https://127.0.0.1:45793/v1/messages?beta=true&key=[redacted]"
        );
        assert!(
            rq["http_headers"]
                .as_array()
                .unwrap()
                .contains(&json!({"name": "x-api-key", "value": "[redacted]"}))
        );
        assert_eq!(o["http_response"]["code"], 200);
        assert_eq!(o["traffic"]["bytes_out"], 197);
        assert_eq!(o["traffic"]["bytes_in"], 204);
        assert_eq!(o["src_endpoint"]["port"], 51000);
        assert_eq!(o["dst_endpoint"]["port"], 45793);
        assert_eq!(o["connection_info"]["direction_id"], 2);
        assert_eq!(o["actor"]["process"]["pid"], 15047);
        assert_eq!(o["actor"]["process"]["container"]["runtime"], "docker");
        assert_eq!(o["unmapped"]["llm"]["provider"], "anthropic-compatible");
        assert_eq!(o["unmapped"]["http_request"]["body"]["decoded_length"], 280);

        // The server end: the client (source) is the remote end of its socket.
        let s = render(Format::Ocsf, &http("server")).unwrap();
        assert_eq!(s["src_endpoint"]["port"], 51000);
        assert_eq!(s["dst_endpoint"]["port"], 45793);
        assert_eq!(s["connection_info"]["direction_id"], 1);

        let mut patch = http("client");
        patch["http"]["request"]["method"] = json!("PATCH");
        let p = render(Format::Ocsf, &patch).unwrap();
        assert_eq!(
            (p["activity_id"].clone(), p["activity_name"].clone()),
            (json!(99), json!("PATCH"))
        );
        assert_eq!(p["type_uid"], 400299);
    }

    #[test]
    fn ocsf_has_no_mapping_for_data_errors_and_status() {
        assert_eq!(render(Format::Ocsf, &tls_data()), None);
        assert_eq!(render(Format::Ocsf, &decode_error()), None);
        assert_eq!(render(Format::Ocsf, &status()), None);
        assert_eq!(render(Format::Ocsf, &json!({"x": 1})), None);
        assert_eq!(render(Format::Ecs, &json!({"x": 1})), None);
    }

    #[test]
    fn alert_to_ecs() {
        let e = render(Format::Ecs, &alert()).expect("every event maps to ECS");
        assert_eq!(e["@timestamp"], "2026-11-29T15:11:09.123456789Z");
        assert_eq!(e["ecs"]["version"], ECS_VERSION);
        let ev = &e["event"];
        assert_eq!(ev["kind"], "alert");
        assert_eq!(ev["category"], json!(["network", "intrusion_detection"]));
        assert_eq!(ev["action"], "alert");
        assert_eq!(ev["id"], "019ad0f2-6c1e-7a3b-9c4d-5e6f708192a3");
        assert_eq!(ev["severity"], 73);
        assert_eq!(ev["dataset"], "telltale.alert");
        assert_eq!(ev["module"], "telltale");
        assert_eq!(ev["start"], "2026-11-29T15:10:00.000000000Z");
        assert_eq!(e["rule"]["id"], "TT-FP-010");
        assert_eq!(e["rule"]["name"], "Host fingerprint sent to an AI service");
        assert_eq!(e["rule"]["version"], "1");
        assert_eq!(e["rule"]["category"], "Host fingerprint exfiltration");
        assert_eq!(e["threat"]["framework"], "MITRE ATT&CK");
        assert_eq!(
            e["threat"]["technique"]["id"],
            json!(["T1082", "T1016", "T1124", "T1033", "T1567"])
        );
        assert_eq!(
            e["threat"]["technique"]["name"][4],
            "Exfiltration Over Web Service"
        );
        assert_eq!(e["threat"]["tactic"]["id"], json!(["TA0007", "TA0010"]));
        assert_eq!(e["host"]["hostname"], "build-7");
        assert_eq!(e["host"]["id"], "4c4c4544004d3610804cb4c04f4e4d32");
        let p = &e["process"];
        assert_eq!(p["pid"], 5120);
        assert_eq!(p["name"], "python");
        assert_eq!(p["executable"], "/usr/bin/python3.11");
        assert_eq!(p["args"][3], "[REDACTED]");
        assert_eq!(p["args_count"], 4);
        assert_eq!(p["parent"]["pid"], 5101);
        assert_eq!(p["user"]["name"], "alice");
        assert_eq!(p["user"]["id"], "1000");
        assert_eq!(e["source"]["ip"], "10.1.2.3");
        assert_eq!(e["destination"]["ip"], "203.0.113.7");
        assert_eq!(e["destination"]["port"], 443);
        assert_eq!(e["destination"]["domain"], "api.anthropic.com");
        assert_eq!(
            e["network"]["community_id"],
            "1:T/l2P5BDS5NnbVjkdzr395Gyu0k="
        );
        assert_eq!(e["network"]["transport"], "tcp");
        assert_eq!(e["network"]["protocol"], "http");
        assert_eq!(e["network"]["direction"], "egress");
        assert_eq!(e["http"]["request"]["method"], "POST");
        assert_eq!(e["url"]["domain"], "api.anthropic.com");
        assert_eq!(e["url"]["path"], "/v1/messages");
        assert_eq!(e["observer"]["type"], "sensor");
        assert_eq!(e["observer"]["product"], "Telltale");
        assert_eq!(e["observer"]["version"], "0.1.0");
        assert_eq!(e["tls"]["client"]["server_name"], "api.anthropic.com");
        assert_eq!(
            e["telltale"]["alert"]["hits"][0]["evidence"]["excerpt"],
            "ht••••••••••••28"
        );
        assert_eq!(e["telltale"]["alert"]["occurrences"], 4);
        assert_eq!(e["telltale"]["flow_id"], alert()["flow_id"]);
        assert_eq!(e["telltale"]["request"]["model"], "claude-test");
        assert!(e["message"].as_str().unwrap().contains("kernel_release"));
    }

    #[test]
    fn http_to_ecs() {
        let e = render(Format::Ecs, &http("client")).unwrap();
        assert_eq!(e["event"]["kind"], "event");
        assert_eq!(e["event"]["category"], json!(["network", "web"]));
        assert_eq!(e["event"]["dataset"], "telltale.http");
        assert_eq!(e["event"]["duration"], 580_000);
        assert!(e["event"].get("severity").is_none());
        assert!(e.get("rule").is_none() && e.get("threat").is_none());
        assert_eq!(e["http"]["version"], "2");
        assert_eq!(e["http"]["request"]["method"], "POST");
        assert_eq!(e["http"]["request"]["body"]["bytes"], 197);
        assert_eq!(e["http"]["request"]["mime_type"], "application/json");
        assert_eq!(e["http"]["response"]["status_code"], 200);
        assert_eq!(e["http"]["response"]["body"]["bytes"], 204);
        assert_eq!(e["url"]["domain"], "127.0.0.1");
        assert_eq!(e["url"]["port"], 45793);
        assert_eq!(e["url"]["query"], "beta=true&key=[redacted]");
        assert_eq!(e["url"]["scheme"], "https");
        assert_eq!(
            e["url"]["original"],
            "/v1/messages?beta=true&key=[redacted]"
        );
        assert_eq!(e["user_agent"]["original"], "curl/7.88.1");
        assert_eq!(e["source"]["port"], 51000);
        assert_eq!(e["destination"]["port"], 45793);
        assert_eq!(e["container"]["runtime"], "docker");
        assert!(
            e["process"]
                .get("user")
                .is_some_and(|u| u["name"] == "root")
        );
        assert_eq!(e["telltale"]["llm"]["api"], "anthropic_messages");
        assert_eq!(
            e["telltale"]["http_request"]["headers"]["x-api-key"],
            "[redacted]"
        );
        assert_eq!(e["telltale"]["http"]["role"], "client");

        let s = render(Format::Ecs, &http("server")).unwrap();
        assert_eq!(s["source"]["port"], 51000);
        assert_eq!(s["destination"]["port"], 45793);
        assert_eq!(s["network"]["direction"], "ingress");
    }

    #[test]
    fn data_errors_and_status_to_ecs() {
        let d = render(Format::Ecs, &tls_data()).unwrap();
        assert_eq!(d["event"]["action"], "tls.data");
        assert_eq!(d["network"]["protocol"], "tls");
        assert_eq!(d["process"]["thread"]["id"], 7813);
        assert_eq!(d["telltale"]["message"]["data"], "GET / HTTP/1.1\r\n\r\n");
        assert_eq!(d["telltale"]["tls"]["function"], "SSL_write");
        assert_eq!(d["destination"]["domain"], "api.example.com");

        let x = render(Format::Ecs, &decode_error()).unwrap();
        assert_eq!(x["event"]["kind"], "event");
        assert_eq!(x["event"]["severity"], 21);
        assert_eq!(x["event"]["outcome"], "failure");
        assert_eq!(x["error"]["type"], "malformed");
        assert_eq!(x["error"]["message"], "invalid header name");
        assert_eq!(x["telltale"]["decode"]["stream"], 3);
        assert_eq!(x["telltale"]["socket_unknown_reason"], "not known");
        assert!(x.get("source").is_none());
        assert!(
            x["process"].get("name").is_none(),
            "an empty comm is left out"
        );

        let s = render(Format::Ecs, &status()).unwrap();
        assert_eq!(s["event"]["kind"], "metric");
        assert_eq!(s["event"]["dataset"], "telltale.sensor.status");
        assert_eq!(s["telltale"]["status"]["state"], "stopped");
        assert_eq!(s["telltale"]["status"]["kernel"]["calls"], 741);
        assert_eq!(s["observer"]["hostname"], "build-7");
    }
}
