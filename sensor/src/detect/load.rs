//! Loading rules: the embedded default pack, then operator files and directories
//! whose rules add to it or replace it by id. Every problem names the file, the
//! line and the reason.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{glob::Glob, rules::Rule};

/// The embedded default rule pack.
pub const DEFAULT_RULES: &str = include_str!("default_rules.yaml");

/// A rule file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}:{line}: {reason}")]
pub struct RuleError {
    /// File name (or "embedded default rules").
    pub origin: String,
    /// 1-based line (0 when unknown).
    pub line: u64,
    /// What is wrong.
    pub reason: String,
}

/// Rules with where each came from.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<(Rule, String)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpannedFile {
    rules: Vec<Spanned<Rule>>,
}

impl RuleSet {
    /// The embedded default pack.
    pub fn embedded() -> Result<Self, RuleError> {
        let mut set = Self::default();
        set.add_text(DEFAULT_RULES, "embedded default rules")?;
        Ok(set)
    }

    /// Rules in load order, with their origin.
    pub fn rules(&self) -> impl Iterator<Item = (&Rule, &str)> {
        self.rules.iter().map(|(r, o)| (r, o.as_str()))
    }

    /// Enabled rules.
    pub fn enabled(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().map(|(r, _)| r).filter(|r| r.enabled)
    }

    /// Adds one rule (replacing a loaded rule with its id).
    pub fn insert(&mut self, rule: Rule, origin: &str) {
        match self.rules.iter_mut().find(|(x, _)| x.id == rule.id) {
            Some(slot) => *slot = (rule, origin.to_owned()),
            None => self.rules.push((rule, origin.to_owned())),
        }
    }

    /// Adds the rules of a YAML text; a rule whose id is already loaded replaces it.
    pub fn add_text(&mut self, text: &str, origin: &str) -> Result<usize, RuleError> {
        let file: SpannedFile = serde_saphyr::from_str(text).map_err(|e| RuleError {
            origin: origin.to_owned(),
            line: e.location().map_or(0, |l| l.line()),
            reason: first_line(&e.to_string()),
        })?;
        let mut seen: Vec<&str> = Vec::new();
        for r in &file.rules {
            let line = r.referenced.line();
            validate(&r.value).map_err(|reason| RuleError {
                origin: origin.to_owned(),
                line,
                reason: format!("rule {}: {reason}", r.value.id),
            })?;
            if seen.contains(&r.value.id.as_str()) {
                return Err(RuleError {
                    origin: origin.to_owned(),
                    line,
                    reason: format!("rule id {} appears twice in this file", r.value.id),
                });
            }
            seen.push(&r.value.id);
        }
        let n = file.rules.len();
        for r in file.rules {
            self.insert(r.value, origin);
        }
        Ok(n)
    }

    /// Adds a rule file.
    pub fn add_file(&mut self, path: &Path) -> Result<usize, RuleError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| RuleError {
            origin: origin.clone(),
            line: 0,
            reason: format!("cannot read: {e}"),
        })?;
        self.add_text(&text, &origin)
    }

    /// Adds every `*.yaml` / `*.yml` file of a directory, in name order.
    pub fn add_dir(&mut self, dir: &Path) -> Result<usize, RuleError> {
        let entries = std::fs::read_dir(dir).map_err(|e| RuleError {
            origin: dir.display().to_string(),
            line: 0,
            reason: format!("cannot read the rule directory: {e}"),
        })?;
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        files.sort();
        let mut n = 0;
        for f in files {
            n += self.add_file(&f)?;
        }
        Ok(n)
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).trim().to_owned()
}

