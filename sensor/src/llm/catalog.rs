//! The provider catalogue: which hosts and paths are which LLM API.
//!
//! The catalogue is data (`providers.toml`, compiled in; an operator file may
//! add or replace providers). Its format:
//!
//! ```toml
//! [[provider]]
//! id = "anthropic"                  # lower-case id reported in events
//! name = "Anthropic"                # display name
//! hosts = ["api.anthropic.com"]     # host patterns; none: match by path alone
//! endpoints = [
//!   { api = "anthropic_messages", path = "/v1/messages" },
//!   # optional: methods (default ["POST"]), ports, stream (default false)
//!   { api = "ollama_chat", path = "/v1/chat/completions", ports = [11434] },
//! ]
//! ```
//!
//! Precedence, most specific first: entries of providers that list hosts, then
//! host-less entries restricted to `ports`, then host-less entries (matched by
//! path shape alone, reported as self-hosted). Within a level, operator
//! providers come before embedded ones, then file order decides.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::LazyLock;

use serde::Deserialize;
use toml::Spanned;

use super::pattern::{HostPattern, PathPattern, Target};
use super::{Api, Endpoint};

/// The embedded provider catalogue's text (`telltale llm catalog` prints it).
pub const EMBEDDED_CATALOG: &str = include_str!("providers.toml");

/// The compiled-in catalogue, parsed on first use.
static EMBEDDED: LazyLock<Catalog> = LazyLock::new(|| {
    // The file is part of the source and a unit test parses it, so failing here
    // is a build defect, not an input error.
    Catalog::from_toml(EMBEDDED_CATALOG, "embedded providers.toml")
        .unwrap_or_else(|e| panic!("invalid embedded catalogue: {e}"))
});

/// Precedence levels of an endpoint entry, most specific first.
const LEVELS: [Level; 3] = [Level::Host, Level::Port, Level::Path];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    /// The provider lists hosts.
    Host,
    /// No hosts, but the entry lists ports.
    Port,
    /// Path shape alone.
    Path,
}

/// A set of LLM providers and the endpoints that identify their APIs.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// In precedence order within each [`Level`].
    providers: Vec<Provider>,
}

#[derive(Debug, Clone)]
struct Provider {
    id: String,
    name: String,
    hosts: Vec<HostPattern>,
    endpoints: Vec<Rule>,
}

/// One endpoint entry.
#[derive(Debug, Clone)]
struct Rule {
    api: Api,
    path: PathPattern,
    /// Upper-case methods.
    methods: Vec<String>,
    ports: Vec<u16>,
    stream: bool,
}

/// An invalid catalogue file: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}{}: {reason}", position(*line, *column))]
pub struct CatalogError {
    /// Where the text came from (a file name).
    pub origin: String,
    /// 1-based line of the offending text, when known.
    pub line: Option<usize>,
    /// 1-based column (in characters) of the offending text, when known.
    pub column: Option<usize>,
    /// What is wrong.
    pub reason: String,
}

fn position(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        _ => String::new(),
    }
}

