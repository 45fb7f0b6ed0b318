//! Tracking identifiers: tokens in request text that look like they name this
//! user, machine or installation, and a store that remembers (as keyed hashes)
//! which of them a client keeps sending to a destination.
//!
//! [`find`] is the cheap, stateless half: it scans a text part for UUIDs and
//! high-entropy tokens (API keys, session ids, device ids). A hit alone is weak
//! evidence — requests also carry commit hashes and content digests.
//!
//! [`IdentStore`] is the stateful half that turns candidates into evidence: the
//! same token sent by the same client to the same destination from another
//! process instance or another sensor session is a *persistent* identifier
//! (something stored on disk and replayed), and a field that a new build of a
//! client starts sending is worth a look. The store never holds a token's
//! plaintext, only the keyed hash the caller computed.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fs, io,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::detect::rules::IdentifierKind;

// ---------------------------------------------------------------------------
// Token scanning
// ---------------------------------------------------------------------------

/// Shortest token (after trimming separators) considered for high entropy:
/// shorter random strings are too common in ordinary text (short hashes,
/// abbreviations) and carry too few bits to identify anything.
pub const MIN_TOKEN_LEN: usize = 20;
/// Fewest hex digits for a hex token to count: 96 bits and up; shorter hex is
/// mostly abbreviated commit hashes and colours.
pub const MIN_HEX_LEN: usize = 24;
/// Longest token considered: longer runs are inline data (base64 images and
/// files), not identifiers, and scoring them would flag every attachment.
pub const MAX_TOKEN_LEN: usize = 1024;
/// Minimum Shannon entropy, bits per character, of a hex token.
pub const HEX_MIN_BITS: f32 = 3.0;
/// Minimum entropy of a mixed-case alphanumeric (base62/base64) token.
pub const MIXED_MIN_BITS: f32 = 4.0;
/// Minimum entropy of a single-case alphanumeric (base32/base36) token: its
/// alphabet is smaller, so a random one scores lower than a base64 token.
pub const SINGLE_CASE_MIN_BITS: f32 = 3.5;
/// A token of `n` characters cannot exceed `log2(n)` bits per character; short
/// random tokens are held to this fraction of that ceiling instead of the
/// alphabet threshold, which they would often miss by chance.
const SHORT_TOKEN_FACTOR: f32 = 0.85;
/// A run of more identical characters than this marks placeholders and
/// padding (`AAAAAAAA`, `00000000`); random tokens practically never have one.
const MAX_REPEAT_RUN: usize = 5;
/// Word-likeness is judged only with at least this many letter pairs.
const WORDY_MIN_PAIRS: usize = 5;
/// Share of letter pairs that are common English bigrams from which a token is
/// taken for words (identifiers such as `getUser2FAStatus`). Random letters hit
/// the bigram table about 11% of the time, words about half the time.
const WORDY_RATIO: f32 = 0.4;
/// Length of a dashed UUID.
const UUID_LEN: usize = 36;

/// An identifier-like token found by [`find`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IdentHit {
    /// [`IdentifierKind::Uuid`] or [`IdentifierKind::HighEntropy`].
    pub kind: IdentifierKind,
    /// Byte offset of the token's first character (a char boundary).
    pub start: usize,
    /// Byte offset just past its last character (a char boundary).
    pub end: usize,
    /// Shannon entropy of the token, bits per character (for a UUID, of its 32
    /// hex digits).
    pub entropy: f32,
}

/// Appends to `out`, in text order, every UUID and high-entropy token of `text`.
///
/// Tokens are maximal runs of `[A-Za-z0-9_\-+/=.]`. A dashed UUID (any version,
/// either case) is found anywhere in a run where it is not glued to further
/// letters or digits; a 32-digit hex string counts as a UUID only when it is a
/// whole token. The rest of a run is split at `key=value` signs (and, for
/// paths, at `/`) and each piece is scored; see the module constants for the
/// thresholds. JSON escapes before a token (`\n`, `\u0022`) are not part of it.
///
/// Runs in time linear in `text.len()`; offsets always fall on ASCII bytes or
/// the end of the text, so they are char boundaries.
pub fn find(text: &str, out: &mut Vec<IdentHit>) {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if !is_token_byte(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && is_token_byte(b[i]) {
            i += 1;
        }
        scan_run(b, skip_escape(b, start, i), i, out);
    }
}

fn is_token_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'+' | b'/' | b'=' | b'.')
}

/// Skips a JSON escape that the run starts with: in `\nabc` the run begins at
/// `n`, which belongs to the escape, not to the token. An escape is a letter
/// after an odd number of backslashes (`\\n` is a backslash and a plain `n`).
fn skip_escape(b: &[u8], start: usize, end: usize) -> usize {
    let backslashes = b[..start].iter().rev().take_while(|&&c| c == b'\\').count();
    if backslashes % 2 == 0 {
        return start;
    }
    match b[start] {
        b'u' if end - start >= 5 && b[start + 1..start + 5].iter().all(u8::is_ascii_hexdigit) => {
            start + 5
        }
        b'n' | b'r' | b't' | b'b' | b'f' | b'u' | b'/' => start + 1,
        _ => start,
    }
}

/// Finds the UUIDs of one run and scores the pieces between them.
fn scan_run(b: &[u8], start: usize, end: usize, out: &mut Vec<IdentHit>) {
    let mut piece_start = start;
    let mut i = start;
    while i + UUID_LEN <= end {
        let glued_left = i > start && b[i - 1].is_ascii_alphanumeric();
        let glued_right = i + UUID_LEN < end && b[i + UUID_LEN].is_ascii_alphanumeric();
        if !glued_left && !glued_right && is_uuid(&b[i..i + UUID_LEN]) {
            let entropy = hex_digit_entropy(&b[i..i + UUID_LEN]);
            // The nil and max UUIDs (one digit repeated) name nothing.
            if entropy > 0.0 {
                scan_segment(b, piece_start, i, out);
                out.push(IdentHit {
                    kind: IdentifierKind::Uuid,
                    start: i,
                    end: i + UUID_LEN,
                    entropy,
                });
                i += UUID_LEN;
                piece_start = i;
                continue;
            }
        }
        i += 1;
    }
    scan_segment(b, piece_start, end, out);
}

