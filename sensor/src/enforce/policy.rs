//! Enforcement policies: which processes they select, what each rule's
//! findings and each destination lead to. Pure: configuration in, decisions
//! out.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What happens when a rule matches (or a destination is not allowed).
/// Ordered: a stronger mode wins when several apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// An alert only (the request goes out).
    Alert,
    /// The request never leaves the host: the writing process is held at the
    /// TLS write, the connection is shut down, the write fails.
    Block,
    /// As `block`, then the process is killed.
    Kill,
}

impl Mode {
    /// Whether the mode needs the process's writes held.
    pub fn holds(self) -> bool {
        self >= Mode::Block
    }
}

/// What the sensor does when it cannot decide in time, cannot read or decode a
/// held request to an AI endpoint, or cannot find the socket to block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    /// Let the write go (availability first).
    Open,
    /// Block it (kill the process when its socket cannot be found).
    Closed,
}

/// `[enforce]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnforceCfg {
    /// Decide and report, never hold or act (`telltale run --dry-run`).
    pub dry_run: bool,
    /// Longest a held write may wait for its decision before `fail` applies.
    pub decision_timeout_ms: u64,
    /// What a write gets when no decision could be made.
    pub fail: FailMode,
    /// Bytes of one held request (and of a connection's unfinished request)
    /// read and kept for the decision; a larger request is undecidable.
    pub max_request_bytes: usize,
    /// The policies (`[[enforce.policies]]`); none: alerts only.
    pub policies: Vec<PolicyCfg>,
}

/// `[[enforce.policies]]`: a process selector and the modes applied to what
/// the selected processes send. Every selector list given must match (one of
/// its entries); a policy without selectors selects every process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyCfg {
    /// Name reported in enforcement events.
    pub name: String,
    /// Executable paths (globs, `*` and `?`), as the process sees them.
    #[serde(default)]
    pub exe: Vec<String>,
    /// GNU build ids of the executable (hex).
    #[serde(default)]
    pub build_id: Vec<String>,
    /// Client names as the inventory has them (the User-Agent's product), globs.
    #[serde(default)]
    pub client: Vec<String>,
    /// cgroup paths, globs.
    #[serde(default)]
    pub cgroup: Vec<String>,
    /// Container ids (or LXC/nspawn machine names), globs; `*` is any container.
    #[serde(default)]
    pub container: Vec<String>,
    /// User names or numeric uids (the process's real uid).
    #[serde(default)]
    pub user: Vec<String>,
    /// Mode for findings of rules not named in `rules`.
    #[serde(default = "default_mode")]
    pub mode: Mode,
    /// Per rule: rule id (or glob) → mode. An exact id beats a glob; among
    /// globs, the longest pattern wins.
    #[serde(default)]
    pub rules: BTreeMap<String, Mode>,
    /// AI endpoints (host globs, from SNI or Host, without port) the selected
    /// processes may use; empty: any. Requests recognised as LLM API calls to
    /// other hosts get `destination_mode`.
    #[serde(default)]
    pub allow_destinations: Vec<String>,
    /// Mode for requests to AI endpoints outside `allow_destinations`
    /// (default: `mode`).
    #[serde(default)]
    pub destination_mode: Option<Mode>,
}

fn default_mode() -> Mode {
    Mode::Alert
}

/// What a policy can see of a process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Subject<'a> {
    /// Executable path.
    pub exe: Option<&'a str>,
    /// Its build id.
    pub build_id: Option<&'a str>,
    /// cgroup path.
    pub cgroup: Option<&'a str>,
    /// Container id.
    pub container: Option<&'a str>,
    /// Real uid.
    pub uid: Option<u32>,
    /// Its user name.
    pub user: Option<&'a str>,
}

/// A compiled policy.
#[derive(Debug, Clone)]
pub struct Policy {
    cfg: PolicyCfg,
    /// Rules named exactly, and globs longest first.
    exact: BTreeMap<String, Mode>,
    globs: Vec<(String, Mode)>,
}

/// Why a mode applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// A rule's finding.
    Rule(String),
    /// A request to an AI endpoint outside the allow-list.
    Destination(String),
}

/// A policy's decision on one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The strongest mode that applies.
    pub mode: Mode,
    /// The policy that set it.
    pub policy: String,
    /// Everything that led to `mode` (rules and destinations), in order.
    pub causes: Vec<Cause>,
}

