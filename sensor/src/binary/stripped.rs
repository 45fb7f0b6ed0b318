//! Finding OpenSSL's and BoringSSL's TLS functions inside statically linked,
//! stripped x86-64 ELF executables, where no symbol names them.
//!
//! A stripped executable that embeds a TLS library still carries the library's
//! error-reporting fingerprints. Every error site loads the address of its
//! source file's name (`OPENSSL_PUT_ERROR` in BoringSSL passes `__FILE__`,
//! e.g. `../../vendor/boringssl/ssl/ssl_lib.cc`; OpenSSL 3's `ERR_raise` passes
//! `OPENSSL_FILE` and the enclosing function's `__func__`, e.g. `"SSL_write"`)
//! next to constant library and reason codes. [`discover`] finds those strings,
//! the instructions that load their addresses, the functions that hold those
//! instructions, and then applies rules derived from the libraries' sources
//! (each documented where it is applied) to name `SSL_write`, `SSL_read` and
//! their companions.
//!
//! Correctness comes first: a wrong address would put a probe in the middle of
//! some other function. Every rule must produce exactly one candidate, every
//! candidate is an instruction boundary at a validated function entry, and a
//! required function that cannot be pinned down is reported as an error naming
//! it rather than guessed.
//!
//! Work is bounded: one `memmem` pass per needle over the loadable segments, one
//! `memchr` pass over the executable segments for address-loading instructions,
//! a few more for the direct calls of specific functions, and only the
//! functions holding a reference or such a call are disassembled (about 0.1 s
//! for a 107 MB Bun executable).
//!
//! [`known`] holds results for specific builds keyed by GNU build-id, and
//! [`Cache`] remembers analyses across runs so that a 100 MB executable is
//! analysed once per build; [`resolve`] combines the three.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::OnceLock;

use iced_x86::{
    Decoder, DecoderOptions, FlowControl, Instruction, InstructionInfoFactory, Mnemonic, OpAccess,
    OpKind, Register,
};
use object::{Object, ObjectSection, ObjectSegment, SegmentFlags};
use serde::{Deserialize, Serialize};

/// Which TLS library an executable embeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Library {
    /// OpenSSL 3.x.
    OpenSsl,
    /// BoringSSL (as vendored by Bun, among others).
    BoringSsl,
}

/// The function through which a client sets the TLS server name (SNI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sni {
    /// OpenSSL's `long SSL_ctrl(SSL *ssl, int cmd, long larg, void *parg)`; the
    /// name is set with `cmd == SSL_CTRL_SET_TLSEXT_HOSTNAME` (55), `parg` = name.
    SslCtrl(u64),
    /// BoringSSL's `int SSL_set_tlsext_host_name(SSL *ssl, const char *name)`.
    SetHostName(u64),
}

impl Sni {
    /// Virtual address of the function's entry.
    pub fn vaddr(self) -> u64 {
        match self {
            Sni::SslCtrl(a) | Sni::SetHostName(a) => a,
        }
    }
}

/// TLS functions located in an executable. Addresses are virtual addresses of
/// function entries; [`file_offset`] converts them to uprobe offsets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Found {
    /// The embedded library.
    pub library: Library,
    /// `int SSL_write(SSL *ssl, const void *buf, int num)`.
    pub ssl_write: u64,
    /// `int SSL_read(SSL *ssl, void *buf, int num)`.
    pub ssl_read: u64,
    /// `int SSL_write_ex(SSL *ssl, const void *buf, size_t num, size_t *written)`
    /// (OpenSSL only).
    pub ssl_write_ex: Option<u64>,
    /// `int SSL_read_ex(SSL *ssl, void *buf, size_t num, size_t *readbytes)`
    /// (OpenSSL only).
    pub ssl_read_ex: Option<u64>,
    /// `void SSL_free(SSL *ssl)`: the end of a connection.
    pub ssl_free: Option<u64>,
    /// The server-name setter.
    pub sni: Option<Sni>,
    /// One line saying how the functions were found, for `telltale targets`.
    pub method: String,
}

impl Found {
    /// Every located address, required ones first.
    pub fn addresses(&self) -> Vec<u64> {
        let mut all = vec![self.ssl_write, self.ssl_read];
        all.extend(self.ssl_write_ex);
        all.extend(self.ssl_read_ex);
        all.extend(self.ssl_free);
        all.extend(self.sni.map(Sni::vaddr));
        all
    }
}

