//! The compiled detector: one pass of two Aho-Corasick automata and one
//! multi-regex over each text part, then per-rule filtering and thresholds.

use std::collections::BTreeSet;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use hmac::{Hmac, KeyInit, Mac};
use regex_automata::meta::Regex;
use serde::Serialize;
use sha2::Sha256;

use super::{
    encode::{Encoding, needles},
    glob::Glob,
    ident::{self, ClientKey, IdentStore, NewFields, Recurrence},
    load::RuleSet,
    rules::{IdentifierKind, Rule, Scope, Severity},
};
use crate::{
    facts::{Fact, FactKind, Strength},
    llm::{Api, Role, TextPart},
};

/// What detection knows of a request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Provider id from the catalogue, when recognised.
    pub provider: Option<&'a str>,
    /// API shape, when recognised.
    pub api: Option<Api>,
    /// Host (and port) the request went to.
    pub authority: Option<&'a str>,
    /// Method.
    pub method: &'a str,
    /// Path without the query.
    pub path: &'a str,
    /// Executable of the sending process.
    pub exe: Option<&'a str>,
    /// Its command name.
    pub comm: &'a str,
    /// Text parts (body parts and headers), in order.
    pub parts: &'a [TextPart],
}

/// Who sent a request, for the identifiers remembered across requests.
pub struct Tracking<'s> {
    /// The store of identifiers and fields seen.
    pub store: &'s mut IdentStore,
    /// The client: executable and build.
    pub client: ClientKey,
    /// The process instance (`pid@start_time`).
    pub instance: String,
    /// This sensor run.
    pub session: String,
    /// Now (Unix seconds).
    pub now_unix: i64,
}

/// A rule, as an alert names it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RuleRef {
    /// Id.
    pub id: String,
    /// Version.
    pub version: u32,
    /// Title.
    pub title: String,
    /// Severity.
    pub severity: Severity,
    /// ATT&CK technique ids.
    pub attack: Vec<String>,
}

/// A host fact, as an alert names it (never its value).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FactRef {
    /// Kind.
    pub kind: FactKind,
    /// Where the host has it.
    pub name: String,
}

/// What matched.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HitSource {
    /// A host fact.
    Fact {
        /// Kind.
        kind: FactKind,
        /// Where the host has it.
        name: String,
        /// Strong or weak.
        strength: Strength,
    },
    /// A rule literal (its index in the rule).
    Literal {
        /// Index.
        index: usize,
    },
    /// A rule regex (its index in the rule).
    Regex {
        /// Index.
        index: usize,
    },
    /// An identifier.
    Identifier {
        /// Detector.
        kind: IdentifierKind,
        /// For persistent identifiers: since when and by whom it was sent.
        #[serde(skip_serializing_if = "Option::is_none")]
        recurrence: Option<RecurrenceOut>,
        /// For new fields: the build that did not send them.
        #[serde(skip_serializing_if = "Option::is_none")]
        previous_build: Option<String>,
    },
}

/// When a persistent identifier was first seen and how widely.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RecurrenceOut {
    /// First seen (Unix seconds).
    pub first_seen_unix: i64,
    /// Other process instances that sent it.
    pub other_instances: usize,
    /// Other sensor sessions in which it was sent.
    pub other_sessions: usize,
    /// Times seen.
    pub count: u64,
}

/// Redacted evidence of a hit: enough to recognise it, never the value itself.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Evidence {
    /// The matched text with its middle masked (`6.••••••••64`).
    pub excerpt: String,
    /// Its length in bytes.
    pub length: usize,
    /// `hmac-sha256:` + 32 hex digits: a keyed hash of the value (of the fact's
    /// value for facts, whatever their encoding), equal across hosts that share
    /// the sensor key, so a SOC can correlate without seeing it.
    pub hash: String,
}