/// Checks what serde cannot: ids, ATT&CK ids, patterns, globs, something to detect.
fn validate(r: &Rule) -> Result<(), String> {
    if r.id.trim().is_empty() || r.id.chars().any(char::is_whitespace) {
        return Err("the id must be a non-empty word".into());
    }
    if r.title.trim().is_empty() {
        return Err("the title is empty".into());
    }
    for t in &r.attack {
        if !is_attack_id(t) {
            return Err(format!(
                "{t:?} is not a MITRE ATT&CK technique id (T1234 or T1234.001)"
            ));
        }
    }
    let d = &r.detect;
    if d.facts.is_empty()
        && d.literals.is_empty()
        && d.regexes.is_empty()
        && d.identifiers.is_empty()
    {
        return Err(
            "detect names nothing to look for (facts, literals, regexes or identifiers)".into(),
        );
    }
    if d.literals.iter().any(|l| l.len() < 3) {
        return Err("literals must be at least 3 characters long".into());
    }
    for re in &d.regexes {
        regex_automata::meta::Regex::new(re).map_err(|e| format!("regex {re:?}: {e}"))?;
    }
    if r.threshold.min_hits == 0 {
        return Err("threshold.min_hits must be at least 1".into());
    }
    if r.threshold.min_facts > 0 && d.facts.is_empty() {
        return Err("threshold.min_facts needs detect.facts".into());
    }
    if r.threshold.min_fact_kinds > 0 && d.facts.is_empty() {
        return Err("threshold.min_fact_kinds needs detect.facts".into());
    }
    for s in std::iter::once(&r.scope).chain(&r.exceptions) {
        for g in s
            .hosts
            .iter()
            .chain(&s.paths)
            .chain(&s.processes)
            .chain(&s.json_paths)
        {
            Glob::new(g).map_err(|e| format!("glob {g:?}: {e}"))?;
        }
    }
    Ok(())
}

fn is_attack_id(t: &str) -> bool {
    let Some(rest) = t.strip_prefix('T') else {
        return false;
    };
    let (main, sub) = match rest.split_once('.') {
        Some((m, s)) => (m, Some(s)),
        None => (rest, None),
    };
    main.len() == 4
        && main.bytes().all(|b| b.is_ascii_digit())
        && sub.is_none_or(|s| s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()))
}

/// Parses a rule file without the embedded pack (for `telltale rules check`).
pub fn check_text(text: &str, origin: &str) -> Result<Vec<Rule>, RuleError> {
    let mut set = RuleSet::default();
    set.add_text(text, origin)?;
    Ok(set.rules.into_iter().map(|(r, _)| r).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_pack_loads() {
        let set = RuleSet::embedded().expect("default rules");
        assert!(set.enabled().count() >= 8);
        assert!(set.enabled().all(|r| !r.attack.is_empty()));
    }

    #[test]
    fn errors_name_file_line_and_reason() {
        let bad_attack = "rules:\n  - id: X-1\n    version: 1\n    title: t\n    severity: low\n    attack: [TA0001]\n    detect:\n      facts: [hostname]\n";
        let e = check_text(bad_attack, "ops.yaml").unwrap_err();
        assert_eq!((e.origin.as_str(), e.line), ("ops.yaml", 2), "{e}");
        assert!(e.reason.contains("ATT&CK"), "{e}");

        let unknown_key = "rules:\n  - id: X-1\n    version: 1\n    title: t\n    severity: low\n    detect:\n      factz: [hostname]\n";
        let e = check_text(unknown_key, "ops.yaml").unwrap_err();
        assert!(e.line >= 6 && e.reason.contains("factz"), "{e}");

        let bad_regex = "rules:\n  - id: X-1\n    version: 1\n    title: t\n    severity: low\n    detect:\n      regexes: ['(unclosed']\n";
        assert!(
            check_text(bad_regex, "r.yaml")
                .unwrap_err()
                .reason
                .contains("regex")
        );

        let bad_kind = "rules:\n  - id: X-1\n    version: 1\n    title: t\n    severity: low\n    detect:\n      facts: [shoe_size]\n";
        let e = check_text(bad_kind, "k.yaml").unwrap_err();
        assert!(e.line >= 7, "{e}");

        let dup = "rules:\n  - id: X-1\n    version: 1\n    title: t\n    severity: low\n    detect: {facts: [ip]}\n  - id: X-1\n    version: 2\n    title: t\n    severity: low\n    detect: {facts: [ip]}\n";
        let e = check_text(dup, "d.yaml").unwrap_err();
        assert_eq!(e.line, 7, "{e}");
    }

    #[test]
    fn operator_rules_replace_defaults_by_id() {
        let mut set = RuleSet::embedded().unwrap();
        let before = set.enabled().count();
        set.add_text(
            "rules:\n  - id: TT-FP-004\n    version: 1\n    title: off\n    severity: low\n    enabled: false\n    detect: {facts: [timezone]}\n",
            "ops.yaml",
        )
        .unwrap();
        assert_eq!(set.enabled().count(), before - 1);
    }
}
