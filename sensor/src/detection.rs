//! The detect and alert stages inside `telltale run`: host facts kept current,
//! the compiled detector, the identifier memory and the evidence key in the
//! state directory, and aggregation of repeated findings.

use std::{
    collections::{BTreeSet, HashSet},
    io::Write as _,
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use serde::Serialize;
use telltale::{
    alert::{Aggregate, Aggregator, Decision},
    decode::{Exchange, Start},
    detect::{
        Detector, FactRef, Finding, Hit, HitSource, Request, RuleRef, RuleSet, Tracking, ident,
    },
    facts::{Fact, FactSet, Sources, process_facts},
    inventory::{Change as InventoryChange, Inventory, Observation},
    llm::{self, Catalog, Role, TextPart},
};

use crate::{config::DetectCfg, conn::ConnKey, event::authority, process::ProcessContext};

/// Extra facts learned from processes (environment, working directory and its
/// names, user, executable), at most.
const MAX_PROCESS_FACTS: usize = 1024;
/// Inventory changes waiting to be emitted, at most (more are counted only).
const MAX_PENDING_CHANGES: usize = 1024;
/// Processes whose environment was read, remembered at most.
const MAX_PROCESSES_READ: usize = 65536;

/// The detection state of a running sensor.
pub struct Detection {
    rules: RuleSet,
    facts: FactSet,
    process_facts: BTreeSet<Fact>,
    /// Which process brought which of `process_facts`, oldest first, so that
    /// the oldest processes' facts make room for new ones.
    process_fact_owners: std::collections::VecDeque<((u32, u64), Vec<Fact>)>,
    read_pids: HashSet<(u32, u64)>,
    detector: Detector,
    key: [u8; 32],
    store: ident::IdentStore,
    store_path: Option<PathBuf>,
    session: String,
    aggregator: Aggregator<Alert>,
    /// What each client sends to each destination (`<state>/inventory.json`).
    inventory: Inventory,
    /// Inventory changes since last taken, for `inventory` events.
    inventory_changes: Vec<InventoryChange>,
    /// Requests inspected, findings, alerts emitted.
    pub stats: DetectStats,
}

/// Detection counters for `sensor.status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DetectStats {
    /// Alerts emitted, by rule id.
    pub alerts_by_rule: std::collections::BTreeMap<String, u64>,
    /// LLM API requests inspected.
    pub requests: u64,
    /// Requests whose body could not be read as their API's request.
    pub unreadable: u64,
    /// Findings (before aggregation).
    pub findings: u64,
    /// Alerts emitted (first occurrences and aggregates).
    pub alerts: u64,
    /// Repeats folded into aggregates.
    pub suppressed: u64,
    /// Rules compiled.
    pub rules: usize,
    /// Host facts known (host-wide and from process environments).
    pub facts: usize,
    /// Needles compiled from facts and literals.
    pub needles: usize,
    /// Fact refreshes that changed the set.
    pub fact_changes: u64,
    /// Facts of earlier processes dropped to make room for new processes'
    /// (working directories, their file names, environments).
    pub process_facts_evicted: u64,
    /// Changes to the client inventory (new client, build, destination, kinds).
    pub inventory_changes: u64,
}

/// The `alert` object of an alert event.
#[derive(Debug, Clone, Serialize)]
pub struct AlertOut {
    /// The rule.
    #[serde(flatten)]
    pub rule: RuleRef,
    /// One line: who sent what to whom.
    pub summary: String,
    /// Host facts matched (kind and name; never values).
    pub facts: Vec<FactRef>,
    /// Where each hit sat and how it was written, with redacted evidence.
    pub hits: Vec<Hit>,
    /// Hits in all.
    pub total_hits: usize,
    /// Occurrences this alert stands for (1, or the count of an aggregate).
    pub occurrences: u64,
    /// For an aggregate: the span of the window's occurrences.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowOut>,
}

/// The span of an aggregate.
#[derive(Debug, Clone, Serialize)]
pub struct WindowOut {
    /// First occurrence (RFC 3339).
    pub first: String,
    /// Last occurrence (RFC 3339).
    pub last: String,
}

