//! Collecting the host's facts, a process's facts, and keeping them current.

use std::{
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

use super::{
    Fact, net, proxy,
    source::{Found, Sources, read_bytes, under},
    system, tz,
};

/// The most variables read from one process environment.
const MAX_ENV_VARS: usize = 4096;

/// The host's facts, sorted, each kind and value once (with the name it was
/// first found under: the environment before files, system files before
/// per-user ones).
pub fn collect(src: &Sources) -> Vec<Fact> {
    collect_at(src, now())
}

/// [`collect`] with UTC offsets computed for `now` (seconds since the epoch).
pub(crate) fn collect_at(src: &Sources, now: i64) -> Vec<Fact> {
    let mut out = Found::default();
    let accounts = system::accounts(src);
    let homes: Vec<String> = accounts.iter().map(|a| a.home.clone()).collect();
    tz::host_facts(src, now, &mut out);
    proxy::host_facts(src, &homes, &mut out);
    system::uname_facts(src, &mut out);
    system::os_release_facts(src, &mut out);
    system::hostname_facts(src, &mut out);
    system::user_facts(&accounts, &mut out);
    system::id_facts(src, &mut out);
    net::mac_facts(src, &mut out);
    net::ip_facts(src, &mut out);
    system::cpu_facts(src, &mut out);
    system::locale_facts(src, &mut out);
    out.finish()
}

/// Facts only one process has: proxy, `TZ`, `LANG` and `LC_ALL` of its
/// environment (`/proc/PID/environ` under `root`), named `pid PID env VAR`;
/// its working directory and the names in it; its user and home directory as
/// its own root's `/etc/passwd` has them (containers have their own); its
/// executable's path. Empty if the process is gone or its environment
/// unreadable.
pub fn process_facts(root: &Path, pid: u32) -> Vec<Fact> {
    process_facts_at(root, pid, now())
}

/// [`process_facts`] with UTC offsets computed for `now`.
pub(crate) fn process_facts_at(root: &Path, pid: u32, now: i64) -> Vec<Fact> {
    let mut out = Found::default();
    let Some(environ) = read_bytes(&under(root, &format!("/proc/{pid}/environ"))) else {
        return Vec::new();
    };
    for entry in environ.split(|&b| b == 0).take(MAX_ENV_VARS) {
        let entry = String::from_utf8_lossy(entry);
        let Some((var, value)) = entry.split_once('=') else {
            continue;
        };
        let name = format!("pid {pid} env {var}");
        match var {
            "TZ" => {
                tz::tz_var_facts(root, &name, value, now, &mut out);
            }
            "LANG" | "LC_ALL" => system::locale_fact(&name, value, &mut out),
            _ => proxy::env_var(&name, var, value, &mut out),
        }
    }
    system::process_facts(root, pid, &mut out);
    out.finish()
}

/// Seconds since the epoch now (0 if the clock is before 1970).
fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The host's facts, re-collected on demand; tells whether anything changed
/// (a new proxy, a renamed host, a DST switch of the UTC offset).
#[derive(Debug, Clone)]
pub struct FactSet {
    src: Sources,
    facts: Vec<Fact>,
    fingerprint: u64,
}

impl FactSet {
    /// Collect the facts of `src` once.
    pub fn new(src: Sources) -> Self {
        let facts = collect(&src);
        let fingerprint = fingerprint(&facts);
        Self {
            src,
            facts,
            fingerprint,
        }
    }

    /// The current facts, sorted.
    pub fn facts(&self) -> &[Fact] {
        &self.facts
    }

    /// Collect again; true when the set differs from the previous one.
    pub fn refresh(&mut self) -> bool {
        self.replace(collect(&self.src))
    }

    /// Adopt `facts` as the current set; true when it differs.
    fn replace(&mut self, facts: Vec<Fact>) -> bool {
        if facts == self.facts {
            return false;
        }
        self.fingerprint = fingerprint(&facts);
        self.facts = facts;
        true
    }

    /// A hash of the facts (FNV-1a over kind, name, value and strength):
    /// stable across runs and Rust versions, unlike `DefaultHasher`, so it can
    /// be stored or compared between sensor runs.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }
}

/// FNV-1a of every fact's fields, each terminated so that field boundaries
/// cannot shift between facts with the same concatenation.
fn fingerprint(facts: &[Fact]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes.iter().chain(&[0xff]) {
            h = (h ^ u64::from(b)).wrapping_mul(PRIME);
        }
    };
    for f in facts {
        feed(f.kind.as_str().as_bytes());
        feed(f.name.as_bytes());
        feed(f.value.as_bytes());
        feed(match f.strength {
            super::Strength::Strong => b"strong",
            super::Strength::Weak => b"weak",
        });
    }
    h
}

#[cfg(test)]
mod tests;
