//! Decoder tests over real captures (tests/captures, recorded by the sensor from
//! real clients), re-chunked at hostile boundaries, and over the decoder's own
//! rules: protocol and role detection, bounds, errors confined to a connection.

use std::collections::BTreeMap;

use base64::Engine as _;
use sensor_common::Direction;
use serde_json::Value;

use super::*;

/// One recorded connection: its calls in order.
#[derive(Debug, Default, Clone)]
struct Recorded {
    calls: Vec<(Direction, Vec<u8>)>,
}

/// Reads tests/captures/NAME.jsonl: connections by number.
fn capture(name: &str) -> BTreeMap<u64, Recorded> {
    let path = format!(
        "{}/../tests/captures/{name}.jsonl",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut conns: BTreeMap<u64, Recorded> = BTreeMap::new();
    for line in text.lines().skip(1) {
        let v: Value = serde_json::from_str(line).expect("JSON line");
        let dir = match v["dir"].as_str() {
            Some("write") => Direction::Egress,
            _ => Direction::Ingress,
        };
        let data = base64::engine::general_purpose::STANDARD
            .decode(v["data_b64"].as_str().expect("data_b64"))
            .expect("base64");
        conns
            .entry(v["conn"].as_u64().expect("conn"))
            .or_default()
            .calls
            .push((dir, data));
    }
    conns
}

/// What the decoder reported for a set of connections.
#[derive(Debug, Default)]
struct Seen {
    requests: Vec<(u64, Exchange)>,
    exchanges: Vec<(u64, ConnView, Exchange)>,
    errors: Vec<(u64, DecodeError)>,
    websocket: Vec<(u64, Side, Vec<u8>)>,
}

/// Feeds each connection's calls, re-cut into pieces of at most `cut` bytes
/// (0: as recorded), then closes it.
fn replay(conns: &BTreeMap<u64, Recorded>, cut: usize, limits: Limits) -> Seen {
    let mut d: Decoder<u64> = Decoder::new(limits);
    let mut seen = Seen::default();
    let mut ts = 0;
    {
        let mut sink = |k: &u64, v: ConnView, o: Output<'_>| match o {
            Output::Request(x) => seen.requests.push((*k, x.clone())),
            Output::Exchange(x) => seen.exchanges.push((*k, v, *x)),
            Output::Error(e) => seen.errors.push((*k, e)),
            Output::WebSocket { side, payload, .. } => {
                seen.websocket.push((*k, side, payload.to_vec()))
            }
        };
        for (id, rec) in conns {
            for (dir, data) in &rec.calls {
                let pieces: Vec<&[u8]> = if cut == 0 {
                    vec![data.as_slice()]
                } else {
                    data.chunks(cut).collect()
                };
                for p in pieces {
                    ts += 1;
                    d.feed(id, *dir, p, ts, false, &mut sink);
                }
            }
            d.close(id, ts, &mut sink);
        }
    }
    seen
}

fn json(b: &[u8]) -> Value {
    serde_json::from_slice(b)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(b)))
}

fn request(x: &Exchange) -> &Message {
    x.request.as_ref().expect("a request")
}

fn response(x: &Exchange) -> &Message {
    x.response.as_ref().expect("a response")
}

fn target(m: &Message) -> (&str, &str) {
    match &m.head.start {
        Start::Request { method, target, .. } => (method, target),
        Start::Response { .. } => panic!("not a request"),
    }
}

fn status(m: &Message) -> u16 {
    match m.head.start {
        Start::Response { status } => status,
        Start::Request { .. } => panic!("not a response"),
    }
}