/// One hit.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Hit {
    /// JSON path of the text part (`$.system[1].text`, `header:user-agent`).
    pub path: String,
    /// Role of the part.
    pub role: Role,
    /// How the value was written (absent for identifiers and patterns).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<Encoding>,
    /// What matched.
    pub source: HitSource,
    /// Byte offset in the part.
    pub offset: usize,
    /// The evidence.
    pub evidence: Evidence,
}

/// A rule that fired on a request.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Finding {
    /// The rule.
    pub rule: RuleRef,
    /// Host facts matched (kind and name), distinct.
    pub facts: Vec<FactRef>,
    /// The hits (at most [`MAX_HITS`]).
    pub hits: Vec<Hit>,
    /// Hits in all, when more than were kept.
    pub total_hits: usize,
}

impl Finding {
    /// What identifies this finding for aggregation: rule, and the facts or
    /// evidence hashes it saw.
    pub fn signature(&self) -> String {
        let mut keys: BTreeSet<&str> = self.facts.iter().map(|f| f.name.as_str()).collect();
        if keys.is_empty() {
            keys = self.hits.iter().map(|h| h.evidence.hash.as_str()).collect();
        }
        let mut s = format!("{}@{}", self.rule.id, self.rule.version);
        for k in keys {
            s.push('|');
            s.push_str(k);
        }
        s
    }
}

/// Hits kept per finding.
pub const MAX_HITS: usize = 32;

#[derive(Debug, Clone, Copy)]
enum Source {
    Fact(usize),
    Literal { rule: usize, index: usize },
}

#[derive(Debug, Clone, Copy)]
struct PatternInfo {
    source: Source,
    encoding: Encoding,
    word_bounded: bool,
    fold_case: bool,
}

struct Automaton {
    ac: AhoCorasick,
    info: Vec<PatternInfo>,
    needles: Vec<String>,
    /// Per needle: other facts whose raw value it contains, with their offset.
    /// Leftmost-first reports one needle per position (`/home/alice`), so the
    /// facts inside it (`alice`) are reported through this.
    implied: Vec<Vec<(usize, usize, usize)>>,
}

struct CompiledScope {
    providers: Vec<String>,
    apis: Vec<Api>,
    hosts: Vec<Glob>,
    paths: Vec<Glob>,
    processes: Vec<Glob>,
    roles: Vec<Role>,
    json_paths: Vec<Glob>,
    any_request: bool,
}

impl CompiledScope {
    fn new(s: &Scope) -> Result<Self, String> {
        let globs = |v: &[String], fold: bool| -> Result<Vec<Glob>, String> {
            v.iter()
                .map(|g| {
                    if fold {
                        Glob::new_folded(g)
                    } else {
                        Glob::new(g)
                    }
                })
                .collect()
        };
        Ok(Self {
            providers: s.providers.clone(),
            apis: s.apis.clone(),
            hosts: globs(&s.hosts, true)?,
            paths: globs(&s.paths, false)?,
            processes: globs(&s.processes, false)?,
            roles: s.roles.clone(),
            json_paths: globs(&s.json_paths, false)?,
            any_request: s.any_request,
        })
    }

    /// The request-level conditions.
    fn request(&self, r: &Request<'_>) -> bool {
        let any = |list: &[Glob], v: Option<&str>| {
            list.is_empty() || v.is_some_and(|v| list.iter().any(|g| g.is_match(v)))
        };
        (self.providers.is_empty()
            || r.provider
                .is_some_and(|p| self.providers.iter().any(|x| x == p)))
            && (self.apis.is_empty() || r.api.is_some_and(|a| self.apis.contains(&a)))
            && any(&self.hosts, r.authority)
            && any(&self.paths, Some(r.path))
            && (self.processes.is_empty()
                || self
                    .processes
                    .iter()
                    .any(|g| r.exe.is_some_and(|e| g.is_match(e)) || g.is_match(r.comm)))
    }

    /// The part-level conditions.
    fn part(&self, p: &TextPart) -> bool {
        (self.roles.is_empty() || self.roles.contains(&p.role))
            && (self.json_paths.is_empty() || self.json_paths.iter().any(|g| g.is_match(&p.path)))
    }

