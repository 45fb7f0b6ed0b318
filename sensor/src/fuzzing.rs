//! Fuzz drivers: each takes arbitrary bytes, drives one decoder with them as a
//! hostile peer would, and checks the decoder's invariants (bounded memory, sane
//! output). The cargo-fuzz targets in `fuzz/` call these, and a unit test runs
//! them over the seed corpus and mutations of it as a short smoke test.
//!
//! Input framing for the connection drivers: a sequence of records
//! `[flags, len, len bytes…]`; `flags` bit 0 picks the side (or direction), bit 1
//! marks bytes lost after the record. Records split the stream at arbitrary
//! points, which is what TLS calls do.

use sensor_common::Direction;

use crate::{
    decode::{
        self, BodyLimits, Coding, Decoder, Http1, Http2, Limits, Output, Part, Side, WireLimits,
        WireParser,
    },
    llm,
};

/// Small bounds, so that the fuzzer reaches them.
fn wire_limits() -> WireLimits {
    WireLimits {
        max_header_count: 16,
        max_header_bytes: 2048,
        max_streams: 8,
        max_frame_bytes: 4096,
        max_ws_message_bytes: 1024,
    }
}

/// Splits fuzz input into `(flags, bytes)` records.
fn records(data: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut rest = data;
    std::iter::from_fn(move || {
        let (&flags, r) = rest.split_first()?;
        let (&len, r) = r.split_first().unwrap_or((&0, &[]));
        let n = usize::from(len).min(r.len());
        let (chunk, r) = r.split_at(n);
        rest = r;
        Some((flags, chunk))
    })
}

fn side_of(flags: u8) -> Side {
    if flags & 1 == 0 {
        Side::Client
    } else {
        Side::Server
    }
}

/// Checks what a wire parser reports.
fn check_part(part: &Part<'_>, limits: &WireLimits) {
    match part {
        Part::Head { head, .. } => {
            assert!(
                head.headers.len() <= limits.max_header_count,
                "header count bound"
            );
        }
        Part::WebSocket { payload, .. } => {
            assert!(
                payload.len() <= limits.max_ws_message_bytes,
                "WebSocket bound"
            );
        }
        Part::Error { detail, .. } => assert!(!detail.is_empty()),
        _ => {}
    }
}

fn drive(parser: &mut dyn WireParser, data: &[u8], preface: &[u8]) {
    let limits = wire_limits();
    // Parsers may hold a partial head or frame and the bytes of one record.
    let bound = limits.max_header_bytes + limits.max_frame_bytes + 64 * 1024;
    let mut check = |p: Part<'_>| check_part(&p, &limits);
    if !preface.is_empty() {
        parser.feed(Side::Client, preface, 0, &mut check);
    }
    for (i, (flags, chunk)) in records(data).enumerate() {
        let side = side_of(flags);
        parser.feed(side, chunk, i as u64, &mut check);
        if flags & 2 != 0 {
            parser.gap(side, &mut check);
        }
        assert!(
            parser.buffered() <= bound,
            "buffered {} > {bound}",
            parser.buffered()
        );
    }
    parser.close(u64::MAX, &mut check);
}

/// HTTP/1.1 (and WebSocket after an upgrade) on one connection.
pub fn http1(data: &[u8]) {
    drive(&mut Http1::new(wire_limits()), data, b"");
}

/// HTTP/2 on one connection, after a valid client preface.
pub fn http2(data: &[u8]) {
    drive(&mut Http2::new(wire_limits()), data, decode::HTTP2_PREFACE);
}

/// Content decoding: byte 0 picks the codings, the rest is the body.
pub fn content(data: &[u8]) {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let all = [Coding::Gzip, Coding::Deflate, Coding::Br, Coding::Zstd];
    let mut codings = vec![all[usize::from(pick & 3)]];
    if pick & 4 != 0 {
        codings.push(all[usize::from(pick >> 3 & 3)]);
    }
    let limits = BodyLimits {
        max_decoded_bytes: 1 << 20,
        max_ratio: 50,
    };
    let d = decode::body_decode(body, &codings, limits);
    assert!(d.len() <= limits.max_decoded_bytes, "decoded bound");
}

/// The whole decode stage: several connections, protocol detection, assembly.
/// Record flags: bit 0 direction, bit 1 loss, bits 2–3 the connection, bit 4 a close.
pub fn decoder(data: &[u8]) {
    let limits = Limits {
        wire: wire_limits(),
        max_body_bytes: 4096,
        body: BodyLimits {
            max_decoded_bytes: 16384,
            max_ratio: 50,
        },
        max_sse_events: 8,
        max_connections: 3,
        max_total_bytes: 64 * 1024,
        idle_timeout_ns: 1_000,
    };
    let mut d: Decoder<u8> = Decoder::new(limits);
    let mut sink = |_: &u8, _: decode::ConnView, o: Output<'_>| {
        if let Output::Exchange(x) = o {
            for m in x.request.iter().chain(x.response.iter()) {
                assert!(m.body.kept.len() <= limits.max_body_bytes, "body bound");
                if let Some(dec) = &m.body.decoded {
                    assert!(dec.len() <= limits.body.max_decoded_bytes, "decoded bound");
                }
            }
        }
    };
    for (i, (flags, chunk)) in records(data).enumerate() {
        let key = flags >> 2 & 3;
        let dir = if flags & 1 == 0 {
            Direction::Egress
        } else {
            Direction::Ingress
        };
        if flags & 16 != 0 {
            d.close(&key, i as u64, &mut sink);
        } else {
            d.feed(&key, dir, chunk, i as u64, flags & 2 != 0, &mut sink);
        }
        assert!(
            d.stats().held_bytes as usize <= limits.max_total_bytes,
            "total bound"
        );
    }
    d.expire(u64::MAX, &mut sink);
    d.flush(&mut sink);
}