/// A configuration problem.
#[derive(Debug, thiserror::Error)]
#[error("enforce.policies[{index}] ({name}): {reason}")]
pub struct PolicyError {
    index: usize,
    name: String,
    reason: String,
}

/// The policies in effect.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    list: Vec<Policy>,
}

impl Policies {
    /// Compiles and checks the configured policies.
    pub fn new(cfgs: &[PolicyCfg]) -> Result<Self, PolicyError> {
        let mut list = Vec::with_capacity(cfgs.len());
        let mut names = std::collections::HashSet::new();
        for (index, cfg) in cfgs.iter().enumerate() {
            let err = |reason: String| PolicyError {
                index,
                name: cfg.name.clone(),
                reason,
            };
            if cfg.name.trim().is_empty() {
                return Err(err("a policy needs a name".into()));
            }
            if !names.insert(cfg.name.clone()) {
                return Err(err("the name is used twice".into()));
            }
            for b in &cfg.build_id {
                if b.is_empty() || !b.bytes().all(|c| c.is_ascii_hexdigit()) {
                    return Err(err(format!("build id `{b}` is not hex")));
                }
            }
            for (kind, list) in [
                ("exe", &cfg.exe),
                ("client", &cfg.client),
                ("cgroup", &cfg.cgroup),
                ("container", &cfg.container),
                ("user", &cfg.user),
                ("allow_destinations", &cfg.allow_destinations),
            ] {
                if list.iter().any(|p| p.trim().is_empty()) {
                    return Err(err(format!("an empty entry in `{kind}`")));
                }
            }
            let mut exact = BTreeMap::new();
            let mut globs = Vec::new();
            for (id, mode) in &cfg.rules {
                if id.contains(['*', '?']) {
                    globs.push((id.clone(), *mode));
                } else {
                    exact.insert(id.clone(), *mode);
                }
            }
            globs.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
            list.push(Policy {
                cfg: cfg.clone(),
                exact,
                globs,
            });
        }
        Ok(Self { list })
    }

    /// Whether any policy can block or kill: writes must then be held.
    pub fn any_holds(&self) -> bool {
        self.list.iter().any(Policy::can_hold)
    }

    /// Whether the process's writes must be held: a policy that can block or
    /// kill selects it (its client selector, known only from requests, is
    /// taken as matching).
    pub fn holds(&self, s: &Subject<'_>) -> bool {
        self.list
            .iter()
            .any(|p| p.can_hold() && p.selects_process(s))
    }

    /// Policy names that select every process (worth a warning when they hold).
    pub fn unselective(&self) -> impl Iterator<Item = &str> {
        self.list
            .iter()
            .filter(|p| p.can_hold() && p.selects_everything())
            .map(|p| p.cfg.name.as_str())
    }

    /// The decision for a request of process `s` (client `client`) to `host`
    /// (an AI endpoint when `ai_endpoint`), given the rules that matched. None
    /// when no policy selects the request or nothing applies.
    pub fn decide(
        &self,
        s: &Subject<'_>,
        client: Option<&str>,
        host: Option<&str>,
        ai_endpoint: bool,
        rules: &[impl AsRef<str>],
    ) -> Option<Decision> {
        let mut best: Option<Decision> = None;
        for p in &self.list {
            if !p.selects_process(s) || !p.selects_client(client) {
                continue;
            }
            let mut causes = Vec::new();
            let mut mode = None::<Mode>;
            for r in rules {
                let r = r.as_ref();
                let m = p.mode_for(r);
                causes.push((m, Cause::Rule(r.to_owned())));
                mode = mode.max(Some(m));
            }
            if ai_endpoint && !p.destination_allowed(host) {
                let m = p.cfg.destination_mode.unwrap_or(p.cfg.mode);
                causes.push((
                    m,
                    Cause::Destination(host.unwrap_or("(unknown)").to_owned()),
                ));
                mode = mode.max(Some(m));
            }
            let Some(mode) = mode else { continue };
            let d = Decision {
                mode,
                policy: p.cfg.name.clone(),
                causes: causes
                    .into_iter()
                    .filter(|(m, _)| *m == mode)
                    .map(|(_, c)| c)
                    .collect(),
            };
            if best.as_ref().is_none_or(|b| d.mode > b.mode) {
                best = Some(d);
            }
        }
        best
    }
}