/// The request an alert is about.
#[derive(Debug, Clone, Serialize)]
pub struct RequestOut {
    /// Method.
    pub method: String,
    /// Destination host (and port).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// Path without the query.
    pub path: String,
    /// Provider id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// API shape.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api: Option<llm::Api>,
    /// Model asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// One alert to emit, before its process and connection context.
#[derive(Debug, Clone)]
pub struct Alert {
    /// The request.
    pub request: RequestOut,
    /// The alert.
    pub alert: AlertOut,
    /// Time (Unix ns).
    pub time_ns: i128,
    /// The connection it is about (for aggregates emitted later).
    pub conn: ConnKey,
}

impl Detection {
    /// Loads rules, collects facts, opens the state directory.
    pub fn start(cfg: &DetectCfg, state_dir: &Path) -> anyhow::Result<Self> {
        let rules = load_rules(cfg)?;
        let facts = FactSet::new(Sources::host());
        let key = evidence_key(state_dir);
        let (store, store_path) = open_store(state_dir, cfg.identifier_memory);
        let (inventory, warning) = Inventory::load(&state_dir.join("inventory.json"));
        if let Some(w) = warning {
            tracing::warn!("{w}");
        }
        let detector = Detector::new(&rules, facts.facts(), key)
            .map_err(|e| anyhow::anyhow!("compiling the rules: {e}"))?;
        let mut d = Self {
            rules,
            facts,
            process_facts: BTreeSet::new(),
            process_fact_owners: std::collections::VecDeque::new(),
            read_pids: HashSet::new(),
            detector,
            key,
            store,
            store_path,
            inventory,
            inventory_changes: Vec::new(),
            session: uuid::Uuid::now_v7().simple().to_string(),
            aggregator: Aggregator::new(
                i128::from(cfg.aggregate_window_secs) * 1_000_000_000,
                16384,
            ),
            stats: DetectStats::default(),
        };
        d.update_stats();
        Ok(d)
    }

    fn update_stats(&mut self) {
        self.stats.rules = self.detector.rule_count();
        self.stats.facts = self.facts.facts().len() + self.process_facts.len();
        self.stats.needles = self.detector.needle_count();
        self.stats.suppressed = self.aggregator.suppressed();
    }

    fn rebuild(&mut self) {
        let mut all: Vec<Fact> = self.facts.facts().to_vec();
        all.extend(self.process_facts.iter().cloned());
        match Detector::new(&self.rules, &all, self.key) {
            Ok(d) => self.detector = d,
            Err(e) => {
                tracing::error!(error = %e, "recompiling the detector failed; keeping the previous one")
            }
        }
        self.update_stats();
    }

    /// The values of facts an alert names (to keep them out of its context).
    pub fn values_of(&self, facts: &[FactRef]) -> Vec<String> {
        self.facts
            .facts()
            .iter()
            .chain(self.process_facts.iter())
            .filter(|f| facts.iter().any(|r| r.kind == f.kind && r.name == f.name))
            .map(|f| f.value.clone())
            .collect()
    }

    /// Loads the rules again (SIGHUP); on error the running rules stay.
    pub fn reload_rules(&mut self, cfg: &DetectCfg) -> anyhow::Result<usize> {
        let rules = load_rules(cfg)?;
        let mut all: Vec<Fact> = self.facts.facts().to_vec();
        all.extend(self.process_facts.iter().cloned());
        let detector = Detector::new(&rules, &all, self.key)
            .map_err(|e| anyhow::anyhow!("compiling the rules: {e}"))?;
        self.rules = rules;
        self.detector = detector;
        self.update_stats();
        Ok(self.stats.rules)
    }

    /// Re-reads the host's facts; recompiles when they changed.
    pub fn refresh_facts(&mut self) {
        if self.facts.refresh() {
            self.stats.fact_changes += 1;
            tracing::info!(facts = self.facts.facts().len(), "host facts changed");
            self.rebuild();
        }
    }

