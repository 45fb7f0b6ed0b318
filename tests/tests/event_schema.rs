//! The event schema, `schema/telltale-event.schema.json`, against events: it is a
//! valid draft 2020-12 schema; it accepts hand-made examples of every native
//! event type and rejects broken ones (wrong event type, a required field
//! missing, a field the type does not have); and every event the real sensor
//! prints for an HTTP/2 LLM request from curl (sensor.status, tls.data, http,
//! alert) validates. The same events also render in OCSF and ECS.

use std::{path::Path, process::Command, time::Duration};

use jsonschema::Validator;
use serde_json::{Value, json};
use telltale::deliver::format::{self, Format};
use telltale_tests::{Nginx, Sensor, can_load_probes, exclusive, marker, run_client};

const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
/// The time zone the sensor is started with: a host fact the request carries.
const TZ: &str = "America/Chicago";

fn schema() -> Value {
    let path = telltale_tests::workspace_root().join("schema/telltale-event.schema.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn build(schema: &Value) -> Validator {
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(schema)
        .unwrap_or_else(|e| panic!("the schema does not compile: {e}"))
}

/// The schema's definition of one event type's object.
fn definition(event_type: &str) -> Option<&'static str> {
    Some(match event_type {
        "alert" => "alert_event",
        "http" => "http_event",
        "decode.error" => "decode_error_event",
        "sensor.status" => "sensor_status_event",
        "tls.data" => "tls_data_event",
        "coverage" => "coverage_event",
        "inventory" => "inventory_event",
        "enforcement" => "enforcement_event",
        _ => return None,
    })
}

/// Validates events against the whole schema; explains failures with the
/// definition of the event's type, whose errors name the field (the top-level
/// `oneOf` only says that no branch matched).
struct Checker {
    all: Validator,
    by_type: Vec<(&'static str, Validator)>,
}

impl Checker {
    fn new() -> Self {
        let schema = schema();
        let by_type = [
            "alert",
            "http",
            "decode.error",
            "sensor.status",
            "tls.data",
            "coverage",
            "inventory",
            "enforcement",
        ]
        .into_iter()
        .map(|t| {
            let mut one = schema.clone();
            let root = one.as_object_mut().expect("the schema is an object");
            root.remove("oneOf");
            root.insert(
                "allOf".into(),
                json!([{ "$ref": format!("#/$defs/{}", definition(t).expect("known type")) }]),
            );
            (t, build(&one))
        })
        .collect();
        Self {
            all: build(&schema),
            by_type,
        }
    }

