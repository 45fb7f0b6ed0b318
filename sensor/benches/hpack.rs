//! HPACK decode cost: hostile header blocks (many tiny Huffman-coded strings)
//! against realistic LLM-client request header blocks, through the HTTP/2 wire
//! parser and straight through `loona-hpack` (which builds a Huffman code table
//! per Huffman-coded string unless the parser rewrites them first).
//!
//! Run with `cargo bench -p telltale --no-default-features --bench hpack`.

use std::{
    hint::black_box,
    panic::{AssertUnwindSafe, catch_unwind},
    time::{Duration, Instant},
};

use telltale::decode::{HTTP2_PREFACE, Http2, Part, Side, WireLimits, WireParser};

/// An HPACK integer with an `n`-bit prefix; `flags` fill the bits above it.
fn int(out: &mut Vec<u8>, n: u8, flags: u8, v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(flags | v as u8);
        return;
    }
    out.push(flags | max as u8);
    let mut v = v - max;
    while v >= 128 {
        out.push(0x80 | (v & 0x7f) as u8);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A Huffman-coded string literal.
fn huff(out: &mut Vec<u8>, s: &[u8]) {
    let mut h = Vec::new();
    httlib_huffman::encode(s, &mut h).expect("encodable");
    int(out, 7, 0x80, h.len());
    out.extend_from_slice(&h);
}

/// (a) 64 KiB of literal fields whose name and value are empty Huffman strings:
/// two Huffman strings every three bytes.
fn hostile_tiny(len: usize) -> Vec<u8> {
    [0x00, 0x80, 0x80].repeat(len / 3)
}

/// One field whose value is a ~64 KiB Huffman string (5-bit symbols).
fn hostile_long(len: usize) -> Vec<u8> {
    let mut b = vec![0x00];
    huff(&mut b, b"x-long");
    huff(&mut b, &vec![b'0'; len * 8 / 5]);
    b
}

/// Static table indexes used by the request encoder below.
fn static_name(name: &str) -> Option<usize> {
    Some(match name {
        ":authority" => 1,
        ":path" => 4,
        "accept-encoding" => 16,
        "accept" => 19,
        "content-length" => 28,
        "content-type" => 31,
        "user-agent" => 58,
        _ => return None,
    })
}

/// (b) Request header blocks of an LLM client (Anthropic SDK-shaped) on one
/// connection, encoded as HTTP/2 clients do: Huffman-coded strings, static
/// name references, incremental indexing, then dynamic-table references on
/// later requests; `content-length` and the retry count change per request.
fn llm_requests(n: usize) -> Vec<Vec<u8>> {
    let key = format!("sk-ant-api03-{}", "Ab3xQ9".repeat(15));
    let fixed: Vec<(&str, &str)> = vec![
        (":authority", "api.anthropic.com"),
        (":path", "/v1/messages?beta=true"),
        ("accept", "application/json"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        (
            "anthropic-beta",
            "claude-code-20250219,oauth-2025-04-20,interleaved-thinking-2025-05-14",
        ),
        ("anthropic-dangerous-direct-browser-access", "true"),
        ("anthropic-version", "2023-06-01"),
        ("content-type", "application/json"),
        ("user-agent", "claude-cli/1.0.83 (external, cli)"),
        ("x-api-key", &key),
        ("x-app", "cli"),
        ("x-stainless-arch", "x64"),
        ("x-stainless-helper-method", "stream"),
        ("x-stainless-lang", "js"),
        ("x-stainless-os", "Linux"),
        ("x-stainless-package-version", "0.55.1"),
        ("x-stainless-runtime", "node"),
        ("x-stainless-runtime-version", "v22.17.0"),
        ("x-stainless-timeout", "600"),
    ];
    let mut table: Vec<(String, String)> = Vec::new(); // insertion order
    let mut blocks = Vec::new();
    for i in 0..n {
        let mut b = vec![0x83, 0x87]; // :method POST, :scheme https
        let len = (20_000 + 37 * i).to_string();
        let retry = (i % 3).to_string();
        let volatile = [
            ("content-length", len.as_str()),
            ("x-stainless-retry-count", retry.as_str()),
        ];
        for &(name, value) in &fixed {
            if let Some(seq) = table.iter().position(|(n, v)| n == name && v == value) {
                int(&mut b, 7, 0x80, 62 + table.len() - 1 - seq);
                continue;
            }
            match static_name(name) {
                Some(idx) => int(&mut b, 6, 0x40, idx),
                None => {
                    b.push(0x40);
                    huff(&mut b, name.as_bytes());
                }
            }
            huff(&mut b, value.as_bytes());
            table.push((name.to_owned(), value.to_owned()));
        }
        for (name, value) in volatile {
            match static_name(name) {
                Some(idx) => int(&mut b, 4, 0x00, idx),
                None => {
                    b.push(0x00);
                    huff(&mut b, name.as_bytes());
                }
            }
            huff(&mut b, value.as_bytes());
        }
        blocks.push(b);
    }
    blocks
}

/// A client side of a connection carrying `blocks` as HEADERS frames.
fn connection(blocks: &[Vec<u8>]) -> Vec<u8> {
    let mut c = HTTP2_PREFACE.to_vec();
    c.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]); // SETTINGS
    for (i, b) in blocks.iter().enumerate() {
        let len = b.len() as u32;
        c.extend_from_slice(&len.to_be_bytes()[1..]);
        c.extend_from_slice(&[1, 0x5]); // HEADERS, END_HEADERS | END_STREAM
        c.extend_from_slice(&(2 * i as u32 + 1).to_be_bytes());
        c.extend_from_slice(b);
    }
    c
}

