//! An order-preserving JSON tree for request bodies.
//!
//! `serde_json::Value` keeps object keys sorted (the workspace does not enable
//! `preserve_order`) and keeps only the last of duplicated keys; both would hide
//! what the client actually sent, in what order. [`Node`] keeps every member in
//! document order and drops numbers, which never become text.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::LlmError;

/// Deepest nesting of arrays and objects accepted. serde_json refuses more than
/// 127 levels itself; checking first gives the caller a precise error, and it
/// bounds the recursion of the walker that reads the tree.
pub(crate) const MAX_DEPTH: usize = 127;

/// A JSON value as the body walker needs it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    /// `null` or a number: never text.
    Scalar,
    /// A boolean (read for `stream`; never text).
    Bool(bool),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Node>),
    /// An object's members in document order, duplicates kept.
    Object(Vec<(String, Node)>),
}

impl Node {
    /// The first member `key`, if this is an object that has one.
    pub(crate) fn field(&self, key: &str) -> Option<&Node> {
        let Self::Object(members) = self else {
            return None;
        };
        members.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The string value of the first member `key`, if it is a string.
    pub(crate) fn str_field(&self, key: &str) -> Option<&str> {
        match self.field(key)? {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// The name of this value's JSON type, for error messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Scalar => "number or null",
            Self::Bool(_) => "boolean",
            Self::String(_) => "string",
            Self::Array(_) => "array",
            Self::Object(_) => "object",
        }
    }
}

/// Parses a body into a [`Node`], refusing bodies nested deeper than
/// [`MAX_DEPTH`] before serde_json sees them.
pub(crate) fn parse(body: &[u8]) -> Result<Node, LlmError> {
    parse_within(body, MAX_DEPTH)
}

/// Parses a JSON text into a [`Node`], refusing texts nested deeper than
/// `limit` (at most [`MAX_DEPTH`]) before serde_json sees them. The body
/// walker reads JSON documents found inside strings with this, giving each the
/// depth its enclosing document leaves, so that the nesting of both together
/// stays within [`MAX_DEPTH`].
pub(crate) fn parse_within(body: &[u8], limit: usize) -> Result<Node, LlmError> {
    let limit = limit.min(MAX_DEPTH);
    if nesting_depth(body) > limit {
        return Err(LlmError::TooDeep { limit });
    }
    let first = match serde_json::from_slice::<Node>(body) {
        Ok(node) => return Ok(node),
        Err(e) => e,
    };
    // JavaScript clients can send lone UTF-16 surrogates (`"\ud800"`), which
    // serde_json refuses in strings; one such character must not hide the rest
    // of the request, so replace them and try again.
    let cleaned = replace_lone_surrogates(body);
    if cleaned == body {
        return Err(malformed(&first));
    }
    serde_json::from_slice::<Node>(&cleaned).map_err(|e| malformed(&e))
}

/// A body error that says where and what kind, never quoting the body.
fn malformed(e: &serde_json::Error) -> LlmError {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Io => "read error",
        Category::Syntax => "syntax error",
        Category::Data => "unexpected data",
        Category::Eof => "unexpected end of input",
    };
    LlmError::Malformed {
        reason: format!("{what} at line {} column {}", e.line(), e.column()),
    }
}

/// The deepest nesting of `[`/`{` outside strings. Malformed input yields some
/// number; serde_json reports the malformation itself.
fn nesting_depth(body: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Rewrites `\uXXXX` escapes of unpaired UTF-16 surrogates as `\ufffd`.
fn replace_lone_surrogates(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let Some(unit) = unicode_escape(body, i) else {
            // Copy an ordinary byte, or a whole two-byte escape such as `\\`
            // so that its second byte is never read as the start of one.
            let n = if body[i] == b'\\' { 2 } else { 1 };
            out.extend_from_slice(&body[i..(i + n).min(body.len())]);
            i += n;
            continue;
        };
        let pair_low = unicode_escape(body, i + 6).filter(|u| (0xDC00..0xE000).contains(u));
        if (0xD800..0xDC00).contains(&unit) && pair_low.is_some() {
            out.extend_from_slice(&body[i..i + 12]);
            i += 12;
        } else if (0xD800..0xE000).contains(&unit) {
            out.extend_from_slice(b"\\ufffd");
            i += 6;
        } else {
            out.extend_from_slice(&body[i..i + 6]);
            i += 6;
        }
    }
    out
}