    /// An exception holds when every condition it gives holds.
    fn covers(&self, r: &Request<'_>, p: &TextPart) -> bool {
        self.request(r) && self.part(p)
    }
}

struct CompiledRule {
    rule: RuleRef,
    kinds: Vec<FactKind>,
    include_weak: bool,
    idents: Vec<IdentifierKind>,
    min_hits: usize,
    min_fact_kinds: usize,
    min_facts: usize,
    scope: CompiledScope,
    exceptions: Vec<CompiledScope>,
}

/// The compiled detector for one rule set and one set of host facts.
pub struct Detector {
    facts: Vec<Fact>,
    rules: Vec<CompiledRule>,
    /// Every needle, matched ignoring ASCII case; needles that must match
    /// exactly are checked after a match (one pass over the text, not two).
    automaton: Option<Automaton>,
    regex: Option<(Regex, Vec<(usize, usize)>)>,
    key: [u8; 32],
    wants_idents: bool,
}

impl Detector {
    /// Compiles the enabled rules of `set` against `facts`; `key` keys the
    /// evidence hashes.
    pub fn new(set: &RuleSet, facts: &[Fact], key: [u8; 32]) -> Result<Self, String> {
        let rules: Vec<&Rule> = set.enabled().collect();
        let used: BTreeSet<FactKind> = rules
            .iter()
            .flat_map(|r| r.detect.facts.iter().copied())
            .collect();
        let facts: Vec<Fact> = facts
            .iter()
            .filter(|f| used.contains(&f.kind))
            .cloned()
            .collect();
        let mut exact: Vec<(String, PatternInfo)> = Vec::new();
        let mut folded: Vec<(String, PatternInfo)> = Vec::new();
        for (i, f) in facts.iter().enumerate() {
            for n in needles(f) {
                let info = PatternInfo {
                    source: Source::Fact(i),
                    encoding: n.encoding,
                    word_bounded: n.word_bounded,
                    fold_case: n.fold_case,
                };
                if n.fold_case {
                    folded.push((n.text, info));
                } else {
                    exact.push((n.text, info));
                }
            }
        }
        let mut regex_src: Vec<String> = Vec::new();
        let mut regex_ids: Vec<(usize, usize)> = Vec::new();
        let mut compiled = Vec::new();
        for (ri, r) in rules.iter().enumerate() {
            for (li, lit) in r.detect.literals.iter().enumerate() {
                let info = PatternInfo {
                    source: Source::Literal {
                        rule: ri,
                        index: li,
                    },
                    encoding: Encoding::Raw,
                    word_bounded: false,
                    fold_case: r.detect.case_insensitive,
                };
                if r.detect.case_insensitive {
                    folded.push((lit.clone(), info));
                } else {
                    exact.push((lit.clone(), info));
                }
            }
            for (xi, re) in r.detect.regexes.iter().enumerate() {
                regex_src.push(if r.detect.case_insensitive {
                    format!("(?i){re}")
                } else {
                    re.clone()
                });
                regex_ids.push((ri, xi));
            }
            compiled.push(CompiledRule {
                rule: RuleRef {
                    id: r.id.clone(),
                    version: r.version,
                    title: r.title.clone(),
                    severity: r.severity,
                    attack: r.attack.clone(),
                },
                kinds: r.detect.facts.clone(),
                include_weak: r.detect.include_weak,
                idents: r.detect.identifiers.clone(),
                min_hits: r.threshold.min_hits,
                min_fact_kinds: r.threshold.min_fact_kinds,
                min_facts: r.threshold.min_facts,
                scope: CompiledScope::new(&r.scope).map_err(|e| format!("rule {}: {e}", r.id))?,
                exceptions: r
                    .exceptions
                    .iter()
                    .map(CompiledScope::new)
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("rule {}: {e}", r.id))?,
            });
        }
        let regex = if regex_src.is_empty() {
            None
        } else {
            let re = Regex::new_many(&regex_src).map_err(|e| format!("compiling regexes: {e}"))?;
            Some((re, regex_ids))
        };
        let wants_idents = compiled.iter().any(|r| !r.idents.is_empty());
        let automaton = automaton(exact, folded, &facts)?;
        Ok(Self {
            facts,
            rules: compiled,
            automaton,
            regex,
            key,
            wants_idents,
        })
    }

    /// Number of compiled rules.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Needles in the automata (for the status and the benchmark).
    pub fn needle_count(&self) -> usize {
        self.automaton.as_ref().map_or(0, |a| a.needles.len())
    }

    /// Inspects a request; `tracking` enables the identifier memory.
    pub fn inspect(&self, req: &Request<'_>, tracking: Option<&mut Tracking<'_>>) -> Vec<Finding> {
        let live: Vec<usize> = (0..self.rules.len())
            .filter(|&i| {
                let r = &self.rules[i];
                (r.scope.any_request || req.provider.is_some()) && r.scope.request(req)
            })
            .collect();
        if live.is_empty() {
            return Vec::new();
        }
        let mut raw: Vec<RawHit> = Vec::new();
        for (pi, part) in req.parts.iter().enumerate() {
            self.scan_part(pi, &part.text, &mut raw);
        }
        if self.wants_idents {
            self.identifiers(req, &live, tracking, &mut raw);
        }
        let mut out = Vec::new();
        for ri in live {
            if let Some(f) = self.evaluate(ri, req, &raw) {
                out.push(f);
            }
        }
        out
    }

    fn scan_part(&self, part: usize, text: &str, raw: &mut Vec<RawHit>) {
        if let Some(a) = &self.automaton {
            for m in a.ac.find_iter(text) {
                let info = a.info[m.pattern().as_usize()];
                let matched = &text[m.start()..m.end()];
                let needle = &a.needles[m.pattern().as_usize()];
                if (!info.fold_case && matched != needle)
                    || (info.word_bounded && !bounded(text, m.start(), m.end()))
                {
                    continue;
                }
                let encoding = if info.encoding == Encoding::Raw && matched != needle {
                    Encoding::CaseFolded
                } else {
                    info.encoding
                };
                raw.push(RawHit {
                    part,
                    start: m.start(),
                    end: m.end(),
                    what: match info.source {
                        Source::Fact(i) => What::Fact(i, encoding),
                        Source::Literal { rule, index } => What::Literal(rule, index),
                    },
                });
                for &(fact, at, len) in &a.implied[m.pattern().as_usize()] {
                    raw.push(RawHit {
                        part,
                        start: m.start() + at,
                        end: m.start() + at + len,
                        what: What::Fact(fact, encoding),
                    });
                }
            }
        }
        if let Some((re, ids)) = &self.regex {
            for m in re.find_iter(text) {
                let (rule, index) = ids[m.pattern().as_usize()];
                raw.push(RawHit {
                    part,
                    start: m.start(),
                    end: m.end(),
                    what: What::Regex(rule, index),
                });
            }
        }
    }

    /// UUIDs and high-entropy tokens in the parts some identifier rule looks
    /// at, and with a store, their recurrence and the client's new fields.
    fn identifiers(
        &self,
        req: &Request<'_>,
        live: &[usize],
        mut tracking: Option<&mut Tracking<'_>>,
        raw: &mut Vec<RawHit>,
    ) {
        let ident_rules: Vec<&CompiledRule> = live
            .iter()
            .map(|&i| &self.rules[i])
            .filter(|r| !r.idents.is_empty())
            .collect();
        let destination = req.authority.unwrap_or("");
        // Only rules about tokens need the parts scanned for them.
        let token_rules: Vec<&&CompiledRule> = ident_rules
            .iter()
            .filter(|r| r.idents.iter().any(|k| *k != IdentifierKind::NewField))
            .collect();
        let mut found = Vec::new();
        for (pi, part) in req.parts.iter().enumerate() {
            if !token_rules.iter().any(|r| r.scope.part(part)) {
                continue;
            }
            found.clear();
            ident::find(&part.text, &mut found);
            for h in &found {
                let kind = h.kind;
                raw.push(RawHit {
                    part: pi,
                    start: h.start,
                    end: h.end,
                    what: What::Ident(kind, None),
                });
                if let Some(t) = tracking.as_deref_mut() {
                    let token = self.mac(&part.text[h.start..h.end]);
                    if let Some(rec) = t.store.observe_token(
                        &t.client,
                        destination,
                        &ident::normalise_path(&part.path),
                        token,
                        &t.instance,
                        &t.session,
                        t.now_unix,
                    ) {
                        raw.push(RawHit {
                            part: pi,
                            start: h.start,
                            end: h.end,
                            what: What::Ident(IdentifierKind::Persistent, Some(Extra::Rec(rec))),
                        });
                    }
                }
            }
        }
        let wants_fields = ident_rules
            .iter()
            .any(|r| r.idents.contains(&IdentifierKind::NewField));
        if let (true, Some(t)) = (wants_fields, tracking) {
            let fields: Vec<String> = req
                .parts
                .iter()
                .map(|p| ident::normalise_path(field_of(p)))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            if let Some(NewFields {
                previous_build,
                fields,
            }) = t
                .store
                .observe_fields(&t.client, destination, &fields, t.now_unix)
            {
                for f in fields {
                    if let Some(pi) = req
                        .parts
                        .iter()
                        .position(|p| ident::normalise_path(field_of(p)) == f)
                    {
                        raw.push(RawHit {
                            part: pi,
                            start: 0,
                            end: 0,
                            what: What::Ident(
                                IdentifierKind::NewField,
                                Some(Extra::Build(previous_build.clone())),
                            ),
                        });
                    }
                }
            }
        }
    }

    fn evaluate(&self, ri: usize, req: &Request<'_>, raw: &[RawHit]) -> Option<Finding> {
        let r = &self.rules[ri];
        let mut hits: Vec<&RawHit> = Vec::new();
        for h in raw {
            let relevant = match &h.what {
                What::Fact(i, _) => {
                    let f = &self.facts[*i];
                    r.kinds.contains(&f.kind) && (r.include_weak || f.strength == Strength::Strong)
                }
                What::Literal(rule, _) | What::Regex(rule, _) => *rule == ri,
                What::Ident(kind, _) => r.idents.contains(kind),
            };
            if !relevant {
                continue;
            }
            let part = &req.parts[h.part];
            if !r.scope.part(part) || r.exceptions.iter().any(|x| x.covers(req, part)) {
                continue;
            }
            hits.push(h);
        }
        let kinds: BTreeSet<FactKind> = hits
            .iter()
            .filter_map(|h| match h.what {
                What::Fact(i, _) => Some(self.facts[i].kind),
                _ => None,
            })
            .collect();
        let distinct: BTreeSet<usize> = hits
            .iter()
            .filter_map(|h| match h.what {
                What::Fact(i, _) => Some(i),
                _ => None,
            })
            .collect();
        if hits.len() < r.min_hits || kinds.len() < r.min_fact_kinds || distinct.len() < r.min_facts
        {
            return None;
        }
        let facts: BTreeSet<FactRef> = hits
            .iter()
            .filter_map(|h| match h.what {
                What::Fact(i, _) => Some(FactRef {
                    kind: self.facts[i].kind,
                    name: self.facts[i].name.clone(),
                }),
                _ => None,
            })
            .collect();
        Some(Finding {
            rule: r.rule.clone(),
            facts: facts.into_iter().collect(),
            total_hits: hits.len(),
            hits: hits
                .iter()
                .take(MAX_HITS)
                .map(|h| self.hit(h, req))
                .collect(),
        })
    }

    fn hit(&self, h: &RawHit, req: &Request<'_>) -> Hit {
        let part = &req.parts[h.part];
        let matched = part.text.get(h.start..h.end).unwrap_or("");
        let (encoding, source, hashed) = match &h.what {
            What::Fact(i, enc) => {
                let f = &self.facts[*i];
                (
                    Some(*enc),
                    HitSource::Fact {
                        kind: f.kind,
                        name: f.name.clone(),
                        strength: f.strength,
                    },
                    f.value.as_str(),
                )
            }
            What::Literal(_, index) => (None, HitSource::Literal { index: *index }, matched),
            What::Regex(_, index) => (None, HitSource::Regex { index: *index }, matched),
            What::Ident(kind, extra) => (
                None,
                HitSource::Identifier {
                    kind: *kind,
                    recurrence: match extra {
                        Some(Extra::Rec(r)) => Some(RecurrenceOut {
                            first_seen_unix: r.first_seen_unix,
                            other_instances: r.other_instances,
                            other_sessions: r.other_sessions,
                            count: r.count,
                        }),
                        _ => None,
                    },
                    previous_build: match extra {
                        Some(Extra::Build(b)) => Some(b.clone()),
                        _ => None,
                    },
                },
                if matches!(extra, Some(Extra::Build(_))) {
                    part.path.as_str()
                } else {
                    matched
                },
            ),
        };
        let shown = if matched.is_empty() {
            part.path.as_str()
        } else {
            matched
        };
        Hit {
            path: part.path.clone(),
            role: part.role,
            encoding,
            source,
            offset: h.start,
            evidence: Evidence {
                excerpt: mask(shown),
                length: shown.len(),
                hash: format!("hmac-sha256:{}", hex16(&self.mac(hashed))),
            },
        }
    }

    fn mac(&self, value: &str) -> [u8; 32] {
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).unwrap_or_else(|_| {
            <Hmac<Sha256> as KeyInit>::new_from_slice(&[0u8; 32]).expect("fixed key")
        });
        m.update(value.as_bytes());
        let out = m.finalize().into_bytes();
        let mut a = [0u8; 32];
        a.copy_from_slice(&out);
        a
    }
}