/// Every cut gives the same exchanges as the recorded calls.
fn replay_all_cuts(name: &str) -> Seen {
    let conns = capture(name);
    let base = replay(&conns, 0, Limits::default());
    for cut in [1, 7, 9, 100, 4096] {
        let other = replay(&conns, cut, Limits::default());
        let a: Vec<_> = base.exchanges.iter().map(|(k, _, x)| (k, x)).collect();
        let b: Vec<_> = other.exchanges.iter().map(|(k, _, x)| (k, x)).collect();
        assert_eq!(a.len(), b.len(), "{name} cut {cut}: exchange count");
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.0, y.0);
            assert_eq!(x.1.stream, y.1.stream, "{name} cut {cut}");
            for (m, n) in [(&x.1.request, &y.1.request), (&x.1.response, &y.1.response)] {
                let (m, n) = (
                    m.as_ref().map(|m| (&m.head, m.body.content(), m.aborted)),
                    n.as_ref().map(|m| (&m.head, m.body.content(), m.aborted)),
                );
                assert_eq!(m, n, "{name} cut {cut}: stream {}", x.1.stream);
            }
        }
        assert_eq!(
            base.errors.len(),
            other.errors.len(),
            "{name} cut {cut}: errors {:?}",
            other.errors
        );
    }
    base
}

#[test]
fn curl_http2_gzip_request_decodes_to_the_json_sent() {
    let seen = replay_all_cuts("curl_h2_gzip_json");
    assert_eq!(seen.errors, vec![]);
    assert_eq!(seen.exchanges.len(), 3, "{:#?}", seen.exchanges);
    let (conn, view, x) = &seen.exchanges[0];
    assert_eq!(*conn, 1);
    assert_eq!(view.protocol, Protocol::Http2);
    assert_eq!(view.role, Some(Side::Client));
    let q = request(x);
    assert_eq!(target(q), ("POST", "/v1/messages"));
    assert_eq!(q.head.version, Version::Http2);
    assert_eq!(q.body.codings, vec![Coding::Gzip]);
    assert!(q.body.decoded.is_some() && !q.body.truncated && q.aborted.is_none());
    let body = json(q.body.content());
    assert_eq!(body["model"].as_str().map(|m| !m.is_empty()), Some(true));
    assert!(body["messages"].is_array());
    assert_eq!(status(response(x)), 200);
    assert_eq!(json(response(x).body.content())["type"], "message");
    // Conn 2: two requests on one connection, streams 1 and 3, the second with
    // header fields from the dynamic table.
    let on2: Vec<_> = seen.exchanges.iter().filter(|(k, ..)| *k == 2).collect();
    assert_eq!(
        on2.iter().map(|(_, _, x)| x.stream).collect::<Vec<_>>(),
        [1, 3]
    );
    let (h1, h3) = (&request(&on2[0].2).head, &request(&on2[1].2).head);
    assert_eq!(
        h1.headers, h3.headers,
        "HPACK dynamic-table entries decode alike"
    );
    for (_, _, x) in on2 {
        assert!(json(request(x).body.content())["messages"].is_array());
    }
    // Requests reach detection before the exchange ends.
    assert_eq!(seen.requests.len(), 3);
}

#[test]
fn curl_http1_chunked_upload_and_gzip_chunked_response() {
    let seen = replay_all_cuts("curl_h1_chunked");
    assert_eq!(seen.errors, vec![]);
    assert_eq!(seen.exchanges.len(), 1);
    let (_, view, x) = &seen.exchanges[0];
    assert_eq!(
        (view.protocol, view.role),
        (Protocol::Http1, Some(Side::Client))
    );
    let q = request(x);
    assert_eq!(q.head.value("transfer-encoding"), Some("chunked"));
    assert!(json(q.body.content())["messages"].is_array());
    let r = response(x);
    assert_eq!(r.body.codings, vec![Coding::Gzip]);
    assert_eq!(json(r.body.content())["type"], "message");
}

#[test]
fn httpx_http2_two_requests_on_one_connection() {
    let seen = replay_all_cuts("httpx_h2");
    assert_eq!(seen.errors, vec![]);
    let paths: Vec<_> = seen
        .exchanges
        .iter()
        .map(|(_, _, x)| target(request(x)).1.to_owned())
        .collect();
    assert_eq!(paths, ["/v1/messages", "/v1/chat/completions"]);
    for (_, _, x) in &seen.exchanges {
        assert_eq!(response(x).body.codings, vec![Coding::Gzip]);
        assert!(json(response(x).body.content()).is_object());
    }
}

