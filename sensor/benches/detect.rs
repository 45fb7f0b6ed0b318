//! Detection quality and matcher throughput with the default rule pack.
//!
//! Quality: recall, false-positive rate and fact-kind recall over the labelled
//! corpus (tests/corpus). Throughput: the detector over the text parts of the
//! corpus's benign requests on one core, against a baseline measured in the same
//! run on the same parts (memchr's memmem searching one absent needle: the least
//! a scan of the text can cost), with the example host's facts and with 4× and
//! 16× as many facts (the cost must not grow with the number of facts).
//! Run with `./x bench detect` (or `cargo bench -p telltale --bench detect`).

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use telltale::{
    detect::{Detector, Request, RuleSet, example_facts},
    facts::{Fact, FactKind, Strength},
    llm::{Catalog, TextPart},
    scan::{Scanner, evaluate, request_parts},
};

fn corpus() -> String {
    let path = format!("{}/../tests/corpus/cases.jsonl", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Text parts of the benign (label.alert = false) requests.
fn benign_parts(corpus: &str, catalog: &Catalog) -> Vec<Vec<TextPart>> {
    let mut out = Vec::new();
    for line in corpus.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["label"]["alert"] != false {
            continue;
        }
        let Some(endpoint) = catalog.recognise(
            "POST",
            v["authority"].as_str(),
            v["path"].as_str().unwrap_or("/"),
        ) else {
            continue;
        };
        let body = v["body"].to_string();
        let (parts, _, _) = request_parts(&endpoint, body.as_bytes(), &[]);
        out.push(parts);
    }
    out
}

/// `n` plausible extra facts (host names, addresses, paths, ids).
fn extra_facts(n: usize) -> Vec<Fact> {
    (0..n)
        .map(|i| {
            let (kind, value) = match i % 4 {
                0 => (
                    FactKind::Hostname,
                    format!("node-{i:04}.dc{}.corp.example", i % 7),
                ),
                1 => (
                    FactKind::Ip,
                    format!("10.{}.{}.{}", i % 250, (i / 3) % 250, i % 199 + 1),
                ),
                2 => (FactKind::Home, format!("/home/user{i:04}")),
                _ => (
                    FactKind::DmiSerial,
                    format!("SN{i:06}X{:04}", i * 7919 % 10000),
                ),
            };
            Fact {
                kind,
                name: format!("synthetic {i}"),
                value,
                strength: Strength::Strong,
            }
        })
        .collect()
}

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
        (7, Duration::from_millis(600))
    };
    let rules = RuleSet::embedded().expect("default rules");
    let catalog = Catalog::embedded();
    let corpus = corpus();
    let host = example_facts();

    let d = Detector::new(&rules, &host, [9u8; 32]).expect("detector");
    let q = evaluate(&Scanner::new(&d, catalog), &corpus);
    println!(
        "detection quality over tests/corpus ({} cases), default rules, example host:",
        { q.true_positives + q.false_negatives + q.false_positives + q.true_negatives }
    );
    println!(
        "  recall {:.3}  false-positive rate {:.3}  fact-kind recall {:.3}  (missed: {:?})",
        q.recall(),
        q.false_positive_rate(),
        q.kind_recall(),
        q.wrong
    );

    let requests = benign_parts(&corpus, catalog);
    let bytes: usize = requests.iter().flatten().map(|p| p.text.len()).sum();
    let finder = memchr::memmem::Finder::new(b"\x00absent needle\x00");
    let base = measure(bytes, rounds, min, || {
        requests
            .iter()
            .flatten()
            .filter(|p| finder.find(p.text.as_bytes()).is_some())
            .count()
    });
    println!(
        "\nmatcher throughput on benign LLM JSON ({} requests, {:.1} MB of text), one core, median of {rounds}:",
        requests.len(),
        bytes as f64 / 1e6
    );
    println!(
        "  {:<28} {:>9} {:>10} {:>9} {:>7}",
        "facts", "needles", "GB/s", "base GB/s", "ratio"
    );
    let mut slowest = f64::MAX;
    for extra in [0usize, 3 * host.len(), 15 * host.len()] {
        let mut facts = host.clone();
        facts.extend(extra_facts(extra));
        let d = Detector::new(&rules, &facts, [9u8; 32]).expect("detector");
        let rate = measure(bytes, rounds, min, || {
            requests
                .iter()
                .map(|parts| {
                    let r = Request {
                        provider: Some("anthropic"),
                        api: None,
                        authority: Some("api.anthropic.com"),
                        method: "POST",
                        path: "/v1/messages",
                        exe: Some("/usr/bin/node"),
                        comm: "node",
                        parts,
                    };
                    d.inspect(&r, None).len()
                })
                .sum()
        });
        slowest = slowest.min(rate);
        println!(
            "  {:<28} {:>9} {:>10.2} {:>9.2} {:>6.2}x",
            format!("{} (example host + {extra})", facts.len()),
            d.needle_count(),
            rate / 1e9,
            base / 1e9,
            rate / base
        );
    }
    println!(
        "slowest: {:.2} GB/s (target >= 2 GB/s on benign LLM JSON) {}",
        slowest / 1e9,
        if slowest >= 2e9 { "met" } else { "NOT met" }
    );
}
