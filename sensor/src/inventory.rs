//! A per-client data inventory: which programs send which host facts and
//! identifier fields to which AI services.
//!
//! Alerts answer "what happened in this request"; the inventory answers "which
//! tools send our kernel versions and file trees, and to whom". For every
//! *client* (executable path, ELF build-id, and the product and version of its
//! User-Agent) and every *destination* it talks to (the request's authority),
//! it keeps the fact kinds and identifier fields seen sent, each with a count
//! and first and last sighting, and the number of requests inspected.
//!
//! [`Inventory::observe`] records one inspected request and returns a
//! [`Change`] when it taught the inventory something: a new client, a new build
//! of a known client, a new destination, or new kinds or fields. The caller
//! turns that into an `inventory` event. [`Inventory::save`] persists the
//! inventory in the state directory (atomically, only when it changed);
//! [`Inventory::snapshot`] and [`Inventory::render_table`] are for
//! `telltale inventory` (`--json` and the table).
//!
//! Everything is bounded ([`MAX_CLIENTS`], [`MAX_DESTINATIONS`],
//! [`MAX_PER_PAIR`], [`MAX_RECORDS`]): the least recently seen item goes first,
//! and every eviction is counted ([`Inventory::evicted`]) so the inventory can
//! say when it is incomplete. No value is ever stored, only kind names and
//! field paths.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    fs,
    io::{self, Read as _},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::detect::ident::normalise_path;

// ---------------------------------------------------------------------------
// Bounds
// ---------------------------------------------------------------------------

/// Clients remembered at most (least recently seen evicted first).
pub const MAX_CLIENTS: usize = 1024;
/// Destinations remembered per client at most (least recently seen evicted
/// first).
pub const MAX_DESTINATIONS: usize = 64;
/// Fact kinds, and separately identifier fields, remembered per client and
/// destination at most (least recently seen evicted first).
pub const MAX_PER_PAIR: usize = 256;
/// Fact kinds and identifier fields remembered in the whole inventory at most.
/// The per-client bounds alone would allow millions of field paths; when this
/// one is reached, the least recently seen sixteenth is evicted at once.
pub const MAX_RECORDS: usize = 65_536;
/// Largest inventory file [`Inventory::load`] reads (a larger one is treated
/// as corrupt) and [`Inventory::save`] writes.
pub const MAX_FILE_BYTES: u64 = 64 << 20;
/// Longest product name or version taken from a User-Agent, in characters.
pub const MAX_PRODUCT_CHARS: usize = 64;

/// Longest executable path kept, in characters (Linux's `PATH_MAX`).
const MAX_EXE_CHARS: usize = 4096;
/// Longest build-id kept (an ELF build-id is 40 hex digits, a SHA-256 64).
const MAX_BUILD_ID_CHARS: usize = 128;
/// Longest destination kept (a DNS name is at most 253 characters, plus a port).
const MAX_DESTINATION_CHARS: usize = 262;
/// Longest fact kind name kept.
const MAX_KIND_CHARS: usize = 64;
/// Longest identifier field path kept.
const MAX_FIELD_CHARS: usize = 256;
/// Version of the file format written by [`Inventory::save`].
const FORMAT_VERSION: u32 = 1;

// ---------------------------------------------------------------------------
// User-Agent
// ---------------------------------------------------------------------------

/// The product name and version a User-Agent starts with.
///
/// The first product token is taken (RFC 9110 `product = token ["/" version]`):
///
/// | User-Agent | product |
/// |---|---|
/// | `claude-cli/2.0.14 (external, cli)` | (`claude-cli`, `2.0.14`) |
/// | `curl/7.88.1` | (`curl`, `7.88.1`) |
/// | `Go-http-client/1.1` | (`Go-http-client`, `1.1`) |
/// | `Anthropic/Python 0.40.0` | (`Anthropic/Python`, `0.40.0`) |
/// | `OpenAI/NodeJS 4.67.3` | (`OpenAI/NodeJS`, `4.67.3`) |
/// | `node` | (`node`, empty) |
///
/// The SDKs' `Vendor/Language version` form is recognised by the part after
/// the slash not being a version while the word after it is one (a version
/// starts with a digit, or with `v` and a digit). A bare product without a version gives
/// an empty version. Name and version are cut to [`MAX_PRODUCT_CHARS`]
/// characters. Returns `None` when the User-Agent does not start (after
/// white space) with a token character.
pub fn product_from_user_agent(ua: &str) -> Option<(String, String)> {
    let ua = ua.trim_start_matches([' ', '\t']);
    let (name, rest) = split_token(ua);
    if name.is_empty() {
        return None;
    }
    let Some(after_slash) = rest.strip_prefix('/') else {
        return Some((bounded(name, MAX_PRODUCT_CHARS), String::new()));
    };
    let (second, rest) = split_token(after_slash);
    if !second.is_empty() && !is_version_like(second) {
        let next = rest.trim_start_matches([' ', '\t']);
        let (third, _) = split_token(next);
        if next.len() < rest.len() && is_version_like(third) {
            let product = format!("{name}/{second}");
            return Some((
                bounded(&product, MAX_PRODUCT_CHARS),
                bounded(third, MAX_PRODUCT_CHARS),
            ));
        }
    }
    Some((
        bounded(name, MAX_PRODUCT_CHARS),
        bounded(second, MAX_PRODUCT_CHARS),
    ))
}

/// Splits `s` after its leading run of RFC 9110 token characters.
fn split_token(s: &str) -> (&str, &str) {
    let end = s.bytes().position(|b| !is_tchar(b)).unwrap_or(s.len());
    // Token characters are ASCII, so `end` is a char boundary.
    s.split_at(end)
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// `1…` or `v1…`.
fn is_version_like(s: &str) -> bool {
    let b = s.as_bytes();
    match b.first() {
        Some(c) if c.is_ascii_digit() => true,
        Some(b'v' | b'V') => b.get(1).is_some_and(u8::is_ascii_digit),
        _ => false,
    }
}

/// `s` cut to at most `max` characters.
fn bounded(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((end, _)) => s[..end].to_owned(),
        None => s.to_owned(),
    }
}

// ---------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------

/// Who sent a request: a program, one build of it, and the product its
/// User-Agent names.
///
/// Two builds of one program (another build-id, or another product version)
/// are two clients, so that the inventory shows what each build sends.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClientId {
    /// Executable path (or, when it is unknown, the caller's best name for the
    /// program).
    pub exe: String,
    /// ELF build-id (or another digest of the executable), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_id: Option<String>,
    /// Product name from the User-Agent, when the request had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// Product version from the User-Agent, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// One inspected LLM API request, as [`Inventory::observe`] records it.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// Executable path of the sending process.
    pub exe: &'a str,
    /// Its ELF build-id (or another digest of the executable), when known.
    pub build_id: Option<&'a str>,
    /// The request's User-Agent header, when it had one.
    pub user_agent: Option<&'a str>,
    /// The request's authority (`api.anthropic.com`); a `:443` port is
    /// dropped and the name lower-cased. Empty when unknown.
    pub destination: &'a str,
    /// Fact kinds (`timezone`, `kernel_release`, …) found in the request.
    pub kinds: &'a [&'a str],
    /// JSON paths of the identifier fields found (`$.metadata.user_id`);
    /// array indices are normalised to `[*]`.
    pub fields: &'a [&'a str],
    /// When the request was sent, Unix nanoseconds.
    pub time_ns: i128,
}

/// Why [`Inventory::observe`] reports a [`Change`]; the first that applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeReason {
    /// A program (and product) never seen before.
    NewClient,
    /// A new build of a known client: same executable and product, another
    /// build-id or version.
    NewBuild,
    /// A known client talking to a destination it was not seen talking to.
    NewDestination,
    /// Fact kinds or identifier fields this client had not sent to this
    /// destination before.
    NewKinds,
}

impl ChangeReason {
    /// The name used in events: `new_client`, `new_build`, `new_destination`
    /// or `new_kinds`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NewClient => "new_client",
            Self::NewBuild => "new_build",
            Self::NewDestination => "new_destination",
            Self::NewKinds => "new_kinds",
        }
    }
}

/// The build of a client, as a [`Change`] names the one a new build follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildRef {
    /// ELF build-id, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_id: Option<String>,
    /// Product version, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// What an observation added to the inventory, for an `inventory` event.
///
/// For [`NewClient`](ChangeReason::NewClient), [`NewBuild`](ChangeReason::NewBuild)
/// and [`NewDestination`](ChangeReason::NewDestination) the destination of
/// [`entry`](Self::entry) is new as well, and every kind and field of the
/// request is listed as new.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Why this is reported.
    pub reason: ChangeReason,
    /// For a new build: the most recently seen build of the same executable
    /// and product.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_build: Option<BuildRef>,
    /// Fact kinds this client had not sent to this destination before, sorted.
    pub new_kinds: Vec<String>,
    /// Identifier fields this client had not sent to this destination before,
    /// sorted.
    pub new_fields: Vec<String>,
    /// The client and destination entry as it is now.
    pub entry: Entry,
}

/// One client and one of its destinations, in full.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// The client.
    pub client: ClientId,
    /// The destination and what the client sent it.
    #[serde(flatten)]
    pub destination: DestinationReport,
}

/// What one client sent to one destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DestinationReport {
    /// The request authority (`api.anthropic.com`).
    pub destination: String,
    /// First request seen (RFC 3339 UTC).
    pub first_seen: String,
    /// Last request seen (RFC 3339 UTC).
    pub last_seen: String,
    /// Requests inspected.
    pub requests: u64,
    /// Requests in which at least one fact kind or identifier field was found.
    pub requests_with_findings: u64,
    /// Fact kinds sent, by name.
    pub kinds: Vec<SeenReport>,
    /// Identifier fields sent, by path.
    pub fields: Vec<SeenReport>,
}