    /// Learns a process's own proxy and time-zone settings the first time it sends
    /// a request.
    fn learn_process(&mut self, ctx: Option<&ProcessContext>, pid: u32) {
        let start = ctx.map_or(0, |c| c.start_time);
        if self.read_pids.contains(&(pid, start)) {
            return;
        }
        if self.read_pids.len() >= MAX_PROCESSES_READ {
            self.read_pids.clear();
        }
        self.read_pids.insert((pid, start));
        let host: HashSet<(telltale::facts::FactKind, &str)> = self
            .facts
            .facts()
            .iter()
            .map(|f| (f.kind, f.value.as_str()))
            .collect();
        let new: Vec<Fact> = process_facts(Path::new("/"), pid)
            .into_iter()
            .filter(|f| !host.contains(&(f.kind, f.value.as_str())))
            .filter(|f| {
                !self
                    .process_facts
                    .iter()
                    .any(|p| p.kind == f.kind && p.value == f.value)
            })
            .collect();
        if !new.is_empty() && new.len() <= MAX_PROCESS_FACTS {
            // The oldest processes' facts make room: a client running now
            // matters more than one seen long ago.
            while self.process_facts.len() + new.len() > MAX_PROCESS_FACTS {
                let Some((_, old)) = self.process_fact_owners.pop_front() else {
                    break;
                };
                for f in &old {
                    self.process_facts.remove(f);
                }
                self.stats.process_facts_evicted += old.len() as u64;
            }
            self.process_fact_owners
                .push_back(((pid, start), new.clone()));
            self.process_facts.extend(new);
            self.rebuild();
        }
    }