impl Policy {
    fn can_hold(&self) -> bool {
        self.cfg.mode.holds()
            || self.cfg.rules.values().any(|m| m.holds())
            || (!self.cfg.allow_destinations.is_empty()
                && self.cfg.destination_mode.unwrap_or(self.cfg.mode).holds())
    }

    fn selects_everything(&self) -> bool {
        let c = &self.cfg;
        c.exe.is_empty()
            && c.build_id.is_empty()
            && c.cgroup.is_empty()
            && c.container.is_empty()
            && c.user.is_empty()
            && c.client.is_empty()
    }

    fn selects_process(&self, s: &Subject<'_>) -> bool {
        let c = &self.cfg;
        let any = |pats: &[String], v: Option<&str>| {
            pats.is_empty() || v.is_some_and(|v| pats.iter().any(|p| glob(p, v)))
        };
        let exe = s.exe.map(|e| e.strip_suffix(" (deleted)").unwrap_or(e));
        any(&c.exe, exe)
            && (c.build_id.is_empty()
                || s.build_id
                    .is_some_and(|b| c.build_id.iter().any(|p| p.eq_ignore_ascii_case(b))))
            && any(&c.cgroup, s.cgroup)
            && any(&c.container, s.container)
            && (c.user.is_empty()
                || c.user.iter().any(|u| {
                    s.user == Some(u.as_str())
                        || (u.parse::<u32>().ok().is_some_and(|n| s.uid == Some(n)))
                }))
    }

    fn selects_client(&self, client: Option<&str>) -> bool {
        self.cfg.client.is_empty()
            || client.is_some_and(|c| self.cfg.client.iter().any(|p| glob_ci(p, c)))
    }

    fn mode_for(&self, rule: &str) -> Mode {
        if let Some(m) = self.exact.get(rule) {
            return *m;
        }
        self.globs
            .iter()
            .find(|(p, _)| glob(p, rule))
            .map_or(self.cfg.mode, |(_, m)| *m)
    }

    fn destination_allowed(&self, host: Option<&str>) -> bool {
        if self.cfg.allow_destinations.is_empty() {
            return true;
        }
        let Some(host) = host else { return false };
        let host = strip_port(host);
        self.cfg
            .allow_destinations
            .iter()
            .any(|p| glob_ci(strip_port(p), host))
    }
}

/// `host` of `host:port` and `[v6]:port`.
pub fn strip_port(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    }
}

/// Glob match, case-insensitive (host and client names).
fn glob_ci(pattern: &str, text: &str) -> bool {
    glob(&pattern.to_ascii_lowercase(), &text.to_ascii_lowercase())
}