impl Catalog {
    /// The catalogue compiled into the sensor.
    pub fn embedded() -> &'static Catalog {
        &EMBEDDED
    }

    /// Parses a catalogue file (an operator's additions). `origin` names the
    /// file in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Catalog, CatalogError> {
        let error = |span: Option<Range<usize>>, reason: String| {
            let (line, column) = span.map_or((None, None), |s| {
                let (l, c) = line_column(text, s.start);
                (Some(l), Some(c))
            });
            CatalogError {
                origin: origin.to_owned(),
                line,
                column,
                reason,
            }
        };
        let raw: RawCatalog =
            toml::from_str(text).map_err(|e| error(e.span(), e.message().trim().to_owned()))?;
        let mut seen = HashSet::new();
        let mut providers = Vec::with_capacity(raw.provider.len());
        for p in raw.provider {
            if !seen.insert(p.id.get_ref().clone()) {
                let reason = format!("provider id `{}` is used twice", p.id.get_ref());
                return Err(error(Some(p.id.span()), reason));
            }
            providers.push(
                p.compile()
                    .map_err(|(span, reason)| error(Some(span), reason))?,
            );
        }
        Ok(Catalog { providers })
    }

    /// This catalogue with `other`'s providers first: a provider of `other`
    /// replaces one here with the same id (a provider with no endpoints thus
    /// switches an embedded one off), and within a precedence level `other`'s
    /// entries are tried first.
    pub fn with_overrides(&self, other: Catalog) -> Catalog {
        let replaced: HashSet<&str> = other.providers.iter().map(|p| p.id.as_str()).collect();
        let kept = self
            .providers
            .iter()
            .filter(|p| !replaced.contains(p.id.as_str()))
            .cloned()
            .collect::<Vec<_>>();
        let mut providers = other.providers;
        providers.extend(kept);
        Catalog { providers }
    }

    /// The provider (id) whose listed hosts include `host` (no port), if any:
    /// what a connection's server name alone tells about its destination.
    pub fn provider_of_host(&self, host: &str) -> Option<&str> {
        self.providers
            .iter()
            .find(|p| !p.hosts.is_empty() && p.hosts.iter().any(|h| h.matches(host)))
            .map(|p| p.id.as_str())
    }

    /// The endpoint a request calls, if it is a known LLM API. `authority` is
    /// HTTP/2 `:authority` or the `Host` header (`host[:port]`); `target` is the
    /// request target as sent, query included (ignored), absolute form allowed.
    pub fn recognise(
        &self,
        method: &str,
        authority: Option<&str>,
        target: &str,
    ) -> Option<Endpoint> {
        let target = Target::new(authority, target);
        LEVELS.iter().find_map(|&level| {
            self.providers
                .iter()
                .find_map(|p| p.recognise(level, method, &target))
        })
    }
}

impl Provider {
    fn level(&self, rule: &Rule) -> Level {
        match (self.hosts.is_empty(), rule.ports.is_empty()) {
            (false, _) => Level::Host,
            (true, false) => Level::Port,
            (true, true) => Level::Path,
        }
    }

    fn serves(&self, host: Option<&str>) -> bool {
        self.hosts.is_empty() || host.is_some_and(|h| self.hosts.iter().any(|p| p.matches(h)))
    }

    fn recognise(&self, level: Level, method: &str, target: &Target) -> Option<Endpoint> {
        if !self.serves(target.host.as_deref()) {
            return None;
        }
        self.endpoints
            .iter()
            .filter(|rule| self.level(rule) == level)
            .find_map(|rule| {
                let model = rule.matches(method, target)?;
                Some(Endpoint {
                    provider: self.id.clone(),
                    provider_name: self.name.clone(),
                    api: rule.api,
                    model_from_path: model,
                    self_hosted: self.hosts.is_empty(),
                    streaming: rule.stream,
                })
            })
    }
}

impl Rule {
    /// On a match, the model captured from the path (if the pattern has one).
    fn matches(&self, method: &str, target: &Target) -> Option<Option<String>> {
        if !self.methods.iter().any(|m| m.eq_ignore_ascii_case(method)) {
            return None;
        }
        if !self.ports.is_empty() && !target.port.is_some_and(|p| self.ports.contains(&p)) {
            return None;
        }
        self.path.matches(&target.segments)
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .unwrap_or_default()
        .chars()
        .count()
        + 1;
    (line, column)
}

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    #[serde(default)]
    provider: Vec<RawProvider>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    id: Spanned<String>,
    name: String,
    #[serde(default)]
    hosts: Vec<Spanned<String>>,
    #[serde(default)]
    endpoints: Vec<RawEndpoint>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    api: Api,
    path: Spanned<String>,
    #[serde(default)]
    methods: Vec<Spanned<String>>,
    #[serde(default)]
    ports: Vec<Spanned<u16>>,
    #[serde(default)]
    stream: bool,
}