    /// What a request is, for detection: its endpoint and text parts. None when
    /// it is not a request to a known LLM API.
    fn prepare<'x>(x: &'x Exchange, catalog: &Catalog) -> Option<Prepared<'x>> {
        let req = x.request.as_ref()?;
        let Start::Request { method, target, .. } = &req.head.start else {
            return None;
        };
        let endpoint = catalog.recognise(method, authority(&req.head), target)?;
        let (mut parts, model, readable) = match llm::parse_request(&endpoint, req.body.content()) {
            Ok(r) => (r.parts, r.model, true),
            Err(_) => (Vec::new(), endpoint.model_from_path.clone(), false),
        };
        parts.extend(req.head.headers.iter().map(|h| TextPart {
            path: format!("header:{}", h.name),
            role: Role::Header,
            text: String::from_utf8_lossy(&h.value).into_owned(),
        }));
        Some(Prepared {
            head: &req.head,
            method,
            path: target.split('?').next().unwrap_or(target),
            dest: authority(&req.head).map(str::to_owned),
            endpoint,
            parts,
            model,
            readable,
        })
    }

    /// What rules a request of process `pid` would set off, without
    /// remembering anything of it (identifier rules, which need the request
    /// remembered, are not evaluated): for a decision before it is sent.
    pub fn evaluate(
        &mut self,
        x: &Exchange,
        catalog: &Catalog,
        ctx: Option<&ProcessContext>,
        pid: u32,
        comm: &str,
    ) -> Option<Evaluated> {
        let p = Self::prepare(x, catalog)?;
        self.learn_process(ctx, pid);
        let exe = ctx.and_then(|c| c.exe.clone());
        let request = Request {
            provider: Some(&p.endpoint.provider),
            api: Some(p.endpoint.api),
            authority: p.dest.as_deref(),
            method: p.method,
            path: p.path,
            exe: exe.as_deref(),
            comm,
            parts: &p.parts,
        };
        let findings = self.detector.inspect(&request, None);
        Some(Evaluated::new(p.summary(), p.head, &findings, p.readable))
    }

    /// Inspects a request the watched process sent; returns the alerts to emit
    /// now and what the request was, with every rule it set off (before
    /// aggregation), for enforcement.
    pub fn inspect(
        &mut self,
        x: &Exchange,
        catalog: &Catalog,
        ctx: Option<&ProcessContext>,
        conn: ConnKey,
        comm: &str,
        time_ns: i128,
    ) -> (Vec<Alert>, Option<Evaluated>) {
        let pid = conn.pid;
        let Some(p) = Self::prepare(x, catalog) else {
            return (Vec::new(), None);
        };
        self.stats.requests += 1;
        if !p.readable {
            self.stats.unreadable += 1;
        }
        self.learn_process(ctx, pid);
        let Prepared {
            head,
            method,
            path,
            dest,
            endpoint,
            parts,
            model,
            readable,
        } = p;
        let exe = ctx.and_then(|c| c.exe.clone());
        let request = Request {
            provider: Some(&endpoint.provider),
            api: Some(endpoint.api),
            authority: dest.as_deref(),
            method,
            path,
            exe: exe.as_deref(),
            comm,
            parts: &parts,
        };
        let mut tracking = Tracking {
            store: &mut self.store,
            client: ident::ClientKey {
                exe: exe.clone().unwrap_or_else(|| comm.to_owned()),
                build: ctx
                    .and_then(|c| c.exe_build_id.clone().or_else(|| c.exe_sha256.clone()))
                    .unwrap_or_default(),
            },
            instance: format!("{pid}@{}", ctx.map_or(0, |c| c.start_time)),
            session: self.session.clone(),
            now_unix: (time_ns / 1_000_000_000) as i64,
        };
        let findings = self.detector.inspect(&request, Some(&mut tracking));
        self.stats.findings += findings.len() as u64;
        self.take_stock(&findings, ctx, &exe, comm, head, dest.as_deref(), time_ns);
        let request_out = RequestOut {
            method: method.clone(),
            authority: dest.clone(),
            path: path.to_owned(),
            provider: Some(endpoint.provider.clone()),
            api: Some(endpoint.api),
            model,
        };
        let evaluated = Evaluated::new(request_out.clone(), head, &findings, readable);
        let mut out = Vec::new();
        let mut closed = Vec::new();
        for f in findings {
            let key = format!(
                "{}|{}|{}",
                f.signature(),
                exe.as_deref().unwrap_or(comm),
                dest.as_deref().unwrap_or("")
            );
            let alert = Alert {
                request: request_out.clone(),
                alert: alert_out(&f, comm, dest.as_deref()),
                time_ns,
                conn,
            };
            if self
                .aggregator
                .observe(&key, time_ns, alert.clone(), &mut closed)
                == Decision::Emit
            {
                out.push(alert);
            }
        }
        // Windows closed early to make room still report their repeats.
        out.extend(closed.into_iter().map(aggregate));
        self.stats.alerts += out.len() as u64;
        for a in &out {
            *self
                .stats
                .alerts_by_rule
                .entry(a.alert.rule.id.clone())
                .or_default() += 1;
        }
        self.update_stats();
        (out, Some(evaluated))
    }

    /// Aggregate alerts of the windows that ended (all of them at shutdown).
    pub fn close_windows(&mut self, now_ns: Option<i128>) -> Vec<Alert> {
        let done: Vec<Alert> = self
            .aggregator
            .close(now_ns)
            .into_iter()
            .map(aggregate)
            .collect();
        self.stats.alerts += done.len() as u64;
        for a in &done {
            *self
                .stats
                .alerts_by_rule
                .entry(a.alert.rule.id.clone())
                .or_default() += 1;
        }
        self.update_stats();
        done
    }

    /// Records in the inventory what this request of this client carried.
    #[allow(clippy::too_many_arguments)]
    fn take_stock(
        &mut self,
        findings: &[Finding],
        ctx: Option<&ProcessContext>,
        exe: &Option<String>,
        comm: &str,
        head: &telltale::decode::Head,
        dest: Option<&str>,
        time_ns: i128,
    ) {
        let mut kinds: BTreeSet<String> = BTreeSet::new();
        let mut fields: BTreeSet<String> = BTreeSet::new();
        for f in findings {
            if f.facts.is_empty()
                && !f
                    .hits
                    .iter()
                    .any(|h| matches!(h.source, HitSource::Identifier { .. }))
            {
                // Rules on patterns (git status output, literals): the rule
                // stands for what was sent.
                kinds.insert(f.rule.id.clone());
            }
            kinds.extend(f.facts.iter().map(|x| x.kind.as_str().to_owned()));
            for h in &f.hits {
                if matches!(h.source, HitSource::Identifier { .. }) {
                    fields.insert(h.path.clone());
                }
            }
        }
        let user_agent = head
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("user-agent"))
            .map(|h| String::from_utf8_lossy(&h.value).into_owned());
        kinds.extend(declared_kinds(head, user_agent.as_deref()).map(str::to_owned));
        let kinds: Vec<&str> = kinds.iter().map(String::as_str).collect();
        let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
        let obs = Observation {
            exe: exe.as_deref().unwrap_or(comm),
            build_id: ctx.and_then(|c| c.exe_build_id.as_deref()),
            user_agent: user_agent.as_deref(),
            destination: dest.unwrap_or(""),
            kinds: &kinds,
            fields: &fields,
            time_ns,
        };
        if let Some(change) = self.inventory.observe(&obs) {
            self.stats.inventory_changes += 1;
            if self.inventory_changes.len() < MAX_PENDING_CHANGES {
                self.inventory_changes.push(change);
            }
        }
    }

    /// The inventory changes since the last call, for `inventory` events.
    pub fn take_inventory_changes(&mut self) -> Vec<InventoryChange> {
        std::mem::take(&mut self.inventory_changes)
    }

    /// Writes the identifier memory and the inventory when they changed.
    pub fn save(&mut self) {
        if self.inventory.is_dirty()
            && let Err(e) = self.inventory.save()
        {
            tracing::warn!(error = %e, "cannot save the client inventory");
        }
        if self.store_path.is_some()
            && self.store.dirty()
            && let Err(e) = self.store.flush()
        {
            tracing::warn!(error = %e, "cannot save the identifier memory");
        }
    }
}