/// Why an executable could not be analysed, or why a library found in it could
/// not be mapped.
#[derive(Debug, thiserror::Error)]
pub enum StrippedError {
    /// The bytes are not an ELF file `object` can parse.
    #[error("not a readable ELF file: {0}")]
    Parse(#[from] object::Error),
    /// Only x86-64 machine code is analysed.
    #[error("{0} executables are not analysed (x86-64 only)")]
    UnsupportedArchitecture(String),
    /// The library is present but one of its required functions has no single
    /// candidate; nothing is guessed.
    #[error("{library:?} is embedded but {function} was not identified: {reason}")]
    NotIdentified {
        /// The library whose fingerprints were found.
        library: Library,
        /// The function that could not be pinned down.
        function: &'static str,
        /// What the analysis saw (no candidate, or the competing candidates).
        reason: String,
    },
    /// A bound on the analysis' work was reached (hostile or unusual input):
    /// candidates may have been missed, so no result is trusted.
    #[error("analysis bounds reached: {0}")]
    Bounds(&'static str),
    /// An earlier analysis of the same build failed (remembered by [`Cache`]).
    #[error("analysis of this build failed before: {0}")]
    Cached(String),
}

// ---------------------------------------------------------------------------
// Public entry points
// ---------------------------------------------------------------------------

/// The GNU build-id (`NT_GNU_BUILD_ID` note) of an ELF file, in lower-case hex.
pub fn build_id(data: &[u8]) -> Option<String> {
    let file = object::File::parse(data).ok()?;
    let id = file.build_id().ok()??;
    if id.is_empty() {
        return None;
    }
    Some(id.iter().map(|b| format!("{b:02x}")).collect())
}

/// Converts a virtual address to the file offset a uprobe attaches at, through
/// the executable's loadable segments.
pub fn file_offset(data: &[u8], vaddr: u64) -> Option<u64> {
    let file = object::File::parse(data).ok()?;
    file.segments().find_map(|seg| {
        let (off, size) = seg.file_range();
        let delta = vaddr.checked_sub(seg.address())?;
        (delta < size).then(|| off.checked_add(delta)).flatten()
    })
}

/// Analyses an x86-64 ELF executable that does not export `SSL_write`/`SSL_read`
/// by name.
///
/// `Ok(None)`: neither OpenSSL 3 nor BoringSSL is embedded (their source-file
/// strings are absent or never referenced by code). `Err(NotIdentified)`: a
/// library is embedded but a required function has no single candidate.
pub fn discover(data: &[u8]) -> Result<Option<Found>, StrippedError> {
    let image = Image::parse(data)?;
    let mut analysis = Analysis::new(image);
    let boring = boringssl::discover(&mut analysis)?;
    let open = openssl::discover(&mut analysis)?;
    if analysis.image.truncated.get() {
        return Err(StrippedError::Bounds(
            "too many string occurrences, references or functions to examine",
        ));
    }
    match (boring, open) {
        (Some(found), None) | (None, Some(found)) => Ok(Some(found)),
        (None, None) => Ok(None),
        (Some(b), Some(o)) => Err(StrippedError::NotIdentified {
            library: Library::BoringSsl,
            function: "SSL_write",
            reason: format!(
                "both BoringSSL (SSL_write {:#x}) and OpenSSL (SSL_write {:#x}) are embedded; \
                 which one carries the traffic is unknown",
                b.ssl_write, o.ssl_write
            ),
        }),
    }
}

/// Results shipped with the sensor for specific builds, keyed by build-id; see
/// [`KNOWN_TABLE`] for how each entry was validated.
///
/// A Bun `--compile`d executable is the Bun runtime with the application
/// appended: it keeps the runtime's build-id and its code bytes at the same
/// addresses, so an entry for a Bun release covers every application compiled
/// with it.
pub fn known(build_id: &str) -> Option<Found> {
    known_table()
        .iter()
        .find(|k| k.build_id.eq_ignore_ascii_case(build_id))
        .map(|k| k.found.clone())
}

/// Finds the TLS functions of an executable the cheapest way that is safe:
/// the [`known`] table, then `cache`, then [`discover`] (whose result, found or
/// not, is inserted into `cache`; the caller saves it).
///
/// Results from the table or the cache are used only if the code bytes at each
/// address still match the fingerprint taken when they were established, so a
/// rebuilt file that kept its build-id, or a forged build-id, falls back to
/// analysis instead of misplacing probes.
pub fn resolve(data: &[u8], cache: &mut Cache) -> Result<Option<Found>, StrippedError> {
    let Some(id) = build_id(data) else {
        return discover(data);
    };
    if let Some(entry) = known_table().iter().find(|k| k.build_id == id)
        && fingerprints_match(data, &entry.fingerprints)
    {
        return Ok(Some(entry.found.clone()));
    }
    if let Some(entry) = cache.entries.get(&id)
        && fingerprints_match(data, &entry.fingerprints)
    {
        return match &entry.outcome {
            Outcome::Found(found) => Ok(Some(found.clone())),
            Outcome::Absent => Ok(None),
            Outcome::Failed(why) => Err(StrippedError::Cached(why.clone())),
        };
    }
    let result = discover(data);
    let outcome = match &result {
        Ok(Some(found)) => Outcome::Found(found.clone()),
        Ok(None) => Outcome::Absent,
        // The analysis is a pure function of the bytes: failing again next
        // time would only cost time.
        Err(e) => Outcome::Failed(e.to_string()),
    };
    cache.insert_with_data(&id, outcome, data);
    result
}

// ---------------------------------------------------------------------------
// Known builds
// ---------------------------------------------------------------------------

/// Builds whose TLS functions are shipped as data.
///
/// Bun 1.4.5 linux-x64 (glibc), `@oven/bun-linux-x64` 1.4.5 from npm,
/// build-id b5188e4f53b53f3a346614bd78ba53f2ff234402. No symbolised ("profile")
/// build was available to compare with; the addresses were validated by reading
/// the disassembly against BoringSSL's `ssl/ssl_lib.cc`:
/// - `SSL_write` 0x2607c30: `ssl_reset_error_state` (s3->rwstate = 0,
///   `ERR_clear_error`, errno = 0), then `ERR_put_error(ERR_LIB_SSL, 0, r,
///   "…/ssl_lib.cc", line)` with r = 66 (QUIC check on `ssl->quic_method`),
///   226 (UNINITIALIZED, `do_handshake == NULL`), 215 (HANDSHAKE_FAILURE after
///   `SSL_do_handshake` returned 0) and 111 (BAD_LENGTH for `num < 0`), then the
///   `method->write_app_data` loop; directly called from 5 sites.
/// - `SSL_read` 0x2586500: the QUIC check (r = 66), a call of `ssl_read_impl`
///   (0x2586600: UNINITIALIZED and HANDSHAKE_FAILURE sites), the `memcpy` of
///   `SSL_peek` inlined, then the `pending_app_data.subspan()` update and
///   `DiscardConsumed`, i.e. `SSL_peek` inlined into `SSL_read`; no separate
///   `SSL_peek` exists in this build. Directly called from 4 sites.
/// - `SSL_set_tlsext_host_name` 0x256bae0: resets `ssl->hostname`, `strlen`,
///   the `len == 0 || len > 255` check with r = 213 (SSL3_EXT_INVALID_SERVERNAME),
///   `OPENSSL_strdup` inlined.
/// - `SSL_free` 0x67dbe40: `if (ssl) { ssl->~ssl_st(); OPENSSL_free(ssl); }`,
///   where 0x25b5910 (`~ssl_st`) is the destructor `SSL_new` (r = 185
///   NULL_SSL_CTX) runs on its failure path; 9 direct callers.
///
/// `bun build --compile` output of this release was checked to keep the
/// build-id and identical bytes in the executable segment.
pub const KNOWN_TABLE: &str = include_str!("known_builds.json");

/// One row of [`KNOWN_TABLE`].
#[derive(Debug, Clone, Deserialize)]
struct KnownBuild {
    build_id: String,
    found: Found,
    fingerprints: BTreeMap<u64, String>,
}

/// [`KNOWN_TABLE`], parsed once. A table that does not parse is a build
/// defect caught by the unit tests; at run time it degrades to "nothing known".
fn known_table() -> &'static [KnownBuild] {
    static TABLE: OnceLock<Vec<KnownBuild>> = OnceLock::new();
    TABLE.get_or_init(|| serde_json::from_str(KNOWN_TABLE).unwrap_or_default())
}

/// Number of code bytes recorded per address to recognise the same code later.
const FINGERPRINT_LEN: usize = 16;

/// Hex of the first [`FINGERPRINT_LEN`] bytes at each of `found`'s addresses.
fn fingerprints(data: &[u8], found: &Found) -> BTreeMap<u64, String> {
    let mut out = BTreeMap::new();
    for vaddr in found.addresses() {
        if let Some(bytes) = code_bytes(data, vaddr) {
            out.insert(vaddr, hex(bytes));
        }
    }
    out
}

/// Whether the bytes at every fingerprinted address are unchanged.
fn fingerprints_match(data: &[u8], expected: &BTreeMap<u64, String>) -> bool {
    expected
        .iter()
        .all(|(&vaddr, want)| code_bytes(data, vaddr).is_some_and(|b| hex(b) == *want))
}

fn code_bytes(data: &[u8], vaddr: u64) -> Option<&[u8]> {
    let off = usize::try_from(file_offset(data, vaddr)?).ok()?;
    data.get(off..off.checked_add(FINGERPRINT_LEN)?)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------
// Cache
// ---------------------------------------------------------------------------

/// Version of the analysis rules; cache entries made by other versions are
/// discarded so that improved rules take effect.
const ANALYSIS_VERSION: u32 = 1;

/// What an analysis concluded about one build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The TLS functions were located.
    Found(Found),
    /// No OpenSSL/BoringSSL inside.
    Absent,
    /// A library is inside but could not be mapped; the error's text.
    Failed(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CacheEntry {
    /// Insertion order, for evicting the oldest entries.
    seq: u64,
    outcome: Outcome,
    /// Code bytes at the located addresses when the entry was made.
    #[serde(default)]
    fingerprints: BTreeMap<u64, String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct CacheFile {
    analysis_version: u32,
    entries: BTreeMap<String, CacheEntry>,
}

/// A JSON file of analysis outcomes keyed by build-id, kept in the sensor's
/// state directory.
///
/// Loading never fails: a missing file is an empty cache, an unreadable or
/// corrupt one is reported by [`Cache::open`] and replaced on the next
/// [`Cache::save`]. The number of entries is bounded (oldest evicted first) and
/// saving writes a temporary file then renames it over the old one, so a crash
/// leaves either the old or the new cache, never half of one.
#[derive(Debug)]
pub struct Cache {
    path: PathBuf,
    entries: BTreeMap<String, CacheEntry>,
    next_seq: u64,
    max_entries: usize,
    /// Changed since loaded or saved.
    dirty: bool,
}

impl Cache {
    /// Default bound on the number of remembered builds.
    pub const DEFAULT_MAX_ENTRIES: usize = 512;
    /// Files larger than this are not read (and so get replaced).
    const MAX_FILE_BYTES: u64 = 16 << 20;

    /// Loads the cache at `path`. The second value, when present, describes a
    /// problem worth logging (unreadable or corrupt file); the cache is then
    /// empty and the file is replaced by the next [`Cache::save`].
    pub fn open(path: impl Into<PathBuf>) -> (Cache, Option<String>) {
        let path = path.into();
        let mut cache = Cache {
            path,
            entries: BTreeMap::new(),
            next_seq: 0,
            max_entries: Self::DEFAULT_MAX_ENTRIES,
            dirty: false,
        };
        let warning = cache.load();
        (cache, warning)
    }

    fn load(&mut self) -> Option<String> {
        let shown = self.path.display();
        match fs::metadata(&self.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => return Some(format!("cannot read analysis cache {shown}: {e}")),
            Ok(meta) if meta.len() > Self::MAX_FILE_BYTES => {
                return Some(format!(
                    "analysis cache {shown} is {} bytes, more than a cache can be; it will be replaced",
                    meta.len()
                ));
            }
            Ok(_) => {}
        }
        let text = match fs::read(&self.path) {
            Ok(text) => text,
            Err(e) => return Some(format!("cannot read analysis cache {shown}: {e}")),
        };
        match serde_json::from_slice::<CacheFile>(&text) {
            Ok(file) if file.analysis_version == ANALYSIS_VERSION => {
                self.next_seq = file.entries.values().map(|e| e.seq + 1).max().unwrap_or(0);
                self.entries = file.entries;
                self.evict();
                None
            }
            // Made by other rules: start afresh, silently.
            Ok(_) => None,
            Err(e) => Some(format!(
                "analysis cache {shown} is corrupt ({e}); it will be replaced"
            )),
        }
    }

    /// Changes the bound on the number of entries (at least one).
    pub fn set_max_entries(&mut self, max: usize) {
        self.max_entries = max.max(1);
        self.evict();
    }

    /// The file this cache loads from and saves to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of remembered builds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no build is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The remembered outcome for a build.
    pub fn get(&self, build_id: &str) -> Option<&Outcome> {
        self.entries
            .get(&build_id.to_ascii_lowercase())
            .map(|e| &e.outcome)
    }

    /// Remembers the outcome for a build (without code fingerprints: such an
    /// entry is trusted on build-id alone by [`resolve`]).
    pub fn insert(&mut self, build_id: &str, outcome: Outcome) {
        self.insert_entry(build_id, outcome, BTreeMap::new());
    }

    /// Remembers the outcome with fingerprints of the code at its addresses.
    fn insert_with_data(&mut self, build_id: &str, outcome: Outcome, data: &[u8]) {
        let prints = match &outcome {
            Outcome::Found(found) => fingerprints(data, found),
            Outcome::Absent | Outcome::Failed(_) => BTreeMap::new(),
        };
        self.insert_entry(build_id, outcome, prints);
    }

    fn insert_entry(&mut self, build_id: &str, outcome: Outcome, prints: BTreeMap<u64, String>) {
        let entry = CacheEntry {
            seq: self.next_seq,
            outcome,
            fingerprints: prints,
        };
        self.next_seq += 1;
        self.entries.insert(build_id.to_ascii_lowercase(), entry);
        self.dirty = true;
        self.evict();
    }

    /// Whether entries changed since the cache was loaded or last saved.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Drops entries beyond the bound: the oldest "no library here" or failed
    /// outcomes first (every executable on a host gets one, and they are cheap
    /// to redo), then the oldest found ones (costly to redo).
    fn evict(&mut self) {
        while self.entries.len() > self.max_entries {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| (matches!(e.outcome, Outcome::Found(_)), e.seq))
                .map(|(k, _)| k.clone());
            match oldest {
                Some(key) => self.entries.remove(&key),
                None => break,
            };
            self.dirty = true;
        }
    }

    /// Writes the cache atomically (see [`crate::state::write_atomic`]).
    pub fn save(&mut self) -> std::io::Result<()> {
        let file = CacheFile {
            analysis_version: ANALYSIS_VERSION,
            entries: self.entries.clone(),
        };
        let json = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
        if let Some(dir) = self.path.parent()
            && !dir.as_os_str().is_empty()
        {
            fs::create_dir_all(dir)?;
        }
        crate::state::write_atomic(&self.path, &json)?;
        self.dirty = false;
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The executable image
// ---------------------------------------------------------------------------

/// Longest x86-64 instruction, in bytes.
const MAX_INSN_LEN: usize = 15;
/// Furthest a string's start is searched for before a matching suffix.
const MAX_STRING_LEN: usize = 4096;
/// Bound on the occurrences of one string that are followed up.
const MAX_STRING_HITS: usize = 64;
/// Bound on address-loading instructions followed up per analysis.
const MAX_REF_SITES: usize = 4096;
/// Bound on the functions decoded per analysis (hostile inputs).
const MAX_FUNCTIONS: usize = 4096;
/// Largest function considered, in bytes.
const MAX_FUNCTION_BYTES: u64 = 1 << 20;
/// Largest function considered, in instructions.
const MAX_FUNCTION_INSNS: usize = 200_000;
/// Most call sites examined when looking for a function's callers.
const MAX_CALLERS: usize = 512;

/// The file-backed part of one `PT_LOAD` segment.
#[derive(Debug, Clone)]
struct Segment {
    vaddr: u64,
    /// Offset of the segment's bytes in the file.
    offset: usize,
    /// Number of file-backed bytes.
    len: usize,
    exec: bool,
}

/// One `.eh_frame` FDE: the code range it describes.
#[derive(Debug, Clone, Copy)]
struct Fde {
    start: u64,
    end: u64,
    /// Whether the unwind rules at `start` are those of a function entry (no
    /// CFA change before the first location advance). Compilers that split a
    /// function's cold blocks into a separate range (gcc's `foo.cold`) give that
    /// range an FDE whose first rules restore the parent's frame: such a range
    /// is never a function entry.
    entry: bool,
}

/// A parsed x86-64 ELF executable.
struct Image<'d> {
    data: &'d [u8],
    segments: Vec<Segment>,
    /// Sorted by start; empty without `.eh_frame`.
    fdes: Vec<Fde>,
    /// Set when a search bound cut results short: candidates may be missing,
    /// so no function may be declared unique.
    truncated: Cell<bool>,
}

impl<'d> Image<'d> {
    fn parse(data: &'d [u8]) -> Result<Self, StrippedError> {
        let file = object::File::parse(data)?;
        if file.architecture() != object::Architecture::X86_64 {
            return Err(StrippedError::UnsupportedArchitecture(format!(
                "{:?}",
                file.architecture()
            )));
        }
        let mut segments = Vec::new();
        for seg in file.segments() {
            let (off, size) = seg.file_range();
            let (Ok(offset), Ok(len)) = (usize::try_from(off), usize::try_from(size)) else {
                continue;
            };
            if len == 0 || offset.checked_add(len).is_none_or(|end| end > data.len()) {
                continue;
            }
            let exec = matches!(seg.flags(), SegmentFlags::Elf { p_flags } if p_flags & object::elf::PF_X != 0);
            segments.push(Segment {
                vaddr: seg.address(),
                offset,
                len,
                exec,
            });
        }
        let fdes = file
            .section_by_name(".eh_frame")
            .and_then(|s| Some((s.address(), s.data().ok()?)))
            .map(|(addr, bytes)| eh_frame::parse(bytes, addr))
            .unwrap_or_default();
        Ok(Image {
            data,
            segments,
            fdes,
            truncated: Cell::new(false),
        })
    }

    fn segment_of(&self, vaddr: u64) -> Option<&Segment> {
        self.segments
            .iter()
            .find(|s| vaddr.checked_sub(s.vaddr).is_some_and(|d| d < s.len as u64))
    }

    fn segment_bytes(&self, seg: &Segment) -> &'d [u8] {
        self.data
            .get(seg.offset..seg.offset + seg.len)
            .unwrap_or(&[])
    }

    /// The file-backed bytes from `vaddr` to the end of its segment.
    fn bytes_from(&self, vaddr: u64) -> Option<&'d [u8]> {
        let seg = self.segment_of(vaddr)?;
        let skip = usize::try_from(vaddr - seg.vaddr).ok()?;
        self.segment_bytes(seg).get(skip..)
    }

    fn byte_at(&self, vaddr: u64) -> Option<u8> {
        self.bytes_from(vaddr)?.first().copied()
    }

    fn is_exec(&self, vaddr: u64) -> bool {
        self.segment_of(vaddr).is_some_and(|s| s.exec)
    }

    fn exec_segments(&self) -> impl Iterator<Item = (u64, &'d [u8])> + '_ {
        self.segments
            .iter()
            .filter(|s| s.exec)
            .map(|s| (s.vaddr, self.segment_bytes(s)))
    }

    /// Addresses at which the NUL-terminated string `needle` is stored, whether
    /// alone or as the tail of a longer string (linkers merge string tails).
    fn string_addresses(&self, needle: &[u8]) -> Vec<u64> {
        let mut pattern = needle.to_vec();
        pattern.push(0);
        let finder = memchr::memmem::Finder::new(&pattern);
        let mut out = Vec::new();
        for seg in &self.segments {
            let bytes = self.segment_bytes(seg);
            for pos in finder.find_iter(bytes) {
                if out.len() == MAX_STRING_HITS {
                    self.truncated.set(true);
                    return out;
                }
                out.push(seg.vaddr + pos as u64);
            }
        }
        out
    }

    /// Start addresses of stored strings that are a path ending with `name`
    /// (the whole string, or `…/name`).
    fn paths_ending_with(&self, name: &[u8]) -> Vec<u64> {
        let mut out = Vec::new();
        for tail in self.string_addresses(name) {
            let Some(seg) = self.segment_of(tail) else {
                continue;
            };
            let bytes = self.segment_bytes(seg);
            let pos = (tail - seg.vaddr) as usize;
            let floor = pos.saturating_sub(MAX_STRING_LEN);
            let start = bytes[floor..pos]
                .iter()
                .rposition(|&b| b == 0)
                .map_or(floor, |nul| floor + nul + 1);
            let whole_path = start == pos || bytes.get(pos.wrapping_sub(1)) == Some(&b'/');
            let printable = bytes[start..pos].iter().all(|&b| (0x20..0x7f).contains(&b));
            if whole_path && printable && (start > floor || floor == 0) {
                out.push(seg.vaddr + start as u64);
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Candidate addresses of instructions that load one of `targets` (sorted):
    /// `lea r64, [rip+disp32]` (position-independent code) and, for targets
    /// below 4 GiB, `mov r32, imm32` / `mov r64, simm32` (non-PIE code).
    ///
    /// This is a byte-pattern scan: a hit may start inside another instruction.
    /// Every hit is confirmed later by decoding its function from the entry.
    fn scan_refs(&self, targets: &[u64]) -> Vec<u64> {
        let mut out = Vec::new();
        for (base, bytes) in self.exec_segments() {
            scan_rip_relative(base, bytes, targets, &mut out);
            for &target in targets {
                if let Ok(imm) = u32::try_from(target) {
                    scan_absolute(base, bytes, imm, &mut out);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        if out.len() > MAX_REF_SITES {
            self.truncated.set(true);
            out.truncate(MAX_REF_SITES);
        }
        out
    }

    /// Direct `call rel32` instructions (byte-pattern scan) whose target
    /// satisfies `keep`, as (call address, target).
    fn call_sites(&self, keep: impl Fn(u64) -> bool) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        for (base, bytes) in self.exec_segments() {
            for pos in memchr::memchr_iter(0xE8, bytes) {
                let Some(disp) = read_i32(bytes, pos + 1) else {
                    continue;
                };
                let site = base + pos as u64;
                let target = (site + 5).wrapping_add_signed(i64::from(disp));
                if keep(target) && self.is_exec(target) {
                    out.push((site, target));
                }
            }
        }
        out
    }

    /// The FDE whose range holds `vaddr`.
    fn fde_containing(&self, vaddr: u64) -> Option<Fde> {
        let idx = self.fdes.partition_point(|f| f.start <= vaddr);
        let fde = *self.fdes.get(idx.checked_sub(1)?)?;
        (vaddr < fde.end).then_some(fde)
    }
}

fn read_i32(bytes: &[u8], pos: usize) -> Option<i32> {
    let raw = bytes.get(pos..pos.checked_add(4)?)?;
    Some(i32::from_le_bytes(raw.try_into().ok()?))
}

/// `REX.W 8D /r` with `mod = 00, r/m = 101`: `lea r64, [rip + disp32]`.
fn scan_rip_relative(base: u64, bytes: &[u8], targets: &[u64], out: &mut Vec<u64>) {
    for pos in memchr::memchr_iter(0x8D, bytes) {
        let (Some(&rex), Some(&modrm)) = (
            pos.checked_sub(1).and_then(|p| bytes.get(p)),
            bytes.get(pos + 1),
        ) else {
            continue;
        };
        if (rex != 0x48 && rex != 0x4C) || modrm & 0xC7 != 0x05 {
            continue;
        }
        let Some(disp) = read_i32(bytes, pos + 2) else {
            continue;
        };
        let end = base + pos as u64 + 6;
        let target = end.wrapping_add_signed(i64::from(disp));
        if targets.binary_search(&target).is_ok() {
            out.push(base + pos as u64 - 1);
        }
    }
}

/// `B8+r imm32` (optionally REX-prefixed) and `REX.W C7 /0 imm32`.
fn scan_absolute(base: u64, bytes: &[u8], imm: u32, out: &mut Vec<u64>) {
    for pos in memchr::memmem::find_iter(bytes, &imm.to_le_bytes()) {
        let before = |back: usize| pos.checked_sub(back).and_then(|p| bytes.get(p)).copied();
        if let Some(op) = before(1)
            && op & 0xF8 == 0xB8
        {
            out.push(base + pos as u64 - 1);
            if before(2).is_some_and(|rex| rex & 0xF0 == 0x40) {
                out.push(base + pos as u64 - 2);
            }
        }
        if imm <= i32::MAX as u32
            && before(2) == Some(0xC7)
            && before(1).is_some_and(|m| m & 0xF8 == 0xC0)
            && before(3).is_some_and(|rex| rex & 0xF8 == 0x48)
        {
            out.push(base + pos as u64 - 3);
        }
    }
}

/// A minimal `.eh_frame` reader: the code range of every FDE.
mod eh_frame {
    use super::Fde;
    use std::collections::HashMap;

    const DW_EH_PE_OMIT: u8 = 0xFF;
    const DW_EH_PE_PCREL: u8 = 0x10;

    /// Parses `.eh_frame` (`bytes`, loaded at `vaddr`) into sorted FDE ranges.
    /// Malformed records end the walk; what was read before is kept.
    pub(super) fn parse(bytes: &[u8], vaddr: u64) -> Vec<Fde> {
        let mut cies: HashMap<usize, u8> = HashMap::new();
        let mut records = Vec::new();
        let mut pos = 0usize;
        while let Some((start, end, next)) = record_bounds(bytes, pos) {
            let Some(id) = read_u32(bytes, start) else {
                break;
            };
            if id == 0 {
                if let Some(enc) = cie_pointer_encoding(bytes, start + 4, end) {
                    cies.insert(pos, enc);
                }
            } else {
                records.push((pos, start, end, id));
            }
            pos = next;
        }
        let mut fdes = Vec::new();
        for (_, start, end, id) in records {
            let Some(cie) = start.checked_sub(id as usize) else {
                continue;
            };
            let Some(&enc) = cies.get(&cie) else {
                continue;
            };
            if let Some(fde) = parse_fde(bytes, vaddr, start + 4, end, enc) {
                fdes.push(fde);
            }
        }
        fdes.sort_by_key(|f| f.start);
        fdes
    }

    /// (content start, content end, next record) of the record at `pos`; `None`
    /// at the terminator or when the record does not fit.
    fn record_bounds(bytes: &[u8], pos: usize) -> Option<(usize, usize, usize)> {
        let len32 = read_u32(bytes, pos)?;
        if len32 == 0 {
            return None;
        }
        let (len, start) = if len32 == u32::MAX {
            (usize::try_from(read_u64(bytes, pos + 4)?).ok()?, pos + 12)
        } else {
            (len32 as usize, pos + 4)
        };
        let end = start.checked_add(len)?;
        (end <= bytes.len() && len >= 4).then_some((start, end, end))
    }

    /// The FDE pointer encoding of the CIE whose content (after the id) starts
    /// at `pos`: the `R` augmentation, or absolute pointers without one.
    fn cie_pointer_encoding(bytes: &[u8], mut pos: usize, end: usize) -> Option<u8> {
        let version = *bytes.get(pos)?;
        pos += 1;
        let aug_len = bytes.get(pos..end)?.iter().position(|&b| b == 0)?;
        let aug = bytes.get(pos..pos + aug_len)?;
        pos += aug_len + 1;
        if aug.contains(&b'h') {
            return None; // "eh" data pointer of ancient GCC; not produced today
        }
        uleb(bytes, &mut pos)?; // code alignment
        sleb(bytes, &mut pos)?; // data alignment
        if version == 1 {
            pos += 1;
        } else {
            uleb(bytes, &mut pos)?;
        }
        let mut encoding = 0u8;
        if aug.first() == Some(&b'z') {
            uleb(bytes, &mut pos)?;
            for &c in &aug[1..] {
                match c {
                    b'R' => {
                        encoding = *bytes.get(pos)?;
                        pos += 1;
                    }
                    b'P' => {
                        let enc = *bytes.get(pos)?;
                        pos += 1;
                        read_encoded(bytes, &mut pos, enc, 0)?;
                    }
                    b'L' => pos += 1,
                    b'S' | b'B' | b'G' => {}
                    _ => break,
                }
            }
        }
        (pos <= end).then_some(encoding)
    }

    fn parse_fde(bytes: &[u8], vaddr: u64, mut pos: usize, end: usize, enc: u8) -> Option<Fde> {
        let field = vaddr.checked_add(pos as u64)?;
        let start = read_encoded(bytes, &mut pos, enc, field)?;
        let len = read_encoded(bytes, &mut pos, enc & 0x0F, 0)?;
        if len == 0 || len > super::MAX_FUNCTION_BYTES {
            return None;
        }
        // The augmentation data length is present when the CIE has 'z', which
        // every CIE with an 'R' encoding does; a CIE without augmentation has
        // encoding 0 and then no length either.
        if enc != 0 {
            let skip = uleb(bytes, &mut pos)?;
            pos = pos.checked_add(usize::try_from(skip).ok()?)?;
        }
        let entry = starts_at_entry(bytes.get(pos..end).unwrap_or(&[]));
        Some(Fde {
            start,
            end: start.checked_add(len)?,
            entry,
        })
    }

    /// Whether the call frame instructions leave the CIE's entry rules in force
    /// at the first address: the first opcode that is not `DW_CFA_nop` advances
    /// the location (or there is none).
    fn starts_at_entry(insns: &[u8]) -> bool {
        match insns.iter().find(|&&op| op != 0) {
            None => true,
            // DW_CFA_advance_loc (high bits 01), advance_loc1/2/4.
            Some(&op) => op & 0xC0 == 0x40 || matches!(op, 0x02..=0x04),
        }
    }

    fn read_encoded(bytes: &[u8], pos: &mut usize, enc: u8, field_vaddr: u64) -> Option<u64> {
        if enc == DW_EH_PE_OMIT || enc & 0x80 != 0 {
            return None;
        }
        let raw: u64 = match enc & 0x0F {
            0x00 | 0x04 | 0x0C => {
                let v = read_u64(bytes, *pos)?;
                *pos += 8;
                v
            }
            0x01 => uleb(bytes, pos)?,
            0x09 => sleb(bytes, pos)? as u64,
            0x02 => {
                let v = u16::from_le_bytes(bytes.get(*pos..*pos + 2)?.try_into().ok()?);
                *pos += 2;
                u64::from(v)
            }
            0x0A => {
                let v = i16::from_le_bytes(bytes.get(*pos..*pos + 2)?.try_into().ok()?);
                *pos += 2;
                i64::from(v) as u64
            }
            0x03 => {
                let v = read_u32(bytes, *pos)?;
                *pos += 4;
                u64::from(v)
            }
            0x0B => {
                let v = read_u32(bytes, *pos)? as i32;
                *pos += 4;
                i64::from(v) as u64
            }
            _ => return None,
        };
        match enc & 0x70 {
            0x00 => Some(raw),
            DW_EH_PE_PCREL => Some(field_vaddr.wrapping_add(raw)),
            _ => None,
        }
    }

    fn read_u32(bytes: &[u8], pos: usize) -> Option<u32> {
        Some(u32::from_le_bytes(
            bytes.get(pos..pos.checked_add(4)?)?.try_into().ok()?,
        ))
    }

    fn read_u64(bytes: &[u8], pos: usize) -> Option<u64> {
        Some(u64::from_le_bytes(
            bytes.get(pos..pos.checked_add(8)?)?.try_into().ok()?,
        ))
    }

    fn uleb(bytes: &[u8], pos: &mut usize) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *bytes.get(*pos)?;
            *pos += 1;
            value |= u64::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn sleb(bytes: &[u8], pos: &mut usize) -> Option<i64> {
        let mut value = 0i64;
        let mut shift = 0u32;
        loop {
            let b = *bytes.get(*pos)?;
            *pos += 1;
            if shift < 64 {
                value |= i64::from(b & 0x7F) << shift;
            }
            shift += 7;
            if b & 0x80 == 0 {
                if shift < 64 && b & 0x40 != 0 {
                    value |= -1i64 << shift;
                }
                return Some(value);
            }
            if shift > 70 {
                return None;
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Functions
// ---------------------------------------------------------------------------

/// A decoded function: its entry and its instructions sorted by address.
#[derive(Debug)]
struct Function {
    start: u64,
    insns: Vec<Instruction>,
}

impl Function {
    fn index_of(&self, ip: u64) -> Option<usize> {
        self.insns.binary_search_by_key(&ip, Instruction::ip).ok()
    }

    /// (index, target) of each direct near call.
    fn direct_calls(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.insns
            .iter()
            .enumerate()
            .filter(|(_, i)| i.flow_control() == FlowControl::Call && is_near_branch(i))
            .map(|(n, i)| (n, i.near_branch_target()))
    }

    fn call_targets(&self) -> BTreeSet<u64> {
        self.direct_calls().map(|(_, t)| t).collect()
    }

    fn calls(&self, target: u64) -> bool {
        self.direct_calls().any(|(_, t)| t == target)
    }

    /// Whether any instruction loads one of `targets` (sorted).
    fn refers_to_any(&self, targets: &[u64]) -> bool {
        self.insns.iter().any(|i| refers_to_any(i, targets))
    }

    /// Whether some instruction is `mov reg, imm` with `reg`'s full register
    /// being `full` and the immediate `value`.
    fn has_mov_imm(&self, full: Register, value: u64) -> bool {
        self.insns.iter().any(|i| mov_imm(i) == Some((full, value)))
    }

    /// Indices of the straight-line run around `idx`: at most `back`
    /// instructions before and `fwd` after, without crossing a gap in the
    /// decoded code or a control transfer (the transfer ending the run is
    /// included).
    fn run_around(&self, idx: usize, back: usize, fwd: usize) -> std::ops::Range<usize> {
        let straight = |a: &Instruction, b: &Instruction| {
            a.next_ip() == b.ip() && a.flow_control() == FlowControl::Next
        };
        let mut lo = idx;
        while lo > 0 && idx - lo < back && straight(&self.insns[lo - 1], &self.insns[lo]) {
            lo -= 1;
        }
        let mut hi = idx;
        while hi + 1 < self.insns.len()
            && hi - idx < fwd
            && straight(&self.insns[hi], &self.insns[hi + 1])
        {
            hi += 1;
        }
        lo..hi + 1
    }

    /// Whether the instructions before index `until` leave `rdi`, `rsi` and
    /// `rdx` (the first three arguments) unwritten.
    fn keeps_arguments_until(&self, until: usize) -> bool {
        let mut factory = InstructionInfoFactory::new();
        self.insns[..until].iter().all(|insn| {
            factory.info(insn).used_registers().iter().all(|used| {
                let written = matches!(
                    used.access(),
                    OpAccess::Write
                        | OpAccess::ReadWrite
                        | OpAccess::CondWrite
                        | OpAccess::ReadCondWrite
                );
                !(written
                    && matches!(
                        used.register().full_register(),
                        Register::RDI | Register::RSI | Register::RDX
                    ))
            })
        })
    }

    /// Whether some instruction stores to memory addressed through a register
    /// other than the stack and frame pointers (a store into an object, not a
    /// spill or a push).
    fn stores_to_objects(&self) -> bool {
        let mut factory = InstructionInfoFactory::new();
        self.insns.iter().any(|insn| {
            factory.info(insn).used_memory().iter().any(|mem| {
                matches!(
                    mem.access(),
                    OpAccess::Write
                        | OpAccess::ReadWrite
                        | OpAccess::CondWrite
                        | OpAccess::ReadCondWrite
                ) && !matches!(
                    mem.base().full_register(),
                    Register::RSP | Register::RBP | Register::None | Register::RIP
                )
            })
        })
    }
}

fn is_near_branch(insn: &Instruction) -> bool {
    matches!(
        insn.op0_kind(),
        OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
    )
}

/// `mov reg, imm` as (full register, immediate).
fn mov_imm(insn: &Instruction) -> Option<(Register, u64)> {
    if insn.mnemonic() != Mnemonic::Mov || insn.op_count() != 2 {
        return None;
    }
    if insn.op0_kind() != OpKind::Register {
        return None;
    }
    let imm = insn.try_immediate(1).ok()?;
    Some((insn.op0_register().full_register(), imm))
}

/// Whether the instruction loads one of `targets` (sorted) as a RIP-relative
/// address or an immediate.
fn refers_to_any(insn: &Instruction, targets: &[u64]) -> bool {
    if insn.is_ip_rel_memory_operand() && insn.mnemonic() == Mnemonic::Lea {
        return targets.binary_search(&insn.ip_rel_memory_address()).is_ok();
    }
    (0..insn.op_count()).any(|op| {
        insn.try_immediate(op)
            .is_ok_and(|imm| targets.binary_search(&imm).is_ok())
    })
}

/// Result of [`Analysis::callers`].
#[derive(Default)]
struct Callers {
    /// (caller, index of the call, target).
    found: Vec<(Rc<Function>, usize, u64)>,
    /// Call sites outside every validated function.
    orphans: Vec<u64>,
}

/// How a function's extent is known.
#[derive(Debug, Clone, Copy)]
enum Extent {
    /// From an FDE: every instruction in `[start, end)`, decoded linearly.
    Fde { start: u64, end: u64 },
    /// From code layout: instructions reachable from `start` without leaving
    /// `[start, end)` or entering another function.
    Layout { start: u64, end: u64 },
}

/// The analysis state of one executable: the image and what was decoded.
struct Analysis<'d> {
    image: Image<'d>,
    /// Sorted 16-byte-aligned direct call targets, built on first use.
    aligned_call_targets: Option<Vec<u64>>,
    functions: HashMap<u64, Option<Rc<Function>>>,
    /// Whether some function's bounds came from code layout (for the method).
    used_layout: bool,
}

impl<'d> Analysis<'d> {
    fn new(image: Image<'d>) -> Self {
        Analysis {
            image,
            aligned_call_targets: None,
            functions: HashMap::new(),
            used_layout: false,
        }
    }

    /// The function holding the instruction that starts at `addr`, or `None`
    /// when no validated function entry precedes it or `addr` is not an
    /// instruction boundary of that function.
    ///
    /// With `.eh_frame`, the FDE covering `addr` gives the function (unless it
    /// is a split-off cold range, see [`Fde::entry`]). Without it, see
    /// [`Analysis::layout_extent`].
    fn function_at(&mut self, addr: u64) -> Option<Rc<Function>> {
        let extent = match self.image.fde_containing(addr) {
            Some(fde) if fde.entry => Extent::Fde {
                start: fde.start,
                end: fde.end,
            },
            Some(_) => return None,
            None => self.layout_extent(addr)?,
        };
        let function = self.function(extent)?;
        function.index_of(addr)?;
        Some(function)
    }

    /// The function whose entry is exactly `start`, if `start` is one.
    fn function_starting_at(&mut self, start: u64) -> Option<Rc<Function>> {
        let f = self.function_at(start)?;
        (f.start == start).then_some(f)
    }

    fn function(&mut self, extent: Extent) -> Option<Rc<Function>> {
        let start = match extent {
            Extent::Fde { start, .. } | Extent::Layout { start, .. } => start,
        };
        if let Some(done) = self.functions.get(&start) {
            return done.clone();
        }
        if self.functions.len() >= MAX_FUNCTIONS {
            self.image.truncated.set(true);
            return None;
        }
        let decoded = match extent {
            Extent::Fde { start, end } => decode_linear(&self.image, start, end),
            Extent::Layout { start, end } => {
                self.used_layout = true;
                let starts = self.aligned_call_targets().to_vec();
                decode_reachable(&self.image, start, end, &starts)
            }
        }
        .map(Rc::new);
        self.functions.insert(start, decoded.clone());
        decoded
    }

    fn aligned_call_targets(&mut self) -> &[u64] {
        self.aligned_call_targets.get_or_insert_with(|| {
            let mut targets: Vec<u64> = self
                .image
                .call_sites(|t| t.is_multiple_of(16))
                .into_iter()
                .map(|(_, t)| t)
                .collect();
            targets.sort_unstable();
            targets.dedup();
            targets
        })
    }

    /// Function bounds from code layout, for executables without unwind
    /// tables (clang/lld builds such as Bun's).
    ///
    /// The entry is the closest address at or before `addr` that is
    /// (1) 16-byte aligned, as clang aligns functions at -O1 and above,
    /// (2) the target of a direct `call` somewhere in the code, which no block
    /// inside a function is, and (3) preceded by an end of code: `int3` padding
    /// (lld fills the gaps between functions with 0xCC), a `ret`, or a `jmp`.
    /// The function ends at the next such address. A function reached only
    /// through pointers has no such entry; `addr` is then attributed to the
    /// previous function, whose reachable code does not contain it, so the
    /// lookup fails instead of answering wrongly.
    fn layout_extent(&mut self, addr: u64) -> Option<Extent> {
        let floor = addr.saturating_sub(MAX_FUNCTION_BYTES);
        let targets = self.aligned_call_targets().to_vec();
        let idx = targets.partition_point(|&t| t <= addr);
        let start = targets[..idx]
            .iter()
            .rev()
            .take_while(|&&t| t >= floor)
            .copied()
            .find(|&t| ends_code_before(&self.image, t))?;
        let end = targets[idx..]
            .iter()
            .take_while(|&&t| t - start <= MAX_FUNCTION_BYTES)
            .copied()
            .find(|&t| ends_code_before(&self.image, t))
            .unwrap_or(start + MAX_FUNCTION_BYTES);
        Some(Extent::Layout { start, end })
    }

    /// The functions holding a direct call to one of `targets`, as (caller,
    /// call index, target), and the call sites that belong to no validated
    /// function ("orphans"). `None` when there are more than [`MAX_CALLERS`]
    /// call sites (a generic helper, not worth decoding every caller of).
    /// A `call rel32` pattern hits an exact target by chance inside other bytes
    /// with a probability of about 2^-32 per byte, so every hit is taken as a
    /// real call.
    fn callers(&mut self, targets: &BTreeSet<u64>) -> Option<Callers> {
        let sites = self.image.call_sites(|t| targets.contains(&t));
        if sites.len() > MAX_CALLERS {
            return None;
        }
        let mut out = Callers::default();
        for (site, target) in sites {
            let found = self.function_at(site).and_then(|f| {
                let idx = f.index_of(site)?;
                let insn = &f.insns[idx];
                (insn.flow_control() == FlowControl::Call && insn.near_branch_target() == target)
                    .then_some((f, idx, target))
            });
            match found {
                Some(caller) => out.found.push(caller),
                None => out.orphans.push(site),
            }
        }
        Some(out)
    }

    /// Whether the call at `site` could be the first call of a function that
    /// starts at most `within` bytes before it, at a 16-byte-aligned address
    /// after an end of code, and whose first instructions pass `entry`: a
    /// function the layout rules could not delimit but that a rule looking for
    /// small wrappers would have to consider.
    fn could_open_small_function(
        &self,
        site: u64,
        within: u64,
        entry: impl Fn(&[Instruction]) -> bool,
    ) -> bool {
        let lowest = site.saturating_sub(within);
        let mut start = site - site % 16;
        while start >= lowest && start > 0 {
            if ends_code_before(&self.image, start)
                && let Some(prefix) = decode_prefix(&self.image, start, site)
                && entry(&prefix)
            {
                return true;
            }
            start -= 16;
        }
        false
    }

    /// The distinct validated functions holding the candidate reference sites.
    ///
    /// Also returns the sites that hold a genuine reference to one of
    /// `targets` (sorted) but could not be attributed to a function: their
    /// functions are missing from the result, so the caller must not treat
    /// its candidate sets as complete.
    fn functions_at(&mut self, sites: &[u64], targets: &[u64]) -> (Vec<Rc<Function>>, Vec<u64>) {
        let mut seen = BTreeMap::new();
        let mut orphans = Vec::new();
        for &site in sites {
            match self.function_at(site) {
                Some(f) => {
                    seen.entry(f.start).or_insert(f);
                }
                None if self.loads_target_at(site, targets) => orphans.push(site),
                None => {}
            }
        }
        (seen.into_values().collect(), orphans)
    }

    /// Whether the instruction decoded at `site` on its own loads one of
    /// `targets`: a real reference rather than a byte pattern inside other
    /// instructions or data.
    fn loads_target_at(&self, site: u64, targets: &[u64]) -> bool {
        let Some(bytes) = self.image.bytes_from(site) else {
            return false;
        };
        let bytes = &bytes[..bytes.len().min(MAX_INSN_LEN)];
        let insn = Decoder::with_ip(64, bytes, site, DecoderOptions::NONE).decode();
        !insn.is_invalid() && refers_to_any(&insn, targets)
    }

    fn bounds_method(&self) -> &'static str {
        if self.used_layout {
            "function entries from clang code layout (aligned, padded, directly called)"
        } else {
            "function bounds from .eh_frame"
        }
    }
}

/// Whether the bytes just before `addr` end a function: `int3` padding, `ret`,
/// or a `jmp rel32`/`jmp rel8` ending exactly there.
fn ends_code_before(image: &Image<'_>, addr: u64) -> bool {
    let at = |back: u64| addr.checked_sub(back).and_then(|a| image.byte_at(a));
    matches!(at(1), Some(0xCC | 0xC3)) || at(5) == Some(0xE9) || at(2) == Some(0xEB)
}

/// The instructions from `start` up to `site` when `site` is an instruction
/// boundary of that linear decode and no call comes before it.
fn decode_prefix(image: &Image<'_>, start: u64, site: u64) -> Option<Vec<Instruction>> {
    let bytes = image.bytes_from(start)?;
    let len = usize::try_from(site.checked_sub(start)?).ok()?;
    let bytes = bytes.get(..len)?;
    let mut decoder = Decoder::with_ip(64, bytes, start, DecoderOptions::NONE);
    let mut insns = Vec::new();
    while decoder.can_decode() {
        let insn = decoder.decode();
        let call = matches!(
            insn.flow_control(),
            FlowControl::Call | FlowControl::IndirectCall
        );
        if insn.is_invalid() || call {
            return None;
        }
        insns.push(insn);
    }
    (decoder.ip() == site).then_some(insns)
}

/// Decodes `[start, end)` linearly; `None` if any instruction is invalid.
fn decode_linear(image: &Image<'_>, start: u64, end: u64) -> Option<Function> {
    let bytes = image.bytes_from(start)?;
    let len = usize::try_from(end.checked_sub(start)?).ok()?;
    let bytes = bytes.get(..len)?;
    let mut decoder = Decoder::with_ip(64, bytes, start, DecoderOptions::NONE);
    let mut insns = Vec::new();
    while decoder.can_decode() {
        let insn = decoder.decode();
        if insn.is_invalid() || insns.len() >= MAX_FUNCTION_INSNS {
            return None;
        }
        insns.push(insn);
    }
    Some(Function { start, insns })
}

/// Decodes the instructions reachable from `start` through fall-through and
/// direct jumps, staying inside `[start, end)` and treating a jump to another
/// function's entry (`starts`, sorted; or an aligned address after `int3`
/// padding) as a tail call. `None` if a reachable instruction is invalid: the
/// bounds were then wrong.
fn decode_reachable(image: &Image<'_>, start: u64, end: u64, starts: &[u64]) -> Option<Function> {
    let external = |t: u64| {
        t < start
            || t >= end
            || (t != start
                && (starts.binary_search(&t).is_ok()
                    || (t.is_multiple_of(16) && image.byte_at(t.wrapping_sub(1)) == Some(0xCC))))
    };
    let mut seen: BTreeMap<u64, Instruction> = BTreeMap::new();
    let mut work = vec![start];
    while let Some(mut ip) = work.pop() {
        if seen.contains_key(&ip) {
            continue;
        }
        let bytes = image.bytes_from(ip)?;
        let avail = usize::try_from(end - ip).ok()?.saturating_add(MAX_INSN_LEN);
        let bytes = &bytes[..bytes.len().min(avail)];
        let mut decoder = Decoder::with_ip(64, bytes, ip, DecoderOptions::NONE);
        loop {
            if !decoder.can_decode() {
                return None;
            }
            let insn = decoder.decode();
            if insn.is_invalid() || seen.len() >= MAX_FUNCTION_INSNS {
                return None;
            }
            seen.insert(ip, insn);
            let next = insn.next_ip();
            match insn.flow_control() {
                FlowControl::Next | FlowControl::Call | FlowControl::IndirectCall => {}
                FlowControl::ConditionalBranch => {
                    let target = insn.near_branch_target();
                    if is_near_branch(&insn) && !external(target) {
                        work.push(target);
                    }
                }
                FlowControl::UnconditionalBranch => {
                    let target = insn.near_branch_target();
                    if is_near_branch(&insn) && !external(target) {
                        work.push(target);
                    }
                    break;
                }
                _ => break,
            }
            if next >= end || seen.contains_key(&next) || starts.binary_search(&next).is_ok() {
                break;
            }
            ip = next;
        }
    }
    Some(Function {
        start,
        insns: seen.into_values().collect(),
    })
}

/// The single candidate, or an error naming the function and what was seen.
fn unique(
    library: Library,
    function: &'static str,
    candidates: &BTreeSet<u64>,
) -> Result<u64, StrippedError> {
    let mut it = candidates.iter();
    match (it.next(), it.next()) {
        (Some(&only), None) => Ok(only),
        (None, _) => Err(StrippedError::NotIdentified {
            library,
            function,
            reason: "no function has the expected code".to_owned(),
        }),
        (Some(_), Some(_)) => Err(StrippedError::NotIdentified {
            library,
            function,
            reason: format!("{} candidates: {}", candidates.len(), list(candidates)),
        }),
    }
}

/// The single candidate of an optional function, or `None` (with a note).
fn optional(candidates: &BTreeSet<u64>, what: &str, notes: &mut Vec<String>) -> Option<u64> {
    match candidates.len() {
        1 => candidates.first().copied(),
        0 => {
            notes.push(format!("{what} not found"));
            None
        }
        _ => {
            notes.push(format!("{what} ambiguous ({})", list(candidates)));
            None
        }
    }
}

fn list(addrs: &BTreeSet<u64>) -> String {
    addrs
        .iter()
        .map(|a| format!("{a:#x}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn method(library: &str, rules: &str, analysis: &Analysis<'_>, notes: &[String]) -> String {
    let mut out = format!("{library}: {rules}; {}", analysis.bounds_method());
    if !notes.is_empty() {
        out.push_str(" (");
        out.push_str(&notes.join("; "));
        out.push(')');
    }
    out
}

/// Rejects results in which two functions share an address.
fn distinct(library: Library, found: &Found) -> Result<(), StrippedError> {
    let all = found.addresses();
    let set: BTreeSet<u64> = all.iter().copied().collect();
    if set.len() == all.len() {
        return Ok(());
    }
    Err(StrippedError::NotIdentified {
        library,
        function: "SSL_write",
        reason: format!("two functions were mapped to one address: {found:?}"),
    })
}

// ---------------------------------------------------------------------------
// OpenSSL 3
// ---------------------------------------------------------------------------

/// OpenSSL 3.x, recognised through `ERR_raise` sites.
///
/// `ERR_raise(lib, reason)` expands to `ERR_new(); ERR_set_debug(OPENSSL_FILE,
/// OPENSSL_LINE, OPENSSL_FUNC); ERR_set_error(lib, reason, NULL)`, so a
/// function that raises an error loads the address of its own `__func__`
/// string and of its file name, then passes `ERR_LIB_SSL` (20) and the reason.
mod openssl {
    use super::*;

    const LIB: Library = Library::OpenSsl;
    const ERR_LIB_SSL: u64 = 20;
    const SSL_R_BAD_LENGTH: u64 = 271;
    const SSL_CTRL_SET_TLSEXT_HOSTNAME: u64 = 55;
    const SSL_CTRL_SET_TLSEXT_STATUS_TYPE: u64 = 65;
    /// `__func__` strings the rules use.
    const NAMES: [&str; 5] = [
        "SSL_write",
        "SSL_read",
        "SSL_new",
        "SSL_dane_enable",
        "SSL_set_ct_validation_callback",
    ];

    /// What the rules work from.
    struct Evidence {
        /// Addresses of `…/ssl_lib.c` strings (sorted).
        files: Vec<u64>,
        /// Addresses of each `__func__` string (sorted).
        names: BTreeMap<&'static str, Vec<u64>>,
        /// Functions that load an `ssl_lib.c` file name.
        functions: Vec<Rc<Function>>,
        /// References that belong to no validated function.
        orphans: Vec<u64>,
    }

    impl Evidence {
        /// Whether a reference to the `name` string lies outside every
        /// validated function (for instance in a split-off cold range): the
        /// function raising under `name` may then be missing.
        fn orphaned(&self, image: &Image<'_>, name: &str) -> bool {
            let Some(addrs) = self.names.get(name) else {
                return false;
            };
            self.orphans.iter().any(|&site| {
                image.bytes_from(site).is_some_and(|bytes| {
                    let bytes = &bytes[..bytes.len().min(MAX_INSN_LEN)];
                    let insn = Decoder::with_ip(64, bytes, site, DecoderOptions::NONE).decode();
                    refers_to_any(&insn, addrs)
                })
            })
        }

        /// The functions reporting errors from ssl_lib.c under `name`.
        fn raising(&self, name: &str) -> Vec<&Rc<Function>> {
            let Some(addrs) = self.names.get(name) else {
                return Vec::new();
            };
            self.functions
                .iter()
                .filter(|f| f.refers_to_any(addrs))
                .collect()
        }
    }

    pub(super) fn discover(a: &mut Analysis<'_>) -> Result<Option<Found>, StrippedError> {
        let Some(ev) = evidence(a) else {
            return Ok(None);
        };
        if ev.names.get("SSL_write").is_none_or(Vec::is_empty) {
            return Err(StrippedError::NotIdentified {
                library: LIB,
                function: "SSL_write",
                reason: "ssl_lib.c reports errors but no \"SSL_write\" __func__ string exists \
                         (OpenSSL before 3.0 is not recognised)"
                    .to_owned(),
            });
        }
        for name in ["SSL_write", "SSL_read"] {
            if ev.orphaned(&a.image, name) {
                return Err(StrippedError::NotIdentified {
                    library: LIB,
                    function: if name == "SSL_write" {
                        "SSL_write"
                    } else {
                        "SSL_read"
                    },
                    reason: format!(
                        "a reference to \"{name}\" belongs to no validated function entry"
                    ),
                });
            }
        }
        let write = bad_length_raiser(&ev, "SSL_write")?;
        let read = bad_length_raiser(&ev, "SSL_read")?;
        let mut notes = Vec::new();
        let (write_ex, read_ex) = ex_functions(a, &write, &read, &mut notes);
        let ssl_free = if ev.orphaned(&a.image, "SSL_new") {
            notes.push("SSL_free not found (SSL_new reference unattributed)".to_owned());
            None
        } else {
            ssl_free(a, &ev, &write, &read, &mut notes)
        };
        let ctrl_anchor_orphaned = ev.orphaned(&a.image, "SSL_dane_enable")
            || ev.orphaned(&a.image, "SSL_set_ct_validation_callback");
        let sni = if ctrl_anchor_orphaned {
            notes.push("SSL_ctrl not found (anchor reference unattributed)".to_owned());
            None
        } else {
            ssl_ctrl(a, &ev, &mut notes).map(Sni::SslCtrl)
        };
        let found = Found {
            library: LIB,
            ssl_write: write.start,
            ssl_read: read.start,
            ssl_write_ex: write_ex,
            ssl_read_ex: read_ex,
            ssl_free,
            sni,
            method: method(
                "OpenSSL 3",
                "ERR_raise sites (__func__ and ssl_lib.c string references)",
                a,
                &notes,
            ),
        };
        distinct(LIB, &found)?;
        Ok(Some(found))
    }

    /// The strings and the functions that use them; `None` when no code
    /// reports errors from an `ssl_lib.c`.
    fn evidence(a: &mut Analysis<'_>) -> Option<Evidence> {
        let files = a.image.paths_ending_with(b"ssl_lib.c");
        if files.is_empty() {
            return None;
        }
        let names: BTreeMap<&'static str, Vec<u64>> = NAMES
            .iter()
            .map(|&n| {
                let mut addrs = a.image.string_addresses(n.as_bytes());
                addrs.sort_unstable();
                (n, addrs)
            })
            .collect();
        let mut targets: Vec<u64> = files
            .iter()
            .chain(names.values().flatten())
            .copied()
            .collect();
        targets.sort_unstable();
        targets.dedup();
        let sites = a.image.scan_refs(&targets);
        let (functions, orphans) = a.functions_at(&sites, &targets);
        let functions: Vec<Rc<Function>> = functions
            .into_iter()
            .filter(|f| f.refers_to_any(&files))
            .collect();
        if functions.is_empty() && orphans.is_empty() {
            return None;
        }
        Some(Evidence {
            files,
            names,
            functions,
            orphans,
        })
    }

    /// `SSL_write` and `SSL_read` begin with
    /// `if (num < 0) { ERR_raise(ERR_LIB_SSL, SSL_R_BAD_LENGTH); return -1; }`
    /// and raise nothing else: the function loading the `name` string that also
    /// loads an ssl_lib.c file name, `ERR_LIB_SSL` and `SSL_R_BAD_LENGTH`.
    fn bad_length_raiser(ev: &Evidence, name: &'static str) -> Result<Rc<Function>, StrippedError> {
        let candidates: BTreeMap<u64, &Rc<Function>> = ev
            .raising(name)
            .into_iter()
            .filter(|f| {
                f.refers_to_any(&ev.files)
                    && f.has_mov_imm(Register::RDI, ERR_LIB_SSL)
                    && f.has_mov_imm(Register::RSI, SSL_R_BAD_LENGTH)
            })
            .map(|f| (f.start, f))
            .collect();
        let start = unique(LIB, name, &candidates.keys().copied().collect())?;
        candidates
            .get(&start)
            .map(|f| Rc::clone(f))
            .ok_or_else(|| StrippedError::NotIdentified {
                library: LIB,
                function: name,
                reason: "candidate vanished".to_owned(),
            })
    }

    /// `SSL_write(s, buf, num)` and `SSL_write_ex(s, buf, num, written)` both
    /// call `ssl_write_internal`, which `SSL_read` does not call (and the other
    /// way round for the read side); everything else `SSL_write` calls
    /// (`ERR_new`, `ERR_set_debug`, `ERR_set_error`, `__stack_chk_fail`) `SSL_read`
    /// calls too. So the internal function is the one callee `SSL_write` has
    /// and `SSL_read` lacks, and `SSL_write_ex` is the one other small function
    /// calling it.
    fn ex_functions(
        a: &mut Analysis<'_>,
        write: &Function,
        read: &Function,
        notes: &mut Vec<String>,
    ) -> (Option<u64>, Option<u64>) {
        let w_calls = write.call_targets();
        let r_calls = read.call_targets();
        let only = |set: BTreeSet<u64>| {
            let mut it = set.into_iter();
            match (it.next(), it.next()) {
                (Some(one), None) => Some(one),
                _ => None,
            }
        };
        let write_internal = only(w_calls.difference(&r_calls).copied().collect());
        let read_internal = only(r_calls.difference(&w_calls).copied().collect());
        let mut pick = |internal: Option<u64>, own: u64, what: &str| -> Option<u64> {
            let Some(internal) = internal else {
                notes.push(format!("{what} not found (no single internal callee)"));
                return None;
            };
            let Some(callers) = a.callers(&BTreeSet::from([internal])) else {
                notes.push(format!(
                    "{what} not found (too many callers of {internal:#x})"
                ));
                return None;
            };
            if !callers.orphans.is_empty() {
                notes.push(format!(
                    "{what} not found (a caller of {internal:#x} is outside every function)"
                ));
                return None;
            }
            let callers: BTreeSet<u64> = callers
                .found
                .into_iter()
                .filter(|(f, _, _)| f.start != own && f.insns.len() <= 64)
                .map(|(f, _, _)| f.start)
                .collect();
            optional(&callers, what, notes)
        };
        let write_ex = pick(write_internal, write.start, "SSL_write_ex");
        let read_ex = pick(read_internal, read.start, "SSL_read_ex");
        (write_ex, read_ex)
    }

    /// `ERR_new` is the callee right before the `__func__` load in `SSL_write`
    /// and `SSL_read`. `SSL_new` ends with
    /// `err: SSL_free(s); ERR_raise(ERR_LIB_SSL, ERR_R_MALLOC_FAILURE);`, so
    /// `SSL_free` is the function called immediately before an `ERR_new` call
    /// that is followed by the load of `"SSL_new"`.
    fn ssl_free(
        a: &mut Analysis<'_>,
        ev: &Evidence,
        write: &Function,
        read: &Function,
        notes: &mut Vec<String>,
    ) -> Option<u64> {
        let err_new = |f: &Function, name: &str| -> Option<u64> {
            let addrs = ev.names.get(name)?;
            let idx = f.insns.iter().position(|i| refers_to_any(i, addrs))?;
            let call = f.insns.get(idx.checked_sub(1)?)?;
            (call.flow_control() == FlowControl::Call && is_near_branch(call))
                .then(|| call.near_branch_target())
        };
        let err_new = match (err_new(write, "SSL_write"), err_new(read, "SSL_read")) {
            (Some(w), Some(r)) if w == r => w,
            _ => {
                notes.push("SSL_free not found (ERR_new not identified)".to_owned());
                return None;
            }
        };
        let new_addrs = ev.names.get("SSL_new").cloned().unwrap_or_default();
        let mut candidates = BTreeSet::new();
        for f in ev.raising("SSL_new") {
            for (idx, target) in f.direct_calls() {
                if target != err_new || idx == 0 {
                    continue;
                }
                let before = &f.insns[idx - 1];
                let follows = f.insns[idx + 1..]
                    .iter()
                    .take(3)
                    .any(|i| refers_to_any(i, &new_addrs));
                if follows
                    && before.next_ip() == f.insns[idx].ip()
                    && before.flow_control() == FlowControl::Call
                    && is_near_branch(before)
                {
                    candidates.insert(before.near_branch_target());
                }
            }
        }
        candidates.retain(|&c| c != err_new && a.function_starting_at(c).is_some());
        optional(&candidates, "SSL_free", notes)
    }

    /// `SSL_dane_enable` sets the default SNI name with
    /// `SSL_set_tlsext_host_name(s, basedomain)`, a macro for
    /// `SSL_ctrl(s, SSL_CTRL_SET_TLSEXT_HOSTNAME, 0, basedomain)`, and
    /// `SSL_set_ct_validation_callback` calls
    /// `SSL_ctrl(s, SSL_CTRL_SET_TLSEXT_STATUS_TYPE, …)`: `SSL_ctrl` is the callee
    /// of a call in those functions whose straight-line setup puts the command
    /// in `esi`. All anchors present must agree.
    fn ssl_ctrl(a: &mut Analysis<'_>, ev: &Evidence, notes: &mut Vec<String>) -> Option<u64> {
        let anchors = [
            ("SSL_dane_enable", SSL_CTRL_SET_TLSEXT_HOSTNAME),
            (
                "SSL_set_ct_validation_callback",
                SSL_CTRL_SET_TLSEXT_STATUS_TYPE,
            ),
        ];
        let mut candidates = BTreeSet::new();
        for (name, cmd) in anchors {
            for f in ev.raising(name) {
                for (idx, target) in f.direct_calls() {
                    let run = f.run_around(idx, 6, 0);
                    if f.insns[run]
                        .iter()
                        .any(|i| mov_imm(i) == Some((Register::RSI, cmd)))
                    {
                        candidates.insert(target);
                    }
                }
            }
        }
        candidates.retain(|&c| a.function_starting_at(c).is_some());
        optional(&candidates, "SSL_ctrl", notes)
    }
}

// ---------------------------------------------------------------------------
// BoringSSL
// ---------------------------------------------------------------------------

/// BoringSSL, recognised through `OPENSSL_PUT_ERROR` sites in `ssl/ssl_lib.cc`.
///
/// `OPENSSL_PUT_ERROR(SSL, reason)` expands to
/// `ERR_put_error(ERR_LIB_SSL, 0, reason, __FILE__, __LINE__)`: the code loads
/// 16 into `edi`, the reason into `edx` and the file name's address into
/// `rcx`, in one straight-line run ending in the call (or in a jump to a call
/// shared by several sites). Reason codes are stable in BoringSSL; line numbers
/// are not and are not used.
mod boringssl {
    use super::*;

    const LIB: Library = Library::BoringSsl;
    const ERR_LIB_SSL: u64 = 16;
    const ERR_R_SHOULD_NOT_HAVE_BEEN_CALLED: u64 = 66;
    const SSL_R_BAD_LENGTH: u64 = 111;
    const SSL_R_NULL_SSL_CTX: u64 = 185;
    const SSL_R_SSL3_EXT_INVALID_SERVERNAME: u64 = 213;
    const SSL_R_SSL_HANDSHAKE_FAILURE: u64 = 215;
    const SSL_R_UNINITIALIZED: u64 = 226;
    /// How far before its call of `SSL_peek` an `SSL_read` wrapper's entry can
    /// be (16 instructions).
    const PEEK_WRAPPER_BYTES: u64 = 16 * MAX_INSN_LEN as u64;
    /// How far before its first call `SSL_free`'s entry can be.
    const DELETE_WRAPPER_BYTES: u64 = 32 * MAX_INSN_LEN as u64;
    /// Reasons the `SSL_write`/`SSL_read` rules look at.
    const REQUIRED_RULE_REASONS: [u64; 4] = [
        ERR_R_SHOULD_NOT_HAVE_BEEN_CALLED,
        SSL_R_BAD_LENGTH,
        SSL_R_SSL_HANDSHAKE_FAILURE,
        SSL_R_UNINITIALIZED,
    ];

    /// The reason of an error site that belongs to no validated function,
    /// from the straight-line code that follows the file name's load (where
    /// clang puts the other arguments); `None` when it cannot be read there.
    fn orphan_reason(image: &Image<'_>, site: u64) -> Option<u64> {
        let bytes = image.bytes_from(site)?;
        let bytes = &bytes[..bytes.len().min(8 * MAX_INSN_LEN)];
        let mut decoder = Decoder::with_ip(64, bytes, site, DecoderOptions::NONE);
        let mut lib = false;
        let mut reason = None;
        for _ in 0..8 {
            let insn = decoder.decode();
            if insn.is_invalid() {
                return None;
            }
            match mov_imm(&insn) {
                Some((Register::RDI, ERR_LIB_SSL)) => lib = true,
                Some((Register::RDX, r)) => reason = Some(r),
                _ => {}
            }
            if insn.flow_control() != FlowControl::Next {
                break;
            }
        }
        reason.filter(|_| lib)
    }

    /// A function of ssl_lib.cc and the reasons of the errors it reports.
    struct Reporter {
        function: Rc<Function>,
        reasons: BTreeSet<u64>,
    }

    impl Reporter {
        fn has(&self, reasons: &[u64]) -> bool {
            reasons.iter().all(|r| self.reasons.contains(r))
        }
    }

    pub(super) fn discover(a: &mut Analysis<'_>) -> Result<Option<Found>, StrippedError> {
        let files = a.image.paths_ending_with(b"ssl_lib.cc");
        if files.is_empty() {
            return Ok(None);
        }
        let sites = a.image.scan_refs(&files);
        if sites.is_empty() {
            return Ok(None);
        }
        let (functions, orphans) = a.functions_at(&sites, &files);
        let orphan_reasons: BTreeSet<Option<u64>> = orphans
            .iter()
            .map(|&site| orphan_reason(&a.image, site))
            .collect();
        if let Some(site) = orphans.iter().find(|&&site| {
            orphan_reason(&a.image, site).is_none_or(|r| REQUIRED_RULE_REASONS.contains(&r))
        }) {
            return Err(StrippedError::NotIdentified {
                library: LIB,
                function: "SSL_write",
                reason: format!(
                    "the error site at {site:#x} belongs to no validated function, \
                     so the SSL_write/SSL_read candidates may be incomplete"
                ),
            });
        }
        let reporters: Vec<Reporter> = functions
            .into_iter()
            .map(|function| Reporter {
                reasons: reasons(&function, &files),
                function,
            })
            .filter(|r| !r.reasons.is_empty())
            .collect();
        if reporters.is_empty() {
            return Err(StrippedError::NotIdentified {
                library: LIB,
                function: "SSL_write",
                reason: format!(
                    "{} references to ssl_lib.cc, none attributable to a function",
                    sites.len()
                ),
            });
        }
        let ssl_write = ssl_write(&reporters)?;
        let ssl_read = ssl_read(a, &reporters)?;
        let mut notes = Vec::new();
        let orphaned = |reason| orphan_reasons.contains(&Some(reason));
        let sni = if orphaned(SSL_R_SSL3_EXT_INVALID_SERVERNAME) {
            notes.push("SSL_set_tlsext_host_name not found (unattributed site)".to_owned());
            None
        } else {
            sni(&reporters, &mut notes).map(Sni::SetHostName)
        };
        let ssl_free = if orphaned(SSL_R_NULL_SSL_CTX) {
            notes.push("SSL_free not found (SSL_new site unattributed)".to_owned());
            None
        } else {
            ssl_free(a, &reporters, &mut notes)
        };
        let found = Found {
            library: LIB,
            ssl_write,
            ssl_read,
            ssl_write_ex: None,
            ssl_read_ex: None,
            ssl_free,
            sni,
            method: method(
                "BoringSSL",
                "OPENSSL_PUT_ERROR sites of ssl_lib.cc (reason codes)",
                a,
                &notes,
            ),
        };
        distinct(LIB, &found)?;
        Ok(Some(found))
    }

    /// Reasons of the `ERR_put_error(ERR_LIB_SSL, 0, reason, file, line)` sites
    /// in `f` whose file is one of `files`.
    fn reasons(f: &Function, files: &[u64]) -> BTreeSet<u64> {
        let mut out = BTreeSet::new();
        for (idx, insn) in f.insns.iter().enumerate() {
            if !refers_to_any(insn, files) {
                continue;
            }
            let run = &f.insns[f.run_around(idx, 8, 8)];
            let lib = run
                .iter()
                .any(|i| mov_imm(i) == Some((Register::RDI, ERR_LIB_SSL)));
            let reason = run.iter().find_map(|i| match mov_imm(i) {
                Some((Register::RDX, r)) => Some(r),
                _ => None,
            });
            if let (true, Some(reason)) = (lib, reason) {
                out.insert(reason);
            }
        }
        out
    }

    /// `SSL_write` reports UNINITIALIZED (`do_handshake == NULL`),
    /// SSL_HANDSHAKE_FAILURE (the implicit handshake returned 0) and BAD_LENGTH
    /// (`num < 0`); no other function of ssl_lib.cc reports all three.
    fn ssl_write(reporters: &[Reporter]) -> Result<u64, StrippedError> {
        let candidates = reporters
            .iter()
            .filter(|r| {
                r.has(&[
                    SSL_R_UNINITIALIZED,
                    SSL_R_SSL_HANDSHAKE_FAILURE,
                    SSL_R_BAD_LENGTH,
                ])
            })
            .map(|r| r.function.start)
            .collect();
        unique(LIB, "SSL_write", &candidates)
    }

    /// `SSL_read(ssl, buf, num)` is `SSL_peek(ssl, buf, num)` followed by
    /// consuming the returned bytes, and `SSL_peek` is the QUIC check
    /// (SHOULD_NOT_HAVE_BEEN_CALLED) followed by `ssl_read_impl`, which reports
    /// UNINITIALIZED and SSL_HANDSHAKE_FAILURE. `ssl_read_impl` may be a separate
    /// function or inlined, and `SSL_peek` may be inlined into `SSL_read`.
    ///
    /// Candidates: functions reporting the QUIC check but not BAD_LENGTH (that
    /// is `SSL_write`) that report both `ssl_read_impl` reasons or call a function
    /// that does. One candidate: it is `SSL_read` with `SSL_peek` inlined,
    /// unless a single function calls it first thing with its own arguments and
    /// then stores into objects (then that caller is `SSL_read` and the
    /// candidate `SSL_peek`). Two candidates: `SSL_read` is the one calling the
    /// other. Anything else is ambiguous.
    fn ssl_read(a: &mut Analysis<'_>, reporters: &[Reporter]) -> Result<u64, StrippedError> {
        let impl_reasons = [SSL_R_UNINITIALIZED, SSL_R_SSL_HANDSHAKE_FAILURE];
        let impls: Vec<u64> = reporters
            .iter()
            .filter(|r| r.has(&impl_reasons) && !r.reasons.contains(&SSL_R_BAD_LENGTH))
            .map(|r| r.function.start)
            .collect();
        let candidates: Vec<&Reporter> = reporters
            .iter()
            .filter(|r| {
                r.reasons.contains(&ERR_R_SHOULD_NOT_HAVE_BEEN_CALLED)
                    && !r.reasons.contains(&SSL_R_BAD_LENGTH)
                    && (r.has(&impl_reasons) || impls.iter().any(|&i| r.function.calls(i)))
            })
            .collect();
        let starts: BTreeSet<u64> = candidates.iter().map(|r| r.function.start).collect();
        match candidates.as_slice() {
            [only] => {
                let Some(wrappers) = peek_wrappers(a, &only.function) else {
                    return Err(StrippedError::NotIdentified {
                        library: LIB,
                        function: "SSL_read",
                        reason: format!(
                            "{:#x} has too many callers, or callers outside every known \
                             function, to rule out a separate SSL_read",
                            only.function.start
                        ),
                    });
                };
                match wrappers.len() {
                    0 => Ok(only.function.start),
                    1 => unique(LIB, "SSL_read", &wrappers),
                    _ => Err(StrippedError::NotIdentified {
                        library: LIB,
                        function: "SSL_read",
                        reason: format!(
                            "SSL_peek-shaped {:#x} has several SSL_read-shaped callers: {}",
                            only.function.start,
                            list(&wrappers)
                        ),
                    }),
                }
            }
            [x, y] => {
                let outer: BTreeSet<u64> = [(x, y), (y, x)]
                    .iter()
                    .filter(|(o, i)| o.function.calls(i.function.start))
                    .map(|(o, _)| o.function.start)
                    .collect();
                unique(LIB, "SSL_read", &outer).map_err(|_| StrippedError::NotIdentified {
                    library: LIB,
                    function: "SSL_read",
                    reason: format!("SSL_read/SSL_peek candidates {}", list(&starts)),
                })
            }
            _ => unique(LIB, "SSL_read", &starts),
        }
    }

    /// Functions that call `peek` as their first call, with their own first
    /// three arguments untouched, and store into objects afterwards: the shape
    /// of `SSL_read` around a separate `SSL_peek`. `None` when a caller might
    /// be such a function but could not be delimited.
    fn peek_wrappers(a: &mut Analysis<'_>, peek: &Function) -> Option<BTreeSet<u64>> {
        let callers = a.callers(&BTreeSet::from([peek.start]))?;
        let hidden = callers
            .orphans
            .iter()
            .any(|&site| a.could_open_small_function(site, PEEK_WRAPPER_BYTES, |_| true));
        if hidden {
            return None;
        }
        let wrappers = callers
            .found
            .into_iter()
            .filter(|(f, idx, _)| {
                f.start != peek.start
                    && f.direct_calls().next().map(|(i, _)| i) == Some(*idx)
                    && *idx < 16
                    && f.keeps_arguments_until(*idx)
                    && f.stores_to_objects()
            })
            .map(|(f, _, _)| f.start)
            .collect();
        Some(wrappers)
    }

    /// `SSL_set_tlsext_host_name` is the only function of ssl_lib.cc reporting
    /// SSL3_EXT_INVALID_SERVERNAME (empty or longer than 255 bytes).
    fn sni(reporters: &[Reporter], notes: &mut Vec<String>) -> Option<u64> {
        let candidates = reporters
            .iter()
            .filter(|r| r.reasons.contains(&SSL_R_SSL3_EXT_INVALID_SERVERNAME))
            .map(|r| r.function.start)
            .collect();
        optional(&candidates, "SSL_set_tlsext_host_name", notes)
    }

    /// `SSL_free(ssl)` is `Delete(ssl)`: `if (ssl) { ssl->~ssl_st();
    /// OPENSSL_free(ssl); }`. `SSL_new` (the only reporter of NULL_SSL_CTX)
    /// destroys its half-built objects the same way on failure, so each
    /// destructor it uses appears there as a direct call immediately followed
    /// (no other call between) by a direct call of the release function's
    /// first callee: a (destroy, release) pair. `SSL_free` is the function
    /// that starts with `test rdi, rdi` and a conditional branch, whose first
    /// two calls are such a pair with `rdi` untouched before the first, in at
    /// most 32 instructions. It must be the only such function over all pairs;
    /// with link-time optimisation `SSL_free` may be inlined everywhere and is
    /// then not found.
    fn ssl_free(
        a: &mut Analysis<'_>,
        reporters: &[Reporter],
        notes: &mut Vec<String>,
    ) -> Option<u64> {
        let news: Vec<&Reporter> = reporters
            .iter()
            .filter(|r| r.reasons.contains(&SSL_R_NULL_SSL_CTX))
            .collect();
        let [ssl_new] = news.as_slice() else {
            notes.push("SSL_free not found (SSL_new not identified)".to_owned());
            return None;
        };
        let pairs: BTreeSet<(u64, u64)> = call_pairs(&ssl_new.function).into_iter().collect();
        let destroyers: BTreeSet<u64> = pairs.iter().map(|&(d, _)| d).collect();
        let Some(callers) = a.callers(&destroyers) else {
            notes.push("SSL_free not found (destructors have too many callers)".to_owned());
            return None;
        };
        let hidden = callers.orphans.iter().any(|&site| {
            a.could_open_small_function(site, DELETE_WRAPPER_BYTES, |insns| {
                starts_with_null_check(insns)
            })
        });
        if hidden {
            notes.push(
                "SSL_free ambiguous (a destructor call outside every known function)".to_owned(),
            );
            return None;
        }
        let candidates: BTreeSet<u64> = callers
            .found
            .into_iter()
            .filter(|(f, idx, _)| {
                f.start != ssl_new.function.start
                    && f.insns.len() <= 32
                    && starts_with_null_check(&f.insns)
                    && first_call_pair(f).is_some_and(|p| pairs.contains(&p))
                    && f.direct_calls().next().map(|(i, _)| i) == Some(*idx)
                    && keeps_rdi_until(f, *idx)
            })
            .map(|(f, _, _)| f.start)
            .collect();
        optional(&candidates, "SSL_free", notes)
    }

    /// (destroy, release) pairs of `f`: a direct call whose straight-line
    /// continuation (at most 4 instructions, no other call) is another direct
    /// call, both preceded by `mov rdi, R` with the same callee-saved register
    /// `R`: the shape of `Delete(p)` after `OPENSSL_free` is inlined.
    fn call_pairs(f: &Function) -> Vec<(u64, u64)> {
        f.direct_calls()
            .filter_map(|(idx, first)| {
                let (next, second) = next_call(f, idx)?;
                let same = rdi_source(f, idx)?;
                (rdi_source(f, next)? == same).then_some((first, second))
            })
            .collect()
    }

    /// The call right after the call at `idx` in the same straight-line run
    /// (at most 4 instructions later), as (index, target) when it is direct.
    fn next_call(f: &Function, idx: usize) -> Option<(usize, u64)> {
        let after = idx + 1;
        if f.insns.get(after)?.ip() != f.insns[idx].next_ip() {
            return None;
        }
        let next = f.run_around(after, 0, 4).find(|&i| {
            matches!(
                f.insns[i].flow_control(),
                FlowControl::Call | FlowControl::IndirectCall
            )
        })?;
        let insn = &f.insns[next];
        is_near_branch(insn).then(|| (next, insn.near_branch_target()))
    }

    /// The callee-saved register copied into `rdi` within the 3 instructions
    /// before the call at `call` (same straight-line run).
    fn rdi_source(f: &Function, call: usize) -> Option<Register> {
        let run = f.run_around(call, 3, 0);
        f.insns[run.start..call].iter().rev().find_map(|i| {
            let copy = i.mnemonic() == Mnemonic::Mov
                && i.op_count() == 2
                && i.op0_kind() == OpKind::Register
                && i.op1_kind() == OpKind::Register
                && i.op0_register() == Register::RDI;
            let src = i.op1_register();
            let callee_saved = matches!(
                src,
                Register::RBX
                    | Register::RBP
                    | Register::R12
                    | Register::R13
                    | Register::R14
                    | Register::R15
            );
            (copy && callee_saved).then_some(src)
        })
    }

    /// The targets of `f`'s first call and the call right after it, when `f`
    /// makes no call before a direct first call.
    fn first_call_pair(f: &Function) -> Option<(u64, u64)> {
        let first = f.insns.iter().position(|i| {
            matches!(
                i.flow_control(),
                FlowControl::Call | FlowControl::IndirectCall
            )
        })?;
        let insn = &f.insns[first];
        if !is_near_branch(insn) {
            return None;
        }
        let (_, second) = next_call(f, first)?;
        Some((insn.near_branch_target(), second))
    }

    fn starts_with_null_check(insns: &[Instruction]) -> bool {
        let [first, second, ..] = insns else {
            return false;
        };
        first.mnemonic() == Mnemonic::Test
            && first.op0_kind() == OpKind::Register
            && first.op1_kind() == OpKind::Register
            && first.op0_register() == Register::RDI
            && first.op1_register() == Register::RDI
            && second.flow_control() == FlowControl::ConditionalBranch
    }

    fn keeps_rdi_until(f: &Function, until: usize) -> bool {
        let mut factory = InstructionInfoFactory::new();
        f.insns[..until].iter().all(|insn| {
            factory.info(insn).used_registers().iter().all(|used| {
                used.register().full_register() != Register::RDI
                    || matches!(used.access(), OpAccess::Read | OpAccess::CondRead)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::ObjectSymbol;
    use std::process::Command;
    use std::time::Instant;

    /// The static OpenSSL test client's source.
    const CLIENT_C: &str = include_str!("../../../tests/clients/static-openssl/client.c");

    fn tool_works(tool: &str) -> bool {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Builds the static OpenSSL client; `None` (with the reason printed) when
    /// the toolchain or the static libraries are missing.
    fn build_static_client() -> Option<(Vec<u8>, Vec<u8>)> {
        if !tool_works("gcc") || !tool_works("strip") {
            eprintln!("skipping: gcc or strip not installed");
            return None;
        }
        let libssl = Command::new("gcc")
            .arg("-print-file-name=libssl.a")
            .output()
            .ok()?;
        let libssl = String::from_utf8_lossy(&libssl.stdout).trim().to_owned();
        if !Path::new(&libssl).is_absolute() || !Path::new(&libssl).exists() {
            eprintln!("skipping: no static libssl.a (install libssl-dev)");
            return None;
        }
        let tmp = crate::state::TempDir::new("stripped-openssl");
        let dir = tmp.path().to_path_buf();
        let src = dir.join("client.c");
        fs::write(&src, CLIENT_C).expect("write client.c");
        let exe = dir.join("client");
        let stripped = dir.join("client.stripped");
        let built = Command::new("gcc")
            .args(["-O2"])
            .arg(&src)
            .arg("-o")
            .arg(&exe)
            .args([
                "-Wl,-Bstatic",
                "-lssl",
                "-lcrypto",
                "-Wl,-Bdynamic",
                "-ldl",
                "-pthread",
            ])
            .status()
            .expect("run gcc");
        assert!(built.success(), "gcc failed to build the static client");
        let status = Command::new("strip")
            .arg("-o")
            .arg(&stripped)
            .arg(&exe)
            .status()
            .expect("run strip");
        assert!(status.success(), "strip failed");
        let out = (
            fs::read(&exe).expect("read client"),
            fs::read(&stripped).expect("read stripped client"),
        );
        Some(out)
    }

    fn symbol(data: &[u8], name: &str) -> Option<u64> {
        let file = object::File::parse(data).ok()?;
        file.symbols()
            .find(|s| s.name() == Ok(name) && s.address() != 0)
            .map(|s| s.address())
    }

    /// (a) The stripped static client maps to the unstripped build's symbols.
    #[test]
    fn openssl_static_client_matches_symbols() {
        let Some((unstripped, stripped)) = build_static_client() else {
            return;
        };
        assert!(
            symbol(&stripped, "SSL_write").is_none(),
            "strip left symbols"
        );
        let started = Instant::now();
        let found = discover(&stripped)
            .expect("analysis succeeds")
            .expect("OpenSSL is found");
        eprintln!(
            "static OpenSSL client analysed in {:?}: {found:?}",
            started.elapsed()
        );
        let want = |name| symbol(&unstripped, name).unwrap_or_else(|| panic!("{name} in symtab"));
        assert_eq!(found.library, Library::OpenSsl);
        assert_eq!(found.ssl_write, want("SSL_write"), "SSL_write");
        assert_eq!(found.ssl_read, want("SSL_read"), "SSL_read");
        assert_eq!(
            found.ssl_write_ex,
            Some(want("SSL_write_ex")),
            "SSL_write_ex"
        );
        assert_eq!(found.ssl_read_ex, Some(want("SSL_read_ex")), "SSL_read_ex");
        assert_eq!(found.ssl_free, Some(want("SSL_free")), "SSL_free");
        assert_eq!(found.sni, Some(Sni::SslCtrl(want("SSL_ctrl"))), "SSL_ctrl");
        // The unstripped build gives the same answer.
        assert_eq!(
            discover(&unstripped).expect("analysis").as_ref(),
            Some(&found)
        );
    }

    /// `TELLTALE_BUN`, else the Bun `./x setup` installs in `.tools/bun`.
    fn bun_path() -> Option<PathBuf> {
        std::env::var_os("TELLTALE_BUN")
            .map(PathBuf::from)
            .or_else(|| Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/bun/bun")))
            .filter(|p| p.exists())
    }

    /// (b) Bun's embedded BoringSSL: the analysis finds what the known table
    /// (validated by hand) says, in a bounded time.
    #[test]
    fn bun_boringssl_is_found() {
        let Some(path) = bun_path() else {
            assert!(
                std::env::var_os("CI").is_none_or(|v| v.is_empty()),
                "no Bun under CI: `./x setup` installs .tools/bun/bun"
            );
            eprintln!("skipping: no Bun executable (./x setup installs it, or set TELLTALE_BUN)");
            return;
        };
        let data = fs::read(&path).expect("read bun");
        let started = Instant::now();
        let found = discover(&data)
            .expect("analysis succeeds")
            .expect("BoringSSL is found");
        let took = started.elapsed();
        eprintln!("{} analysed in {took:?}: {found:?}", path.display());
        assert_eq!(found.library, Library::BoringSsl);
        let id = build_id(&data).expect("bun has a build-id");
        match known(&id) {
            Some(k) => {
                assert_eq!(found.ssl_write, k.ssl_write, "SSL_write");
                assert_eq!(found.ssl_read, k.ssl_read, "SSL_read");
                assert_eq!(found.sni, k.sni, "SSL_set_tlsext_host_name");
                assert_eq!(found.ssl_free, k.ssl_free, "SSL_free");
                let tmp = crate::state::TempDir::new("stripped-bun");
                let dir = tmp.path().to_path_buf();
                let mut cache = Cache::open(dir.join("cache.json")).0;
                assert_eq!(resolve(&data, &mut cache).expect("resolve"), Some(k));
                assert!(cache.is_empty(), "known builds are not cached");
            }
            None => eprintln!("Bun build {id} is not in the known table"),
        }
    }

    /// The system's shared libssl has symbols: the analysis, which ignores
    /// them, agrees with its dynamic symbol table.
    #[test]
    fn system_libssl_matches_dynsym() {
        let path = [
            "/usr/lib/x86_64-linux-gnu/libssl.so.3",
            "/usr/lib64/libssl.so.3",
        ]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists());
        let Some(path) = path else {
            eprintln!("skipping: no system libssl.so.3");
            return;
        };
        let data = fs::read(path).expect("read libssl");
        let Ok(Some(found)) = discover(&data) else {
            panic!("OpenSSL not recognised in {}", path.display());
        };
        let file = object::File::parse(&*data).expect("parse");
        let dynsym = |name: &str| {
            file.dynamic_symbols()
                .find(|s| s.name() == Ok(name) && s.address() != 0)
                .map(|s| s.address())
        };
        assert_eq!(Some(found.ssl_write), dynsym("SSL_write"));
        assert_eq!(Some(found.ssl_read), dynsym("SSL_read"));
        assert_eq!(found.ssl_write_ex, dynsym("SSL_write_ex"));
        assert_eq!(found.ssl_read_ex, dynsym("SSL_read_ex"));
        // Calls to exported functions go through the PLT inside a shared
        // library, so SSL_free and SSL_ctrl are not reached; they must not be
        // guessed either.
        for a in [found.ssl_free, found.sni.map(Sni::vaddr)]
            .into_iter()
            .flatten()
        {
            assert!(
                file.dynamic_symbols().any(|s| s.address() == a),
                "{a:#x} is no exported function"
            );
        }
    }

    /// The shipped table parses and every entry has fingerprints for all of
    /// its addresses.
    #[test]
    fn known_table_parses() {
        let table: Vec<KnownBuild> = serde_json::from_str(KNOWN_TABLE).expect("table parses");
        assert!(!table.is_empty());
        for row in &table {
            let prints: BTreeSet<u64> = row.fingerprints.keys().copied().collect();
            let addrs: BTreeSet<u64> = row.found.addresses().into_iter().collect();
            assert_eq!(prints, addrs, "fingerprints of {}", row.build_id);
        }
        assert!(known("b5188e4f53b53f3a346614bd78ba53f2ff234402").is_some());
        assert!(known("00").is_none());
    }

    /// (c) Executables without a TLS library, and garbage, never panic.
    #[test]
    fn no_library_and_garbage() {
        if let Ok(data) = fs::read("/usr/bin/true") {
            assert!(
                matches!(discover(&data), Ok(None)),
                "/usr/bin/true has no TLS library"
            );
        }
        assert!(discover(b"").is_err());
        assert!(discover(b"\x7fELF").is_err());
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut noise = vec![0u8; 1 << 16];
        for b in &mut noise {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *b = seed as u8;
        }
        assert!(discover(&noise).is_err());
        // A real ELF header followed by noise, and truncations of a real ELF.
        if let Ok(real) = fs::read("/usr/bin/true") {
            let mut forged = real[..64.min(real.len())].to_vec();
            forged.extend_from_slice(&noise);
            let _ = discover(&forged);
            for cut in [0, 16, 63, 64, 200, 1000, real.len() / 2, real.len() - 1] {
                let _ = discover(&real[..cut.min(real.len())]);
            }
        }
    }

    /// (c) Truncated and corrupted copies of a real OpenSSL executable do not
    /// panic and never yield addresses outside the file.
    #[test]
    fn damaged_openssl_client_never_panics() {
        let Some((_, stripped)) = build_static_client() else {
            return;
        };
        for cut in [
            64,
            4096,
            stripped.len() / 3,
            stripped.len() / 2,
            stripped.len() - 7,
        ] {
            let _ = discover(&stripped[..cut]);
        }
        let mut flipped = stripped.clone();
        for i in (0..flipped.len()).step_by(997) {
            flipped[i] ^= 0x5A;
        }
        if let Ok(Some(found)) = discover(&flipped) {
            for a in found.addresses() {
                assert!(file_offset(&flipped, a).is_some());
            }
        }
    }

    fn sample_found() -> Found {
        Found {
            library: Library::OpenSsl,
            ssl_write: 0x1000,
            ssl_read: 0x2000,
            ssl_write_ex: Some(0x3000),
            ssl_read_ex: None,
            ssl_free: Some(0x4000),
            sni: Some(Sni::SslCtrl(0x5000)),
            method: "test".to_owned(),
        }
    }

    /// (d) Save and reload keep every outcome; the bound evicts the oldest.
    #[test]
    fn cache_round_trip_and_bound() {
        let tmp = crate::state::TempDir::new("stripped-cache");
        let dir = tmp.path().to_path_buf();
        let path = dir.join("state").join("stripped-cache.json");
        let (mut cache, warning) = Cache::open(&path);
        assert!(warning.is_none() && cache.is_empty());
        cache.insert("aa", Outcome::Found(sample_found()));
        cache.insert("bb", Outcome::Absent);
        cache.insert("cc", Outcome::Failed("no SSL_read".to_owned()));
        cache.save().expect("save");
        let (mut again, warning) = Cache::open(&path);
        assert!(warning.is_none(), "{warning:?}");
        assert_eq!(again.len(), 3);
        assert_eq!(again.get("aa"), Some(&Outcome::Found(sample_found())));
        assert_eq!(again.get("bb"), Some(&Outcome::Absent));
        assert_eq!(
            again.get("cc"),
            Some(&Outcome::Failed("no SSL_read".to_owned()))
        );
        assert!(!again.is_dirty(), "a loaded cache has nothing to save");
        // Found outcomes are costly to redo: the oldest other outcome goes first.
        again.set_max_entries(2);
        assert!(again.get("bb").is_none(), "oldest non-found evicted");
        assert!(again.get("aa").is_some() && again.get("cc").is_some());
        again.insert("dd", Outcome::Absent);
        assert!(again.is_dirty());
        assert_eq!(again.len(), 2);
        assert!(again.get("cc").is_none() && again.get("dd").is_some());
        assert!(again.get("aa").is_some(), "the found outcome is kept");
        let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "temporary file left behind");
    }

    /// (d) A corrupt cache file is reported, treated as empty and replaced.
    #[test]
    fn corrupt_cache_is_replaced() {
        let tmp = crate::state::TempDir::new("stripped-corrupt");
        let dir = tmp.path().to_path_buf();
        let path = dir.join("cache.json");
        fs::write(&path, b"{\"analysis_version\": 1, \"entries\": {\"x\": [").unwrap();
        let (mut cache, warning) = Cache::open(&path);
        assert!(warning.is_some_and(|w| w.contains("corrupt")));
        assert!(cache.is_empty());
        cache.insert("ee", Outcome::Absent);
        cache.save().expect("save over the corrupt file");
        let (cache, warning) = Cache::open(&path);
        assert!(warning.is_none());
        assert_eq!(cache.get("ee"), Some(&Outcome::Absent));
    }

    /// A cached result is used only while the code at its addresses is
    /// unchanged.
    #[test]
    fn resolve_uses_cache_only_for_same_code() {
        let Some((_, stripped)) = build_static_client() else {
            return;
        };
        let tmp = crate::state::TempDir::new("stripped-resolve");
        let dir = tmp.path().to_path_buf();
        let (mut cache, _) = Cache::open(dir.join("cache.json"));
        let first = resolve(&stripped, &mut cache)
            .expect("resolve")
            .expect("found");
        assert_eq!(cache.len(), 1);
        let id = build_id(&stripped).expect("gcc emits a build-id");
        assert_eq!(cache.get(&id), Some(&Outcome::Found(first.clone())));
        assert_eq!(
            resolve(&stripped, &mut cache).expect("cached"),
            Some(first.clone())
        );
        // Same build-id, different code at SSL_write: analysed again.
        let mut altered = stripped.clone();
        let off = file_offset(&altered, first.ssl_write).unwrap() as usize;
        altered[off] ^= 0xFF;
        cache.entries.get_mut(&id).unwrap().outcome = Outcome::Absent;
        let again = resolve(&altered, &mut cache);
        assert!(!matches!(again, Ok(None)), "stale cache entry was trusted");
    }
}