/// A validation failure: the span of the offending value, and why.
type Invalid = (Range<usize>, String);

impl RawProvider {
    fn compile(self) -> Result<Provider, Invalid> {
        let id = self.id.get_ref();
        let id_ok = !id.is_empty()
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
        if !id_ok {
            let reason =
                format!("provider id `{id}`: use lower-case letters, digits, `-`, `_`, `.`");
            return Err((self.id.span(), reason));
        }
        let hosts = self
            .hosts
            .iter()
            .map(|h| HostPattern::parse(h.get_ref()).map_err(|reason| (h.span(), reason)))
            .collect::<Result<_, _>>()?;
        let endpoints = self
            .endpoints
            .into_iter()
            .map(RawEndpoint::compile)
            .collect::<Result<_, _>>()?;
        Ok(Provider {
            id: self.id.into_inner(),
            name: self.name,
            hosts,
            endpoints,
        })
    }
}

impl RawEndpoint {
    fn compile(self) -> Result<Rule, Invalid> {
        let path =
            PathPattern::parse(self.path.get_ref()).map_err(|reason| (self.path.span(), reason))?;
        let mut methods = Vec::with_capacity(self.methods.len().max(1));
        for m in &self.methods {
            if m.get_ref().is_empty() || !m.get_ref().bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err((
                    m.span(),
                    format!("method `{}` is not an HTTP method", m.get_ref()),
                ));
            }
            methods.push(m.get_ref().to_ascii_uppercase());
        }
        if methods.is_empty() {
            methods.push("POST".to_owned());
        }
        let mut ports = Vec::with_capacity(self.ports.len());
        for p in &self.ports {
            if *p.get_ref() == 0 {
                return Err((p.span(), "port 0 cannot be matched".to_owned()));
            }
            ports.push(*p.get_ref());
        }
        Ok(Rule {
            api: self.api,
            path,
            methods,
            ports,
            stream: self.stream,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every entry of the embedded catalogue is reachable: a request made from
    /// its own patterns is recognised as that provider and API, so no entry is
    /// shadowed by an earlier one.
    #[test]
    fn every_embedded_entry_is_reachable() {
        let catalog = Catalog::embedded();
        let mut checked = 0;
        for provider in &catalog.providers {
            let hosts: Vec<Option<String>> = match provider.hosts.is_empty() {
                true => vec![Some("llm.internal.example".into())],
                false => provider.hosts.iter().map(|h| Some(h.example())).collect(),
            };
            for rule in &provider.endpoints {
                for host in &hosts {
                    let authority = match rule.ports.first() {
                        Some(port) => host.as_ref().map(|h| format!("{h}:{port}")),
                        None => host.clone(),
                    };
                    let path = rule.path.example();
                    let found = catalog
                        .recognise(&rule.methods[0], authority.as_deref(), &path)
                        .unwrap_or_else(|| {
                            panic!("{}: {authority:?} {path} not recognised", provider.id)
                        });
                    assert_eq!(
                        (found.provider.as_str(), found.api),
                        (provider.id.as_str(), rule.api),
                        "{authority:?} {path}"
                    );
                    assert_eq!(found.self_hosted, provider.hosts.is_empty());
                    assert_eq!(found.streaming, rule.stream);
                    checked += 1;
                }
            }
        }
        assert!(checked > 80, "only {checked} entries");
    }

    #[test]
    fn line_columns_count_characters() {
        assert_eq!(line_column("ab\ncdé\nx", 0), (1, 1));
        assert_eq!(line_column("ab\ncdé\nx", 3), (2, 1));
        assert_eq!(line_column("ab\ncdé\nx", 7), (2, 4));
        assert_eq!(line_column("ab", 99), (1, 3));
    }
}