/// The code unit of a `\uXXXX` escape starting at `at`, if there is one.
fn unicode_escape(body: &[u8], at: usize) -> Option<u32> {
    let escape = body.get(at..at + 6)?;
    if &escape[..2] != b"\\u" {
        return None;
    }
    let hex = std::str::from_utf8(&escape[2..]).ok()?;
    u32::from_str_radix(hex, 16).ok()
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Node, E> {
        Ok(Node::Bool(b))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_str<E>(self, s: &str) -> Result<Node, E> {
        Ok(Node::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Node, E> {
        Ok(Node::String(s))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut members = Vec::new();
        while let Some(member) = map.next_entry::<String, Node>()? {
            members.push(member);
        }
        Ok(Node::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Node {
        Node::String(text.into())
    }

    #[test]
    fn keeps_order_and_duplicates_and_drops_scalars() {
        let node = parse(br#"{"z":"1","a":[true,2,null,"x"],"z":"2"}"#).unwrap();
        let expected = Node::Object(vec![
            ("z".into(), s("1")),
            (
                "a".into(),
                Node::Array(vec![Node::Bool(true), Node::Scalar, Node::Scalar, s("x")]),
            ),
            ("z".into(), s("2")),
        ]);
        assert_eq!(node, expected);
        assert_eq!(node.str_field("z"), Some("1"));
        assert_eq!(node.str_field("a"), None);
    }

    #[test]
    fn depth_is_bounded_before_parsing() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(ok.as_bytes()).is_ok());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(matches!(
            parse(deep.as_bytes()),
            Err(LlmError::TooDeep { .. })
        ));
        // Brackets inside strings (and escaped quotes) are not nesting.
        let text = format!(r#"{{"a":"\"{}"}}"#, "[".repeat(1000));
        assert!(parse(text.as_bytes()).is_ok());
        // Unclosed brackets are counted too: no stack overflow on a million `[`.
        let open = "[".repeat(1_000_000);
        assert!(matches!(
            parse(open.as_bytes()),
            Err(LlmError::TooDeep { .. })
        ));
    }

    #[test]
    fn depth_limits_below_the_maximum() {
        let three = b"[[[\"x\"]]]";
        assert!(parse_within(three, 3).is_ok());
        assert!(matches!(
            parse_within(three, 2),
            Err(LlmError::TooDeep { limit: 2 })
        ));
        assert!(matches!(
            parse_within(b"[]", 0),
            Err(LlmError::TooDeep { limit: 0 })
        ));
        // A limit above the maximum is the maximum.
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(matches!(
            parse_within(deep.as_bytes(), usize::MAX),
            Err(LlmError::TooDeep { limit: MAX_DEPTH })
        ));
    }

    #[test]
    fn lone_surrogates_become_replacement_characters() {
        let node =
            parse(br#"{"a":"x\ud800y","b":"\ud83d\ude00","c":"\\ud800","d":"\udc00"}"#).unwrap();
        assert_eq!(node.str_field("a"), Some("x\u{fffd}y"));
        assert_eq!(node.str_field("b"), Some("\u{1F600}"));
        assert_eq!(node.str_field("c"), Some("\\ud800"));
        assert_eq!(node.str_field("d"), Some("\u{fffd}"));
    }

    #[test]
    fn errors_do_not_quote_the_body() {
        let err = parse(br#"{"secret-hostname": tru}"#)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("secret"), "{err}");
        assert!(err.contains("line 1"), "{err}");
        assert!(parse(b"").is_err());
        assert!(parse(b"{} x").is_err());
        assert!(parse(b"\xff").is_err());
    }
}