/// `8-4-4-4-12` hex digits, any version and case.
fn is_uuid(t: &[u8]) -> bool {
    t.len() == UUID_LEN
        && t.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn hex_digit_entropy(t: &[u8]) -> f32 {
    let mut counts = [0u32; 16];
    let mut n = 0;
    for c in t {
        if let Some(d) = (*c as char).to_digit(16) {
            counts[d as usize] += 1;
            n += 1;
        }
    }
    entropy_of(&counts, n)
}

/// Splits a segment at `=` signs that are not trailing base64 padding, so that
/// `session=abc…` scores `abc…` alone.
fn scan_segment(b: &[u8], start: usize, end: usize, out: &mut Vec<IdentHit>) {
    let mut piece_start = start;
    let mut i = start;
    while i < end {
        if b[i] == b'=' {
            let mut j = i;
            while j < end && b[j] == b'=' {
                j += 1;
            }
            if j < end {
                scan_piece(b, piece_start, i, out);
                piece_start = j;
            }
            i = j;
        } else {
            i += 1;
        }
    }
    scan_piece(b, piece_start, end, out);
}

/// Scores one piece; a path is scored segment by segment, so that a random
/// directory name inside it is still found but the path itself is not.
fn scan_piece(b: &[u8], start: usize, end: usize, out: &mut Vec<IdentHit>) {
    let (start, end) = trim(b, start, end);
    if end - start < MIN_TOKEN_LEN {
        return;
    }
    let t = &b[start..end];
    // `https://host/path` reaches here as `//host/path`: a URL, not an id.
    if t.starts_with(b"//") || starts_with_ignore_case(t, b"http") {
        return;
    }
    if !is_path_like(t) {
        out.extend(classify(b, start, end));
        return;
    }
    let mut seg_start = start;
    for i in start..=end {
        if i == end || b[i] == b'/' {
            let (s, e) = trim(b, seg_start, i);
            out.extend(classify(b, s, e));
            seg_start = i + 1;
        }
    }
}

/// Drops dots around a piece (`token.` at the end of a sentence). `-` and `_`
/// stay: base64url tokens may begin or end with them.
fn trim(b: &[u8], mut start: usize, mut end: usize) -> (usize, usize) {
    while start < end && b[start] == b'.' {
        start += 1;
    }
    while end > start && b[end - 1] == b'.' {
        end -= 1;
    }
    (start, end)
}

fn starts_with_ignore_case(t: &[u8], prefix: &[u8]) -> bool {
    t.len() >= prefix.len() && t[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// A path has a `/` and at least one segment that is a word (`usr`, `src`,
/// `main.rs`, `Documents`). Base64 also contains `/`, but its segments are
/// long and mixed; a `+` (base64, rarely in paths) rules a path out.
fn is_path_like(t: &[u8]) -> bool {
    memchr::memchr(b'/', t).is_some()
        && !t.contains(&b'+')
        && t.split(|&c| c == b'/').any(is_word_segment)
}

fn is_word_segment(s: &[u8]) -> bool {
    if s.len() < 3 || !s[0].is_ascii_alphabetic() {
        return false;
    }
    if !s
        .iter()
        .all(|c| c.is_ascii_alphabetic() || matches!(c, b'.' | b'-' | b'_'))
    {
        return false;
    }
    let upper_after_first = s[1..].iter().any(u8::is_ascii_uppercase);
    let all_upper = !s.iter().any(u8::is_ascii_lowercase);
    // lowercase, Capitalised or ALL CAPS — not the random case of base64
    !upper_after_first || all_upper
}

/// Character classes of a token.
#[derive(Default)]
struct Classes {
    upper: usize,
    lower: usize,
    digits: usize,
    /// `+` and `/`: base64 symbols.
    symbols: usize,
    /// Letters outside `a-f`/`A-F`.
    non_hex_letters: usize,
}

impl Classes {
    fn of(t: &[u8]) -> Self {
        let mut c = Self::default();
        for &x in t {
            match x {
                b'A'..=b'Z' => c.upper += 1,
                b'a'..=b'z' => c.lower += 1,
                b'0'..=b'9' => c.digits += 1,
                b'+' | b'/' => c.symbols += 1,
                _ => {}
            }
            if x.is_ascii_alphabetic() && !x.is_ascii_hexdigit() {
                c.non_hex_letters += 1;
            }
        }
        c
    }

    fn letters(&self) -> usize {
        self.upper + self.lower
    }
}

/// Decides whether the token `b[start..end]` is an identifier.
fn classify(b: &[u8], start: usize, end: usize) -> Option<IdentHit> {
    let t = &b[start..end];
    if t.len() < MIN_TOKEN_LEN || t.len() > MAX_TOKEN_LEN || is_version(t) {
        return None;
    }
    let classes = Classes::of(t);
    // Numbers and timestamps have no letters; words and identifiers such as
    // `handleUserAuthenticationRequest` have nothing but letters.
    if classes.letters() == 0 || (classes.digits == 0 && classes.symbols == 0) {
        return None;
    }
    if longest_repeat(t) > MAX_REPEAT_RUN {
        return None;
    }
    let entropy = entropy(t);
    let hit = |kind| {
        Some(IdentHit {
            kind,
            start,
            end,
            entropy,
        })
    };
    if classes.non_hex_letters == 0 && classes.symbols == 0 {
        let hex_digits = classes.digits + classes.letters();
        if entropy < HEX_MIN_BITS || hex_digits < MIN_HEX_LEN || is_hex_text(t) {
            return None;
        }
        // An undashed UUID (or a machine-id, which has the same shape).
        let kind = if t.len() == 32 && hex_digits == 32 {
            IdentifierKind::Uuid
        } else {
            IdentifierKind::HighEntropy
        };
        return hit(kind);
    }
    if is_wordy(t) || is_separated_words(t) || is_base64_text(t) {
        return None;
    }
    let alphabet_bits = if classes.upper > 0 && classes.lower > 0 {
        MIXED_MIN_BITS
    } else {
        SINGLE_CASE_MIN_BITS
    };
    let threshold = alphabet_bits.min(SHORT_TOKEN_FACTOR * (t.len() as f32).log2());
    if entropy >= threshold {
        hit(IdentifierKind::HighEntropy)
    } else {
        None
    }
}

/// `1.2.3…`, `v1.2.3-beta.4+build.5`: a version, whatever follows.
fn is_version(t: &[u8]) -> bool {
    let t = match t.first() {
        Some(b'v' | b'V') => &t[1..],
        _ => t,
    };
    let digits = t.iter().take_while(|c| c.is_ascii_digit()).count();
    digits > 0 && t.get(digits) == Some(&b'.') && t.get(digits + 1).is_some_and(u8::is_ascii_digit)
}

fn longest_repeat(t: &[u8]) -> usize {
    let mut longest = 0;
    let mut run = 0;
    let mut prev = None;
    for &c in t {
        run = if prev == Some(c) { run + 1 } else { 1 };
        prev = Some(c);
        longest = longest.max(run);
    }
    longest
}

/// Shannon entropy of the bytes of `t`, bits per character.
fn entropy(t: &[u8]) -> f32 {
    let mut counts = [0u32; 128];
    for &c in t {
        counts[usize::from(c & 0x7f)] += 1;
    }
    entropy_of(&counts, t.len())
}

fn entropy_of(counts: &[u32], n: usize) -> f32 {
    if n == 0 {
        return 0.0;
    }
    let n = n as f32;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f32 / n;
            -p * p.log2()
        })
        .sum()
}

/// Common English bigrams (Norvig's top list plus frequent ones in code
/// identifiers): about 11% of random letter pairs, half of a word's.
const COMMON_BIGRAMS: [&[u8; 2]; 76] = [
    b"th", b"he", b"in", b"er", b"an", b"re", b"on", b"at", b"en", b"nd", b"ti", b"es", b"or",
    b"te", b"of", b"ed", b"is", b"it", b"al", b"ar", b"st", b"to", b"nt", b"ng", b"se", b"ha",
    b"as", b"ou", b"io", b"le", b"ve", b"co", b"me", b"de", b"hi", b"ri", b"ro", b"ic", b"ne",
    b"ea", b"ra", b"ce", b"li", b"ch", b"ll", b"be", b"ma", b"si", b"om", b"ur", b"el", b"ca",
    b"la", b"ut", b"ta", b"et", b"us", b"ge", b"pe", b"ec", b"pr", b"no", b"ct", b"di", b"fo",
    b"ho", b"lo", b"un", b"ac", b"ad", b"tr", b"mo", b"po", b"ol", b"id", b"ss",
];

/// Row `a` has bit `b` set when the bigram `(a, b)` is common.
const BIGRAM_TABLE: [u32; 26] = {
    let mut table = [0u32; 26];
    let mut i = 0;
    while i < COMMON_BIGRAMS.len() {
        let [a, b] = *COMMON_BIGRAMS[i];
        table[(a - b'a') as usize] |= 1 << (b - b'a');
        i += 1;
    }
    table
};

/// Made of words: enough adjacent letter pairs and many of them common in
/// English (`x86_64-unknown-linux-gnu`, `getUser2FAStatusForAccount`).
fn is_wordy(t: &[u8]) -> bool {
    let mut pairs = 0usize;
    let mut common = 0usize;
    for w in t.windows(2) {
        if w[0].is_ascii_alphabetic() && w[1].is_ascii_alphabetic() {
            pairs += 1;
            let a = w[0].to_ascii_lowercase() - b'a';
            let b = w[1].to_ascii_lowercase() - b'a';
            if BIGRAM_TABLE[usize::from(a)] & (1 << b) != 0 {
                common += 1;
            }
        }
    }
    pairs >= WORDY_MIN_PAIRS && common as f32 >= WORDY_RATIO * pairs as f32
}

/// Words joined by separators (`x86_64-unknown-linux-gnu`, slugs, host names,
/// form-encoded `SMP+PREEMPT_DYNAMIC+Debian`): at least two separators, and
/// most letters in pieces that are a word of three or more letters, perhaps
/// with a number after it (`amd64`, `glibc2`). Random base64 rarely has two
/// separators, and its pieces mix letters and digits throughout.
fn is_separated_words(t: &[u8]) -> bool {
    let is_sep = |c: &u8| matches!(c, b'-' | b'_' | b'.' | b'+');
    if t.iter().filter(|c| is_sep(c)).count() < 2 {
        return false;
    }
    let letters = t.iter().filter(|c| c.is_ascii_alphabetic()).count();
    let in_words: usize = t.split(is_sep).map(word_letters).sum();
    in_words * 4 >= letters * 3
}

/// The letters of `piece` when it is a word of three or more letters followed
/// by nothing or by digits only; otherwise 0.
fn word_letters(piece: &[u8]) -> usize {
    let letters = piece.iter().take_while(|c| c.is_ascii_alphabetic()).count();
    let rest_digits = piece[letters..].iter().all(u8::is_ascii_digit);
    if letters >= 3 && rest_digits {
        letters
    } else {
        0
    }
}

/// Hex of printable text (`4575726f70652f4265726c696e` is `Europe/Berlin`):
/// encoded prose, which the host-fact matcher looks at, not an identifier.
fn is_hex_text(t: &[u8]) -> bool {
    let digits: Vec<u32> = t.iter().filter_map(|c| (*c as char).to_digit(16)).collect();
    digits.len() >= 16
        && digits.len().is_multiple_of(2)
        && digits.as_chunks::<2>().0.iter().all(|[hi, lo]| {
            let byte = hi << 4 | lo;
            (0x20..0x7f).contains(&byte) || matches!(byte, 0x09 | 0x0a | 0x0d)
        })
}

/// Base64 (standard or URL-safe) of printable text — encoded prose, not an
/// identifier. Text that decodes to JSON is kept: a JWT-style payload is one.
fn is_base64_text(t: &[u8]) -> bool {
    let body = t
        .strip_suffix(b"==")
        .or_else(|| t.strip_suffix(b"="))
        .unwrap_or(t);
    let mut acc = 0u32;
    let mut bits = 0u32;
    let mut decoded = 0usize;
    let mut first = None;
    for &c in body {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return false,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            let byte = (acc >> bits) as u8;
            acc &= (1 << bits) - 1;
            if !(byte.is_ascii_graphic() || matches!(byte, b' ' | b'\t' | b'\n' | b'\r')) {
                return false;
            }
            first.get_or_insert(byte);
            decoded += 1;
        }
    }
    decoded >= 8 && !matches!(first, Some(b'{' | b'['))
}