/// A fact kind or identifier field, and when it was sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeenReport {
    /// Kind name or field path.
    pub name: String,
    /// Requests that carried it.
    pub count: u64,
    /// First request that did (RFC 3339 UTC).
    pub first_seen: String,
    /// Last request that did (RFC 3339 UTC).
    pub last_seen: String,
}

/// A client and all its destinations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientReport {
    /// The client.
    #[serde(flatten)]
    pub client: ClientId,
    /// First request seen (RFC 3339 UTC).
    pub first_seen: String,
    /// Last request seen (RFC 3339 UTC).
    pub last_seen: String,
    /// Requests inspected, all destinations together.
    pub requests: u64,
    /// Its destinations, by name.
    pub destinations: Vec<DestinationReport>,
}

/// The whole inventory, for `telltale inventory --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// Clients by executable, product, first sighting, version and build-id.
    pub clients: Vec<ClientReport>,
    /// What the bounds evicted since the inventory file was started.
    pub evicted: Evictions,
}

/// Items evicted by the bounds: when any is non-zero the inventory is
/// incomplete.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evictions {
    /// Clients evicted, with all their destinations ([`MAX_CLIENTS`]).
    pub clients: u64,
    /// Destinations evicted from clients that stayed ([`MAX_DESTINATIONS`]).
    pub destinations: u64,
    /// Fact kinds evicted from entries that stayed ([`MAX_PER_PAIR`],
    /// [`MAX_RECORDS`]).
    pub kinds: u64,
    /// Identifier fields evicted from entries that stayed.
    pub fields: u64,
}

// ---------------------------------------------------------------------------
// The inventory
// ---------------------------------------------------------------------------

/// How often, and when first and last, something was seen (Unix ns).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Tally {
    count: u64,
    first_ns: i64,
    last_ns: i64,
}

impl Tally {
    fn new(t: i64) -> Self {
        Self {
            count: 1,
            first_ns: t,
            last_ns: t,
        }
    }

    /// Counts one more sighting at `t`; times may arrive out of order.
    fn hit(&mut self, t: i64) {
        self.count = self.count.saturating_add(1);
        self.first_ns = self.first_ns.min(t);
        self.last_ns = self.last_ns.max(t);
    }
}

/// What one client sent to one destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Pair {
    /// Requests (count) and their span.
    seen: Tally,
    with_findings: u64,
    #[serde(default)]
    kinds: BTreeMap<String, Tally>,
    #[serde(default)]
    fields: BTreeMap<String, Tally>,
}

impl Pair {
    fn records(&self) -> usize {
        self.kinds.len() + self.fields.len()
    }
}

/// One client's destinations.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Client {
    /// Requests (count) and their span.
    seen: Tally,
    destinations: BTreeMap<String, Pair>,
}

impl Client {
    fn records(&self) -> usize {
        self.destinations.values().map(Pair::records).sum()
    }
}

/// The bounds in force (the module constants, smaller in tests).
#[derive(Debug, Clone, Copy)]
struct Limits {
    clients: usize,
    destinations: usize,
    per_pair: usize,
    records: usize,
    file_bytes: u64,
}

const LIMITS: Limits = Limits {
    clients: MAX_CLIENTS,
    destinations: MAX_DESTINATIONS,
    per_pair: MAX_PER_PAIR,
    records: MAX_RECORDS,
    file_bytes: MAX_FILE_BYTES,
};

/// How an observation's client relates to the known ones.
enum Resolved {
    /// A known client (possibly found without its build-id).
    Known(ClientId),
    /// A known client whose build-id was unknown and now is: re-keyed.
    BuildLearned(ClientId),
    /// Not known: new, or a new build of a known one.
    New(Option<BuildRef>),
}

/// The bounded, persistent per-client inventory. See the [module
/// documentation](self).
#[derive(Debug)]
pub struct Inventory {
    path: Option<PathBuf>,
    clients: BTreeMap<ClientId, Client>,
    /// Kinds and fields held, all clients together.
    records: usize,
    evicted: Evictions,
    dirty: bool,
    limits: Limits,
}

impl Default for Inventory {
    /// An empty inventory that is never persisted ([`save`](Inventory::save)
    /// does nothing).
    fn default() -> Self {
        Self {
            path: None,
            clients: BTreeMap::new(),
            records: 0,
            evicted: Evictions::default(),
            dirty: false,
            limits: LIMITS,
        }
    }
}