/// The LLM request model: byte 0 picks the API shape, the rest is the body.
pub fn llm_request(data: &[u8]) {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let apis = llm::Api::ALL;
    let api = apis[usize::from(pick) % apis.len()];
    let endpoint = llm::Endpoint {
        provider: "fuzz".into(),
        provider_name: "fuzz".into(),
        api,
        model_from_path: None,
        self_hosted: false,
        streaming: pick & 0x80 != 0,
    };
    let _ = llm::parse_request(&endpoint, body);
}

/// HTTP/1 request framing of held writes: a complete request lies inside the
/// input, framing its own bytes again gives the same answer, and pipelined
/// requests are framed one after the other.
pub fn request_frame(data: &[u8]) {
    use crate::decode::frame::{Next, next_request};
    let mut rest = data;
    for _ in 0..64 {
        match next_request(rest) {
            Next::Complete(n) => {
                assert!(
                    n > 0 && n <= rest.len(),
                    "request of {n} bytes in {}",
                    rest.len()
                );
                assert_eq!(
                    next_request(&rest[..n]),
                    Next::Complete(n),
                    "framing is stable"
                );
                rest = &rest[n..];
            }
            Next::Incomplete(_) | Next::NotHttp1(_) => break,
        }
    }
}

/// The program-file analyses (Go's pc-line table, stripped static TLS
/// libraries) on a hostile file: they return an answer or an error, never
/// panic, and what they find lies inside the file.
#[cfg(feature = "binaries")]
pub fn binary(data: &[u8]) {
    use crate::binary::{golang, stripped};
    let _ = golang::is_go(data);
    if let Ok(Some(go)) = golang::go_tls(data) {
        for f in [&go.write, &go.read] {
            assert!(
                f.file_offset < data.len() as u64,
                "Go function outside the file"
            );
            assert!(
                f.entry_site < f.size.max(1),
                "entry site outside the function"
            );
            assert!(
                f.ret_sites.iter().all(|r| *r < f.size),
                "RET outside the function"
            );
        }
    }
    if let Ok(Some(found)) = stripped::discover(data) {
        for a in found.addresses() {
            assert!(
                stripped::file_offset(data, a).is_some_and(|o| o < data.len() as u64),
                "address {a:#x} outside the file"
            );
        }
    }
    let _ = stripped::build_id(data);
}

/// Seed inputs for the targets, made from the real captures in tests/captures
/// and from hand-written edge cases; `write_seeds` stores them in fuzz/seeds.
#[cfg(test)]
mod seeds {
    use std::collections::BTreeMap;

    use base64::Engine as _;