/// Normalises a JSON path for field comparison: array indices become `[*]`,
/// so `$.messages[3].content[0].text` is `$.messages[*].content[*].text`.
pub fn normalise_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..=open]);
        let after = &rest[open + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && after.as_bytes().get(digits) == Some(&b']') {
            out.push('*');
            rest = &after[digits..];
        } else {
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

// ---------------------------------------------------------------------------
// Identifier store
// ---------------------------------------------------------------------------

/// Instances and sessions remembered per token (most recent kept).
pub const MAX_SEEN_PER_TOKEN: usize = 64;
/// Field paths remembered per (exe, destination, build).
pub const MAX_FIELDS_PER_BUILD: usize = 4096;
/// Builds remembered per (exe, destination) (oldest evicted).
pub const MAX_BUILDS: usize = 64;
/// Field paths remembered per token, as evidence of where it travels.
const MAX_FIELDS_PER_TOKEN: usize = 8;
/// (exe, destination) pairs whose field history is kept (least recently seen
/// evicted): a bound against a client that talks to ever new hosts.
const MAX_FIELD_SCOPES: usize = 4096;
/// Version of the persistence format.
const STORE_VERSION: u32 = 1;

/// The client a request came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientKey {
    /// Executable path.
    pub exe: String,
    /// ELF build-id or sha256 of the executable; empty when unknown.
    pub build: String,
}

/// Why a token is a persistent identifier: this client sent it to this
/// destination before, from another process instance or sensor session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recurrence {
    /// When the token was first seen (Unix seconds).
    pub first_seen_unix: i64,
    /// Remembered instances, other than the current one, that sent it.
    pub other_instances: usize,
    /// Remembered sensor sessions, other than the current one, that saw it.
    pub other_sessions: usize,
    /// Times seen, this one included.
    pub count: u64,
}

/// Fields a new build of a client sends that its previous build never did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFields {
    /// The build this client ran before.
    pub previous_build: String,
    /// Normalised field paths new in this build, sorted.
    pub fields: Vec<String>,
}