#[derive(Debug, Clone)]
enum Extra {
    Rec(Recurrence),
    Build(String),
}

#[derive(Debug, Clone)]
enum What {
    Fact(usize, Encoding),
    Literal(usize, usize),
    Regex(usize, usize),
    Ident(IdentifierKind, Option<Extra>),
}

#[derive(Debug, Clone)]
struct RawHit {
    part: usize,
    start: usize,
    end: usize,
    what: What,
}

fn automaton(
    exact: Vec<(String, PatternInfo)>,
    folded: Vec<(String, PatternInfo)>,
    facts: &[Fact],
) -> Result<Option<Automaton>, String> {
    let mut pats: Vec<(String, PatternInfo)> = folded.into_iter().chain(exact).collect();
    if pats.is_empty() {
        return Ok(None);
    }
    // Longest first: at one position, leftmost-first then reports the longest
    // needle (an FQDN rather than the host name it starts with). Of needles equal
    // but for case, one entry is kept, a case-insensitive one when there is one.
    pats.sort_by(|a, b| {
        b.0.len()
            .cmp(&a.0.len())
            .then_with(|| a.0.to_ascii_lowercase().cmp(&b.0.to_ascii_lowercase()))
            .then_with(|| b.1.fold_case.cmp(&a.1.fold_case))
    });
    pats.dedup_by(|later, kept| {
        later.0.eq_ignore_ascii_case(&kept.0) && (kept.1.fold_case || later.0 == kept.0)
    });
    let needles: Vec<String> = pats.iter().map(|(t, _)| t.clone()).collect();
    let ac = AhoCorasickBuilder::new()
        .match_kind(MatchKind::LeftmostFirst)
        .ascii_case_insensitive(true)
        // A DFA is the fastest per byte; a few thousand needles keep it small.
        .kind(Some(AhoCorasickKind::DFA))
        .build(&needles)
        .map_err(|e| format!("compiling patterns: {e}"))?;
    let implied = pats
        .iter()
        .map(|(needle, info)| match (info.source, info.encoding) {
            (Source::Fact(own), Encoding::Raw) => contained(needle, own, facts),
            _ => Vec::new(),
        })
        .collect();
    Ok(Some(Automaton {
        ac,
        info: pats.into_iter().map(|(_, i)| i).collect(),
        needles,
        implied,
    }))
}

