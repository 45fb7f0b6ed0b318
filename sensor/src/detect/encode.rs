//! The spellings of a fact value a client could send: raw, JSON-escaped,
//! URL-encoded, base64 at each of the three byte alignments, hex, and — for UTC
//! offsets — the usual offset notations. Case-folded matches are found by the
//! case-insensitive automaton and labelled when the text differs from the value.

use base64::Engine as _;
use serde::Serialize;

use crate::facts::{Fact, FactKind};

/// How a value was written where it was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// As the host has it.
    Raw,
    /// In another letter case.
    CaseFolded,
    /// JSON string escapes (`\/`, `\u002f`, …) inside a string that itself held JSON.
    JsonEscaped,
    /// Percent-encoded (`%2F`), as in URLs and form bodies.
    UrlEncoded,
    /// Inside base64 (standard or URL-safe alphabet), at any byte alignment.
    Base64,
    /// Hexadecimal bytes (either case).
    Hex,
    /// A UTC offset notation (`+01:00`, `UTC+1`, `GMT+0100`, …).
    UtcOffset,
}

/// One needle to look for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needle {
    /// The bytes to find.
    pub text: String,
    /// How they encode the value.
    pub encoding: Encoding,
    /// Find them in any ASCII case.
    pub fold_case: bool,
    /// A match must not continue a word on either side (`alice` not in `malice`).
    pub word_bounded: bool,
}

/// Shortest value looked for at all, and shortest encoded needle: shorter ones
/// match by chance.
pub const MIN_VALUE_LEN: usize = 3;
const MIN_ENCODED_LEN: usize = 8;

/// Kinds whose values are the same thing in any letter case.
fn folds_case(kind: FactKind) -> bool {
    matches!(
        kind,
        FactKind::Hostname
            | FactKind::Fqdn
            | FactKind::Proxy
            | FactKind::NoProxy
            | FactKind::MachineId
            | FactKind::BootId
            | FactKind::DmiUuid
            | FactKind::DmiSerial
            | FactKind::Mac
            | FactKind::Timezone
            | FactKind::User
    )
}

/// Every needle for `fact`, without duplicates.
pub fn needles(fact: &Fact) -> Vec<Needle> {
    let v = fact.value.as_str();
    let mut out: Vec<Needle> = Vec::new();
    if fact.kind == FactKind::UtcOffset {
        if let Ok(minutes) = v.parse::<i32>() {
            for text in offset_spellings(minutes) {
                push(&mut out, text, Encoding::UtcOffset, false, true);
            }
        }
        return out;
    }
    if v.len() < MIN_VALUE_LEN {
        return out;
    }
    let fold = folds_case(fact.kind);
    push(&mut out, v.to_owned(), Encoding::Raw, fold, true);
    if fact.kind == FactKind::Mac {
        // Windows and some tools write MACs with dashes or without separators.
        push(&mut out, v.replace(':', "-"), Encoding::Raw, true, true);
        push(&mut out, v.replace(':', ""), Encoding::Raw, true, true);
    }
    if fact.kind == FactKind::MachineId && v.len() == 32 {
        let dashed = format!(
            "{}-{}-{}-{}-{}",
            &v[..8],
            &v[8..12],
            &v[12..16],
            &v[16..20],
            &v[20..]
        );
        push(&mut out, dashed, Encoding::Raw, true, true);
    }
    for escaped in json_escapes(v) {
        push(&mut out, escaped, Encoding::JsonEscaped, fold, true);
    }
    for encoded in url_encodings(v) {
        push(&mut out, encoded, Encoding::UrlEncoded, fold, true);
    }
    if v.len() >= 6 {
        for b64 in base64_forms(v.as_bytes()) {
            push(&mut out, b64, Encoding::Base64, false, false);
        }
    }
    if v.len() >= 4 && !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        let hex: String = v.bytes().map(|b| format!("{b:02x}")).collect();
        push(&mut out, hex, Encoding::Hex, true, false);
    }
    out
}

fn push(
    out: &mut Vec<Needle>,
    text: String,
    encoding: Encoding,
    fold_case: bool,
    word_bounded: bool,
) {
    let min = match encoding {
        Encoding::Raw | Encoding::UtcOffset => MIN_VALUE_LEN,
        _ => MIN_ENCODED_LEN,
    };
    if text.len() < min || out.iter().any(|n| n.text == text) {
        return;
    }
    out.push(Needle {
        text,
        encoding,
        fold_case,
        word_bounded,
    });
}