/// What a request's headers declare about the host, whatever the values: SDKs
/// send the OS, CPU architecture and runtime version in `X-Stainless-*`
/// headers, and many clients name the OS and architecture in their
/// User-Agent (`claude-cli/2.0.14 (external, cli; linux; x64)`). These are
/// inventory kinds (`os_name`, `arch`, `runtime_version`), not findings.
fn declared_kinds(
    head: &telltale::decode::Head,
    user_agent: Option<&str>,
) -> impl Iterator<Item = &'static str> {
    let has = |name: &str| {
        head.headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case(name))
    };
    let ua = user_agent.unwrap_or("").to_ascii_lowercase();
    let ua_comment = ua.split_once('(').map_or("", |(_, c)| c);
    let ua_has = |words: &[&str]| {
        ua_comment
            .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .any(|w| words.contains(&w))
    };
    let os = has("x-stainless-os") || ua_has(&["linux", "darwin", "macos", "windows", "win32"]);
    let arch = has("x-stainless-arch") || ua_has(&["x64", "x86_64", "amd64", "arm64", "aarch64"]);
    let runtime = has("x-stainless-runtime-version");
    [
        (os, "os_name"),
        (arch, "arch"),
        (runtime, "runtime_version"),
    ]
    .into_iter()
    .filter_map(|(on, k)| on.then_some(k))
}

/// The alert that stands for a window's repeats: the last occurrence, with the
/// count and the span.
fn aggregate(a: Aggregate<Alert>) -> Alert {
    let mut alert = a.last;
    alert.alert.occurrences = a.count;
    alert.alert.window = Some(WindowOut {
        first: crate::event::rfc3339(a.first_ns),
        last: crate::event::rfc3339(a.last_ns),
    });
    alert.time_ns = a.last_ns;
    alert
}

fn alert_out(f: &Finding, comm: &str, dest: Option<&str>) -> AlertOut {
    let mut what: Vec<&str> = f.facts.iter().map(|x| x.kind.as_str()).collect();
    what.dedup();
    let what = if what.is_empty() {
        format!("{} identifier or pattern hit(s)", f.total_hits)
    } else {
        what.join(", ")
    };
    AlertOut {
        rule: f.rule.clone(),
        summary: format!(
            "{comm} sent {what} to {}: {}",
            dest.unwrap_or("an AI service"),
            f.rule.title
        ),
        facts: f.facts.clone(),
        hits: f.hits.clone(),
        total_hits: f.total_hits,
        occurrences: 1,
        window: None,
    }
}

/// A request to a known LLM API, taken apart for detection.
struct Prepared<'x> {
    head: &'x telltale::decode::Head,
    method: &'x String,
    path: &'x str,
    dest: Option<String>,
    endpoint: llm::Endpoint,
    parts: Vec<TextPart>,
    model: Option<String>,
    readable: bool,
}

impl Prepared<'_> {
    fn summary(&self) -> RequestOut {
        RequestOut {
            method: self.method.clone(),
            authority: self.dest.clone(),
            path: self.path.to_owned(),
            provider: Some(self.endpoint.provider.clone()),
            api: Some(self.endpoint.api),
            model: self.model.clone(),
        }
    }
}

/// A request to a known LLM API and what it set off, for enforcement.
#[derive(Debug, Clone)]
pub struct Evaluated {
    /// The request.
    pub summary: RequestOut,
    /// The client's product name from its User-Agent, as the inventory has it.
    pub client: Option<String>,
    /// Ids of the rules that matched, distinct, in order.
    pub rules: Vec<String>,
    /// Names of the host facts found (never their values).
    pub facts: Vec<String>,
    /// Whether the body could be read as the API's JSON.
    pub readable: bool,
}