    /// `event_type at instance path: error` for every error; empty when valid.
    fn errors(&self, event: &Value) -> Vec<String> {
        if self.all.is_valid(event) {
            return Vec::new();
        }
        let t = event["event_type"].as_str().unwrap_or("?");
        let explain = self
            .by_type
            .iter()
            .find(|(name, _)| *name == t)
            .map_or(&self.all, |(_, v)| v);
        let mut out: Vec<String> = explain
            .iter_errors(event)
            .map(|e| format!("{t} at {:?}: {e}", e.instance_path().as_str()))
            .collect();
        if out.is_empty() {
            out = self
                .all
                .iter_errors(event)
                .map(|e| format!("{t} at {:?}: {e}", e.instance_path().as_str()))
                .collect();
        }
        out
    }
}

fn envelope(event_type: &str) -> Value {
    json!({
        "schema_version": 1,
        "event_type": event_type,
        "event_id": "019ad0f2-6c1e-7a3b-9c4d-5e6f708192a3",
        "time": "2026-11-29T15:11:09.123456789Z",
        "sensor": {"name": "telltale", "version": "0.1.0"},
        "host": {"hostname": "build-7", "machine_id": "4c4c4544004d3610804cb4c04f4e4d32",
                 "boot_id": "5a3e1c9e-8b1f-4f55-9d0e-2f7a1f1d2c3b"}
    })
}

fn with(mut base: Value, body: Value) -> Value {
    if let (Some(b), Value::Object(extra)) = (base.as_object_mut(), body) {
        b.extend(extra);
    }
    base
}

fn process() -> Value {
    json!({
        "pid": 5120, "ppid": 5101, "comm": "python", "exe": "/usr/bin/python3.11",
        "exe_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "exe_build_id": "0a1b2c3d4e5f", "cmdline": ["python3", "agent.py", "--api-key", "[REDACTED]"],
        "uid": 1000, "user": "alice", "login_uid": 1000, "cgroup": "/user.slice",
        "container": {"runtime": "docker", "id": "4f1e5b6c7d8e9fa0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4"},
        "ancestry": [{"pid": 5101, "comm": "bash", "exe": "/usr/bin/bash"}, {"pid": 1, "comm": "systemd"}],
        "start_time": 812345
    })
}

fn socket() -> Value {
    json!({"fd": 5, "fd_source": "nested_io", "transport": "tcp",
           "local_ip": "10.1.2.3", "local_port": 47840, "remote_ip": "2001:db8::7", "remote_port": 443,
           "community_id": "1:T/l2P5BDS5NnbVjkdzr395Gyu0k="})
}

fn conn() -> Value {
    json!({"connection": "5120:0x1c8e4d0:3", "library_kind": "openssl",
           "library": "/usr/lib/x86_64-linux-gnu/libssl.so.3", "server_name": "api.anthropic.com",
           "socket": socket()})
}

fn alert() -> Value {
    with(
        envelope("alert"),
        json!({
            "flow_id": format::flow_id("1:T/l2P5BDS5NnbVjkdzr395Gyu0k="),
            "community_id": "1:T/l2P5BDS5NnbVjkdzr395Gyu0k=",
            "process": process(),
            "tls": conn(),
            "request": {"method": "POST", "authority": "api.anthropic.com", "path": "/v1/messages",
                        "provider": "anthropic", "api": "anthropic_messages", "model": "claude-test"},
            "alert": {
                "id": "TT-FP-010", "version": 1, "title": "Host fingerprint sent to an AI service",
                "severity": "high", "attack": ["T1082", "T1016", "T1124", "T1033", "T1567"],
                "summary": "python sent kernel_release, proxy, timezone to api.anthropic.com: Host fingerprint sent to an AI service",
                "facts": [{"kind": "timezone", "name": "TZ"}, {"kind": "proxy", "name": "https_proxy"},
                          {"kind": "kernel_release", "name": "uname -r"}],
                "hits": [
                    {"path": "$.system", "role": "system", "encoding": "raw",
                     "source": {"type": "fact", "kind": "proxy", "name": "https_proxy", "strength": "strong"},
                     "offset": 252, "evidence": {"excerpt": "ht••••••••••••28", "length": 39,
                                                 "hash": "hmac-sha256:5f1c0a9b8e7d6c5b4a39281706f5e4d3"}},
                    {"path": "$.metadata.user_id", "role": "metadata",
                     "source": {"type": "identifier", "kind": "persistent",
                                "recurrence": {"first_seen_unix": 1795960000, "other_instances": 2,
                                               "other_sessions": 1, "count": 5}},
                     "offset": 0, "evidence": {"excerpt": "3f••••••••a1", "length": 36,
                                               "hash": "hmac-sha256:00112233445566778899aabbccddeeff"}},
                    {"path": "header:x-trace", "role": "header", "source": {"type": "regex", "index": 0},
                     "offset": 4, "evidence": {"excerpt": "JI••42", "length": 9,
                                               "hash": "hmac-sha256:ffeeddccbbaa99887766554433221100"}}
                ],
                "total_hits": 3, "occurrences": 2,
                "window": {"first": "2026-11-29T15:10:00.000000000Z", "last": "2026-11-29T15:11:09.123456789Z"}
            }
        }),
    )
}

fn http() -> Value {
    with(
        envelope("http"),
        json!({
            "process": {"pid": 15047, "comm": "curl"},
            "tls": {"connection": "15047:0x55903b710ae0:2", "library_kind": "openssl",
                    "socket": {"status": "unknown", "reason": "not known"}},
            "http": {"version": "HTTP/2", "role": "client", "stream": 1, "duration_ms": 0.58,
                     "request": {"method": "POST", "scheme": "https", "authority": "127.0.0.1:45793",
                                 "path": "/v1/messages", "query": "key=[redacted]",
                                 "headers": {"user-agent": "curl/7.88.1", "x-api-key": "[redacted]"},
                                 "body": {"length": 197, "content_encoding": ["gzip"], "decoded_length": 280,
                                          "truncated": false, "encoding": "utf8", "content": "{\"model\":\"m\"}"},
                                 "time": "2026-11-29T15:11:09.100000000Z", "duration_ms": 0.56},
                     "response": {"status": 200, "headers": {"content-type": "text/event-stream"},
                                  "trailers": {"grpc-status": "0"},
                                  "body": {"length": 204, "decoded_length": 204, "truncated": false},
                                  "time": "2026-11-29T15:11:09.120000000Z", "duration_ms": 0.01},
                     "sse": {"count": 2, "truncated": false, "types": ["message_start", "message"],
                             "events": [{"event": "message_start", "data": "{}"}, {"data": "x", "id": "7"}]}},
            "llm": {"provider": "anthropic-compatible", "api": "anthropic_messages", "model": "claude-test",
                    "stream": true, "self_hosted": true, "parts": {"metadata": 1, "system": 1, "user": 1}}
        }),
    )
}

fn decode_error() -> Value {
    with(
        envelope("decode.error"),
        json!({"process": {"pid": 7813, "comm": ""}, "tls": conn(),
               "decode": {"protocol": "http1", "role": null, "side": "client", "stream": null,
                          "kind": "malformed", "detail": "invalid header name"}}),
    )
}

fn status() -> Value {
    let zero =
        |keys: &[&str]| Value::Object(keys.iter().map(|k| ((*k).to_owned(), json!(0))).collect());
    with(
        envelope("sensor.status"),
        json!({
            "state": "stopped", "uptime_ms": 9742, "targets": {"attached": 2, "failed": 0},
            "kernel": zero(&["calls", "records", "bytes", "lost_records", "lost_bytes", "read_faults",
                             "active_full", "truncated_calls", "truncated_bytes", "orphan_returns",
                             "holds", "holds_missed"]),
            "reassembly": zero(&["messages", "incomplete", "evicted", "orphan_chunks", "orphan_bytes",
                                 "closed", "forgotten", "open_connections"]),
            "pipeline": {"events": 742, "bytes": 6294704, "record_errors": 0},
            "processes": zero(&["hits", "misses", "evictions", "gone", "unreadable", "cached"]),
            "decode": zero(&["connections", "http1_connections", "http2_connections", "other_connections",
                             "requests", "exchanges", "websocket_messages", "errors", "limit_errors",
                             "gap_errors", "dropped_connections", "idle_closed", "held_bytes"]),
            "detect": zero(&["requests", "unreadable", "findings", "alerts", "suppressed", "rules", "facts",
                             "needles", "fact_changes"]),
            "enforce": zero(&["holds", "exempted", "allowed", "blocked", "killed", "would_act", "alerted",
                              "not_held", "fail_decisions", "action_errors", "conns_skipped", "held_us_total",
                              "held_us_max"]),
            "sinks": [{"name": "stdout", "destination": "stdout", "delivered": 742, "failures": 0,
                       "spooled": 0, "dropped_spool_full": 0, "dropped_rejected": 0, "queued": 0,
                       "queued_bytes": 0, "spool_pending": 0, "spool_bytes": 0, "healthy": true}]
        }),
    )
}

fn tls_data() -> Value {
    with(
        envelope("tls.data"),
        json!({
            "process": process(),
            "thread": {"tid": 7813, "comm": "curl", "uid": 0, "gid": 0},
            "tls": {"connection": "7813:0x55d0c8a1e2f0:4", "direction": "egress", "function": "SSL_write",
                    "library_kind": "openssl", "library": "/usr/lib/x86_64-linux-gnu/libssl.so.3",
                    "server_name": "api.example.com", "socket": socket()},
            "message": {"mono_ns": 81723123, "length": 18, "captured": 18, "complete": true,
                        "truncated": false, "encoding": "utf8", "data": "GET / HTTP/1.1\r\n\r\n"}
        }),
    )
}

fn coverage() -> Value {
    with(
        envelope("coverage"),
        json!({
            "process": process(),
            "destination": {"ip": "160.79.104.10", "port": 443},
            "binary": {"path": "/usr/local/bin/agent", "build_id": "a80cf642fd936aca99aa2c8615c48f8c9ea050da"},
            "tls": {"visible": false,
                    "stacks": [{"library": "rustls 0.23.46", "path": "/usr/local/bin/agent",
                                "reason": "rustls is compiled into the program"}],
                    "reason": "rustls 0.23.46: rustls is compiled into the program"}
        }),
    )
}

fn inventory() -> Value {
    let t = "2026-11-29T19:01:22.332508018Z";
    with(
        envelope("inventory"),
        json!({
            "process": process(),
            "inventory": {
                "reason": "new_build",
                "previous_build": {"build_id": "3f2a9c1d0b7e55aa00112233445566778899aabb", "version": "2.0.14"},
                "new_kinds": ["working_directory"],
                "new_fields": ["$.metadata.user_id{json}.device_id"],
                "entry": {
                    "client": {"exe": "/usr/bin/node", "product": "claude-cli", "version": "2.0.15"},
                    "destination": "api.anthropic.com", "first_seen": t, "last_seen": t,
                    "requests": 1, "requests_with_findings": 1,
                    "kinds": [{"name": "working_directory", "count": 1, "first_seen": t, "last_seen": t}],
                    "fields": [{"name": "$.metadata.user_id{json}.device_id", "count": 1, "first_seen": t, "last_seen": t}]
                }
            }
        }),
    )
}

fn enforcement() -> Value {
    with(
        envelope("enforcement"),
        json!({
            "process": process(),
            "tls": {"connection": "7813:0x55d0c8a1e2f0:0", "library_kind": "openssl",
                    "socket": {"status": "unknown", "reason": "not seen yet: held at its first write"}},
            "enforcement": {
                "action": "blocked", "mode": "block", "reason": "policy", "policy": "coding-agents",
                "rules": ["TT-FP-005"], "facts": ["uname -r"],
                "request": {"method": "POST", "authority": "api.anthropic.com", "path": "/v1/messages",
                            "provider": "anthropic", "api": "anthropic_messages", "model": "claude-test"},
                "held_us": 812, "bytes": 2291, "sockets_shut": 1, "dry_run": false
            }
        }),
    )
}

fn examples() -> Vec<Value> {
    vec![
        alert(),
        http(),
        decode_error(),
        status(),
        tls_data(),
        coverage(),
        inventory(),
        enforcement(),
    ]
}

/// Applies `edit` to a copy of `v`.
fn edited(v: &Value, edit: impl FnOnce(&mut Value)) -> Value {
    let mut v = v.clone();
    edit(&mut v);
    v
}

fn remove(v: &mut Value, pointer: &str) {
    let (parent, key) = pointer.rsplit_once('/').expect("a pointer");
    let target = if parent.is_empty() {
        Some(v)
    } else {
        v.pointer_mut(parent)
    };
    target
        .and_then(Value::as_object_mut)
        .and_then(|o| o.remove(key))
        .unwrap_or_else(|| panic!("no {pointer} to remove"));
}

fn insert(v: &mut Value, pointer: &str, value: Value) {
    let (parent, key) = pointer.rsplit_once('/').expect("a pointer");
    let target = if parent.is_empty() {
        Some(v)
    } else {
        v.pointer_mut(parent)
    };
    target
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("no object at {parent:?}"))
        .insert(key.to_owned(), value);
}