#[test]
fn anthropic_sdk_request_and_streaming_response() {
    let seen = replay_all_cuts("anthropic_sdk");
    assert_eq!(seen.errors, vec![]);
    assert_eq!(seen.exchanges.len(), 2);
    let (_, _, create) = &seen.exchanges[0];
    let q = request(create);
    assert!(
        q.head
            .value("user-agent")
            .is_some_and(|u| u.contains("Anthropic"))
    );
    assert!(q.head.value("x-stainless-os").is_some());
    let body = json(q.body.content());
    assert!(body["system"].is_string() || body["system"].is_array());
    let (_, _, stream) = &seen.exchanges[1];
    let sse = stream.sse.as_ref().expect("an event stream");
    let types: Vec<_> = sse
        .events
        .iter()
        .filter_map(|e| e.event.as_deref())
        .collect();
    assert_eq!(types.first(), Some(&"message_start"));
    assert_eq!(types.last(), Some(&"message_stop"));
    assert!(types.contains(&"content_block_delta"));
    for e in &sse.events {
        assert!(json(e.data.as_bytes()).is_object());
    }
}

#[test]
fn openai_sdk_and_node_fetch_chat_completions() {
    for name in ["openai_sdk", "node_fetch"] {
        let seen = replay_all_cuts(name);
        assert_eq!(seen.errors, vec![], "{name}");
        assert_eq!(seen.exchanges.len(), 1, "{name}");
        let (_, _, x) = &seen.exchanges[0];
        assert_eq!(
            target(request(x)),
            ("POST", "/v1/chat/completions"),
            "{name}"
        );
        assert!(
            json(request(x).body.content())["messages"].is_array(),
            "{name}"
        );
        assert_eq!(status(response(x)), 200, "{name}");
        assert!(
            json(response(x).body.content())["choices"].is_array(),
            "{name}"
        );
    }
}

#[test]
fn the_server_end_of_a_connection_is_decoded_with_the_roles_swapped() {
    // The client's capture, seen from the server: every write becomes a read.
    let mut conns = capture("httpx_h2");
    for rec in conns.values_mut() {
        for (dir, _) in &mut rec.calls {
            *dir = match dir {
                Direction::Egress => Direction::Ingress,
                Direction::Ingress => Direction::Egress,
            };
        }
    }
    let seen = replay(&conns, 0, Limits::default());
    assert_eq!(seen.exchanges.len(), 2);
    assert!(
        seen.exchanges
            .iter()
            .all(|(_, v, _)| v.role == Some(Side::Server))
    );
}

#[test]
fn a_body_beyond_the_bound_is_kept_in_part_and_marked() {
    let limits = Limits {
        max_body_bytes: 100,
        ..Limits::default()
    };
    let seen = replay(&capture("openai_sdk"), 0, limits);
    let q = request(&seen.exchanges[0].2);
    assert_eq!(q.body.kept.len(), 100);
    assert!(q.body.truncated && q.body.length > 100);
}

