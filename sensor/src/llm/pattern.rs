//! The two small pattern languages of the provider catalogue, and the request
//! target / authority splitting they are matched against.
//!
//! Host patterns are dot-separated labels compared case-insensitively; `*` stands
//! for one or more characters *within one label* (as in TLS certificate
//! wildcards, but allowed anywhere in the label): `*.openai.azure.com`,
//! `bedrock-runtime.*.amazonaws.com`, `*-aiplatform.googleapis.com`.
//!
//! Path patterns are `/`-separated segments compared case-sensitively after
//! percent-decoding each request segment. A segment is a literal, or a literal
//! prefix and suffix around one hole: `{model}` (captured) or `*` (any
//! non-empty text, not captured): `/v1beta/models/{model}:generateContent`,
//! `/v1/projects/*/locations/*/publishers/google/models/{model}:generateContent`.

use std::fmt;

/// The only capture name a path pattern may use. Rejecting other names catches
/// typos such as `{modle}` in an operator's file instead of silently capturing
/// nothing.
const MODEL_CAPTURE: &str = "{model}";

/// A compiled host pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostPattern {
    labels: Vec<Template>,
}

/// A compiled path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathPattern {
    segments: Vec<Template>,
}

/// One label or segment: literal text, or a prefix and suffix around a hole.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Template {
    Literal(String),
    Hole {
        prefix: String,
        suffix: String,
        capture: bool,
    },
}

impl Template {
    /// Parses one label/segment. `allow_capture` is false for host labels.
    fn parse(text: &str, allow_capture: bool) -> Result<Self, String> {
        let star = text.find('*');
        let brace = text.find('{');
        let (at, hole_len, capture) = match (star, brace) {
            (None, None) => {
                if text.contains('}') {
                    return Err(format!("unbalanced `}}` in `{text}`"));
                }
                return Ok(Self::Literal(text.to_owned()));
            }
            (Some(_), Some(_)) => return Err(format!("`{text}` has more than one wildcard")),
            (Some(at), None) => (at, 1, false),
            (None, Some(at)) => {
                if !allow_capture {
                    return Err(format!("captures are not allowed here: `{text}`"));
                }
                if !text[at..].starts_with(MODEL_CAPTURE) {
                    return Err(format!(
                        "unknown capture in `{text}`: the only capture is `{MODEL_CAPTURE}`"
                    ));
                }
                (at, MODEL_CAPTURE.len(), true)
            }
        };
        let prefix = &text[..at];
        let suffix = &text[at + hole_len..];
        if suffix.contains(['*', '{', '}']) {
            return Err(format!("`{text}` has more than one wildcard"));
        }
        Ok(Self::Hole {
            prefix: prefix.to_owned(),
            suffix: suffix.to_owned(),
            capture,
        })
    }

    /// Matches `text`; on success returns the hole's text if it is a capture.
    fn matches<'t>(&self, text: &'t str) -> Option<Option<&'t str>> {
        match self {
            Self::Literal(lit) => (lit == text).then_some(None),
            Self::Hole {
                prefix,
                suffix,
                capture,
            } => {
                let middle = text.strip_prefix(prefix.as_str())?;
                let middle = middle.strip_suffix(suffix.as_str())?;
                if middle.is_empty() {
                    return None;
                }
                Some(capture.then_some(middle))
            }
        }
    }

    /// Whether this template captures the model.
    fn captures(&self) -> bool {
        matches!(self, Self::Hole { capture: true, .. })
    }
}

impl HostPattern {
    /// Compiles a host pattern; the pattern is lower-cased.
    pub(crate) fn parse(pattern: &str) -> Result<Self, String> {
        let pattern = pattern.to_ascii_lowercase();
        if pattern.is_empty() {
            return Err("empty host pattern".into());
        }
        if pattern.contains(':') {
            return Err(format!(
                "host pattern `{pattern}` has a port: use the endpoint's `ports`"
            ));
        }
        let mut labels = Vec::new();
        for label in pattern.split('.') {
            let valid_chars = label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'*');
            if label.is_empty() || !valid_chars {
                return Err(format!(
                    "host pattern `{pattern}`: labels are non-empty runs of letters, digits, `-` and `*`"
                ));
            }
            labels.push(Template::parse(label, false)?);
        }
        Ok(Self { labels })
    }

    /// Whether `host` (already lower-cased, without port) matches.
    pub(crate) fn matches(&self, host: &str) -> bool {
        let mut labels = host.split('.');
        let all = self
            .labels
            .iter()
            .all(|t| labels.next().is_some_and(|l| t.matches(l).is_some()));
        all && labels.next().is_none()
    }
}