/// Facts other than `own` whose value sits, as a word, inside `needle`:
/// (fact, offset, length).
fn contained(needle: &str, own: usize, facts: &[Fact]) -> Vec<(usize, usize, usize)> {
    let hay = needle.to_ascii_lowercase();
    let mut out = Vec::new();
    for (i, f) in facts.iter().enumerate() {
        let v = f.value.to_ascii_lowercase();
        if i == own || v.len() < super::encode::MIN_VALUE_LEN || v.len() >= hay.len() {
            continue;
        }
        if let Some(at) = hay
            .match_indices(&v)
            .map(|(at, _)| at)
            .find(|&at| bounded(&hay, at, at + v.len()))
        {
            out.push((i, at, v.len()));
        }
    }
    out
}

/// Whether the match `text[start..end]` neither continues nor is continued by a
/// word. Only an edge that is itself a word character needs a boundary (`/home`
/// may follow `file:`), and an escape just before (`%2F`, `\n`) is one.
fn bounded(text: &str, start: usize, end: usize) -> bool {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let matched = &text[start..end];
    let head = &text.as_bytes()[..start];
    let escaped = (head.len() >= 3
        && head[head.len() - 3] == b'%'
        && head[head.len() - 2].is_ascii_hexdigit()
        && head[head.len() - 1].is_ascii_hexdigit())
        || (head.len() >= 2
            && head[head.len() - 2] == b'\\'
            && head[head.len() - 1].is_ascii_alphabetic());
    let before = escaped
        || !matched.chars().next().is_some_and(word)
        || text[..start].chars().next_back().is_none_or(|c| !word(c));
    let after = !matched.chars().next_back().is_some_and(word)
        || text[end..].chars().next().is_none_or(|c| !word(c))
        || text[end..].starts_with("%2")
        || text[end..].starts_with("%3");
    before && after
}