    /// (target, name, bytes) for every seed.
    pub fn all() -> Vec<(&'static str, String, Vec<u8>)> {
        let mut out = Vec::new();
        let dir = format!("{}/../tests/captures", env!("CARGO_MANIFEST_DIR"));
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .expect("tests/captures")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
            .collect();
        names.sort();
        for path in names {
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("x")
                .to_owned();
            let text = std::fs::read_to_string(&path).expect("capture");
            let mut conns: BTreeMap<u64, Vec<(u8, Vec<u8>)>> = BTreeMap::new();
            let mut h2 = false;
            for line in text.lines().skip(1) {
                let v: serde_json::Value = serde_json::from_str(line).expect("JSON");
                let data = base64::engine::general_purpose::STANDARD
                    .decode(v["data_b64"].as_str().unwrap_or(""))
                    .expect("base64");
                h2 |= data.starts_with(crate::decode::HTTP2_PREFACE);
                let flags = u8::from(v["dir"] != "write");
                conns
                    .entry(v["conn"].as_u64().unwrap_or(0))
                    .or_default()
                    .push((flags, data));
            }
            let mut decoder = Vec::new();
            for (i, (conn, calls)) in conns.iter().enumerate() {
                let mut wire = Vec::new();
                for (flags, data) in calls {
                    let mut rest = data.as_slice();
                    // The HTTP/2 driver sends the preface itself.
                    if h2 && *flags == 0 {
                        rest = rest
                            .strip_prefix(crate::decode::HTTP2_PREFACE)
                            .unwrap_or(rest);
                    }
                    for chunk in rest.chunks(255) {
                        wire.extend_from_slice(&[*flags, chunk.len() as u8]);
                        wire.extend_from_slice(chunk);
                    }
                    for chunk in data.chunks(255) {
                        decoder
                            .extend_from_slice(&[flags | ((i as u8 & 3) << 2), chunk.len() as u8]);
                        decoder.extend_from_slice(chunk);
                    }
                }
                let target = if h2 { "http2" } else { "http1" };
                out.push((target, format!("{stem}-{conn}"), wire));
            }
            out.push(("decoder", stem.clone(), decoder));
            // What clients wrote, for request framing.
            if !h2 {
                for (conn, calls) in &conns {
                    let written: Vec<u8> = calls
                        .iter()
                        .filter(|(flags, _)| *flags == 0)
                        .flat_map(|(_, d)| d.iter().copied())
                        .collect();
                    if !written.is_empty() {
                        out.push(("request_frame", format!("{stem}-{conn}"), written));
                    }
                }
            }
            // Request bodies for the LLM model (as HTTP/1 bodies are plain here).
            for (_, calls) in conns {
                for (flags, data) in calls {
                    let head_end = data.windows(4).position(|w| w == b"\r\n\r\n");
                    let Some(body) = head_end.map(|i| &data[i + 4..]) else {
                        continue;
                    };
                    if flags == 0 && body.first() == Some(&b'{') {
                        for api in 0..4u8 {
                            let mut seed = vec![api];
                            seed.extend_from_slice(body);
                            out.push(("llm_request", format!("{stem}-{api}"), seed));
                        }
                    }
                }
            }
        }
        for (i, coding) in [0u8, 1, 2, 3].iter().enumerate() {
            let mut seed = vec![*coding];
            seed.extend_from_slice(&super::tests::encoded(*coding));
            out.push(("content", format!("coding-{i}"), seed));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// `{"a":"…"}` compressed with the coding the content driver's byte 0 picks.
    pub fn encoded(pick: u8) -> Vec<u8> {
        let data =
            br#"{"messages":[{"role":"user","content":"Europe/Berlin UTC+01:00"}]}"#.repeat(20);
        match pick & 3 {
            0 => {
                let mut e =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(&data).expect("gzip");
                e.finish().expect("gzip")
            }
            1 => {
                let mut e =
                    flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(&data).expect("zlib");
                e.finish().expect("zlib")
            }
            2 => crate::decode::brotli_stored(&data),
            _ => zstd::encode_all(&data[..], 3).expect("zstd"),
        }
    }

    /// A small deterministic mutator (xorshift): flips, inserts, deletes and
    /// splices bytes, as a coverage-blind stand-in for libFuzzer.
    struct Mutator(u64);

    impl Mutator {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn mutate(&mut self, seed: &[u8]) -> Vec<u8> {
            let mut v = seed.to_vec();
            for _ in 0..1 + self.next() % 8 {
                let at = if v.is_empty() {
                    0
                } else {
                    (self.next() as usize) % v.len()
                };
                match self.next() % 5 {
                    0 if !v.is_empty() => v[at] ^= 1 << (self.next() % 8),
                    1 => v.insert(at, self.next() as u8),
                    2 if !v.is_empty() => {
                        v.remove(at);
                    }
                    3 if !v.is_empty() => {
                        v[at] = [0, 0xff, b'\r', b'\n', b':', b'0'][self.next() as usize % 6]
                    }
                    _ => {
                        let n = (self.next() % 64) as usize;
                        let end = (at + n).min(v.len());
                        let dup = v[at..end].to_vec();
                        v.splice(at..at, dup);
                    }
                }
            }
            v
        }
    }

    fn driver(target: &str) -> fn(&[u8]) {
        match target {
            "http1" => http1,
            "http2" => http2,
            "content" => content,
            "decoder" => decoder,
            "request_frame" => request_frame,
            _ => llm_request,
        }
    }

    /// Every target over every seed and mutations of it: a short smoke run of
    /// the fuzz targets that needs no instrumentation (`./x fuzz` runs the real
    /// thing).
    #[test]
    fn fuzz_smoke() {
        let seeds = seeds::all();
        for t in [
            "http1",
            "http2",
            "content",
            "decoder",
            "llm_request",
            "request_frame",
        ] {
            assert!(seeds.iter().any(|(x, ..)| *x == t), "no seed for {t}");
        }
        let mut m = Mutator(0x9e37_79b9_7f4a_7c15);
        for (target, _, seed) in &seeds {
            let f = driver(target);
            f(seed);
            for _ in 0..150 {
                f(&m.mutate(seed));
            }
        }
    }

    /// Writes the seeds to fuzz/seeds/TARGET/NAME (run after re-recording the
    /// captures: `cargo test -p telltale --lib write_seeds -- --ignored`).
    #[test]
    #[ignore = "writes files into the source tree"]
    fn write_seeds() {
        let root = format!("{}/../fuzz/seeds", env!("CARGO_MANIFEST_DIR"));
        for (target, name, bytes) in seeds::all() {
            let dir = format!("{root}/{target}");
            std::fs::create_dir_all(&dir).expect("mkdir");
            std::fs::write(format!("{dir}/{name}"), bytes).expect("write seed");
        }
    }
}
