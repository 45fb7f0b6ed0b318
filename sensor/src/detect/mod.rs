//! Detection stage: finds host facts, operator patterns and tracking identifiers
//! in the text parts of LLM API requests and says, rule by rule, what was sent
//! where — with evidence a SOC can trust and correlate without seeing it.
//!
//! All patterns of all rules are compiled together: host-fact needles (every
//! encoding) and rule literals into two Aho-Corasick automata (exact and
//! ASCII-case-insensitive, leftmost-first), rule regexes into one
//! regex-automata multi-pattern regex. Each text part is scanned once by each;
//! rules then only filter and count the hits. Nothing scans per rule.

mod encode;
mod engine;
mod glob;
pub mod ident;
mod load;
pub mod rules;

pub use encode::{Encoding, Needle, needles, offset_spellings};
pub use engine::{
    Detector, Evidence, FactRef, Finding, Hit, HitSource, Request, RuleRef, Tracking,
};
pub use load::{DEFAULT_RULES, RuleError, RuleSet, check_text};

use crate::facts::Fact;

/// The fixed example host that rule examples and the test corpus use.
pub fn example_facts() -> Vec<Fact> {
    serde_json::from_str(include_str!("example_host.json")).unwrap_or_default()
}

/// The outcome of one rule example.
#[derive(Debug, Clone)]
pub struct ExampleResult {
    /// Rule id.
    pub rule: String,
    /// Example number within the rule (from 1).
    pub index: usize,
    /// Its description.
    pub description: String,
    /// Whether the rule did what the example expects.
    pub passed: bool,
    /// What happened, when it did not.
    pub problem: Option<String>,
}

/// Runs every example of every enabled rule of `set` against the example host.
pub fn test_examples(set: &RuleSet) -> Vec<ExampleResult> {
    let facts = example_facts();
    let mut out = Vec::new();
    for rule in set.enabled() {
        let mut single = RuleSet::default();
        single.insert(rule.clone(), "example");
        let detector = match Detector::new(&single, &facts, [0u8; 32]) {
            Ok(d) => d,
            Err(e) => {
                out.push(ExampleResult {
                    rule: rule.id.clone(),
                    index: 0,
                    description: String::new(),
                    passed: false,
                    problem: Some(e),
                });
                continue;
            }
        };
        for (i, ex) in rule.examples.iter().enumerate() {
            let api = ex.api.unwrap_or(crate::llm::Api::AnthropicMessages);
            let endpoint = crate::llm::Endpoint::example(api);
            let result = match crate::llm::parse_request(&endpoint, ex.body.as_bytes()) {
                Ok(req) => {
                    let request = Request {
                        provider: Some("example"),
                        api: Some(api),
                        authority: Some("api.example.com"),
                        method: "POST",
                        path: "/v1/messages",
                        exe: Some("/usr/bin/example-client"),
                        comm: "example-client",
                        parts: &req.parts,
                    };
                    let found = detector.inspect(&request, None);
                    let alerted = found.iter().any(|f| f.rule.id == rule.id);
                    let want = ex.expect == rules::Expect::Alert;
                    if alerted == want {
                        None
                    } else if want {
                        Some("expected an alert, got none".to_owned())
                    } else {
                        Some(format!(
                            "expected no alert, got one for {}",
                            found
                                .iter()
                                .flat_map(|f| f.hits.iter().map(|h| h.path.clone()))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    }
                }
                Err(e) => Some(format!("the example body is not a valid request: {e}")),
            };
            out.push(ExampleResult {
                rule: rule.id.clone(),
                index: i + 1,
                description: ex.description.clone(),
                passed: result.is_none(),
                problem: result,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests;