impl Evaluated {
    fn new(
        summary: RequestOut,
        head: &telltale::decode::Head,
        findings: &[Finding],
        readable: bool,
    ) -> Self {
        let mut seen = BTreeSet::new();
        let rules = findings
            .iter()
            .filter(|f| seen.insert(f.rule.id.clone()))
            .map(|f| f.rule.id.clone())
            .collect();
        let facts: BTreeSet<String> = findings
            .iter()
            .flat_map(|f| f.facts.iter().map(|x| x.name.clone()))
            .collect();
        let client = head.values("user-agent").next().and_then(|ua| {
            telltale::inventory::product_from_user_agent(&String::from_utf8_lossy(ua))
                .map(|(p, _)| p)
        });
        Self {
            summary,
            client,
            rules,
            facts: facts.into_iter().collect(),
            readable,
        }
    }
}

/// The embedded rules with the operator's files and directories over them.
pub fn load_rules(cfg: &DetectCfg) -> anyhow::Result<RuleSet> {
    let mut rules = RuleSet::embedded()?;
    for f in &cfg.rule_files {
        rules.add_file(f)?;
    }
    for d in &cfg.rule_dirs {
        rules.add_dir(d)?;
    }
    Ok(rules)
}

/// The key of evidence hashes: `evidence.key` in the state directory, created
/// (0600) on first start so hashes stay comparable across restarts. Without a
/// usable state directory a per-run key is used, and said so.
fn evidence_key(dir: &Path) -> [u8; 32] {
    let path = dir.join("evidence.key");
    if let Ok(bytes) = std::fs::read(&path)
        && let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice())
    {
        return key;
    }
    let mut key = [0u8; 32];
    let random = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut key));
    if random.is_err() {
        // Never hash with a predictable key: fall back to the clock and pid mix.
        let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
        key[..seed.len().min(32)].copy_from_slice(&seed.as_bytes()[..seed.len().min(32)]);
    }
    let written = std::fs::create_dir_all(dir)
        .and_then(|()| {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
        })
        .and_then(|mut f| f.write_all(&key));
    if let Err(e) = written {
        tracing::warn!(
            path = %path.display(),
            error = %e,
            "cannot store the evidence key; evidence hashes will differ after a restart"
        );
    }
    key
}

fn open_store(dir: &Path, max: usize) -> (ident::IdentStore, Option<PathBuf>) {
    let path = dir.join("identifiers.json");
    if std::fs::create_dir_all(dir).is_err() {
        tracing::warn!(dir = %dir.display(), "no state directory: identifiers are remembered until the sensor stops");
        return (ident::IdentStore::in_memory(max), None);
    }
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    match ident::IdentStore::open(&path, max) {
        Ok(s) => (s, Some(path)),
        Err(e) => {
            let aside = path.with_extension("json.corrupt");
            let _ = std::fs::rename(&path, &aside);
            tracing::warn!(error = %e, moved_to = %aside.display(), "the identifier memory was unreadable; starting empty");
            match ident::IdentStore::open(&path, max) {
                Ok(s) => (s, Some(path)),
                Err(_) => (ident::IdentStore::in_memory(max), None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use telltale::decode::{Head, Header, Start, Version};

    use super::declared_kinds;

    fn head(headers: &[(&str, &str)]) -> Head {
        Head {
            start: Start::Request {
                method: "POST".into(),
                target: "/v1/messages".into(),
                authority: None,
                scheme: None,
            },
            version: Version::Http11,
            headers: headers
                .iter()
                .map(|(n, v)| Header {
                    name: (*n).into(),
                    value: v.as_bytes().to_vec(),
                })
                .collect(),
        }
    }

    #[test]
    fn headers_declare_os_arch_and_runtime() {
        let sdk = head(&[
            ("x-stainless-os", "Linux"),
            ("x-stainless-arch", "x64"),
            ("x-stainless-runtime-version", "v20.19.2"),
        ]);
        let got: Vec<_> = declared_kinds(&sdk, Some("Anthropic/Python 2.14.0")).collect();
        assert_eq!(got, ["os_name", "arch", "runtime_version"]);
        let cli = head(&[]);
        let ua = "claude-cli/2.0.14 (external, cli; linux; x64)";
        assert_eq!(
            declared_kinds(&cli, Some(ua)).collect::<Vec<_>>(),
            ["os_name", "arch"]
        );
        // A product token is not a declaration; neither is a word outside ().
        assert_eq!(declared_kinds(&cli, Some("linux-tool/1.0 x64")).count(), 0);
        assert_eq!(declared_kinds(&cli, None).count(), 0);
    }
}