impl Inventory {
    /// Loads the inventory persisted at `path`; [`save`](Self::save) writes
    /// it back there.
    ///
    /// A missing file gives an empty inventory. An unreadable, corrupt or
    /// oversized ([`MAX_FILE_BYTES`]) file, or one in a format version this
    /// sensor does not know, gives an empty inventory and a warning naming the
    /// file and the reason; the file is replaced on the next save. A file
    /// holding more than the bounds allow is cut to them.
    pub fn load(path: &Path) -> (Self, Option<String>) {
        let mut inventory = Self {
            path: Some(path.to_owned()),
            ..Self::default()
        };
        let bytes = match read_bounded(path, inventory.limits.file_bytes) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return (inventory, None),
            Err(reason) => {
                inventory.dirty = true;
                let warning = format!(
                    "inventory {} is unusable ({reason}); starting empty, it will be replaced",
                    path.display()
                );
                return (inventory, Some(warning));
            }
        };
        match parse_file(&bytes) {
            Ok(file) => {
                inventory.fill(file);
                (inventory, None)
            }
            Err(reason) => {
                inventory.dirty = true;
                let warning = format!(
                    "inventory {} is unreadable ({reason}); starting empty, it will be replaced",
                    path.display()
                );
                (inventory, Some(warning))
            }
        }
    }

    /// Records one inspected request. Returns what it added to the inventory,
    /// or `None` when it only updated counts and times.
    ///
    /// An observation without a build-id is attributed to the most recently
    /// seen client with the same executable, product and version, if any; a
    /// build-id learned for a client first seen without one completes that
    /// client instead of making a new build. Kinds and fields are counted once
    /// per request; at most [`MAX_PER_PAIR`] of each are taken from one
    /// request (in name order).
    pub fn observe(&mut self, obs: &Observation<'_>) -> Option<Change> {
        let t = clamp_ns(obs.time_ns);
        let id = client_id(obs);
        let destination = normalise_destination(obs.destination);
        let kinds = collect(obs.kinds, MAX_KIND_CHARS, self.limits.per_pair, |k| {
            k.to_owned()
        });
        let fields = collect(obs.fields, MAX_FIELD_CHARS, self.limits.per_pair, |f| {
            normalise_path(f)
        });
        self.dirty = true;

        let (key, mut reason, previous_build) = match self.resolve(&id) {
            Resolved::Known(key) => (key, None, None),
            Resolved::BuildLearned(old) => {
                if let Some(client) = self.clients.remove(&old) {
                    self.clients.insert(id.clone(), client);
                }
                (id, None, None)
            }
            Resolved::New(previous) => {
                self.make_room_for_client();
                self.clients.insert(
                    id.clone(),
                    Client {
                        seen: Tally {
                            count: 0,
                            first_ns: t,
                            last_ns: t,
                        },
                        destinations: BTreeMap::new(),
                    },
                );
                let reason = if previous.is_some() {
                    ChangeReason::NewBuild
                } else {
                    ChangeReason::NewClient
                };
                (id, Some(reason), previous)
            }
        };
        let limits = self.limits;
        let client = self.clients.get_mut(&key)?;
        client.seen.hit(t);

        let mut evicted_records = 0;
        if !client.destinations.contains_key(&destination) {
            reason.get_or_insert(ChangeReason::NewDestination);
            if client.destinations.len() >= limits.destinations
                && let Some(oldest) = oldest_key(&client.destinations, |p| p.seen.last_ns)
                && let Some(pair) = client.destinations.remove(&oldest)
            {
                evicted_records += pair.records();
                self.evicted.destinations += 1;
            }
        }
        let pair = client
            .destinations
            .entry(destination.clone())
            .and_modify(|p| p.seen.hit(t))
            .or_insert_with(|| Pair {
                seen: Tally::new(t),
                with_findings: 0,
                kinds: BTreeMap::new(),
                fields: BTreeMap::new(),
            });
        if !kinds.is_empty() || !fields.is_empty() {
            pair.with_findings = pair.with_findings.saturating_add(1);
        }
        let before = pair.records();
        let mut new_kinds = tally_into(&mut pair.kinds, &kinds, t);
        let mut new_fields = tally_into(&mut pair.fields, &fields, t);
        let dropped_kinds = trim_oldest(&mut pair.kinds, limits.per_pair);
        let dropped_fields = trim_oldest(&mut pair.fields, limits.per_pair);
        let after = pair.records();
        self.evicted.kinds += dropped_kinds as u64;
        self.evicted.fields += dropped_fields as u64;
        self.records = (self.records + after)
            .saturating_sub(before)
            .saturating_sub(evicted_records);
        if self.records > limits.records {
            self.evict_records();
        }

        // Only what the inventory still holds is reported as new: anything the
        // bounds took back at once would otherwise be reported again and again.
        let pair = self.clients.get(&key)?.destinations.get(&destination)?;
        new_kinds.retain(|k| pair.kinds.contains_key(k));
        new_fields.retain(|f| pair.fields.contains_key(f));
        if reason.is_none() && (!new_kinds.is_empty() || !new_fields.is_empty()) {
            reason = Some(ChangeReason::NewKinds);
        }
        let reason = reason?;
        Some(Change {
            reason,
            previous_build,
            new_kinds,
            new_fields,
            entry: Entry {
                client: key,
                destination: destination_report(&destination, pair),
            },
        })
    }

    /// Writes the inventory to the file it was loaded from, when it changed
    /// since it was loaded or last saved: a temporary file in the same
    /// directory (mode 0600), fsync, rename. The directory must exist. An
    /// inventory made by [`Default`] has no file and this does nothing.
    ///
    /// An inventory that would not fit in [`MAX_FILE_BYTES`] (possible only
    /// with extreme names) is not written, so the file on disk stays one that
    /// [`load`](Self::load) accepts; the error says so.
    pub fn save(&mut self) -> io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let Some(path) = self.path.as_deref() else {
            self.dirty = false;
            return Ok(());
        };
        let file = FileOut {
            version: FORMAT_VERSION,
            clients: self
                .clients
                .iter()
                .map(|(client, c)| ClientOut {
                    client,
                    seen: &c.seen,
                    destinations: &c.destinations,
                })
                .collect(),
            evicted: self.evicted,
        };
        let json = serde_json::to_vec(&file).map_err(io::Error::other)?;
        if json.len() as u64 > self.limits.file_bytes {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!(
                    "inventory {} not saved: {} bytes, more than the {} it may hold",
                    path.display(),
                    json.len(),
                    self.limits.file_bytes
                ),
            ));
        }
        crate::state::write_atomic(path, &json)?;
        self.dirty = false;
        Ok(())
    }

    /// Whether anything changed since the inventory was loaded or last saved.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Clients held.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Whether no client is held.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// What the bounds evicted since the inventory file was started (kept in
    /// the file).
    pub fn evicted(&self) -> Evictions {
        self.evicted
    }

    /// The whole inventory: clients by executable, product, first sighting,
    /// version and build-id; destinations, kinds and fields by name.
    pub fn snapshot(&self) -> Snapshot {
        let clients = self
            .ordered()
            .into_iter()
            .map(|(id, c)| ClientReport {
                client: id.clone(),
                first_seen: rfc3339(c.seen.first_ns),
                last_seen: rfc3339(c.seen.last_ns),
                requests: c.seen.count,
                destinations: c
                    .destinations
                    .iter()
                    .map(|(d, p)| destination_report(d, p))
                    .collect(),
            })
            .collect();
        Snapshot {
            clients,
            evicted: self.evicted,
        }
    }

    /// A fixed-width table, one row per client and destination, in the order
    /// of [`snapshot`](Self::snapshot); a one-line explanation when the
    /// inventory is empty. Control characters in names are shown as `?`.
    pub fn render_table(&self) -> String {
        if self.clients.is_empty() {
            return "The inventory is empty: no LLM API request has been inspected yet.\n"
                .to_owned();
        }
        let mut rows: Vec<[String; COLUMNS.len()]> = Vec::new();
        for (id, client) in self.ordered() {
            for (destination, pair) in &client.destinations {
                rows.push([
                    client_label(id),
                    id.build_id
                        .as_deref()
                        .map_or_else(|| "-".to_owned(), |b| b.chars().take(12).collect()),
                    if destination.is_empty() {
                        "-".to_owned()
                    } else {
                        destination.clone()
                    },
                    kinds_cell(pair.kinds.keys(), COLUMNS[3].max),
                    fields_cell(&pair.fields, COLUMNS[4].max),
                    pair.seen.count.to_string(),
                    rfc3339_seconds(pair.seen.last_ns),
                ]);
            }
        }
        let mut out = String::new();
        let header = COLUMNS.map(|c| c.title.to_owned());
        let cells: Vec<[String; COLUMNS.len()]> = std::iter::once(header)
            .chain(rows)
            .map(|row| row.map(|cell| printable(&cell)))
            .collect();
        let widths: Vec<usize> = COLUMNS
            .iter()
            .enumerate()
            .map(|(i, col)| {
                cells
                    .iter()
                    .map(|row| row[i].chars().count())
                    .max()
                    .unwrap_or(0)
                    .min(col.max)
            })
            .collect();
        for row in &cells {
            let mut line = String::new();
            for (i, (cell, col)) in row.iter().zip(COLUMNS).enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let cell = clip(cell, widths[i]);
                let pad = widths[i].saturating_sub(cell.chars().count());
                if col.right {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(&cell);
                } else {
                    line.push_str(&cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        let e = self.evicted;
        if e != Evictions::default() {
            let _ = writeln!(
                out,
                "Incomplete: the bounds evicted {} clients, {} destinations, {} kinds and {} fields.",
                e.clients, e.destinations, e.kinds, e.fields
            );
        }
        out
    }

    /// Clients in report order.
    fn ordered(&self) -> Vec<(&ClientId, &Client)> {
        let mut clients: Vec<_> = self.clients.iter().collect();
        clients.sort_by(|(a, ca), (b, cb)| {
            (
                &a.exe,
                &a.product,
                ca.seen.first_ns,
                &a.version,
                &a.build_id,
            )
                .cmp(&(
                    &b.exe,
                    &b.product,
                    cb.seen.first_ns,
                    &b.version,
                    &b.build_id,
                ))
        });
        clients
    }

    /// Finds the client an observation belongs to.
    fn resolve(&self, id: &ClientId) -> Resolved {
        if self.clients.contains_key(id) {
            return Resolved::Known(id.clone());
        }
        let same_release =
            |k: &ClientId| k.exe == id.exe && k.product == id.product && k.version == id.version;
        let most_recent = |filter: &dyn Fn(&ClientId) -> bool| {
            self.clients
                .iter()
                .filter(|(k, _)| filter(k))
                .max_by_key(|(_, c)| c.seen.last_ns)
                .map(|(k, _)| k.clone())
        };
        if id.build_id.is_none() {
            if let Some(known) = most_recent(&same_release) {
                return Resolved::Known(known);
            }
        } else if !self
            .clients
            .keys()
            .any(|k| same_release(k) && k.build_id.is_some())
            && let Some(unknown_build) = most_recent(&|k| same_release(k) && k.build_id.is_none())
        {
            return Resolved::BuildLearned(unknown_build);
        }
        let previous =
            most_recent(&|k| k.exe == id.exe && k.product == id.product).map(|k| BuildRef {
                build_id: k.build_id,
                version: k.version,
            });
        Resolved::New(previous)
    }

    /// Evicts the least recently seen client when the inventory is full.
    fn make_room_for_client(&mut self) {
        while self.clients.len() >= self.limits.clients {
            let Some(oldest) = oldest_key(&self.clients, |c| c.seen.last_ns) else {
                break;
            };
            if let Some(client) = self.clients.remove(&oldest) {
                self.records = self.records.saturating_sub(client.records());
                self.evicted.clients += 1;
            }
        }
    }

    /// Evicts the least recently seen kinds and fields, inventory-wide, down
    /// to fifteen sixteenths of the bound, so that this runs once per many
    /// insertions rather than on each.
    fn evict_records(&mut self) {
        let target = self.limits.records - self.limits.records / 16;
        let Some(excess) = self.records.checked_sub(target).filter(|&n| n > 0) else {
            return;
        };
        let mut times: Vec<i64> = self
            .clients
            .values()
            .flat_map(|c| c.destinations.values())
            .flat_map(|p| p.kinds.values().chain(p.fields.values()))
            .map(|t| t.last_ns)
            .collect();
        if excess > times.len() {
            return;
        }
        // Everything older than the `excess`-th oldest time goes, then as many
        // items at exactly that time as are still needed, in map order.
        let (_, &mut cutoff, _) = times.select_nth_unstable(excess - 1);
        let older = times.iter().filter(|&&t| t < cutoff).count();
        let mut ties = excess - older;
        let mut removed = Evictions::default();
        for client in self.clients.values_mut() {
            for pair in client.destinations.values_mut() {
                for (map, count) in [
                    (&mut pair.kinds, &mut removed.kinds),
                    (&mut pair.fields, &mut removed.fields),
                ] {
                    map.retain(|_, tally| {
                        let evict = if tally.last_ns < cutoff {
                            true
                        } else if tally.last_ns == cutoff && ties > 0 {
                            ties -= 1;
                            true
                        } else {
                            false
                        };
                        *count += u64::from(evict);
                        !evict
                    });
                }
            }
        }
        self.evicted.kinds += removed.kinds;
        self.evicted.fields += removed.fields;
        self.records = self.count_records();
    }

    fn count_records(&self) -> usize {
        self.clients.values().map(Client::records).sum()
    }

    /// Fills an empty inventory from a parsed file, cutting it to the bounds
    /// (the file may come from a sensor with larger ones).
    fn fill(&mut self, file: FileIn) {
        self.evicted = file.evicted;
        for record in file.clients {
            let mut client = Client {
                seen: record.seen,
                destinations: record.destinations,
            };
            let limits = self.limits;
            while client.destinations.len() > limits.destinations {
                let Some(oldest) = oldest_key(&client.destinations, |p| p.seen.last_ns) else {
                    break;
                };
                client.destinations.remove(&oldest);
                self.evicted.destinations += 1;
                self.dirty = true;
            }
            for pair in client.destinations.values_mut() {
                let kinds = trim_oldest(&mut pair.kinds, limits.per_pair);
                let fields = trim_oldest(&mut pair.fields, limits.per_pair);
                self.evicted.kinds += kinds as u64;
                self.evicted.fields += fields as u64;
                self.dirty |= kinds + fields > 0;
            }
            if !self.clients.contains_key(&record.client) {
                self.make_room_for_client();
            }
            self.clients.insert(record.client, client);
        }
        self.records = self.count_records();
        if self.records > self.limits.records {
            self.evict_records();
            self.dirty = true;
        }
    }
}

/// The client an observation names, with its strings bounded.
fn client_id(obs: &Observation<'_>) -> ClientId {
    let (product, version) = match obs.user_agent.and_then(product_from_user_agent) {
        Some((product, version)) => (Some(product), (!version.is_empty()).then_some(version)),
        None => (None, None),
    };
    ClientId {
        exe: bounded(obs.exe, MAX_EXE_CHARS),
        build_id: obs
            .build_id
            .filter(|b| !b.is_empty())
            .map(|b| bounded(b, MAX_BUILD_ID_CHARS)),
        product,
        version,
    }
}

/// Lower-cased, without a `:443` port, bounded.
fn normalise_destination(authority: &str) -> String {
    let host = authority.strip_suffix(":443").unwrap_or(authority);
    bounded(host, MAX_DESTINATION_CHARS).to_ascii_lowercase()
}

/// The distinct non-empty names of `items`, each bounded and mapped, at most
/// `max` of them (in name order).
fn collect(
    items: &[&str],
    max_chars: usize,
    max: usize,
    map: impl Fn(&str) -> String,
) -> Vec<String> {
    let set: BTreeSet<String> = items
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| bounded(&map(s), max_chars))
        .collect();
    set.into_iter().take(max).collect()
}

/// Counts `names` seen at `t`; returns those that were new.
fn tally_into(map: &mut BTreeMap<String, Tally>, names: &[String], t: i64) -> Vec<String> {
    let mut new = Vec::new();
    for name in names {
        match map.get_mut(name) {
            Some(tally) => tally.hit(t),
            None => {
                map.insert(name.clone(), Tally::new(t));
                new.push(name.clone());
            }
        }
    }
    new
}

/// Evicts the least recently seen items (ties by name) beyond `max`; returns
/// how many.
fn trim_oldest(map: &mut BTreeMap<String, Tally>, max: usize) -> usize {
    let excess = map.len().saturating_sub(max);
    if excess == 0 {
        return 0;
    }
    let mut by_age: Vec<(i64, String)> = map.iter().map(|(k, t)| (t.last_ns, k.clone())).collect();
    by_age.sort_unstable();
    for (_, name) in by_age.into_iter().take(excess) {
        map.remove(&name);
    }
    excess
}

/// The key of the least recently seen value (the first in key order on ties).
fn oldest_key<K: Clone, V>(map: &BTreeMap<K, V>, last: impl Fn(&V) -> i64) -> Option<K> {
    map.iter()
        .min_by_key(|(_, v)| last(v))
        .map(|(k, _)| k.clone())
}

fn destination_report(destination: &str, pair: &Pair) -> DestinationReport {
    let seen = |map: &BTreeMap<String, Tally>| {
        map.iter()
            .map(|(name, t)| SeenReport {
                name: name.clone(),
                count: t.count,
                first_seen: rfc3339(t.first_ns),
                last_seen: rfc3339(t.last_ns),
            })
            .collect()
    };
    DestinationReport {
        destination: destination.to_owned(),
        first_seen: rfc3339(pair.seen.first_ns),
        last_seen: rfc3339(pair.seen.last_ns),
        requests: pair.seen.count,
        requests_with_findings: pair.with_findings,
        kinds: seen(&pair.kinds),
        fields: seen(&pair.fields),
    }
}

// ---------------------------------------------------------------------------
// Table
// ---------------------------------------------------------------------------

/// A table column: its title, its widest cell and its alignment.
#[derive(Clone, Copy)]
struct Column {
    title: &'static str,
    max: usize,
    right: bool,
}

const COLUMNS: [Column; 7] = [
    Column {
        title: "CLIENT",
        max: 40,
        right: false,
    },
    Column {
        title: "BUILD",
        max: 12,
        right: false,
    },
    Column {
        title: "DESTINATION",
        max: 48,
        right: false,
    },
    Column {
        title: "KINDS",
        max: 64,
        right: false,
    },
    Column {
        title: "ID FIELDS",
        max: 48,
        right: false,
    },
    Column {
        title: "REQUESTS",
        max: 20,
        right: true,
    },
    Column {
        title: "LAST SEEN",
        max: 20,
        right: false,
    },
];

/// `product/version` (`Vendor/Language version` for the SDKs' form, as in
/// their User-Agent), the product alone, or the executable's file name.
fn client_label(id: &ClientId) -> String {
    match (&id.product, &id.version) {
        (Some(p), Some(v)) if p.contains('/') => format!("{p} {v}"),
        (Some(p), Some(v)) => format!("{p}/{v}"),
        (Some(p), None) => p.clone(),
        _ => match id.exe.rsplit('/').next() {
            Some(name) if !name.is_empty() => name.to_owned(),
            _ => "-".to_owned(),
        },
    }
}

/// `a, b, c`, or as many as fit in `max` characters and `+N more`; `-` when
/// empty.
fn kinds_cell<'a>(names: impl ExactSizeIterator<Item = &'a String>, max: usize) -> String {
    let total = names.len();
    if total == 0 {
        return "-".to_owned();
    }
    let mut out = String::new();
    for (shown, name) in names.enumerate() {
        let sep = if shown == 0 { "" } else { ", " };
        let rest = total - shown - 1;
        // What the cell would end with if this were the last name shown.
        let suffix = if rest > 0 {
            format!(", +{rest} more")
        } else {
            String::new()
        };
        let len = out.chars().count() + sep.len() + name.chars().count() + suffix.len();
        if len > max {
            if shown == 0 {
                return format!("{total} kinds");
            }
            let _ = write!(out, ", +{} more", total - shown);
            return out;
        }
        out.push_str(sep);
        out.push_str(name);
    }
    out
}