/// The request field a text part stands for, as new-field detection compares
/// them: its path, except inside a JSON document that a conversation string
/// holds (a tool result, a tool call's arguments, a document pasted in a
/// turn), whose members are data the conversation carries rather than fields
/// the client fills: such a part stands for the string holding the document
/// (`$.messages[2].content{json}.stdout` is `$.messages[2].content`).
/// Documents in client-filled strings — metadata, system prompts, tool
/// definitions, other fields — keep their members
/// (`$.metadata.user_id{json}.device_id`).
fn field_of(part: &TextPart) -> &str {
    match part.role {
        Role::User | Role::Assistant | Role::ToolCall | Role::ToolResult => part.body_path(),
        Role::System | Role::ToolDefinition | Role::Metadata | Role::Other | Role::Header => {
            &part.path
        }
    }
}

/// Keeps the first and last two characters of longer values, one of shorter.
fn mask(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let n = chars.len();
    let dots = |k: usize| "•".repeat(k.clamp(1, 12));
    if n >= 8 {
        let head: String = chars[..2].iter().collect();
        let tail: String = chars[n - 2..].iter().collect();
        format!("{head}{}{tail}", dots(n - 4))
    } else if n > 0 {
        format!("{}{}", chars[0], dots(n - 1))
    } else {
        String::new()
    }
}

fn hex16(b: &[u8; 32]) -> String {
    b[..16].iter().map(|x| format!("{x:02x}")).collect()
}
