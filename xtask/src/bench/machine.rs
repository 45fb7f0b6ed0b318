//! Facts about the machine and the code measured, recorded with every result.

use std::{path::Path, process::Command, time::SystemTime};

use crate::cmd;

/// The machine and versions a result was measured on.
#[derive(Debug, Clone)]
pub struct Machine {
    pub cpu_model: String,
    pub cores: usize,
    /// `uname -r`.
    pub kernel: String,
    pub hostname: String,
    /// Short commit of HEAD, with "+dirty" when the sensor's crates have
    /// uncommitted changes.
    pub commit: String,
    /// Versions of the programs involved ("openssl" -> "OpenSSL 3.0.19 ...").
    pub tools: Vec<(&'static str, String)>,
}

impl Machine {
    pub fn probe(root: &Path) -> Self {
        Self {
            cpu_model: cpu_model().unwrap_or_else(|| "unknown".into()),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: read_trimmed("/proc/sys/kernel/osrelease"),
            hostname: read_trimmed("/proc/sys/kernel/hostname"),
            commit: commit(root),
            tools: tool_versions(),
        }
    }

    /// The host name up to its first dot.
    pub fn short_hostname(&self) -> &str {
        let short = self.hostname.split('.').next().unwrap_or_default();
        if short.is_empty() { "unknown" } else { short }
    }
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim() == "model name")
        .map(|(_, v)| v.trim().to_owned())
}

fn commit(root: &Path) -> String {
    let git = |args: &[&str]| {
        let mut c = Command::new("git");
        c.args(args).current_dir(root);
        cmd::stdout(&mut c).ok()
    };
    let Some(head) = git(&["rev-parse", "--short=12", "HEAD"]) else {
        return "unknown".into();
    };
    let changes = git(&[
        "status",
        "--porcelain",
        "--",
        "sensor",
        "sensor-ebpf",
        "sensor-common",
    ]);
    match changes {
        Some(c) if c.is_empty() => head,
        _ => format!("{head}+dirty"),
    }
}

fn tool_versions() -> Vec<(&'static str, String)> {
    let version = |program: &str, arg: &str| {
        let out = cmd::output(Command::new(program).arg(arg)).ok()?;
        // nginx prints its version on stderr.
        let text = [out.stdout, out.stderr].concat();
        let text = String::from_utf8_lossy(&text);
        text.lines().next().map(|l| l.trim().to_owned())
    };
    [
        ("openssl", version("openssl", "version")),
        ("nginx", version("nginx", "-v")),
        ("bpftrace", version("bpftrace", "--version")),
    ]
    .into_iter()
    .filter_map(|(name, v)| Some((name, v?)))
    .collect()
}

/// Now in UTC as ("YYYY-MM-DD", "YYYY-MM-DDTHH:MM:SSZ").
pub fn utc_now() -> (String, String) {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc(secs)
}

fn utc(unix_secs: u64) -> (String, String) {
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let date = format!("{y:04}-{m:02}-{d:02}");
    let time = format!(
        "{date}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    (date, time)
}

/// Year, month, day of a count of days since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_are_right() {
        assert_eq!(utc(0).1, "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400).0, "2000-02-29");
        assert_eq!(utc(1_796_000_000).1, "2026-11-30T00:53:20Z");
    }

    #[test]
    fn machine_facts_are_found() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let m = Machine::probe(root);
        assert!(m.cores >= 1);
        assert!(!m.kernel.is_empty());
        assert!(!m.short_hostname().contains('.'));
    }
}
