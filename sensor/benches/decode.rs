//! Decode throughput on one core: HTTP/1.1 and HTTP/2 conversations carrying
//! LLM-API-shaped JSON, fed to the whole decode stage (protocol detection, wire
//! parsing, HPACK, body assembly) in 16 KiB calls, as TLS captures arrive.
//!
//! The baseline, measured in the same run on the same bytes and calls, copies
//! every call into a buffer: the least any consumer of the captured bytes does.
//! Run with `./x bench decode` (or `cargo bench -p telltale --bench decode`).

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use sensor_common::Direction;
use telltale::decode::{Decoder, Limits, Output};

/// One TLS call's worth of bytes.
const CALL: usize = 16 * 1024;

/// An LLM request body of about `len` bytes.
fn json_body(len: usize) -> Vec<u8> {
    let mut s = String::from(
        r#"{"model":"claude-test","max_tokens":1024,"system":"You are a coding assistant.","messages":["#,
    );
    let mut i = 0;
    while s.len() < len {
        s.push_str(&format!(
            r#"{{"role":"user","content":"Step {i}: read src/main.rs and explain the error handling in the loader; OS Version: Linux 6.1, cwd /home/dev/project"}},"#
        ));
        i += 1;
    }
    s.push_str(r#"{"role":"user","content":"done"}]}"#);
    s.into_bytes()
}

const RESPONSE: &[u8] = br#"{"id":"msg_01","type":"message","role":"assistant","content":[{"type":"text","text":"ok"}],"usage":{"input_tokens":1,"output_tokens":1}}"#;

/// A keep-alive HTTP/1.1 conversation: (client bytes, server bytes).
fn http1(requests: usize, body: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut c = Vec::new();
    let mut s = Vec::new();
    for _ in 0..requests {
        c.extend_from_slice(
            format!(
                "POST /v1/messages HTTP/1.1\r\nHost: api.anthropic.com\r\nUser-Agent: bench/1.0\r\n\
                 Content-Type: application/json\r\nx-api-key: sk-ant-bench\r\n\
                 anthropic-version: 2023-06-01\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        c.extend_from_slice(body);
        s.extend_from_slice(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                RESPONSE.len()
            )
            .as_bytes(),
        );
        s.extend_from_slice(RESPONSE);
    }
    (c, s)
}

fn frame(out: &mut Vec<u8>, ty: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(ty);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// An HTTP/2 conversation with one request per stream.
fn http2(requests: usize, body: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut enc_c = loona_hpack::Encoder::new();
    let mut enc_s = loona_hpack::Encoder::new();
    let mut c = telltale::decode::HTTP2_PREFACE.to_vec();
    let mut s = Vec::new();
    frame(&mut c, 4, 0, 0, &[]);
    frame(&mut s, 4, 0, 0, &[]);
    frame(&mut s, 4, 1, 0, &[]);
    frame(&mut c, 4, 1, 0, &[]);
    let len = body.len().to_string();
    let rlen = RESPONSE.len().to_string();
    for i in 0..requests {
        let id = 2 * i as u32 + 1;
        let block = enc_c.encode([
            (&b":method"[..], &b"POST"[..]),
            (b":scheme", b"https"),
            (b":authority", b"api.anthropic.com"),
            (b":path", b"/v1/messages"),
            (b"user-agent", b"bench/1.0"),
            (b"content-type", b"application/json"),
            (b"x-api-key", b"sk-ant-bench"),
            (b"anthropic-version", b"2023-06-01"),
            (b"content-length", len.as_bytes()),
        ]);
        frame(&mut c, 1, 4, id, &block);
        let chunks: Vec<&[u8]> = body.chunks(16384).collect();
        for (k, chunk) in chunks.iter().enumerate() {
            let end = if k + 1 == chunks.len() { 1 } else { 0 };
            frame(&mut c, 0, end, id, chunk);
        }
        let block = enc_s.encode([
            (&b":status"[..], &b"200"[..]),
            (b"content-type", b"application/json"),
            (b"content-length", rlen.as_bytes()),
        ]);
        frame(&mut s, 1, 4, id, &block);
        frame(&mut s, 0, 1, id, RESPONSE);
    }
    (c, s)
}

/// Feeds a conversation to a fresh decoder in `CALL`-sized calls, alternating
/// between request and response calls as a client would; returns requests seen.
fn decode(client: &[u8], server: &[u8]) -> usize {
    let mut d: Decoder<u32> = Decoder::new(Limits::default());
    let mut requests = 0usize;
    let mut sink = |_: &u32, _: telltale::decode::ConnView, o: Output<'_>| {
        if let Output::Request(x) = o {
            requests += x
                .request
                .as_ref()
                .map_or(0, |m| m.body.content().len().min(1));
        }
    };
    let mut cs = client.chunks(CALL);
    let mut ss = server.chunks(CALL);
    let mut ts = 0;
    loop {
        let a = cs.next();
        let b = ss.next();
        if a.is_none() && b.is_none() {
            break;
        }
        for (dir, chunk) in [(Direction::Egress, a), (Direction::Ingress, b)] {
            if let Some(chunk) = chunk {
                ts += 1;
                d.feed(&1, dir, chunk, ts, false, &mut sink);
            }
        }
    }
    d.flush(&mut sink);
    requests
}

/// The baseline: copy every call into a buffer.
fn copy(client: &[u8], server: &[u8]) -> usize {
    let mut buf: Vec<u8> = Vec::with_capacity(CALL);
    let mut n = 0;
    for chunk in client.chunks(CALL).chain(server.chunks(CALL)) {
        buf.clear();
        buf.extend_from_slice(chunk);
        n += black_box(&buf).len();
    }
    n
}

/// Median throughput in bytes/s of `f` over `rounds` runs of at least `min` each.
fn measure(bytes: usize, rounds: usize, min: Duration, mut f: impl FnMut() -> usize) -> f64 {
    let mut rates = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < min {
            black_box(f());
            n += 1;
        }
        rates.push((bytes as u64 * n) as f64 / start.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, min) = if quick {
        (3, Duration::from_millis(200))
    } else {
        (7, Duration::from_millis(700))
    };
    println!("decode throughput, one core, {CALL}-byte calls; median of {rounds} rounds");
    println!(
        "{:<34} {:>11} {:>13} {:>7}",
        "workload", "decode MB/s", "baseline MB/s", "ratio"
    );
    let mut worst: f64 = f64::MAX;
    for (name, proto, body_len) in [
        ("HTTP/1.1, 64 KiB JSON bodies", 1, 64 * 1024),
        ("HTTP/1.1, 1 MiB JSON bodies", 1, 1 << 20),
        ("HTTP/2, 64 KiB JSON bodies", 2, 64 * 1024),
        ("HTTP/2, 1 MiB JSON bodies", 2, 1 << 20),
    ] {
        let body = json_body(body_len);
        let requests = (8 << 20) / body_len;
        let (c, s) = if proto == 1 {
            http1(requests, &body)
        } else {
            http2(requests, &body)
        };
        assert_eq!(decode(&c, &s), requests, "{name}: every request decoded");
        let total = c.len() + s.len();
        let base = measure(total, rounds, min, || copy(&c, &s));
        let dec = measure(total, rounds, min, || decode(&c, &s));
        worst = worst.min(dec);
        println!(
            "{name:<34} {:>11.0} {:>13.0} {:>6.2}x",
            dec / 1e6,
            base / 1e6,
            dec / base
        );
    }
    println!(
        "slowest: {:.2} GB/s (target for uncompressed bodies: >= 1 GB/s) {}",
        worst / 1e9,
        if worst >= 1e9 { "met" } else { "NOT met" }
    );
}