/// `*` matches any run of characters (also `/`), `?` one character.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(toml_text: &str) -> Policies {
        #[derive(Deserialize)]
        struct W {
            policies: Vec<PolicyCfg>,
        }
        let w: W = toml::from_str(toml_text).expect("policy toml");
        Policies::new(&w.policies).expect("valid policies")
    }

    #[test]
    fn globs() {
        assert!(glob("/usr/bin/*", "/usr/bin/node"));
        assert!(glob("*claude*", "/home/a/.local/bin/claude"));
        assert!(glob("TT-FP-00?", "TT-FP-001"));
        assert!(!glob("TT-FP-00?", "TT-FP-0011"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
        assert!(glob("*", ""));
        assert!(!glob("", "x"));
        assert_eq!(strip_port("api.x.com:443"), "api.x.com");
        assert_eq!(strip_port("[::1]:8443"), "::1");
        assert_eq!(strip_port("::1"), "::1");
    }

    #[test]
    fn selectors_all_must_match() {
        let p = policy(
            r#"
            [[policies]]
            name = "agents"
            exe = ["/usr/bin/node", "*/python3*"]
            user = ["alice", "1001"]
            mode = "block"
            "#,
        );
        let alice_node = Subject {
            exe: Some("/usr/bin/node"),
            user: Some("alice"),
            uid: Some(1000),
            ..Subject::default()
        };
        assert!(p.holds(&alice_node));
        let uid_python = Subject {
            exe: Some("/usr/bin/python3.11 (deleted)"),
            uid: Some(1001),
            ..Subject::default()
        };
        assert!(p.holds(&uid_python));
        let bob_node = Subject {
            user: Some("bob"),
            uid: Some(1002),
            ..alice_node
        };
        assert!(!p.holds(&bob_node));
        // An attribute the selector needs but the process lacks: no match.
        assert!(!p.holds(&Subject {
            exe: None,
            ..alice_node
        }));
    }

    #[test]
    fn alert_only_policies_hold_nothing() {
        let p = policy(
            r#"
            [[policies]]
            name = "watch"
            mode = "alert"
            allow_destinations = ["api.anthropic.com"]
            "#,
        );
        assert!(!p.any_holds());
        assert!(!p.holds(&Subject::default()));
        let d = p
            .decide(
                &Subject::default(),
                None,
                Some("api.openai.com"),
                true,
                &[] as &[&str],
            )
            .expect("destination applies");
        assert_eq!(d.mode, Mode::Alert);
        assert_eq!(d.causes, vec![Cause::Destination("api.openai.com".into())]);
    }

    #[test]
    fn per_rule_modes_exact_beats_glob_and_strongest_wins() {
        let p = policy(
            r#"
            [[policies]]
            name = "p"
            mode = "alert"
            rules = { "TT-FP-*" = "block", "TT-FP-00*" = "alert", "TT-FP-001" = "kill" }
            "#,
        );
        let s = Subject::default();
        let d = |rules: &[&str]| p.decide(&s, None, Some("h"), true, rules);
        assert_eq!(d(&["TT-FP-001"]).unwrap().mode, Mode::Kill);
        // The longer glob wins over the shorter one.
        assert_eq!(d(&["TT-FP-002"]).unwrap().mode, Mode::Alert);
        assert_eq!(d(&["TT-FP-010"]).unwrap().mode, Mode::Block);
        assert_eq!(d(&["TT-ID-001"]).unwrap().mode, Mode::Alert);
        let both = d(&["TT-FP-010", "TT-ID-001", "TT-FP-011"]).unwrap();
        assert_eq!(both.mode, Mode::Block);
        assert_eq!(
            both.causes,
            vec![
                Cause::Rule("TT-FP-010".into()),
                Cause::Rule("TT-FP-011".into())
            ]
        );
        // Nothing matched and no destination rule: no decision.
        assert_eq!(d(&[]), None);
    }

    #[test]
    fn destinations_and_clients() {
        let p = policy(
            r#"
            [[policies]]
            name = "sdk"
            client = ["anthropic*"]
            mode = "alert"
            allow_destinations = ["api.anthropic.com", "*.internal.example"]
            destination_mode = "block"
            "#,
        );
        let s = Subject::default();
        assert!(p.any_holds());
        // Process selection cannot know the client yet: it holds.
        assert!(p.holds(&s));
        let go = |client, host, ai| p.decide(&s, client, host, ai, &[] as &[&str]);
        assert_eq!(
            go(Some("Anthropic"), Some("api.anthropic.com:443"), true),
            None
        );
        assert_eq!(
            go(Some("anthropic"), Some("llm.internal.example"), true),
            None
        );
        let d = go(Some("Anthropic"), Some("api.openai.com"), true).unwrap();
        assert_eq!((d.mode, d.policy.as_str()), (Mode::Block, "sdk"));
        // Not an AI endpoint: the allow-list does not apply.
        assert_eq!(go(Some("Anthropic"), Some("github.com"), false), None);
        // Another client: the policy does not select the request.
        assert_eq!(go(Some("OpenAI"), Some("api.openai.com"), true), None);
        assert_eq!(go(None, Some("api.openai.com"), true), None);
        // No host known for an AI request: not allowed.
        assert_eq!(go(Some("Anthropic"), None, true).unwrap().mode, Mode::Block);
    }

    #[test]
    fn bad_policies_are_refused() {
        #[derive(Deserialize)]
        struct W {
            policies: Vec<PolicyCfg>,
        }
        for (text, needle) in [
            ("[[policies]]\nname = \"\"", "needs a name"),
            (
                "[[policies]]\nname = \"a\"\n[[policies]]\nname = \"a\"",
                "used twice",
            ),
            (
                "[[policies]]\nname = \"a\"\nbuild_id = [\"xyz\"]",
                "not hex",
            ),
            (
                "[[policies]]\nname = \"a\"\nexe = [\"\"]",
                "empty entry in `exe`",
            ),
        ] {
            let w: W = toml::from_str(text).expect("toml");
            let e = Policies::new(&w.policies).expect_err(text).to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
        let w: Result<W, _> = toml::from_str("[[policies]]\nname = \"a\"\nmode = \"drop\"");
        assert!(w.is_err());
    }
}