impl PathPattern {
    /// Compiles a path pattern (`/v1/messages`, `/model/{model}/invoke`).
    pub(crate) fn parse(pattern: &str) -> Result<Self, String> {
        let Some(rest) = pattern.strip_prefix('/') else {
            return Err(format!("path pattern `{pattern}` must start with `/`"));
        };
        if pattern.contains(['?', '#']) {
            return Err(format!(
                "path pattern `{pattern}` has a query or fragment: they are ignored when matching"
            ));
        }
        let mut segments = Vec::new();
        for segment in rest.split('/') {
            if segment.is_empty() {
                return Err(format!("path pattern `{pattern}` has an empty segment"));
            }
            segments.push(Template::parse(segment, true)?);
        }
        if segments.iter().filter(|s| s.captures()).count() > 1 {
            return Err(format!(
                "path pattern `{pattern}` captures `{MODEL_CAPTURE}` more than once"
            ));
        }
        Ok(Self { segments })
    }

    /// Matches decoded path segments; on success returns the captured model.
    pub(crate) fn matches(&self, segments: &[String]) -> Option<Option<String>> {
        if segments.len() != self.segments.len() {
            return None;
        }
        let mut model = None;
        for (template, segment) in self.segments.iter().zip(segments) {
            if let Some(captured) = template.matches(segment)? {
                model = Some(captured.to_owned());
            }
        }
        Some(model)
    }
}

/// A request target split for matching: host, port and decoded path segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// Lower-cased host without port or trailing dot, if any authority is known.
    pub host: Option<String>,
    /// Port from the authority, if one was given.
    pub port: Option<u16>,
    /// Path segments, each percent-decoded (so `%2F` stays inside its segment).
    pub segments: Vec<String>,
}

impl Target {
    /// Splits `target` (origin form `/p?q`, or absolute form `https://h/p` as sent
    /// through a proxy, whose authority wins over `authority`).
    pub(crate) fn new(authority: Option<&str>, target: &str) -> Self {
        let (from_target, path) = split_absolute(target);
        let (host, port) = from_target
            .or(authority)
            .map(split_authority)
            .unwrap_or((None, None));
        let path = path.split(['?', '#']).next().unwrap_or_default();
        // A trailing slash does not change which API is meant (`/v1/messages/`).
        let segments = match path.trim_end_matches('/').strip_prefix('/') {
            Some(path) => path.split('/').map(percent_decode).collect(),
            // `*`, or an authority-form target: no path to match.
            None => Vec::new(),
        };
        Self {
            host,
            port,
            segments,
        }
    }
}

/// Splits an absolute-form target into (authority, path); an origin-form
/// target has no authority.
fn split_absolute(target: &str) -> (Option<&str>, &str) {
    let Some((scheme, rest)) = target.split_once("://") else {
        return (None, target);
    };
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return (None, target);
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let path = &rest[end..];
    (
        Some(&rest[..end]),
        if path.starts_with('/') { path } else { "/" },
    )
}

/// Splits `user@host:port` / `[v6]:port` into a lower-cased host and a port.
fn split_authority(authority: &str) -> (Option<String>, Option<u16>) {
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        // IPv6 literal: the port, if any, follows the closing bracket.
        match rest.split_once(']') {
            Some((v6, tail)) => (v6, tail.strip_prefix(':')),
            None => (rest, None),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            _ => (hostport, None),
        }
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let port = port.and_then(|p| p.parse::<u16>().ok());
    ((!host.is_empty()).then_some(host), port)
}