/// Feeds the client side to a fresh parser; returns (heads, errors).
fn parse(client: &[u8]) -> (usize, usize) {
    let mut p = Http2::new(WireLimits::default());
    let (mut heads, mut errors) = (0, 0);
    p.feed(Side::Client, client, 1, &mut |part| match part {
        Part::Head { .. } => heads += 1,
        Part::Error { .. } => errors += 1,
        _ => {}
    });
    (heads, errors)
}

/// Median seconds per call of `f` over 3 rounds of at least `min` each.
fn time(min: Duration, mut f: impl FnMut() -> usize) -> f64 {
    let mut per = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let mut n = 0u32;
        while start.elapsed() < min || n == 0 {
            black_box(f());
            n += 1;
        }
        per.push(start.elapsed().as_secs_f64() / f64::from(n));
    }
    per.sort_by(f64::total_cmp);
    per[1]
}

fn report(what: &str, bytes: usize, secs: f64) {
    println!(
        "{what:<58} {:>10.1} µs {:>10.2} MB/s",
        secs * 1e6,
        bytes as f64 / secs / 1e6
    );
}

fn loona(blocks: &[Vec<u8>]) -> usize {
    let mut d = loona_hpack::Decoder::new();
    let mut n = 0;
    for b in blocks {
        d.decode_with_cb(b, |k, v| n += k.len() + v.len()).ok();
    }
    n
}

fn main() {
    let min = Duration::from_millis(if std::env::args().any(|a| a == "--quick") {
        100
    } else {
        400
    });
    let tiny = vec![hostile_tiny(64 * 1024 - 1)];
    let long = vec![hostile_long(64 * 1024 - 16)];
    let llm = llm_requests(100);
    let first = vec![llm[0].clone()];
    let size = |b: &[Vec<u8>]| b.iter().map(Vec::len).sum::<usize>();
    println!(
        "blocks: hostile tiny {} B, hostile long {} B, LLM first request {} B, \
         100 LLM requests {} B",
        size(&tiny),
        size(&long),
        size(&first),
        size(&llm)
    );

    println!("-- HTTP/2 wire parser (HEADERS frames, default limits)");
    for (what, blocks, heads) in [
        ("(a) hostile: 64 KiB of empty Huffman strings", &tiny, 0),
        ("    64 KiB block of one long Huffman string", &long, 0),
        ("(b) LLM client: first request block", &first, 1),
        ("(b) LLM client: 100 requests, one connection", &llm, 100),
    ] {
        let conn = connection(blocks);
        let (h, e) = parse(&conn);
        assert_eq!(h, heads, "{what}: heads");
        println!("{what}: {h} heads, {e} errors");
        report("", conn.len(), time(min, || parse(&conn).0));
    }

    println!("-- the HPACK decoder alone, without the parser's Huffman rewriting");
    type Dec = fn(&[Vec<u8>]) -> usize;
    let decoders: [(&str, Dec); 1] = [("loona-hpack 0.4 alone", loona)];
    for (name, f) in decoders {
        for (what, blocks) in [
            ("hostile tiny", &tiny),
            ("hostile long", &long),
            ("LLM first", &first),
            ("LLM 100 requests", &llm),
        ] {
            let label = format!("{name}: {what}");
            match catch_unwind(AssertUnwindSafe(|| f(blocks))) {
                Err(_) => println!("{label:<58} PANICKED"),
                Ok(n) => {
                    let secs = time(min, || f(blocks));
                    report(&format!("{label} ({n} B decoded)"), size(blocks), secs);
                }
            }
        }
    }
}