#[test]
fn schema_is_valid_draft_2020_12() {
    let s = schema();
    if let Err(e) = jsonschema::meta::validate(&s) {
        panic!("the schema is not a valid JSON Schema: {e}");
    }
    assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
    let types = &s["$defs"]["envelope"]["properties"]["event_type"]["enum"];
    assert_eq!(
        types,
        &json!([
            "alert",
            "http",
            "decode.error",
            "sensor.status",
            "tls.data",
            "coverage",
            "inventory",
            "enforcement"
        ])
    );
}

#[test]
fn hand_made_events_of_every_type_validate() {
    let c = Checker::new();
    for e in examples() {
        assert_eq!(c.errors(&e), Vec::<String>::new(), "{e:#}");
    }
    // Optional fields may be left out; nullable ones may be null.
    let lean = [
        edited(&alert(), |a| {
            for p in [
                "/flow_id",
                "/community_id",
                "/alert/window",
                "/request/authority",
            ] {
                remove(a, p);
            }
            insert(a, "/process", json!({"pid": 1, "comm": ""}));
        }),
        edited(&http(), |h| {
            for p in ["/llm", "/http/response", "/http/sse", "/http/duration_ms"] {
                remove(h, p);
            }
            insert(h, "/http/role", Value::Null);
        }),
        edited(&tls_data(), |t| {
            insert(
                t,
                "/process",
                json!({"pid": 9, "ppid": null, "comm": "node", "exe": null, "exe_sha256": null,
                       "exe_build_id": null, "cmdline": [], "uid": null, "user": null,
                       "login_uid": null, "cgroup": null, "container": null, "ancestry": [],
                       "start_time": 0}),
            );
            insert(t, "/message/data", json!("AAEC"));
            insert(t, "/message/encoding", json!("base64"));
            remove(t, "/host/machine_id");
        }),
    ];
    for e in lean {
        assert_eq!(c.errors(&e), Vec::<String>::new(), "{e:#}");
    }
}

