//! The rule language: what operators write (YAML) to say which values, found
//! where in which requests of which processes, make an alert.
//!
//! A rule file is a YAML document with a `rules:` list:
//!
//! ```yaml
//! rules:
//!   - id: TT-FP-003
//!     version: 1
//!     title: Proxy configuration sent to an AI service
//!     severity: medium
//!     attack: [T1016, T1567]
//!     scope:                       # which requests and text parts (all optional)
//!       roles: [system, metadata, header]
//!     detect:
//!       facts: [proxy, no_proxy]   # host facts, in every encoding
//!     threshold:
//!       min_fact_kinds: 1
//!     exceptions:
//!       - processes: ["/usr/lib/internal-proxy-check"]
//!     examples:
//!       - body: '{"model":"m","system":"proxy: http://proxy.corp.example:3128","messages":[]}'
//!         expect: alert
//! ```
//!
//! (Loading and validation are being written; this file defines the types.)

use serde::{Deserialize, Serialize};

use crate::{
    facts::FactKind,
    llm::{Api, Role},
};

/// A rule file: a list of rules.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// The rules, in file order.
    pub rules: Vec<Rule>,
}

/// How serious an alert of a rule is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

/// One detection rule.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Stable id (`TT-FP-001`, or the operator's own scheme); unique across files.
    pub id: String,
    /// Bumped whenever the rule's meaning changes.
    pub version: u32,
    /// One line for the alert.
    pub title: String,
    /// What the rule catches and why it matters.
    #[serde(default)]
    pub description: String,
    /// Severity of its alerts.
    pub severity: Severity,
    /// MITRE ATT&CK technique ids (`T1082`, `T1016.001`).
    #[serde(default)]
    pub attack: Vec<String>,
    /// `false` switches the rule off (an operator file can switch off a default rule
    /// by repeating its id with `enabled: false`).
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Which requests and text parts the rule looks at.
    #[serde(default)]
    pub scope: Scope,
    /// What it looks for.
    pub detect: Detect,
    /// How much must be found for an alert.
    #[serde(default)]
    pub threshold: Threshold,
    /// Hits inside any of these scopes do not count.
    #[serde(default)]
    pub exceptions: Vec<Scope>,
    /// Examples `telltale rules test` checks.
    #[serde(default)]
    pub examples: Vec<Example>,
}

fn enabled() -> bool {
    true
}

/// Conditions on a request and its text parts. Every condition given must hold;
/// a list holds when any of its entries does. Text conditions are globs (`*`
/// matches any run of characters, `?` one character), case-insensitive for hosts.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// Provider ids from the LLM catalogue (`anthropic`, `openai-compatible`, …).
    #[serde(default)]
    pub providers: Vec<String>,
    /// API shapes.
    #[serde(default)]
    pub apis: Vec<Api>,
    /// Request authority globs (`*.anthropic.com`, `localhost:*`).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Request path globs (query excluded).
    #[serde(default)]
    pub paths: Vec<String>,
    /// Process globs, matched against the executable path and the command name.
    #[serde(default)]
    pub processes: Vec<String>,
    /// Roles of text parts.
    #[serde(default)]
    pub roles: Vec<Role>,
    /// JSON path globs of text parts (`$.system*`, `$.metadata.*`); headers are
    /// `header:<name>`.
    #[serde(default)]
    pub json_paths: Vec<String>,
    /// Also requests the catalogue does not recognise as LLM API calls (their
    /// body, when JSON, is read generically). Default: LLM requests only.
    #[serde(default)]
    pub any_request: bool,
}

/// What a rule looks for. Several kinds may be combined; hits of all count.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Detect {
    /// Host-fact kinds whose values are looked for in every encoding.
    #[serde(default)]
    pub facts: Vec<FactKind>,
    /// Count weak facts (values many hosts share: `x86_64`, `UTC`) too.
    #[serde(default)]
    pub include_weak: bool,
    /// Literal strings.
    #[serde(default)]
    pub literals: Vec<String>,
    /// Regular expressions (Rust `regex` syntax).
    #[serde(default)]
    pub regexes: Vec<String>,
    /// Literals and regexes ignore ASCII case.
    #[serde(default)]
    pub case_insensitive: bool,
    /// Identifier detectors.
    #[serde(default)]
    pub identifiers: Vec<IdentifierKind>,
}

/// Identifier detectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentifierKind {
    /// A UUID (any version).
    Uuid,
    /// A long token of high entropy (hex, base64, base62).
    HighEntropy,
    /// An identifier this client already sent to this destination from another
    /// process or in an earlier session: a persistent tracking id.
    Persistent,
    /// A field a new build of a client sends that its previous build did not.
    NewField,
}

/// How much must be found.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    /// Hits in the request (after exceptions).
    #[serde(default = "one")]
    pub min_hits: usize,
    /// Distinct host-fact kinds among the hits (0: no condition).
    #[serde(default)]
    pub min_fact_kinds: usize,
    /// Distinct host facts among the hits (0: no condition): several names of
    /// one directory, rather than one name several times.
    #[serde(default)]
    pub min_facts: usize,
}

fn one() -> usize {
    1
}

impl Default for Threshold {
    fn default() -> Self {
        Self {
            min_hits: 1,
            min_fact_kinds: 0,
            min_facts: 0,
        }
    }
}

/// An example request and what the rule must make of it. Examples run against the
/// fixed example host of [`super::example_facts`].
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Example {
    /// What the example shows.
    #[serde(default)]
    pub description: String,
    /// API shape of the body (default `anthropic_messages`).
    #[serde(default)]
    pub api: Option<Api>,
    /// The request body (JSON text).
    pub body: String,
    /// `alert` or `none`.
    pub expect: Expect,
}

/// An example's expected outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// The rule alerts.
    Alert,
    /// It does not.
    None,
}