/// The value as it reads inside a JSON string inside a JSON string: quotes and
/// backslashes escaped, and the optional `\/` and `\u00XX` forms of `/`.
fn json_escapes(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let basic = serde_json::to_string(v).unwrap_or_default();
    let basic = basic
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or_default()
        .to_owned();
    if basic != v {
        out.push(basic.clone());
    }
    if basic.contains('/') {
        out.push(basic.replace('/', "\\/"));
        out.push(basic.replace('/', "\\u002f"));
        out.push(basic.replace('/', "\\u002F"));
    }
    // JSON inside a string inside a string (a stringified context blob that was
    // stringified again) escapes every escape once more.
    let once: Vec<String> = out.clone();
    for e in once {
        let twice = serde_json::to_string(&e).unwrap_or_default();
        if let Some(t) = twice.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
            out.push(t.to_owned());
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Percent-encodings as `encodeURIComponent` and form encoding write them.
fn url_encodings(v: &str) -> Vec<String> {
    let component: String = v
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    let mut out = Vec::new();
    if component != v {
        out.push(component.clone());
        let form = component.replace("%20", "+");
        if form != component {
            out.push(form);
        }
    }
    out
}

/// The base64 characters that encode `value` wherever it sits in a longer
/// plaintext: for each alignment of its first byte (offset 0, 1 or 2 modulo 3),
/// only the characters whose six bits all come from `value`.
fn base64_forms(value: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for align in 0..3usize {
        let mut buf = vec![0u8; align];
        buf.extend_from_slice(value);
        let enc = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&buf);
        let first_bit = align * 8;
        let end_bit = (align + value.len()) * 8;
        let start = first_bit.div_ceil(6);
        let end = end_bit / 6;
        if end > start {
            let inner = &enc[start..end];
            out.push(inner.to_owned());
            let url_safe = inner.replace('+', "-").replace('/', "_");
            if url_safe != inner {
                out.push(url_safe);
            }
        }
    }
    out
}

/// Notations of a UTC offset of `minutes` east of UTC.
pub fn offset_spellings(minutes: i32) -> Vec<String> {
    let sign = if minutes < 0 { '-' } else { '+' };
    let (h, m) = (minutes.unsigned_abs() / 60, minutes.unsigned_abs() % 60);
    let mut out = vec![
        format!("{sign}{h:02}:{m:02}"),
        format!("{sign}{h:02}{m:02}"),
        format!("UTC{sign}{h:02}:{m:02}"),
        format!("GMT{sign}{h:02}:{m:02}"),
        format!("GMT{sign}{h:02}{m:02}"),
    ];
    if m == 0 {
        out.push(format!("UTC{sign}{h}"));
        out.push(format!("GMT{sign}{h}"));
    } else {
        out.push(format!("UTC{sign}{h}:{m:02}"));
        out.push(format!("GMT{sign}{h}:{m:02}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::Strength;

    fn fact(kind: FactKind, value: &str) -> Fact {
        Fact {
            kind,
            name: "test".into(),
            value: value.into(),
            strength: Strength::Strong,
        }
    }

    #[test]
    fn base64_needles_are_found_at_every_alignment() {
        let value = "proxy.corp.example:3128";
        let needles = needles(&fact(FactKind::Proxy, value));
        let b64: Vec<_> = needles
            .iter()
            .filter(|n| n.encoding == Encoding::Base64)
            .collect();
        for prefix in ["", "x", "xy", "xyz", "hello world, "] {
            for suffix in ["", "!", "!!", "!!!"] {
                let text = format!("{prefix}{value}{suffix}");
                let enc = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
                assert!(
                    b64.iter().any(|n| enc.contains(&n.text)),
                    "{prefix:?}+{suffix:?}: {enc}"
                );
            }
        }
    }

    #[test]
    fn escapes_and_percent_encodings() {
        let n = needles(&fact(FactKind::Timezone, "Europe/Berlin"));
        let has = |t: &str, e: Encoding| n.iter().any(|x| x.text == t && x.encoding == e);
        assert!(has("Europe/Berlin", Encoding::Raw));
        assert!(has("Europe\\/Berlin", Encoding::JsonEscaped));
        assert!(has("Europe%2FBerlin", Encoding::UrlEncoded));
        assert!(has("4575726f70652f4265726c696e", Encoding::Hex));
    }

    #[test]
    fn offsets_have_the_usual_spellings() {
        assert!(offset_spellings(60).contains(&"UTC+1".to_owned()));
        assert!(offset_spellings(60).contains(&"+01:00".to_owned()));
        assert!(offset_spellings(-300).contains(&"GMT-0500".to_owned()));
        assert!(offset_spellings(330).contains(&"UTC+5:30".to_owned()));
    }

    #[test]
    fn short_values_have_no_needles_and_ids_get_their_dashed_form() {
        assert!(needles(&fact(FactKind::User, "ab")).is_empty());
        let id = needles(&fact(
            FactKind::MachineId,
            "4c4c4544003457108052b4c04f384d32",
        ));
        assert!(
            id.iter()
                .any(|n| n.text == "4c4c4544-0034-5710-8052-b4c04f384d32")
        );
        // A hex value is not hex-encoded again.
        assert!(!id.iter().any(|n| n.encoding == Encoding::Hex));
    }
}