#[test]
fn broken_events_are_rejected_with_the_field_named() {
    let c = Checker::new();
    let cases: Vec<(&str, Value, &str)> = vec![
        // Wrong event types.
        (
            "unknown event_type",
            edited(&alert(), |a| insert(a, "/event_type", json!("alerts"))),
            "",
        ),
        (
            "body of another type",
            edited(&tls_data(), |t| insert(t, "/event_type", json!("http"))),
            "",
        ),
        (
            "schema_version 2",
            edited(&http(), |h| insert(h, "/schema_version", json!(2))),
            "/schema_version",
        ),
        (
            "an enforcement action that does not exist",
            edited(&enforcement(), |e| {
                insert(e, "/enforcement/action", json!("paused"))
            }),
            "/enforcement/action",
        ),
        (
            "an enforcement event without its rules",
            edited(&enforcement(), |e| remove(e, "/enforcement/rules")),
            "/enforcement",
        ),
        // Missing required fields, in the envelope and in bodies.
        (
            "no event_id",
            edited(&status(), |s| remove(s, "/event_id")),
            "",
        ),
        (
            "no host.hostname",
            edited(&alert(), |a| remove(a, "/host/hostname")),
            "/host",
        ),
        (
            "alert without rule id",
            edited(&alert(), |a| remove(a, "/alert/id")),
            "/alert",
        ),
        (
            "hit without evidence",
            edited(&alert(), |a| remove(a, "/alert/hits/0/evidence")),
            "/alert/hits/0",
        ),
        (
            "http without request headers",
            edited(&http(), |h| remove(h, "/http/request/headers")),
            "/http/request",
        ),
        (
            "decode.error without kind",
            edited(&decode_error(), |d| remove(d, "/decode/kind")),
            "/decode",
        ),
        (
            "status without kernel",
            edited(&status(), |s| remove(s, "/kernel")),
            "",
        ),
        (
            "status counter missing",
            edited(&status(), |s| remove(s, "/kernel/lost_bytes")),
            "/kernel",
        ),
        (
            "tls.data without message",
            edited(&tls_data(), |t| remove(t, "/message")),
            "",
        ),
        (
            "context without start_time",
            edited(&tls_data(), |t| remove(t, "/process/start_time")),
            "/process",
        ),
        // Fields a type does not have.
        (
            "extra top-level field",
            edited(&alert(), |a| insert(a, "/extra", json!(1))),
            "",
        ),
        (
            "extra envelope field",
            edited(&http(), |h| insert(h, "/sensor/build", json!("x"))),
            "/sensor",
        ),
        (
            "extra body field",
            edited(&status(), |s| insert(s, "/detect/bogus", json!(0))),
            "/detect",
        ),
        (
            "evidence with the value",
            edited(&alert(), |a| {
                insert(
                    a,
                    "/alert/hits/0/evidence/value",
                    json!("http://proxy:3128"),
                )
            }),
            "/alert/hits/0/evidence",
        ),
        (
            "message field in http",
            edited(&http(), |h| insert(h, "/message", json!({}))),
            "",
        ),
        // Closed sets and shapes.
        (
            "unknown severity",
            edited(&alert(), |a| insert(a, "/alert/severity", json!("severe"))),
            "/alert/severity",
        ),
        (
            "unknown role",
            edited(&alert(), |a| {
                insert(a, "/alert/hits/0/role", json!("narrator"))
            }),
            "/alert/hits/0/role",
        ),
        (
            "unknown encoding",
            edited(&tls_data(), |t| {
                insert(t, "/message/encoding", json!("hex"))
            }),
            "/message/encoding",
        ),
        (
            "unknown decode kind",
            edited(&decode_error(), |d| {
                insert(d, "/decode/kind", json!("oops"))
            }),
            "/decode/kind",
        ),
        (
            "half-known socket",
            edited(&tls_data(), |t| {
                insert(t, "/tls/socket/status", json!("unknown"))
            }),
            "/tls/socket",
        ),
        (
            "bad event_id",
            edited(&tls_data(), |t| insert(t, "/event_id", json!("not-a-uuid"))),
            "/event_id",
        ),
        (
            "bad time",
            edited(&tls_data(), |t| insert(t, "/time", json!("yesterday"))),
            "/time",
        ),
        (
            "bad ATT&CK id",
            edited(&alert(), |a| a["alert"]["attack"][0] = json!("TA0001")),
            "/alert/attack/0",
        ),
        (
            "negative flow_id",
            edited(&alert(), |a| insert(a, "/flow_id", json!(-1))),
            "/flow_id",
        ),
        (
            "port out of range",
            edited(&alert(), |a| {
                insert(a, "/tls/socket/remote_port", json!(70000))
            }),
            "/tls/socket",
        ),
        (
            "content without encoding",
            edited(&http(), |h| remove(h, "/http/request/body/encoding")),
            "/http/request/body",
        ),
    ];
    let mut accepted = Vec::new();
    for (name, event, path) in &cases {
        let errors = c.errors(event);
        if errors.is_empty() {
            accepted.push(*name);
            continue;
        }
        // The explanation names where the problem is.
        assert!(
            errors
                .iter()
                .any(|e| e.contains(&format!("at \"{path}")) || path.is_empty()),
            "{name}: expected an error at {path:?}, got {errors:#?}"
        );
    }
    assert_eq!(
        accepted,
        Vec::<&str>::new(),
        "broken events the schema accepted"
    );
}