/// The field paths when they fit in `max` characters, else their count.
fn fields_cell(fields: &BTreeMap<String, Tally>, max: usize) -> String {
    match fields.len() {
        0 => "-".to_owned(),
        n => {
            let list = fields
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            if list.chars().count() <= max {
                list
            } else if n == 1 {
                "1 field".to_owned()
            } else {
                format!("{n} fields")
            }
        }
    }
}

/// `s` with control characters (which would break the layout or drive the
/// terminal) replaced by `?`.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// `s` cut to `width` characters, ending with `…` when cut.
fn clip(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(width - 1).collect();
    out.push('…');
    out
}

// ---------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------

/// Unix nanoseconds clamped to what the inventory stores (years 1677–2262).
fn clamp_ns(t: i128) -> i64 {
    i64::try_from(t).unwrap_or(if t < 0 { i64::MIN } else { i64::MAX })
}

/// `YYYY-MM-DDTHH:MM:SS` of Unix nanoseconds, and the nanoseconds left.
fn civil(unix_ns: i64) -> (String, i64) {
    let secs = unix_ns.div_euclid(1_000_000_000);
    let nanos = unix_ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    // Days to a civil date in the proleptic Gregorian calendar (H. Hinnant's
    // `civil_from_days`): eras of 400 years starting on 0000-03-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let text = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    );
    (text, nanos)
}

/// RFC 3339 UTC with nanoseconds, as in event `time` fields.
fn rfc3339(unix_ns: i64) -> String {
    let (text, nanos) = civil(unix_ns);
    format!("{text}.{nanos:09}Z")
}

/// RFC 3339 UTC to the second, for the table.
fn rfc3339_seconds(unix_ns: i64) -> String {
    format!("{}Z", civil(unix_ns).0)
}

// ---------------------------------------------------------------------------
// File
// ---------------------------------------------------------------------------

/// The persisted form, as written.
#[derive(Serialize)]
struct FileOut<'a> {
    version: u32,
    clients: Vec<ClientOut<'a>>,
    evicted: Evictions,
}

#[derive(Serialize)]
struct ClientOut<'a> {
    client: &'a ClientId,
    seen: &'a Tally,
    destinations: &'a BTreeMap<String, Pair>,
}

/// The persisted form, as read.
#[derive(Deserialize)]
struct FileIn {
    #[serde(default)]
    clients: Vec<ClientIn>,
    #[serde(default)]
    evicted: Evictions,
}

#[derive(Deserialize)]
struct ClientIn {
    client: ClientId,
    seen: Tally,
    #[serde(default)]
    destinations: BTreeMap<String, Pair>,
}

/// The version field alone, read before the rest so that a file of another
/// format version is refused rather than misread.
#[derive(Deserialize)]
struct VersionProbe {
    version: Option<u64>,
}

/// The file's bytes; `None` when it does not exist, the reason when it cannot
/// be used.
fn read_bounded(path: &Path, max: u64) -> Result<Option<Vec<u8>>, String> {
    let file = match fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot open: {e}")),
    };
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > max {
        return Err(format!("larger than {max} bytes"));
    }
    Ok(Some(bytes))
}