fn h1_request(body: &[u8], extra: &str) -> Vec<u8> {
    let mut v = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: api.anthropic.com\r\n{extra}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    v.extend_from_slice(body);
    v
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

#[test]
fn a_decompression_bomb_is_stopped_and_reported() {
    let bomb = gzip(&vec![b'a'; 200 << 20]);
    let mut conns = BTreeMap::new();
    conns.insert(
        1,
        Recorded {
            calls: vec![(
                Direction::Egress,
                h1_request(&bomb, "Content-Encoding: gzip\r\n"),
            )],
        },
    );
    let seen = replay(&conns, 0, Limits::default());
    assert_eq!(seen.errors.len(), 1, "{:?}", seen.errors);
    assert_eq!(seen.errors[0].1.kind, ErrorKind::Limit);
    assert!(
        seen.errors[0].1.detail.contains("bomb"),
        "{}",
        seen.errors[0].1.detail
    );
    let q = request(&seen.requests[0].1);
    assert!(q.body.truncated);
    assert!(q.body.content().len() <= Limits::default().body.max_decoded_bytes);
}

#[test]
fn garbage_on_one_connection_leaves_the_others_alone() {
    let mut conns = capture("node_fetch");
    let good = conns[&1].clone();
    conns.insert(
        2,
        Recorded {
            calls: vec![(
                Direction::Egress,
                b"\x16\x03\x01 not HTTP at all \x00\xff".repeat(10),
            )],
        },
    );
    conns.insert(
        3,
        Recorded {
            calls: vec![(
                Direction::Egress,
                b"POST /x HTTP/1.1\r\nContent-Length: nope\r\n\r\n".to_vec(),
            )],
        },
    );
    conns.insert(4, good);
    let seen = replay(&conns, 0, Limits::default());
    let ok: Vec<_> = seen
        .exchanges
        .iter()
        .filter(|(_, _, x)| x.response.is_some())
        .map(|(k, ..)| *k)
        .collect();
    assert_eq!(ok, [1, 4]);
    assert!(
        seen.errors.iter().all(|(k, _)| *k == 3),
        "{:?}",
        seen.errors
    );
    assert_eq!(
        seen.errors
            .iter()
            .filter(|(_, e)| e.kind == ErrorKind::Malformed)
            .count(),
        1
    );
}

#[test]
fn bounds_on_connections_and_memory_hold() {
    let limits = Limits {
        max_connections: 2,
        max_total_bytes: 1 << 20,
        ..Limits::default()
    };
    let mut d: Decoder<u32> = Decoder::new(limits);
    let mut errors = Vec::new();
    let mut sink = |_: &u32, _: ConnView, o: Output<'_>| {
        if let Output::Error(e) = o {
            errors.push(e);
        }
    };
    // Three connections each start a 700 KiB body: the table and the byte
    // bound both force connections out.
    let head = b"POST /v1/messages HTTP/1.1\r\nHost: a\r\nContent-Length: 716800\r\n\r\n";
    for conn in 0..3u32 {
        d.feed(
            &conn,
            Direction::Egress,
            head,
            u64::from(conn),
            false,
            &mut sink,
        );
        d.feed(
            &conn,
            Direction::Egress,
            &vec![b'x'; 600 << 10],
            u64::from(conn),
            false,
            &mut sink,
        );
        assert!(d.stats().held_bytes <= 1 << 20);
        assert!(d.stats().connections <= 2);
    }
    assert!(
        errors.iter().all(|e| e.kind == ErrorKind::Limit),
        "{errors:?}"
    );
    assert!(d.stats().dropped_connections >= 2);
}

#[test]
fn joining_an_http2_connection_midway_is_reported_not_misread() {
    let conns = capture("httpx_h2");
    let mut late = conns[&1].clone();
    // Drop the preface write: the decoder sees frames it cannot decompress.
    late.calls.remove(0);
    let mut c = BTreeMap::new();
    c.insert(1, late);
    let seen = replay(&c, 0, Limits::default());
    assert!(seen.exchanges.is_empty());
    assert_eq!(seen.errors.len(), 1, "{:?}", seen.errors);
    assert_eq!(seen.errors[0].1.kind, ErrorKind::Gap);
}

#[test]
fn non_http_connections_are_ignored_quietly() {
    let mut c = BTreeMap::new();
    c.insert(
        1,
        Recorded {
            calls: vec![
                (
                    Direction::Egress,
                    b"\x00\x00\x00\x01hello, custom binary protocol".to_vec(),
                ),
                (Direction::Ingress, b"OK".to_vec()),
            ],
        },
    );
    let seen = replay(&c, 0, Limits::default());
    assert!(seen.exchanges.is_empty() && seen.errors.is_empty());
}

#[test]
fn a_server_whose_settings_precede_the_clients_preface_is_decoded() {
    // The server end of httpx's connection, with the server's first write
    // (its SETTINGS) captured before its first read (the client's preface).
    let mut conns = capture("httpx_h2");
    for rec in conns.values_mut() {
        for (dir, _) in &mut rec.calls {
            *dir = match dir {
                Direction::Egress => Direction::Ingress,
                Direction::Ingress => Direction::Egress,
            };
        }
        let first_server_write = rec
            .calls
            .iter()
            .position(|(d, _)| *d == Direction::Egress)
            .expect("a server write");
        let w = rec.calls.remove(first_server_write);
        rec.calls.insert(0, w);
    }
    let seen = replay(&conns, 0, Limits::default());
    assert_eq!(seen.errors, vec![]);
    assert_eq!(seen.exchanges.len(), 2);
    assert!(
        seen.exchanges
            .iter()
            .all(|(_, v, _)| v.role == Some(Side::Server))
    );
}