/// The sensor's configuration: decoded bodies in `http` events, state in `dir`.
fn config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("telltale.toml");
    let state = dir.join("state");
    std::fs::write(
        &path,
        format!(
            "[decode]\nhttp_bodies = true\n\n[state]\ndir = {:?}\n",
            state.display().to_string()
        ),
    )
    .expect("write config");
    path
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .expect("/proc/sys/kernel/osrelease")
        .trim()
        .to_owned()
}

#[test]
fn every_event_the_sensor_prints_validates() {
    const TEST: &str = "every_event_the_sensor_prints_validates";
    if !can_load_probes(TEST) {
        return;
    }
    let _g = exclusive();
    let dir = tempfile::tempdir().expect("tempdir");
    let nginx = Nginx::start();
    let sensor = Sensor::spawn_with_env(
        &["--emit", "alerts,errors,http,data"],
        Some(&config(dir.path())),
        &[("TZ", TZ)],
    );
    let m = marker("schema");
    let body = format!(
        r#"{{"model":"claude-test","max_tokens":64,"system":"You are a coding assistant. Environment: Linux {}, time zone {TZ}. Session {m}.","messages":[{{"role":"user","content":"Summarise the repository, please."}}],"metadata":{{"user_id":"{m}"}}}}"#,
        kernel_release()
    );
    let file = dir.path().join("body.json");
    std::fs::write(&file, &body).expect("write body");
    let run = run_client(
        Command::new("curl")
            .args(["-sS", "--fail", "--http2", "--cacert"])
            .arg(nginx.cert())
            .args([
                "-H",
                "content-type: application/json",
                "-H",
                "x-api-key: sk-ant-test-0000",
                "--data-binary",
            ])
            .arg(format!("@{}", file.display()))
            .arg(format!("https://127.0.0.1:{}/v1/messages", nginx.port_api)),
        CLIENT_TIMEOUT,
    );
    let (events, stderr) = sensor.stop();

    let checker = Checker::new();
    let mut failures = Vec::new();
    for e in &events {
        failures.extend(checker.errors(e));
    }
    assert!(
        failures.is_empty(),
        "{} of {} events do not match the schema:\n{}",
        failures.len(),
        events.len(),
        failures.join("\n")
    );

    // What the run must have shown, so that every event type was checked.
    fn of<'a>(events: &'a [Value], t: &'a str) -> impl Iterator<Item = &'a Value> {
        events.iter().filter(move |e| e["event_type"] == t)
    }
    let states: Vec<&str> = of(&events, "sensor.status")
        .filter_map(|e| e["state"].as_str())
        .collect();
    assert!(
        states.contains(&"started") && states.contains(&"stopped"),
        "{states:?}"
    );
    let pid = run.pid;
    assert!(
        of(&events, "tls.data").any(|e| e["process"]["pid"] == pid),
        "tls.data of curl; stderr: {stderr}"
    );
    assert!(
        of(&events, "http").any(|e| e["process"]["pid"] == pid
            && e["http"]["request"]["body"]["content"]
                .as_str()
                .is_some_and(|c| c.contains(&m))),
        "curl's exchange with its body; stderr: {stderr}"
    );
    let alerts: Vec<&Value> = of(&events, "alert")
        .filter(|e| e["process"]["pid"] == pid)
        .collect();
    assert!(
        !alerts.is_empty(),
        "an alert on curl's request; stderr: {stderr}"
    );
    for a in &alerts {
        let cid = a["tls"]["socket"]["community_id"]
            .as_str()
            .expect("the socket of a loopback connection is known");
        assert_eq!(a["community_id"], cid, "{a:#}");
        assert_eq!(a["flow_id"], format::flow_id(cid), "{a:#}");
    }
    let kinds: Vec<&str> = alerts
        .iter()
        .flat_map(|a| a["alert"]["facts"].as_array().into_iter().flatten())
        .filter_map(|f| f["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"timezone") && kinds.contains(&"kernel_release"),
        "{kinds:?}"
    );

    // Every event renders in ECS; alerts and exchanges in OCSF.
    for e in &events {
        let t = e["event_type"].as_str().unwrap_or_default();
        let ecs = format::render(Format::Ecs, e).expect("every event maps to ECS");
        assert_eq!(ecs["event"]["id"], e["event_id"]);
        let ocsf = format::render(Format::Ocsf, e);
        match t {
            "alert" => {
                let o = ocsf.expect("alerts map to OCSF");
                assert_eq!(o["class_uid"], 2004);
                assert_eq!(
                    o["evidences"][0]["connection_info"]["community_uid"],
                    e["community_id"]
                );
                assert_eq!(ecs["network"]["community_id"], e["community_id"]);
            }
            "http" => assert_eq!(ocsf.expect("http maps to OCSF")["class_uid"], 4002),
            _ => assert!(ocsf.is_none(), "{t} has no OCSF mapping"),
        }
    }
}