/// Decodes `%XX` escapes; malformed escapes are kept as they are and invalid
/// UTF-8 is replaced, because a path is evidence, not something to reject.
pub(crate) fn percent_decode(text: &str) -> String {
    if !text.contains('%') {
        return text.to_owned();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
impl HostPattern {
    /// A host this pattern matches (`*` → `x`), for tests over the catalogue.
    pub(crate) fn example(&self) -> String {
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|t| t.to_string().replace('*', "x"))
            .collect();
        labels.join(".")
    }
}

#[cfg(test)]
impl PathPattern {
    /// A path this pattern matches (`*` → `x`, `{model}` → `test-model`).
    pub(crate) fn example(&self) -> String {
        self.segments
            .iter()
            .map(|t| {
                format!(
                    "/{}",
                    t.to_string()
                        .replace('*', "x")
                        .replace(MODEL_CAPTURE, "test-model")
                )
            })
            .collect()
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Literal(l) => f.write_str(l),
            Self::Hole {
                prefix,
                suffix,
                capture,
            } => {
                let hole = if *capture { MODEL_CAPTURE } else { "*" };
                write!(f, "{prefix}{hole}{suffix}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(authority: Option<&str>, t: &str) -> Target {
        Target::new(authority, t)
    }

    #[test]
    fn host_wildcards_stay_within_one_label() {
        let p = HostPattern::parse("*.openai.azure.com").unwrap();
        assert!(p.matches("contoso.openai.azure.com"));
        assert!(!p.matches("openai.azure.com"));
        assert!(!p.matches("a.b.openai.azure.com"));
        let p = HostPattern::parse("bedrock-runtime.*.amazonaws.com").unwrap();
        assert!(p.matches("bedrock-runtime.us-east-1.amazonaws.com"));
        assert!(!p.matches("bedrock-runtime.amazonaws.com"));
        let p = HostPattern::parse("*-aiplatform.googleapis.com").unwrap();
        assert!(p.matches("us-central1-aiplatform.googleapis.com"));
        assert!(!p.matches("-aiplatform.googleapis.com"));
        assert!(!p.matches("aiplatform.googleapis.com"));
    }

    #[test]
    fn host_patterns_are_validated() {
        assert!(HostPattern::parse("").is_err());
        assert!(HostPattern::parse("a..b").is_err());
        assert!(HostPattern::parse("localhost:11434").is_err());
        assert!(HostPattern::parse("a{model}.b").is_err());
        assert!(HostPattern::parse("**.b").is_err());
        assert_eq!(
            HostPattern::parse("API.Example.COM").unwrap(),
            HostPattern::parse("api.example.com").unwrap()
        );
    }

    #[test]
    fn path_patterns_capture_the_model() {
        let p = PathPattern::parse("/v1beta/models/{model}:generateContent").unwrap();
        let t = target(
            None,
            "/v1beta/models/gemini-2.5-pro:generateContent?alt=sse",
        );
        assert_eq!(p.matches(&t.segments), Some(Some("gemini-2.5-pro".into())));
        let t = target(None, "/v1beta/models/:generateContent");
        assert_eq!(p.matches(&t.segments), None);
        let p = PathPattern::parse("/model/{model}/invoke").unwrap();
        let t = target(
            None,
            "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fus.x/invoke",
        );
        assert_eq!(
            p.matches(&t.segments),
            Some(Some(
                "arn:aws:bedrock:us-east-1:1:inference-profile/us.x".into()
            ))
        );
    }

    #[test]
    fn path_patterns_are_validated() {
        for bad in [
            "v1/messages",
            "/v1//messages",
            "/v1/messages?beta=true",
            "/models/{modle}",
            "/models/{model}/{model}",
            "/models/{model}*",
            "/models/model}",
        ] {
            assert!(PathPattern::parse(bad).is_err(), "{bad}");
        }
        let p = PathPattern::parse("/a/*/b/{model}:x").unwrap();
        assert_eq!(
            p.segments.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            ["a", "*", "b", "{model}:x"]
        );
    }

    #[test]
    fn authorities_and_targets_are_split() {
        let t = target(Some("LocalHost:11434"), "/api/chat/");
        assert_eq!(t.host.as_deref(), Some("localhost"));
        assert_eq!(t.port, Some(11434));
        assert_eq!(t.segments, ["api", "chat"]);
        let t = target(Some("[::1]:8080"), "/");
        assert_eq!((t.host.as_deref(), t.port), (Some("::1"), Some(8080)));
        let t = target(Some("api.openai.com."), "/v1/x#frag");
        assert_eq!((t.host.as_deref(), t.port), (Some("api.openai.com"), None));
        assert_eq!(t.segments, ["v1", "x"]);
        let t = target(
            Some("proxy:3128"),
            "https://user@api.anthropic.com:443/v1/messages?beta=true",
        );
        assert_eq!(
            (t.host.as_deref(), t.port),
            (Some("api.anthropic.com"), Some(443))
        );
        assert_eq!(t.segments, ["v1", "messages"]);
        let t = target(None, "http://example.com?x=1");
        assert_eq!(t.segments, Vec::<String>::new());
        let t = target(Some(""), "/");
        assert_eq!(t.host, None);
    }

    #[test]
    fn percent_decoding_is_lenient() {
        assert_eq!(percent_decode("a%3Ab%2f"), "a:b/");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
    }
}