fn parse_file(bytes: &[u8]) -> Result<FileIn, String> {
    let probe: VersionProbe =
        serde_json::from_slice(bytes).map_err(|e| format!("not an inventory file: {e}"))?;
    match probe.version {
        Some(v) if v == u64::from(FORMAT_VERSION) => {}
        Some(v) => {
            return Err(format!(
                "unsupported format version {v}, this sensor reads {FORMAT_VERSION}"
            ));
        }
        None => return Err("no version field".to_owned()),
    }
    serde_json::from_slice(bytes).map_err(|e| format!("bad contents: {e}"))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;
    use crate::state::TempDir;

    /// 2026-11-29T19:01:22.332508018Z.
    const T0: i128 = 1_795_978_882_332_508_018;
    const SEC: i128 = 1_000_000_000;

    const CLAUDE: Observation<'static> = Observation {
        exe: "/usr/bin/node",
        build_id: Some("3f2a9c1d0b7e55aa00112233445566778899aabb"),
        user_agent: Some("claude-cli/2.0.14 (external, cli)"),
        destination: "api.anthropic.com",
        kinds: &[],
        fields: &[],
        time_ns: T0,
    };

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    /// The bookkeeping invariant every operation must keep.
    fn check(inv: &Inventory) {
        assert_eq!(inv.records, inv.count_records(), "record count drifted");
        assert!(inv.clients.len() <= inv.limits.clients);
        for c in inv.clients.values() {
            assert!(c.destinations.len() <= inv.limits.destinations);
            for p in c.destinations.values() {
                assert!(p.kinds.len() <= inv.limits.per_pair);
                assert!(p.fields.len() <= inv.limits.per_pair);
            }
        }
        assert!(inv.records <= inv.limits.records);
    }

    fn observe(inv: &mut Inventory, obs: Observation<'_>) -> Option<Change> {
        let change = inv.observe(&obs);
        check(inv);
        change
    }

    fn pair<'a>(inv: &'a Inventory, exe: &str, destination: &str) -> &'a Pair {
        inv.clients
            .iter()
            .find(|(id, _)| id.exe == exe)
            .and_then(|(_, c)| c.destinations.get(destination))
            .expect("pair")
    }

    fn small(limits: Limits) -> Inventory {
        Inventory {
            limits,
            ..Inventory::default()
        }
    }

    // -- User-Agent ---------------------------------------------------------

    #[test]
    fn user_agent_products() {
        for (ua, want) in [
            (
                "claude-cli/2.0.14 (external, cli)",
                Some(("claude-cli", "2.0.14")),
            ),
            (
                "Anthropic/Python 0.40.0",
                Some(("Anthropic/Python", "0.40.0")),
            ),
            (
                "AsyncOpenAI/Python 1.54.0",
                Some(("AsyncOpenAI/Python", "1.54.0")),
            ),
            ("OpenAI/NodeJS 4.67.3", Some(("OpenAI/NodeJS", "4.67.3"))),
            ("python-httpx/0.27.0", Some(("python-httpx", "0.27.0"))),
            ("Go-http-client/1.1", Some(("Go-http-client", "1.1"))),
            ("Go-http-client/2.0", Some(("Go-http-client", "2.0"))),
            ("Bun/1.4.5", Some(("Bun", "1.4.5"))),
            ("curl/7.88.1", Some(("curl", "7.88.1"))),
            (
                "ollama/0.3.1 (amd64 linux) Go/go1.22.5",
                Some(("ollama", "0.3.1")),
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
                Some(("Mozilla", "5.0")),
            ),
            ("axios/v1.7.2", Some(("axios", "v1.7.2"))),
            ("  \tcurl/8.5.0", Some(("curl", "8.5.0"))),
            ("curl/7.88.1;extra", Some(("curl", "7.88.1"))),
            ("node", Some(("node", ""))),
            ("undici ", Some(("undici", ""))),
            // Not `Vendor/Language version`: the RFC reading stands.
            ("Anthropic/Python", Some(("Anthropic", "Python"))),
            ("Anthropic/Python (beta)", Some(("Anthropic", "Python"))),
            ("Anthropic/Python vNext", Some(("Anthropic", "Python"))),
            (
                "Anthropic/Python\t0.40.0",
                Some(("Anthropic/Python", "0.40.0")),
            ),
            ("foo/ 1.0", Some(("foo", ""))),
            ("foo/", Some(("foo", ""))),
            ("curl\0/1", Some(("curl", ""))),
            ("", None),
            ("   ", None),
            ("/1.0", None),
            ("(compatible; bot)", None),
            ("名前/1.0", None),
            ("\u{1b}[31mred/1", None),
        ] {
            let got = product_from_user_agent(ua);
            let want = want.map(|(p, v)| (p.to_owned(), v.to_owned()));
            assert_eq!(got, want, "{ua:?}");
        }
    }

    #[test]
    fn user_agent_names_and_versions_are_cut_to_64_characters() {
        let long = "a".repeat(1000);
        let (p, v) = product_from_user_agent(&format!("{long}/1.{long}")).expect("product");
        assert_eq!((p.len(), v.len()), (64, 64));
        assert!(v.starts_with("1.aaa"));
        let (p, v) = product_from_user_agent(&format!("Vendor/{long} 2.0")).expect("product");
        assert_eq!(p.len(), 64);
        assert!(p.starts_with("Vendor/aaa"));
        assert_eq!(v, "2.0");
    }

    proptest::proptest! {
        #[test]
        fn user_agent_parsing_never_panics_and_is_bounded(ua in "\\PC*|[ -~]{0,300}|[a-zA-Z0-9./ ()-]{0,120}") {
            if let Some((product, version)) = product_from_user_agent(&ua) {
                proptest::prop_assert!(!product.is_empty());
                proptest::prop_assert!(product.chars().count() <= MAX_PRODUCT_CHARS);
                proptest::prop_assert!(version.chars().count() <= MAX_PRODUCT_CHARS);
                proptest::prop_assert!(product.bytes().all(|b| is_tchar(b) || b == b'/'));
                proptest::prop_assert!(version.bytes().all(is_tchar));
            }
        }
    }

    // -- Changes ------------------------------------------------------------

    #[test]
    fn first_request_is_a_new_client() {
        let mut inv = Inventory::default();
        let change = observe(
            &mut inv,
            Observation {
                kinds: &["timezone", "kernel_release", "timezone"],
                fields: &["$.metadata.user_id{json}.device_id"],
                ..CLAUDE
            },
        )
        .expect("new");
        assert_eq!(change.reason, ChangeReason::NewClient);
        assert_eq!(change.previous_build, None);
        assert_eq!(change.new_kinds, strings(&["kernel_release", "timezone"]));
        assert_eq!(
            change.new_fields,
            strings(&["$.metadata.user_id{json}.device_id"])
        );
        assert_eq!(
            change.entry.client,
            ClientId {
                exe: "/usr/bin/node".to_owned(),
                build_id: Some("3f2a9c1d0b7e55aa00112233445566778899aabb".to_owned()),
                product: Some("claude-cli".to_owned()),
                version: Some("2.0.14".to_owned()),
            }
        );
        let d = &change.entry.destination;
        assert_eq!(d.destination, "api.anthropic.com");
        assert_eq!((d.requests, d.requests_with_findings), (1, 1));
        assert_eq!(d.first_seen, "2026-11-29T19:01:22.332508018Z");
        assert_eq!(d.kinds.len(), 2);
        assert_eq!(d.kinds[1].count, 1, "a kind counts once per request");
        assert!(inv.is_dirty());
        assert_eq!(inv.len(), 1);
    }

    #[test]
    fn repeats_return_nothing_new() {
        let mut inv = Inventory::default();
        let first = Observation {
            kinds: &["timezone"],
            fields: &["$.metadata.user_id"],
            ..CLAUDE
        };
        assert!(observe(&mut inv, first).is_some());
        for n in 1..=3 {
            let again = Observation {
                time_ns: T0 + n * SEC,
                ..first
            };
            assert_eq!(observe(&mut inv, again), None);
        }
        // A subset of what was seen is nothing new either.
        assert_eq!(observe(&mut inv, CLAUDE), None);
    }

    #[test]
    fn new_destinations_kinds_and_fields() {
        let mut inv = Inventory::default();
        observe(
            &mut inv,
            Observation {
                kinds: &["timezone"],
                ..CLAUDE
            },
        );

        let change = observe(
            &mut inv,
            Observation {
                destination: "statsig.anthropic.com",
                kinds: &["timezone"],
                ..CLAUDE
            },
        )
        .expect("new destination");
        assert_eq!(change.reason, ChangeReason::NewDestination);
        assert_eq!(
            change.entry.destination.destination,
            "statsig.anthropic.com"
        );
        assert_eq!(change.new_kinds, strings(&["timezone"]));

        let change = observe(
            &mut inv,
            Observation {
                kinds: &["timezone", "kernel_release", "hostname"],
                ..CLAUDE
            },
        )
        .expect("new kinds");
        assert_eq!(change.reason, ChangeReason::NewKinds);
        assert_eq!(change.new_kinds, strings(&["hostname", "kernel_release"]));
        assert!(change.new_fields.is_empty());
        let names: Vec<&str> = change
            .entry
            .destination
            .kinds
            .iter()
            .map(|k| k.name.as_str())
            .collect();
        assert_eq!(names, ["hostname", "kernel_release", "timezone"]);

        let change = observe(
            &mut inv,
            Observation {
                fields: &["$.metadata.user_id"],
                ..CLAUDE
            },
        )
        .expect("new field");
        assert_eq!(change.reason, ChangeReason::NewKinds);
        assert!(change.new_kinds.is_empty());
        assert_eq!(change.new_fields, strings(&["$.metadata.user_id"]));

        // A destination without findings is still new; nothing else is.
        let change = observe(
            &mut inv,
            Observation {
                destination: "api.openai.com",
                ..CLAUDE
            },
        )
        .expect("new destination");
        assert_eq!(change.reason, ChangeReason::NewDestination);
        assert!(change.new_kinds.is_empty() && change.new_fields.is_empty());
        assert_eq!(change.entry.destination.requests_with_findings, 0);
    }

    #[test]
    fn new_builds_of_known_clients() {
        let mut inv = Inventory::default();
        observe(&mut inv, CLAUDE);

        // Another build-id, same product and version.
        let change = observe(
            &mut inv,
            Observation {
                build_id: Some("ffff"),
                time_ns: T0 + SEC,
                ..CLAUDE
            },
        )
        .expect("new build");
        assert_eq!(change.reason, ChangeReason::NewBuild);
        assert_eq!(
            change.previous_build,
            Some(BuildRef {
                build_id: CLAUDE.build_id.map(str::to_owned),
                version: Some("2.0.14".to_owned()),
            })
        );
        assert_eq!(change.entry.client.build_id.as_deref(), Some("ffff"));

        // Another version through the same interpreter (same build-id): the
        // previous build is the most recently seen one.
        let change = observe(
            &mut inv,
            Observation {
                build_id: Some("ffff"),
                user_agent: Some("claude-cli/2.0.15 (external, cli)"),
                time_ns: T0 + 2 * SEC,
                ..CLAUDE
            },
        )
        .expect("new version");
        assert_eq!(change.reason, ChangeReason::NewBuild);
        assert_eq!(
            change.previous_build,
            Some(BuildRef {
                build_id: Some("ffff".to_owned()),
                version: Some("2.0.14".to_owned()),
            })
        );
        assert_eq!(inv.len(), 3, "each build is its own client");

        // The old build again is known, not new.
        assert_eq!(
            observe(
                &mut inv,
                Observation {
                    time_ns: T0 + 3 * SEC,
                    ..CLAUDE
                }
            ),
            None
        );

        // Another product in the same program, or another program: new clients.
        for other in [
            Observation {
                user_agent: Some("OpenAI/NodeJS 4.67.3"),
                ..CLAUDE
            },
            Observation {
                user_agent: None,
                ..CLAUDE
            },
            Observation {
                exe: "/usr/local/bin/node",
                ..CLAUDE
            },
        ] {
            let change = observe(&mut inv, other).expect("new client");
            assert_eq!(change.reason, ChangeReason::NewClient, "{other:?}");
            assert_eq!(change.previous_build, None);
        }
    }

    #[test]
    fn an_unknown_build_id_is_not_a_new_build() {
        // Known build first: a request without a build-id belongs to it.
        let mut inv = Inventory::default();
        observe(&mut inv, CLAUDE);
        let unknown = Observation {
            build_id: None,
            kinds: &["timezone"],
            time_ns: T0 + SEC,
            ..CLAUDE
        };
        let change = observe(&mut inv, unknown).expect("new kind only");
        assert_eq!(change.reason, ChangeReason::NewKinds);
        assert_eq!(
            change.entry.client.build_id,
            CLAUDE.build_id.map(str::to_owned)
        );
        assert_eq!(inv.len(), 1);

        // Unknown build first: learning it completes the client.
        let mut inv = Inventory::default();
        let change = observe(
            &mut inv,
            Observation {
                build_id: None,
                ..CLAUDE
            },
        )
        .expect("new");
        assert_eq!(change.reason, ChangeReason::NewClient);
        assert_eq!(change.entry.client.build_id, None);
        assert_eq!(
            observe(
                &mut inv,
                Observation {
                    time_ns: T0 + SEC,
                    ..CLAUDE
                }
            ),
            None
        );
        assert_eq!(inv.len(), 1);
        let (id, client) = inv.clients.iter().next().expect("client");
        assert_eq!(id.build_id, CLAUDE.build_id.map(str::to_owned));
        assert_eq!(client.seen.count, 2);
        // A second build-id after that is a new build again.
        let change = observe(
            &mut inv,
            Observation {
                build_id: Some("ffff"),
                ..CLAUDE
            },
        );
        assert_eq!(change.map(|c| c.reason), Some(ChangeReason::NewBuild));
    }

    // -- Counts and times -----------------------------------------------------

    #[test]
    fn counts_and_times() {
        let mut inv = Inventory::default();
        let seen = [
            (T0 + 10 * SEC, &["timezone", "hostname"][..]),
            (T0, &["timezone"][..]), // late arrival: earlier than the last
            (T0 + 20 * SEC, &[][..]),
            (T0 + 5 * SEC, &["timezone", "timezone"][..]),
        ];
        for (time_ns, kinds) in seen {
            observe(
                &mut inv,
                Observation {
                    kinds,
                    fields: if kinds.is_empty() {
                        &[]
                    } else {
                        &[
                            "$.messages[3].content[0].text",
                            "$.messages[7].content[1].text",
                        ]
                    },
                    time_ns,
                    ..CLAUDE
                },
            );
        }
        let report = &inv.snapshot().clients[0];
        assert_eq!(report.requests, 4);
        assert_eq!(report.first_seen, "2026-11-29T19:01:22.332508018Z");
        assert_eq!(report.last_seen, "2026-11-29T19:01:42.332508018Z");
        let d = &report.destinations[0];
        assert_eq!((d.requests, d.requests_with_findings), (4, 3));
        assert_eq!(
            (d.first_seen.as_str(), d.last_seen.as_str()),
            (
                "2026-11-29T19:01:22.332508018Z",
                "2026-11-29T19:01:42.332508018Z"
            )
        );
        let tz = &d.kinds[1];
        assert_eq!((tz.name.as_str(), tz.count), ("timezone", 3));
        assert_eq!(tz.first_seen, "2026-11-29T19:01:22.332508018Z");
        assert_eq!(tz.last_seen, "2026-11-29T19:01:32.332508018Z");
        let host = &d.kinds[0];
        assert_eq!((host.name.as_str(), host.count), ("hostname", 1));
        assert_eq!(host.first_seen, host.last_seen);
        // Array indices are normalised: both paths are one field.
        assert_eq!(d.fields.len(), 1);
        assert_eq!(
            (d.fields[0].name.as_str(), d.fields[0].count),
            ("$.messages[*].content[*].text", 3)
        );
    }

    #[test]
    fn destinations_and_names_are_normalised_and_bounded() {
        let mut inv = Inventory::default();
        observe(
            &mut inv,
            Observation {
                destination: "API.Anthropic.com:443",
                ..CLAUDE
            },
        );
        assert_eq!(
            observe(
                &mut inv,
                Observation {
                    destination: "api.anthropic.com",
                    ..CLAUDE
                }
            ),
            None
        );
        let change = observe(
            &mut inv,
            Observation {
                destination: "api.anthropic.com:8443",
                ..CLAUDE
            },
        )
        .expect("another port is another destination");
        assert_eq!(
            change.entry.destination.destination,
            "api.anthropic.com:8443"
        );

        let long_exe = format!("/{}", "x".repeat(10_000));
        let long_field = format!("$.{}", "f".repeat(10_000));
        let change = observe(
            &mut inv,
            Observation {
                exe: &long_exe,
                build_id: Some(&long_exe),
                kinds: &["", "timezone"],
                fields: &[&long_field, ""],
                ..CLAUDE
            },
        )
        .expect("new client");
        assert_eq!(change.entry.client.exe.chars().count(), MAX_EXE_CHARS);
        assert_eq!(
            change.entry.client.build_id.map(|b| b.chars().count()),
            Some(MAX_BUILD_ID_CHARS)
        );
        assert_eq!(
            change.new_kinds,
            strings(&["timezone"]),
            "empty names are skipped"
        );
        assert_eq!(change.new_fields.len(), 1);
        assert_eq!(change.new_fields[0].chars().count(), MAX_FIELD_CHARS);
    }

    #[test]
    fn times_beyond_the_stored_range_are_clamped() {
        let mut inv = Inventory::default();
        observe(
            &mut inv,
            Observation {
                time_ns: i128::MAX,
                ..CLAUDE
            },
        );
        observe(
            &mut inv,
            Observation {
                time_ns: i128::MIN,
                ..CLAUDE
            },
        );
        let report = &inv.snapshot().clients[0];
        assert_eq!(report.first_seen, "1677-09-21T00:12:43.145224192Z");
        assert_eq!(report.last_seen, "2262-04-11T23:47:16.854775807Z");
    }

    // -- Bounds ---------------------------------------------------------------

    #[test]
    fn clients_are_bounded_least_recently_seen_first() {
        let mut inv = Inventory::default();
        let exes: Vec<String> = (0..=MAX_CLIENTS).map(|n| format!("/bin/tool{n}")).collect();
        for (n, exe) in exes.iter().enumerate() {
            let change = observe(
                &mut inv,
                Observation {
                    exe,
                    kinds: &["timezone"],
                    time_ns: T0 + n as i128 * SEC,
                    ..CLAUDE
                },
            );
            assert_eq!(change.map(|c| c.reason), Some(ChangeReason::NewClient));
            if n == 0 {
                // Seen again last of all but the newest: tool1 is now the oldest.
                observe(
                    &mut inv,
                    Observation {
                        exe,
                        time_ns: T0 + (MAX_CLIENTS as i128 - 1) * SEC,
                        ..CLAUDE
                    },
                );
            }
        }
        assert_eq!(inv.len(), MAX_CLIENTS);
        assert_eq!(inv.evicted().clients, 1);
        assert!(inv.clients.keys().all(|k| k.exe != "/bin/tool1"));
        assert!(inv.clients.keys().any(|k| k.exe == "/bin/tool0"));
        let again = observe(
            &mut inv,
            Observation {
                exe: "/bin/tool1",
                ..CLAUDE
            },
        );
        assert_eq!(again.map(|c| c.reason), Some(ChangeReason::NewClient));
        assert_eq!(inv.evicted().clients, 2);
    }

    #[test]
    fn destinations_are_bounded_least_recently_seen_first() {
        let mut inv = Inventory::default();
        let hosts: Vec<String> = (0..=MAX_DESTINATIONS)
            .map(|n| format!("h{n}.example"))
            .collect();
        for (n, host) in hosts.iter().enumerate() {
            observe(
                &mut inv,
                Observation {
                    destination: host,
                    kinds: &["timezone", "hostname"],
                    time_ns: T0 + n as i128 * SEC,
                    ..CLAUDE
                },
            );
        }
        let client = inv.clients.values().next().expect("client");
        assert_eq!(client.destinations.len(), MAX_DESTINATIONS);
        assert!(!client.destinations.contains_key("h0.example"));
        assert_eq!(inv.evicted().destinations, 1);
        assert_eq!(inv.records, 2 * MAX_DESTINATIONS);
    }

    #[test]
    fn kinds_and_fields_per_pair_are_bounded() {
        let mut inv = Inventory::default();
        let names: Vec<String> = (0..=MAX_PER_PAIR).map(|n| format!("k{n:04}")).collect();
        for (n, name) in names.iter().enumerate() {
            let change = observe(
                &mut inv,
                Observation {
                    kinds: &[name],
                    fields: &[name],
                    time_ns: T0 + n as i128 * SEC,
                    ..CLAUDE
                },
            )
            .expect("new");
            assert_eq!(change.new_kinds, std::slice::from_ref(name));
            assert_eq!(change.new_fields, std::slice::from_ref(name));
        }
        let p = pair(&inv, CLAUDE.exe, CLAUDE.destination);
        assert_eq!(
            (p.kinds.len(), p.fields.len()),
            (MAX_PER_PAIR, MAX_PER_PAIR)
        );
        assert!(!p.kinds.contains_key("k0000") && !p.fields.contains_key("k0000"));
        assert_eq!((inv.evicted().kinds, inv.evicted().fields), (1, 1));

        // One request with more new kinds than fit: only those kept are new.
        let mut inv = Inventory::default();
        let many: Vec<String> = (0..MAX_PER_PAIR + 44).map(|n| format!("m{n:04}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let change = observe(
            &mut inv,
            Observation {
                kinds: &many,
                ..CLAUDE
            },
        )
        .expect("new");
        assert_eq!(change.new_kinds.len(), MAX_PER_PAIR);
        assert_eq!(change.entry.destination.kinds.len(), MAX_PER_PAIR);
        assert_eq!(change.new_kinds.last().map(String::as_str), Some("m0255"));
    }

    #[test]
    fn records_are_bounded_inventory_wide() {
        let mut inv = small(Limits {
            clients: 8,
            destinations: 4,
            per_pair: 8,
            records: 32,
            file_bytes: MAX_FILE_BYTES,
        });
        let names: Vec<String> = (0..200).map(|n| format!("$.f{n:03}")).collect();
        for (n, name) in names.iter().enumerate() {
            let host = format!("h{}.example", n % 3);
            let exe = format!("/bin/t{}", n % 5);
            observe(
                &mut inv,
                Observation {
                    exe: &exe,
                    destination: &host,
                    fields: &[name],
                    time_ns: T0 + n as i128 * SEC,
                    ..CLAUDE
                },
            );
        }
        // Evicting a sixteenth at a time: never above the bound, never far below.
        assert!(inv.records <= 32 && inv.records >= 30, "{}", inv.records);
        let e = inv.evicted();
        assert_eq!(e.fields as usize + inv.records, 200);
        assert_eq!((e.clients, e.destinations, e.kinds), (0, 0, 0));
        // The most recent survive.
        for name in &names[200 - inv.records..] {
            assert!(
                inv.clients
                    .values()
                    .flat_map(|c| c.destinations.values())
                    .any(|p| p.fields.contains_key(name)),
                "{name} evicted"
            );
        }
    }

    #[test]
    fn evicting_clients_and_destinations_releases_their_records() {
        let mut inv = small(Limits {
            clients: 2,
            destinations: 2,
            per_pair: 4,
            records: 1000,
            file_bytes: MAX_FILE_BYTES,
        });
        let mut t = T0;
        let mut send = |inv: &mut Inventory, exe: &str, destination: &str| {
            t += SEC;
            observe(
                inv,
                Observation {
                    exe,
                    destination,
                    kinds: &["a", "b", "c"],
                    fields: &["$.x"],
                    time_ns: t,
                    ..CLAUDE
                },
            );
        };
        for host in ["h0", "h1", "h2", "h3"] {
            send(&mut inv, "/bin/t0", host);
        }
        assert_eq!(inv.evicted().destinations, 2);
        assert_eq!(inv.records, 2 * 4);
        send(&mut inv, "/bin/t1", "h0");
        send(&mut inv, "/bin/t2", "h0");
        assert_eq!(inv.evicted().clients, 1);
        assert_eq!(inv.len(), 2);
        assert_eq!(inv.records, 2 * 4, "t0's records went with it");
    }

    // -- Persistence ------------------------------------------------------------

    #[test]
    fn save_and_load_round_trip() {
        let dir = TempDir::new("inventory-roundtrip");
        let path = dir.path().join("inventory.json");
        let (mut inv, warning) = Inventory::load(&path);
        assert_eq!(warning, None, "a missing file is an empty inventory");
        assert!(inv.is_empty() && !inv.is_dirty());
        inv.save().expect("nothing to save");
        assert!(!path.exists(), "a clean inventory is not written");

        observe(
            &mut inv,
            Observation {
                kinds: &["timezone", "kernel_release"],
                fields: &["$.metadata.user_id"],
                ..CLAUDE
            },
        );
        observe(
            &mut inv,
            Observation {
                exe: "/usr/bin/python3.11",
                build_id: None,
                user_agent: Some("Anthropic/Python 0.40.0"),
                kinds: &["proxy"],
                time_ns: T0 + SEC,
                ..CLAUDE
            },
        );
        inv.save().expect("save");
        assert!(!inv.is_dirty());
        let text = fs::read_to_string(&path).expect("written");
        assert!(text.starts_with(r#"{"version":1,"#), "{text}");
        let mode = fs::metadata(&path).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            fs::read_dir(dir.path()).expect("dir").count(),
            1,
            "no temporary file left"
        );

        let (mut again, warning) = Inventory::load(&path);
        assert_eq!(warning, None);
        assert!(!again.is_dirty());
        assert_eq!(again.snapshot(), inv.snapshot());
        assert_eq!(again.records, inv.records);
        // What was learned before the restart is not new after it.
        assert_eq!(
            observe(
                &mut again,
                Observation {
                    kinds: &["timezone"],
                    time_ns: T0 + 2 * SEC,
                    ..CLAUDE
                }
            ),
            None
        );
        // Saving happens only when dirty.
        fs::remove_file(&path).expect("remove");
        let (mut clean, _) = Inventory::load(&dir.path().join("other.json"));
        clean.save().expect("clean save");
        assert!(!dir.path().join("other.json").exists());
        again.save().expect("dirty save");
        assert!(path.exists());
    }

    #[test]
    fn evictions_are_kept_in_the_file() {
        let dir = TempDir::new("inventory-evictions");
        let path = dir.path().join("inventory.json");
        let (mut inv, _) = Inventory::load(&path);
        inv.limits.destinations = 1;
        observe(&mut inv, CLAUDE);
        observe(
            &mut inv,
            Observation {
                destination: "b.example",
                ..CLAUDE
            },
        );
        assert_eq!(inv.evicted().destinations, 1);
        inv.save().expect("save");
        let (again, _) = Inventory::load(&path);
        assert_eq!(again.evicted().destinations, 1);
    }

    #[test]
    fn files_beyond_the_bounds_are_cut_to_them() {
        let dir = TempDir::new("inventory-oversized");
        let path = dir.path().join("inventory.json");
        let tally = serde_json::json!({"count": 1, "first_ns": 5, "last_ns": 5});
        let kinds: serde_json::Map<String, serde_json::Value> = (0..MAX_PER_PAIR + 10)
            .map(|n| {
                let mut t = tally.clone();
                t["last_ns"] = serde_json::json!(n);
                (format!("k{n:04}"), t)
            })
            .collect();
        let file = serde_json::json!({
            "version": 1,
            "clients": [{
                "client": {"exe": "/bin/x"},
                "seen": tally,
                "destinations": {"d.example": {"seen": tally, "with_findings": 1, "kinds": kinds}},
            }],
        });
        fs::write(&path, file.to_string()).expect("write");
        let (inv, warning) = Inventory::load(&path);
        assert_eq!(warning, None);
        let p = pair(&inv, "/bin/x", "d.example");
        assert_eq!(p.kinds.len(), MAX_PER_PAIR);
        assert!(!p.kinds.contains_key("k0009") && p.kinds.contains_key("k0010"));
        assert_eq!(inv.evicted().kinds, 10);
        assert!(inv.is_dirty(), "the cut inventory is written back");
        check(&inv);
    }

    #[test]
    fn corrupt_files_give_an_empty_inventory_and_are_replaced() {
        let dir = TempDir::new("inventory-corrupt");
        let path = dir.path().join("inventory.json");
        for (contents, reason) in [
            ("{not json", "not an inventory file"),
            (r#"{"version":"1"}"#, "not an inventory file"),
            (r#"{"clients":[]}"#, "no version field"),
            (
                r#"{"version":2,"clients":[]}"#,
                "unsupported format version 2",
            ),
            (r#"{"version":1,"clients":7}"#, "bad contents"),
            (
                r#"{"version":1,"clients":[{"client":{"exe":"x"},"seen":{"count":-1,"first_ns":0,"last_ns":0}}]}"#,
                "bad contents",
            ),
        ] {
            fs::write(&path, contents).expect("write");
            let (mut inv, warning) = Inventory::load(&path);
            let warning = warning.expect(contents);
            assert!(warning.contains(&path.display().to_string()), "{warning}");
            assert!(warning.contains(reason), "{warning}");
            assert!(inv.is_empty());
            inv.save().expect("replace");
            let (reloaded, warning) = Inventory::load(&path);
            assert_eq!(warning, None, "replaced by a valid file after {contents}");
            assert!(reloaded.is_empty());
        }

        let file = fs::File::create(&path).expect("create");
        file.set_len(MAX_FILE_BYTES + 1).expect("sparse file");
        let (_, warning) = Inventory::load(&path);
        assert!(warning.expect("too large").contains("larger than"));
    }

    #[test]
    fn an_inventory_too_large_to_load_is_not_saved() {
        let dir = TempDir::new("inventory-toolarge");
        let path = dir.path().join("inventory.json");
        let (mut inv, _) = Inventory::load(&path);
        observe(&mut inv, CLAUDE);
        inv.save().expect("small enough");
        let saved = fs::read(&path).expect("saved");
        inv.limits.file_bytes = 600;
        let long = "f".repeat(MAX_FIELD_CHARS);
        observe(
            &mut inv,
            Observation {
                fields: &[&long],
                ..CLAUDE
            },
        );
        let err = inv.save().expect_err("too large");
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
        assert!(err.to_string().contains("not saved"), "{err}");
        assert!(inv.is_dirty(), "still to be saved");
        assert_eq!(fs::read(&path).expect("kept"), saved, "the old file stays");
    }

    #[test]
    fn an_inventory_without_a_file_never_writes() {
        let mut inv = Inventory::default();
        observe(&mut inv, CLAUDE);
        assert!(inv.is_dirty());
        inv.save().expect("nothing to write");
        assert!(!inv.is_dirty());
    }

    // -- Output -----------------------------------------------------------------

    /// Several clients, observed out of report order.
    fn sample() -> Inventory {
        let mut inv = Inventory::default();
        let python = Observation {
            exe: "/usr/bin/python3.11",
            build_id: None,
            user_agent: Some("Anthropic/Python 0.40.0"),
            kinds: &["timezone", "user", "proxy", "hostname"],
            fields: &[
                "$.metadata.user_id",
                "$.metadata.session_id",
                "header:x-device-id",
                "$.system[0].text{json}.install_id",
            ],
            time_ns: T0 + 60 * SEC,
            ..CLAUDE
        };
        for obs in [
            python,
            Observation {
                exe: "/opt/agent/bin/agent",
                build_id: Some("abcdef0123456789abcdef"),
                user_agent: None,
                destination: "api.openai.com",
                kinds: &["machine_id"],
                time_ns: T0 + 120 * SEC,
                ..CLAUDE
            },
            Observation {
                destination: "statsig.anthropic.com",
                time_ns: T0 + 30 * SEC,
                ..CLAUDE
            },
            Observation {
                kinds: &["timezone", "kernel_release"],
                fields: &["$.metadata.user_id{json}.device_id"],
                ..CLAUDE
            },
            Observation {
                kinds: &["timezone"],
                time_ns: T0 + 90 * SEC,
                ..CLAUDE
            },
            Observation {
                exe: "/usr/bin/curl",
                build_id: Some("0123"),
                user_agent: Some("curl/7.88.1"),
                destination: "127.0.0.1:8443",
                time_ns: T0 + 3 * SEC,
                ..CLAUDE
            },
            Observation {
                build_id: Some("9999aaaabbbbcccc"),
                user_agent: Some("claude-cli/2.0.15 (external, cli)"),
                time_ns: T0 + 200 * SEC,
                ..CLAUDE
            },
        ] {
            observe(&mut inv, obs);
        }
        inv
    }

    #[test]
    fn table_layout() {
        let want = "\
CLIENT                   BUILD         DESTINATION            KINDS                            ID FIELDS                           REQUESTS  LAST SEEN
agent                    abcdef012345  api.openai.com         machine_id                       -                                          1  2026-11-29T19:03:22Z
curl/7.88.1              0123          127.0.0.1:8443         -                                -                                          1  2026-11-29T19:01:25Z
claude-cli/2.0.14        3f2a9c1d0b7e  api.anthropic.com      kernel_release, timezone         $.metadata.user_id{json}.device_id         2  2026-11-29T19:02:52Z
claude-cli/2.0.14        3f2a9c1d0b7e  statsig.anthropic.com  -                                -                                          1  2026-11-29T19:01:52Z
claude-cli/2.0.15        9999aaaabbbb  api.anthropic.com      -                                -                                          1  2026-11-29T19:04:42Z
Anthropic/Python 0.40.0  -             api.anthropic.com      hostname, proxy, timezone, user  4 fields                                   1  2026-11-29T19:02:22Z
";
        assert_eq!(sample().render_table(), want);
    }

    #[test]
    fn table_cells_are_clipped_and_printable() {
        let mut inv = Inventory::default();
        let kinds: Vec<String> = (0..20).map(|n| format!("kind_number_{n:02}")).collect();
        let kinds: Vec<&str> = kinds.iter().map(String::as_str).collect();
        observe(
            &mut inv,
            Observation {
                exe: "/bin/\u{1b}[31mred\ttool",
                user_agent: None,
                destination: "evil\u{1b}]0;title\u{7}.example",
                kinds: &kinds,
                fields: &["$.a", "$.b"],
                ..CLAUDE
            },
        );
        observe(
            &mut inv,
            Observation {
                user_agent: Some(&format!("{}/1", "p".repeat(60))),
                destination: &"long".repeat(30),
                ..CLAUDE
            },
        );
        let table = inv.render_table();
        assert!(
            !table.chars().any(|c| c.is_control() && c != '\n'),
            "{table:?}"
        );
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[1].starts_with("?[31mred?tool  "), "{table}");
        assert!(lines[1].contains("evil?]0;title?.example"), "{table}");
        assert!(
            lines[1].contains("kind_number_00, kind_number_01, kind_number_02, +17 more  $.a, $.b"),
            "{table}"
        );
        assert!(
            lines[2].starts_with(&format!("{}…  ", "p".repeat(39))),
            "{table}"
        );
        assert!(
            lines[2].contains(&format!("{}…", "long".repeat(11) + "lon")),
            "{table}"
        );
        // Every row has its columns at the header's positions.
        let at = |line: &str| {
            let byte = line.find("LAST SEEN").or_else(|| line.find("2026-"));
            byte.map(|b| line[..b].chars().count())
        };
        assert!(lines.iter().all(|l| at(l) == at(lines[0])), "{table}");
    }

    #[test]
    fn empty_table_explains_itself() {
        let table = Inventory::default().render_table();
        assert_eq!(table.lines().count(), 1);
        assert!(table.contains("empty"));
    }

    #[test]
    fn table_says_when_the_inventory_is_incomplete() {
        let mut inv = small(Limits {
            clients: 1,
            ..LIMITS
        });
        observe(&mut inv, CLAUDE);
        observe(
            &mut inv,
            Observation {
                exe: "/bin/other",
                ..CLAUDE
            },
        );
        let table = inv.render_table();
        assert!(
            table.ends_with(
                "Incomplete: the bounds evicted 1 clients, 0 destinations, 0 kinds and 0 fields.\n"
            ),
            "{table}"
        );
    }

    #[test]
    fn snapshot_order_is_deterministic() {
        let snapshot = sample().snapshot();
        let order: Vec<(&str, Option<&str>, Vec<&str>)> = snapshot
            .clients
            .iter()
            .map(|c| {
                (
                    c.client.exe.as_str(),
                    c.client.version.as_deref(),
                    c.destinations
                        .iter()
                        .map(|d| d.destination.as_str())
                        .collect(),
                )
            })
            .collect();
        assert_eq!(
            order,
            [
                ("/opt/agent/bin/agent", None, vec!["api.openai.com"]),
                ("/usr/bin/curl", Some("7.88.1"), vec!["127.0.0.1:8443"]),
                (
                    "/usr/bin/node",
                    Some("2.0.14"),
                    vec!["api.anthropic.com", "statsig.anthropic.com"]
                ),
                ("/usr/bin/node", Some("2.0.15"), vec!["api.anthropic.com"]),
                (
                    "/usr/bin/python3.11",
                    Some("0.40.0"),
                    vec!["api.anthropic.com"]
                ),
            ]
        );
        let python = &snapshot.clients[4].destinations[0];
        let fields: Vec<&str> = python.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            fields,
            [
                "$.metadata.session_id",
                "$.metadata.user_id",
                "$.system[*].text{json}.install_id",
                "header:x-device-id",
            ]
        );
        // The same observations in another order give the same JSON.
        assert_eq!(
            serde_json::to_string(&snapshot).expect("json"),
            serde_json::to_string(&sample().snapshot()).expect("json")
        );
        let json = serde_json::to_value(&snapshot).expect("json");
        assert_eq!(
            json["clients"][1],
            serde_json::json!({
                "exe": "/usr/bin/curl",
                "build_id": "0123",
                "product": "curl",
                "version": "7.88.1",
                "first_seen": "2026-11-29T19:01:25.332508018Z",
                "last_seen": "2026-11-29T19:01:25.332508018Z",
                "requests": 1,
                "destinations": [{
                    "destination": "127.0.0.1:8443",
                    "first_seen": "2026-11-29T19:01:25.332508018Z",
                    "last_seen": "2026-11-29T19:01:25.332508018Z",
                    "requests": 1,
                    "requests_with_findings": 0,
                    "kinds": [],
                    "fields": [],
                }],
            })
        );
        assert_eq!(
            json["evicted"],
            serde_json::json!({"clients": 0, "destinations": 0, "kinds": 0, "fields": 0})
        );
    }

    #[test]
    fn change_serialises_for_an_event() {
        let mut inv = Inventory::default();
        observe(&mut inv, CLAUDE);
        let change = observe(
            &mut inv,
            Observation {
                build_id: None,
                user_agent: Some("claude-cli/2.0.15"),
                kinds: &["timezone"],
                ..CLAUDE
            },
        )
        .expect("new build");
        let text = serde_json::to_string(&change).expect("json");
        assert_eq!(
            text,
            concat!(
                r#"{"reason":"new_build","previous_build":{"build_id":"3f2a9c1d0b7e55aa00112233445566778899aabb","version":"2.0.14"},"#,
                r#""new_kinds":["timezone"],"new_fields":[],"#,
                r#""entry":{"client":{"exe":"/usr/bin/node","product":"claude-cli","version":"2.0.15"},"#,
                r#""destination":"api.anthropic.com","first_seen":"2026-11-29T19:01:22.332508018Z","#,
                r#""last_seen":"2026-11-29T19:01:22.332508018Z","requests":1,"requests_with_findings":1,"#,
                r#""kinds":[{"name":"timezone","count":1,"first_seen":"2026-11-29T19:01:22.332508018Z","#,
                r#""last_seen":"2026-11-29T19:01:22.332508018Z"}],"fields":[]}}"#,
            )
        );
        assert_eq!(change.reason.as_str(), "new_build");
    }

    #[test]
    fn rfc3339_formatting() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(1_500_000_001), "1970-01-01T00:00:01.500000001Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(
            rfc3339(951_782_400 * 1_000_000_000),
            "2000-02-29T00:00:00.000000000Z"
        );
        assert_eq!(rfc3339(i64::MAX), "2262-04-11T23:47:16.854775807Z");
        assert_eq!(rfc3339(i64::MIN), "1677-09-21T00:12:43.145224192Z");
        assert_eq!(
            rfc3339_seconds(1_795_978_882_332_508_018),
            "2026-11-29T19:01:22Z"
        );
    }
}