/// Loading or saving the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file could not be read or written.
    #[error("identifier store {}: {source}", path.display())]
    Io {
        /// The store file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The file is not a store this version understands.
    #[error("identifier store {} is unreadable: {reason}", path.display())]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// Index of an interned (exe, destination) pair.
type ScopeId = u32;
/// A token as stored: scope and keyed hash.
type TokenKey = (ScopeId, [u8; 32]);

#[derive(Debug, Clone)]
struct TokenEntry {
    first_seen: i64,
    last_seen: i64,
    count: u64,
    /// Position in the recency order (`IdentStore::lru`).
    tick: u64,
    instances: Vec<String>,
    sessions: Vec<String>,
    fields: Vec<String>,
}

/// The field paths of one build of a client, towards one destination.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct BuildFields {
    build: String,
    /// The build this client ran when this one first appeared.
    predecessor: Option<String>,
    first_seen: i64,
    last_seen: i64,
    fields: BTreeSet<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct BuildHistory {
    exe: String,
    destination: String,
    last_seen: i64,
    /// The build seen last.
    current: String,
    /// Oldest first.
    builds: Vec<BuildFields>,
}

/// Bounded, persistent memory of the identifiers and fields each client sends
/// to each destination.
///
/// Tokens are keyed by executable and destination but not by build, so that an
/// identifier a client keeps across updates still recurs. Field history is kept
/// per build, to see what a new build adds.
#[derive(Debug)]
pub struct IdentStore {
    path: Option<PathBuf>,
    max_entries: usize,
    scopes: Vec<(String, String)>,
    scope_ids: HashMap<String, HashMap<String, ScopeId>>,
    tokens: HashMap<TokenKey, TokenEntry>,
    /// Tokens by recency, least recent first.
    lru: BTreeMap<u64, TokenKey>,
    tick: u64,
    histories: HashMap<(String, String), BuildHistory>,
    dirty: bool,
}

impl IdentStore {
    /// Opens the store persisted at `path`, holding at most `max_entries`
    /// tokens. A missing file gives an empty store; an unreadable or corrupt
    /// one an error naming the file and the reason.
    pub fn open(path: &Path, max_entries: usize) -> Result<Self, StoreError> {
        let mut store = Self::in_memory(max_entries);
        store.path = Some(path.to_owned());
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(store),
            Err(source) => {
                return Err(StoreError::Io {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let corrupt = |reason: String| StoreError::Corrupt {
            path: path.to_owned(),
            reason,
        };
        let file = parse_file(&bytes).map_err(corrupt)?;
        store.load(file).map_err(corrupt)?;
        Ok(store)
    }

    /// A store that is never persisted ([`flush`](Self::flush) does nothing).
    pub fn in_memory(max_entries: usize) -> Self {
        Self {
            path: None,
            max_entries,
            scopes: Vec::new(),
            scope_ids: HashMap::new(),
            tokens: HashMap::new(),
            lru: BTreeMap::new(),
            tick: 0,
            histories: HashMap::new(),
            dirty: false,
        }
    }

    /// Records that `token` (a keyed hash, never the plaintext) was seen in a
    /// request of `client` to `destination` at JSON path `field`, from process
    /// instance `instance` (pid and start time) in sensor session `session`.
    ///
    /// Returns a [`Recurrence`] when the same client sent the same token to the
    /// same destination before from another instance or another session: a
    /// persistent identifier. Repeats within one instance and session are not
    /// (a conversation re-sends its history with every request).
    #[allow(clippy::too_many_arguments)] // the brief's signature: every argument is a distinct fact
    pub fn observe_token(
        &mut self,
        client: &ClientKey,
        destination: &str,
        field: &str,
        token: [u8; 32],
        instance: &str,
        session: &str,
        now_unix: i64,
    ) -> Option<Recurrence> {
        let key = (self.scope_id(&client.exe, destination), token);
        self.tick += 1;
        let tick = self.tick;
        self.dirty = true;
        let field = normalise_path(field);
        let Some(entry) = self.tokens.get_mut(&key) else {
            let entry = TokenEntry {
                first_seen: now_unix,
                last_seen: now_unix,
                count: 1,
                tick,
                instances: vec![instance.to_owned()],
                sessions: vec![session.to_owned()],
                fields: vec![field],
            };
            self.tokens.insert(key, entry);
            self.lru.insert(tick, key);
            self.evict_tokens();
            return None;
        };
        let other_instances = entry.instances.iter().filter(|i| *i != instance).count();
        let other_sessions = entry.sessions.iter().filter(|s| *s != session).count();
        self.lru.remove(&entry.tick);
        self.lru.insert(tick, key);
        entry.tick = tick;
        entry.count = entry.count.saturating_add(1);
        entry.last_seen = entry.last_seen.max(now_unix);
        remember(&mut entry.instances, instance, MAX_SEEN_PER_TOKEN);
        remember(&mut entry.sessions, session, MAX_SEEN_PER_TOKEN);
        remember(&mut entry.fields, &field, MAX_FIELDS_PER_TOKEN);
        (other_instances > 0 || other_sessions > 0).then_some(Recurrence {
            first_seen_unix: entry.first_seen,
            other_instances,
            other_sessions,
            count: entry.count,
        })
    }

    /// Records the field paths (normalised by [`normalise_path`]) a request of
    /// `client` to `destination` carried. Returns the fields this build sends
    /// that the build before it never sent — each once, on the first request of
    /// the new build that carries it. The first build seen has nothing to be
    /// compared with, and a client whose build is unknown (empty) is not
    /// tracked.
    pub fn observe_fields(
        &mut self,
        client: &ClientKey,
        destination: &str,
        fields: &[String],
        now_unix: i64,
    ) -> Option<NewFields> {
        if client.build.is_empty() {
            return None;
        }
        self.dirty = true;
        let key = (client.exe.clone(), destination.to_owned());
        if !self.histories.contains_key(&key) {
            self.evict_histories();
        }
        let history = self.histories.entry(key).or_insert_with(|| BuildHistory {
            exe: client.exe.clone(),
            destination: destination.to_owned(),
            last_seen: now_unix,
            current: client.build.clone(),
            builds: Vec::new(),
        });
        history.last_seen = history.last_seen.max(now_unix);
        let index = build_index(history, &client.build, now_unix);
        history.current = client.build.clone();
        let fields: BTreeSet<String> = fields.iter().map(|f| normalise_path(f)).collect();
        let build = &history.builds[index];
        let previous = build
            .predecessor
            .as_ref()
            .and_then(|p| history.builds.iter().find(|b| &b.build == p));
        let new: Vec<String> = match previous {
            Some(prev) => fields
                .iter()
                .filter(|f| !build.fields.contains(*f) && !prev.fields.contains(*f))
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        let previous_build = previous.map(|p| p.build.clone());
        let build = &mut history.builds[index];
        build.last_seen = build.last_seen.max(now_unix);
        let mut reported = Vec::new();
        for field in fields {
            if build.fields.len() >= MAX_FIELDS_PER_BUILD {
                break;
            }
            build.fields.insert(field);
        }
        // A field the full set could not take would be reported again on
        // every request; only those now remembered are reported.
        for field in new {
            if build.fields.contains(&field) {
                reported.push(field);
            }
        }
        match previous_build {
            Some(previous_build) if !reported.is_empty() => Some(NewFields {
                previous_build,
                fields: reported,
            }),
            _ => None,
        }
    }

    /// Writes the store to its file atomically (temporary file in the same
    /// directory, fsync, rename), readable by the owner only. A store made by
    /// [`in_memory`](Self::in_memory) has no file and this does nothing.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        let Some(path) = self.path.clone() else {
            self.dirty = false;
            return Ok(());
        };
        let json = serde_json::to_vec(&self.to_file()).map_err(|e| StoreError::Io {
            path: path.clone(),
            source: io::Error::other(e),
        })?;
        crate::state::write_atomic(&path, &json)
            .map_err(|source| StoreError::Io { path, source })?;
        self.dirty = false;
        Ok(())
    }

    /// Whether anything changed since the store was opened or last flushed.
    pub fn dirty(&self) -> bool {
        self.dirty
    }

    fn scope_id(&mut self, exe: &str, destination: &str) -> ScopeId {
        if let Some(id) = self.scope_ids.get(exe).and_then(|d| d.get(destination)) {
            return *id;
        }
        // Scopes are never dropped while running; there is one per client and
        // destination pair, and saving writes only those still holding tokens.
        let id = ScopeId::try_from(self.scopes.len()).unwrap_or(ScopeId::MAX);
        self.scopes.push((exe.to_owned(), destination.to_owned()));
        self.scope_ids
            .entry(exe.to_owned())
            .or_default()
            .insert(destination.to_owned(), id);
        id
    }

    /// Evicts the least recently seen tokens beyond `max_entries`.
    fn evict_tokens(&mut self) {
        while self.tokens.len() > self.max_entries {
            let Some((_, key)) = self.lru.pop_first() else {
                break;
            };
            self.tokens.remove(&key);
        }
    }

    /// Makes room for one more field history by dropping the least recently
    /// seen one (rare: a linear scan is fine).
    fn evict_histories(&mut self) {
        while self.histories.len() >= MAX_FIELD_SCOPES {
            let Some(oldest) = self
                .histories
                .iter()
                .min_by_key(|(_, h)| h.last_seen)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.histories.remove(&oldest);
        }
    }

    fn to_file(&self) -> StoreFile {
        let tokens = self
            .lru
            .values()
            .filter_map(|key| {
                let entry = self.tokens.get(key)?;
                let (exe, destination) = self.scopes.get(key.0 as usize)?;
                Some(TokenRecord {
                    exe: exe.clone(),
                    destination: destination.clone(),
                    token: to_hex(&key.1),
                    first_seen: entry.first_seen,
                    last_seen: entry.last_seen,
                    count: entry.count,
                    instances: entry.instances.clone(),
                    sessions: entry.sessions.clone(),
                    fields: entry.fields.clone(),
                })
            })
            .collect();
        let mut clients: Vec<BuildHistory> = self.histories.values().cloned().collect();
        clients.sort_by(|a, b| (&a.exe, &a.destination).cmp(&(&b.exe, &b.destination)));
        StoreFile {
            version: STORE_VERSION,
            tokens,
            clients,
        }
    }

    /// Fills an empty store from a parsed file, enforcing the bounds (the file
    /// may come from a run with larger limits).
    fn load(&mut self, file: StoreFile) -> Result<(), String> {
        for (n, record) in file.tokens.into_iter().enumerate() {
            let token = from_hex(&record.token)
                .ok_or_else(|| format!("token {n} is not a 64-digit hex hash"))?;
            let key = (self.scope_id(&record.exe, &record.destination), token);
            self.tick += 1;
            if let Some(old) = self.tokens.get(&key) {
                self.lru.remove(&old.tick);
            }
            self.lru.insert(self.tick, key);
            self.tokens.insert(
                key,
                TokenEntry {
                    first_seen: record.first_seen,
                    last_seen: record.last_seen,
                    count: record.count,
                    tick: self.tick,
                    instances: keep_last(record.instances, MAX_SEEN_PER_TOKEN),
                    sessions: keep_last(record.sessions, MAX_SEEN_PER_TOKEN),
                    fields: keep_last(record.fields, MAX_FIELDS_PER_TOKEN),
                },
            );
        }
        self.evict_tokens();
        for mut history in file.clients {
            history.builds = keep_last(history.builds, MAX_BUILDS);
            for build in &mut history.builds {
                if build.fields.len() > MAX_FIELDS_PER_BUILD {
                    build.fields = std::mem::take(&mut build.fields)
                        .into_iter()
                        .take(MAX_FIELDS_PER_BUILD)
                        .collect();
                }
            }
            if !self
                .histories
                .contains_key(&(history.exe.clone(), history.destination.clone()))
            {
                self.evict_histories();
            }
            self.histories
                .insert((history.exe.clone(), history.destination.clone()), history);
        }
        Ok(())
    }
}

/// The index of `build` in `history`, adding it (after the current build,
/// evicting the oldest beyond [`MAX_BUILDS`]) when new.
fn build_index(history: &mut BuildHistory, build: &str, now_unix: i64) -> usize {
    if let Some(i) = history.builds.iter().position(|b| b.build == build) {
        return i;
    }
    let predecessor = (!history.builds.is_empty()).then(|| history.current.clone());
    history.builds.push(BuildFields {
        build: build.to_owned(),
        predecessor,
        first_seen: now_unix,
        last_seen: now_unix,
        fields: BTreeSet::new(),
    });
    if history.builds.len() > MAX_BUILDS {
        history.builds.remove(0);
    }
    history.builds.len() - 1
}

/// Moves `item` to the end of `list` (most recent), dropping the oldest
/// beyond `cap`.
fn remember(list: &mut Vec<String>, item: &str, cap: usize) {
    if let Some(i) = list.iter().position(|x| x == item) {
        let existing = list.remove(i);
        list.push(existing);
        return;
    }
    list.push(item.to_owned());
    if list.len() > cap {
        list.drain(..list.len() - cap);
    }
}

fn keep_last<T>(mut list: Vec<T>, cap: usize) -> Vec<T> {
    if list.len() > cap {
        list.drain(..list.len() - cap);
    }
    list
}

/// The persisted form. Tokens are listed least recently seen first, so that a
/// reload restores the eviction order.
#[derive(Debug, Serialize, Deserialize)]
struct StoreFile {
    version: u32,
    #[serde(default)]
    tokens: Vec<TokenRecord>,
    #[serde(default)]
    clients: Vec<BuildHistory>,
}

#[derive(Debug, Serialize, Deserialize)]
struct TokenRecord {
    exe: String,
    destination: String,
    /// Hex of the keyed hash; the plaintext is never stored.
    token: String,
    first_seen: i64,
    last_seen: i64,
    count: u64,
    #[serde(default)]
    instances: Vec<String>,
    #[serde(default)]
    sessions: Vec<String>,
    #[serde(default)]
    fields: Vec<String>,
}

/// Parses a store file, checking the version first so that a file from a
/// newer sensor says so instead of failing on its shape.
fn parse_file(bytes: &[u8]) -> Result<StoreFile, String> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    match value.get("version").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(STORE_VERSION) => {}
        Some(v) => {
            return Err(format!(
                "unsupported version {v} (this sensor reads {STORE_VERSION})"
            ));
        }
        None => return Err("no version field".to_owned()),
    }
    serde_json::from_value(value).map_err(|e| format!("bad contents: {e}"))
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

fn from_hex(s: &str) -> Option<[u8; 32]> {
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, [hi, lo]) in s.as_chunks::<2>().0.iter().enumerate() {
        let hi = (*hi as char).to_digit(16)?;
        let lo = (*lo as char).to_digit(16)?;
        out[i] = u8::try_from(hi << 4 | lo).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;
    use crate::state::TempDir;

    fn found(text: &str) -> Vec<(IdentifierKind, &str)> {
        let mut hits = Vec::new();
        find(text, &mut hits);
        hits.iter()
            .map(|h| (h.kind, &text[h.start..h.end]))
            .collect()
    }

    fn nothing_in(text: &str) {
        assert_eq!(found(text), vec![], "in {text:?}");
    }

    const UUID: &str = "550e8400-e29b-41d4-a716-446655440000";

    #[test]
    fn uuids_in_prose_and_json() {
        let prose = format!("Your device id is {UUID}. Keep it.");
        assert_eq!(found(&prose), vec![(IdentifierKind::Uuid, UUID)]);
        let upper = UUID.to_ascii_uppercase();
        assert_eq!(
            found(&format!("id={upper}")),
            vec![(IdentifierKind::Uuid, upper.as_str())]
        );
        // JSON-escaped inside a JSON string: quotes, newline and \u escapes.
        let escaped = format!(r#"{{"metadata":"{{\"user_id\":\"{UUID}\"}}\n{UUID}\u0022{UUID}"}}"#);
        let hits = found(&escaped);
        assert_eq!(hits.len(), 3, "{hits:?}");
        assert!(hits.iter().all(|h| *h == (IdentifierKind::Uuid, UUID)));
        // Prefixed, as clients write them.
        assert_eq!(
            found(&format!("user_{UUID}")),
            vec![(IdentifierKind::Uuid, UUID)]
        );
        // v7 and v4, from real generators.
        for u in [
            "01890a5d-ac96-774b-bcce-b302099a8057",
            "9b2f6c1e-3d4a-4f8b-9c7e-1a2b3c4d5e6f",
        ] {
            assert_eq!(found(u), vec![(IdentifierKind::Uuid, u)]);
        }
    }

    #[test]
    fn glued_or_nil_uuids_are_not_uuids() {
        nothing_in(&format!("x{UUID}"));
        nothing_in("00000000-0000-0000-0000-000000000000");
    }

    #[test]
    fn undashed_hex_only_as_whole_token() {
        let machine_id = "4c4c4544003957108052b4c04f384833";
        assert_eq!(
            found(&format!("machine {machine_id}.")),
            vec![(IdentifierKind::Uuid, machine_id)]
        );
        assert_eq!(
            found(&format!("id=\"{machine_id}\"")),
            vec![(IdentifierKind::Uuid, machine_id)]
        );
        // Part of a longer hex run: a hash, not a UUID.
        let longer = format!("{machine_id}abcd1234");
        assert_eq!(
            found(&longer),
            vec![(IdentifierKind::HighEntropy, longer.as_str())]
        );
        // Too short for hex.
        nothing_in("commit 4c4c4544003957108052");
    }

    #[test]
    fn keys_and_session_tokens_are_found() {
        for token in [
            "sk-ant-api03-R2D2c3poX9kLmN4pQ7rS1tUvW8xYz0AbCdEfGhIj-KlMnOpQrStUv",
            "ghp_4Xb9QmZ2kR7tLp1vN8wJc3sYd6fHg0aEiUoK",
            "AKIAZ4X7Q2LMB9RTW3VK",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            "dGhpcyBpcyBub3QgdGV4dA+/Zk3Q9xLm2Pq8Rw7Tv1Ns5Ku4Jb0Hc6Gd3Fe",
            "k3j5h2l9m8n7b6v5c4x3z1q0w9",
            "8f14e45fceea167a5a36dedd4bea2543b5e1e9a4c1d2",
        ] {
            let text = format!("\"token\": \"{token}\"");
            assert_eq!(
                found(&text),
                vec![(IdentifierKind::HighEntropy, token)],
                "{token}"
            );
        }
        // A random directory name inside a path is still found.
        let p = "/home/dev/.cache/app/3f9a2b7c8d1e4f6a5b0c9d8e7f6a5b4c3d2e1f0a/state";
        assert_eq!(
            found(p),
            vec![(
                IdentifierKind::HighEntropy,
                "3f9a2b7c8d1e4f6a5b0c9d8e7f6a5b4c3d2e1f0a"
            )]
        );
        // key=value: the value alone.
        assert_eq!(
            found("session_id=Zk3Q9xLm2Pq8Rw7Tv1Ns5Ku4"),
            vec![(IdentifierKind::HighEntropy, "Zk3Q9xLm2Pq8Rw7Tv1Ns5Ku4")]
        );
    }

    #[test]
    fn ordinary_text_is_not_an_identifier() {
        for text in [
            "The quick brown fox jumps over the lazy dog, repeatedly and enthusiastically.",
            "Please refactor /home/dev/project/src/main.rs and src/detect/ident.rs today.",
            "/usr/lib/x86_64-linux-gnu/libssl.so.3",
            "See https://docs.example.com/guides/authentication/overview?tab=2 for details",
            "http://localhost:8080/api/v1/completions/streaming",
            "version 1.22.3-beta.4+build.20240115.sha.5114f85 and v12.4.1-rc.3",
            "aaaaaaaaaaaaaaaaaaaaaaaa 000000000000000000000000000",
            "SGVsbG8sIFdvcmxkISBIb3cgYXJlIHlvdT8=",
            "handleUserAuthenticationRequest getUser2FAStatusForAccountId",
            "SOME_CONSTANT_NAME_V2 test_case_123_validates_input_v2 x86_64-unknown-linux-gnu",
            "ip-172-31-45-67.ec2.internal my-app-v2-production-deployment-42",
            "2024-01-15T10:30:00.123456789Z 1705312200123456789 20240115T103000Z",
            "api.anthropic.com claude-3-5-sonnet-20241022 gpt-4o-2024-08-06",
            "---------------------------------------- ========================",
            "data:image/png;base64,", // empty payload
            "Linux-6.1.0-18-amd64-x86_64-with-glibc2.36 web7.eu.corp.example",
            "uname=231+SMP+PREEMPT_DYNAMIC+Debian+6.1.76-1+(2024-02-01)",
            "4575726f70652f4265726c696e 7B226B223A2275736572222C2276223A22616C696365227D",
        ] {
            nothing_in(text);
        }
    }

    #[test]
    fn inline_data_blobs_are_skipped() {
        let blob: String = (0..4000u32)
            .map(|i| char::from(b"aZ3+/k9Q"[(i * 7 % 8) as usize]))
            .collect();
        nothing_in(&blob);
    }

    #[test]
    fn offsets_survive_multibyte_text() {
        let text = format!("é→{UUID}ü ключ=Zk3Q9xLm2Pq8Rw7Tv1Ns5Ku4 日本");
        let hits = found(&text);
        assert_eq!(
            hits,
            vec![
                (IdentifierKind::Uuid, UUID),
                (IdentifierKind::HighEntropy, "Zk3Q9xLm2Pq8Rw7Tv1Ns5Ku4")
            ]
        );
    }

    #[test]
    fn paths_are_normalised() {
        assert_eq!(
            normalise_path("$.messages[3].content[0].text"),
            "$.messages[*].content[*].text"
        );
        assert_eq!(normalise_path("$.a[\"k\"][12]"), "$.a[\"k\"][*]");
        assert_eq!(normalise_path("header:x-id"), "header:x-id");
        assert_eq!(normalise_path("$.a[1x][2"), "$.a[1x][2");
    }

    proptest::proptest! {
        #[test]
        fn find_never_panics_and_offsets_are_boundaries(text in "\\PC*|[a-f0-9\\-\\\\=/+._ ]{0,200}|(\\\\u00[0-9]{2})?.{0,80}") {
            let mut hits = Vec::new();
            find(&text, &mut hits);
            for h in hits {
                proptest::prop_assert!(h.start < h.end && h.end <= text.len());
                proptest::prop_assert!(text.is_char_boundary(h.start) && text.is_char_boundary(h.end));
            }
        }

        #[test]
        fn normalise_path_never_panics(path in "\\PC*|[\\[\\]0-9a-z.$]{0,40}") {
            let _ = normalise_path(&path);
        }
    }

    /// Random tokens of every common alphabet are found (a few short ones miss
    /// by chance: no digit, a word-like run, low sample entropy).
    #[test]
    fn random_tokens_are_found() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let lower = "abcdefghijklmnopqrstuvwxyz";
        let upper = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
        for (alphabet, len, max_missed) in [
            (format!("0123456789{lower}"), 20, 60),
            (format!("0123456789{lower}{upper}"), 20, 80),
            (format!("0123456789{lower}{upper}-_"), 32, 20),
            (format!("0123456789{lower}{upper}+/"), 32, 20),
            ("0123456789abcdef".to_owned(), 24, 10),
            (format!("234567{upper}"), 32, 10),
        ] {
            let alphabet = alphabet.as_bytes();
            let mut missed = 0;
            for _ in 0..1000 {
                let token: String = (0..len)
                    .map(|_| char::from(alphabet[(next() % alphabet.len() as u64) as usize]))
                    .collect();
                let mut hits = Vec::new();
                find(&token, &mut hits);
                missed += usize::from(hits.is_empty());
            }
            assert!(
                missed <= max_missed,
                "{missed}/1000 of length {len} over {alphabet:?}"
            );
        }
    }

    // ---- store --------------------------------------------------------

    fn client(build: &str) -> ClientKey {
        ClientKey {
            exe: "/usr/bin/agent".into(),
            build: build.into(),
        }
    }

    const DEST: &str = "api.example.com";

    fn tok(n: u8) -> [u8; 32] {
        [n; 32]
    }

    #[test]
    fn recurrence_across_instances_and_sessions_only() {
        let mut s = IdentStore::in_memory(100);
        let c = client("b1");
        let f = "$.metadata.user_id";
        assert_eq!(
            s.observe_token(&c, DEST, f, tok(1), "10@1", "s1", 100),
            None
        );
        // Same instance and session: a conversation re-sending its history.
        assert_eq!(
            s.observe_token(&c, DEST, f, tok(1), "10@1", "s1", 101),
            None
        );
        let r = s
            .observe_token(&c, DEST, f, tok(1), "11@5", "s1", 102)
            .expect("another instance");
        assert_eq!(
            r,
            Recurrence {
                first_seen_unix: 100,
                other_instances: 1,
                other_sessions: 0,
                count: 3
            }
        );
        let r = s
            .observe_token(&c, DEST, f, tok(1), "11@5", "s2", 103)
            .expect("another session");
        assert_eq!((r.other_instances, r.other_sessions, r.count), (1, 1, 4));
        // Another destination or another client is another scope.
        assert_eq!(
            s.observe_token(&c, "other.example", f, tok(1), "12@6", "s3", 104),
            None
        );
        let other = ClientKey {
            exe: "/usr/bin/other".into(),
            build: "b1".into(),
        };
        assert_eq!(
            s.observe_token(&other, DEST, f, tok(1), "13@7", "s3", 105),
            None
        );
        // A new build of the same exe keeps its identifier: still recurs.
        assert!(
            s.observe_token(&client("b2"), DEST, f, tok(1), "14@8", "s3", 106)
                .is_some()
        );
        assert!(s.dirty());
    }

    #[test]
    fn tokens_are_bounded_least_recently_seen_first() {
        let mut s = IdentStore::in_memory(3);
        let c = client("b");
        for n in 1..=3 {
            s.observe_token(&c, DEST, "$.x", tok(n), "1@1", "s", i64::from(n));
        }
        // Touch 1 so that 2 is the least recent, then add 4.
        s.observe_token(&c, DEST, "$.x", tok(1), "1@1", "s", 4);
        s.observe_token(&c, DEST, "$.x", tok(4), "1@1", "s", 5);
        assert_eq!(s.tokens.len(), 3);
        assert!(
            s.observe_token(&c, DEST, "$.x", tok(2), "2@2", "s", 6)
                .is_none(),
            "2 was evicted"
        );
        assert!(
            s.observe_token(&c, DEST, "$.x", tok(1), "2@2", "s", 7)
                .is_some(),
            "1 was kept"
        );
        assert_eq!(s.tokens.len(), 3);
        assert_eq!(s.lru.len(), 3);
    }

    #[test]
    fn instances_and_sessions_per_token_are_bounded() {
        let mut s = IdentStore::in_memory(10);
        let c = client("b");
        for i in 0..200 {
            s.observe_token(
                &c,
                DEST,
                "$.x",
                tok(1),
                &format!("{i}@1"),
                &format!("s{i}"),
                i,
            );
        }
        let r = s
            .observe_token(&c, DEST, "$.x", tok(1), "new@1", "new", 300)
            .expect("recurs");
        assert_eq!(
            (r.other_instances, r.other_sessions, r.count),
            (64, 64, 201)
        );
        let entry = s.tokens.values().next().expect("one token");
        assert_eq!((entry.instances.len(), entry.sessions.len()), (64, 64));
        assert_eq!(entry.instances.last().map(String::as_str), Some("new@1"));
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn new_fields_of_a_new_build() {
        let mut s = IdentStore::in_memory(10);
        let base = strings(&["$.model", "$.messages[0].content", "$.messages[1].content"]);
        assert_eq!(
            s.observe_fields(&client("b1"), DEST, &base, 1),
            None,
            "first build"
        );
        assert_eq!(
            s.observe_fields(&client("b1"), DEST, &base, 2),
            None,
            "same build"
        );
        let mut more = base.clone();
        more.push("$.metadata.device_id".into());
        assert_eq!(
            s.observe_fields(&client("b1"), DEST, &more, 3),
            None,
            "same build, more fields"
        );
        more.push("$.metadata.install[0].id".into());
        let new = s
            .observe_fields(&client("b2"), DEST, &more, 4)
            .expect("new build");
        assert_eq!(
            new,
            NewFields {
                previous_build: "b1".into(),
                fields: vec!["$.metadata.install[*].id".into()]
            }
        );
        // Reported once; later fields of the same build still are.
        assert_eq!(s.observe_fields(&client("b2"), DEST, &more, 5), None);
        more.push("$.telemetry".into());
        let new = s
            .observe_fields(&client("b2"), DEST, &more, 6)
            .expect("later field");
        assert_eq!(new.fields, vec!["$.telemetry".to_owned()]);
        // Unknown builds are not tracked; another destination starts afresh.
        assert_eq!(
            s.observe_fields(&client(""), DEST, &strings(&["$.zzz"]), 7),
            None
        );
        assert_eq!(
            s.observe_fields(&client("b3"), "other.example", &more, 8),
            None
        );
    }

    #[test]
    fn builds_and_fields_are_bounded() {
        let mut s = IdentStore::in_memory(10);
        for b in 0..100 {
            s.observe_fields(&client(&format!("b{b}")), DEST, &strings(&["$.a"]), b);
        }
        let many: Vec<String> = (0..5000).map(|i| format!("$.f{i}")).collect();
        s.observe_fields(&client("b99"), DEST, &many, 200);
        let history = s.histories.values().next().expect("one history");
        assert_eq!(history.builds.len(), MAX_BUILDS);
        assert_eq!(
            history.builds.first().map(|b| b.build.as_str()),
            Some("b36")
        );
        assert!(
            history
                .builds
                .iter()
                .all(|b| b.fields.len() <= MAX_FIELDS_PER_BUILD)
        );
        assert_eq!(
            history.builds.last().map(|b| b.fields.len()),
            Some(MAX_FIELDS_PER_BUILD)
        );
        // A full build reports only what it remembers, so nothing repeats.
        let extra = strings(&["$.overflow"]);
        assert_eq!(s.observe_fields(&client("b99"), DEST, &extra, 201), None);
    }

    #[test]
    fn persistence_round_trip() {
        let dir = TempDir::new("ident-roundtrip");
        let path = dir.path().join("idents.json");
        let mut s = IdentStore::open(&path, 10).expect("missing file is empty");
        assert!(!s.dirty());
        let c = client("b1");
        s.observe_token(&c, DEST, "$.metadata.user_id", tok(7), "1@1", "s1", 50);
        s.observe_fields(&c, DEST, &strings(&["$.model"]), 50);
        s.flush().expect("flush");
        assert!(!s.dirty());

        let text = fs::read_to_string(&path).expect("written");
        assert!(text.contains("\"version\":1"));
        assert!(text.contains(&"07".repeat(32)), "token as hex of its hash");
        let mode = fs::metadata(&path).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let leftovers = fs::read_dir(dir.path()).expect("dir").count();
        assert_eq!(leftovers, 1, "no temporary file left behind");

        let mut again = IdentStore::open(&path, 10).expect("reopen");
        let r = again
            .observe_token(&c, DEST, "$.metadata.user_id", tok(7), "2@2", "s2", 60)
            .expect("recurs");
        assert_eq!(
            (
                r.first_seen_unix,
                r.other_instances,
                r.other_sessions,
                r.count
            ),
            (50, 1, 1, 2)
        );
        let new = again.observe_fields(&client("b2"), DEST, &strings(&["$.model", "$.device"]), 60);
        assert_eq!(new.map(|n| n.fields), Some(vec!["$.device".to_owned()]));
        again.flush().expect("second flush");
        assert_eq!(
            fs::metadata(&path).expect("metadata").permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn reopening_with_a_smaller_bound_keeps_the_most_recent() {
        let dir = TempDir::new("ident-shrink");
        let path = dir.path().join("idents.json");
        let mut s = IdentStore::open(&path, 10).expect("open");
        for n in 1..=5 {
            s.observe_token(&client("b"), DEST, "$.x", tok(n), "1@1", "s1", i64::from(n));
        }
        s.flush().expect("flush");
        let mut small = IdentStore::open(&path, 2).expect("reopen");
        assert_eq!(small.tokens.len(), 2);
        assert!(
            small
                .observe_token(&client("b"), DEST, "$.x", tok(5), "2@2", "s2", 9)
                .is_some()
        );
        assert!(
            small
                .observe_token(&client("b"), DEST, "$.x", tok(4), "2@2", "s2", 9)
                .is_some()
        );
        assert!(
            small
                .observe_token(&client("b"), DEST, "$.x", tok(1), "2@2", "s2", 9)
                .is_none()
        );
    }

    #[test]
    fn corrupt_files_are_errors_naming_the_file() {
        let dir = TempDir::new("ident-corrupt");
        let path = dir.path().join("idents.json");
        for (contents, reason) in [
            ("{not json", "not JSON"),
            (r#"{"tokens":[]}"#, "no version"),
            (r#"{"version":99}"#, "unsupported version 99"),
            (
                r#"{"version":1,"tokens":[{"exe":"e","destination":"d","token":"zz","first_seen":1,"last_seen":1,"count":1}]}"#,
                "hex",
            ),
            (r#"{"version":1,"tokens":7}"#, "bad contents"),
        ] {
            fs::write(&path, contents).expect("write");
            let err = IdentStore::open(&path, 10).expect_err(contents).to_string();
            assert!(err.contains(&path.display().to_string()), "{err}");
            assert!(err.contains(reason), "{err}");
        }
    }

    #[test]
    fn in_memory_flush_does_nothing() {
        let mut s = IdentStore::in_memory(1);
        s.observe_token(&client("b"), DEST, "$.x", tok(1), "1@1", "s", 1);
        assert!(s.dirty());
        s.flush().expect("nothing to write");
        assert!(!s.dirty());
    }
}
