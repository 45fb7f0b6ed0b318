//! System facts: kernel, distribution, host and user names, machine
//! identifiers, CPU model and locale.

use std::path::Path;

use super::{
    FactKind, Strength,
    source::{Found, Sources, first_line, first_setting, parse_assignment, read_text, under},
};

/// The most `/etc/passwd` entries read.
const MAX_USERS: usize = 4096;

/// Host names that distribution images and appliances ship with.
const GENERIC_HOSTNAMES: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "ubuntu",
    "debian",
    "raspberrypi",
    "fedora",
    "centos",
    "archlinux",
    "alpine",
    "kali",
    "linux",
    "host",
    "server",
    "(none)",
];

/// User names that many hosts have.
const COMMON_USERS: &[&str] = &[
    "root",
    "admin",
    "user",
    "ubuntu",
    "debian",
    "pi",
    "ec2-user",
    "centos",
    "fedora",
    "vagrant",
    "guest",
    "test",
    "administrator",
];

/// DMI serial values firmware uses when there is no serial.
const DMI_PLACEHOLDERS: &[&str] = &[
    "to be filled by o.e.m.",
    "not specified",
    "not applicable",
    "not available",
    "none",
    "default string",
    "system serial number",
    "chassis serial number",
    "base board serial number",
    "serial number",
    "n/a",
    "na",
    "unknown",
    "oem",
    "o.e.m.",
    "0123456789",
    "123456789",
];

/// Shells that refuse a login.
const NO_LOGIN_SHELLS: &[&str] = &["nologin", "false", "sync", "halt", "shutdown"];

/// An `/etc/passwd` account whose name and home are facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Account {
    pub(crate) name: String,
    pub(crate) home: String,
}

/// `uname -m/-r/-v`: given, or from `/proc/sys/kernel`.
pub(crate) fn uname_facts(src: &Sources, out: &mut Found) {
    let (arch, release, version) = match &src.uname {
        Some(u) => (
            Some(u.arch.clone()),
            Some(u.release.clone()),
            Some(u.version.clone()),
        ),
        None => {
            let kernel = |f: &str| first_line(&src.path(&format!("/proc/sys/kernel/{f}")));
            // `arch` is recent (Linux 6.1); before it, the running kernel's
            // machine is this binary's target (a 32-bit sensor on a 64-bit
            // kernel aside).
            let arch =
                kernel("arch").or_else(|| src.is_host_root().then(|| host_arch().to_owned()));
            (arch, kernel("osrelease"), kernel("version"))
        }
    };
    let facts = [
        (FactKind::Arch, "uname -m", arch, Strength::Weak),
        (
            FactKind::KernelRelease,
            "uname -r",
            release,
            Strength::Strong,
        ),
        (
            FactKind::KernelVersion,
            "uname -v",
            version,
            Strength::Strong,
        ),
    ];
    for (kind, name, value, strength) in facts {
        if let Some(value) = value {
            out.push(kind, name, &value, strength);
        }
    }
}

/// `uname -m` spelling of the compile-time target architecture.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86" => "i686",
        "arm" => "armv7l",
        "powerpc" => "ppc",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        other => other,
    }
}

/// `/etc/os-release` (or `/usr/lib/os-release`): the distribution's names.
pub(crate) fn os_release_facts(src: &Sources, out: &mut Found) {
    let Some((path, text)) = ["/etc/os-release", "/usr/lib/os-release"]
        .into_iter()
        .find_map(|p| read_text(&src.path(p)).map(|t| (p, t)))
    else {
        return;
    };
    let fields: Vec<(&str, String)> = text.lines().filter_map(parse_assignment).collect();
    let get = |key: &str| {
        fields
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.trim())
    };
    let name_version = match (get("NAME"), get("VERSION")) {
        (Some(n), Some(v)) if !n.is_empty() && !v.is_empty() => Some(format!("{n} {v}")),
        _ => None,
    };
    let values = [
        ("PRETTY_NAME", get("PRETTY_NAME").map(str::to_owned)),
        ("NAME VERSION", name_version),
        ("VERSION_ID", get("VERSION_ID").map(str::to_owned)),
        (
            "VERSION_CODENAME",
            get("VERSION_CODENAME").map(str::to_owned),
        ),
    ];
    for (key, value) in values {
        // `12` or `sid` would match version numbers and words anywhere.
        if let Some(value) = value.filter(|v| v.chars().count() >= 4) {
            out.push(
                FactKind::OsRelease,
                format!("{path} {key}"),
                &value,
                Strength::Weak,
            );
        }
    }
}

/// Host name (kernel and `/etc/hostname`) and the FQDN `/etc/hosts` gives it.
pub(crate) fn hostname_facts(src: &Sources, out: &mut Found) {
    let mut names = Vec::new();
    let kernel = first_line(&src.path("/proc/sys/kernel/hostname"));
    let file = first_setting(&src.path("/etc/hostname"));
    for (path, name) in [
        ("/proc/sys/kernel/hostname", kernel),
        ("/etc/hostname", file),
    ] {
        if let Some(name) = name {
            let generic = GENERIC_HOSTNAMES
                .iter()
                .any(|g| name.eq_ignore_ascii_case(g));
            out.push(
                FactKind::Hostname,
                path,
                &name,
                if generic {
                    Strength::Weak
                } else {
                    Strength::Strong
                },
            );
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    for name in &names {
        if name.contains('.') {
            out.push(FactKind::Fqdn, "hostname", name, fqdn_strength(name));
        }
        if let Some(fqdn) =
            read_text(&src.path("/etc/hosts")).and_then(|hosts| fqdn_of(&hosts, name))
        {
            out.push(FactKind::Fqdn, "/etc/hosts", &fqdn, fqdn_strength(&fqdn));
        }
    }
}

/// The first dotted name of the first `/etc/hosts` line naming `host` (by
/// itself or as the first label of a dotted name).
fn fqdn_of(hosts: &str, host: &str) -> Option<String> {
    let short = host.split('.').next().unwrap_or(host);
    hosts.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or_default();
        let names: Vec<&str> = line.split_whitespace().skip(1).collect();
        let names_host = names.iter().any(|n| {
            n.eq_ignore_ascii_case(host)
                || n.split('.')
                    .next()
                    .is_some_and(|l| l.eq_ignore_ascii_case(short))
        });
        if names_host {
            names
                .into_iter()
                .find(|n| n.contains('.'))
                .map(str::to_owned)
        } else {
            None
        }
    })
}

/// `*.localdomain` and friends are distribution defaults.
fn fqdn_strength(fqdn: &str) -> Strength {
    let lower = fqdn.to_ascii_lowercase();
    let generic = [".localdomain", ".local", ".lan", ".home", ".internal"]
        .iter()
        .any(|s| lower.ends_with(s));
    if generic {
        Strength::Weak
    } else {
        Strength::Strong
    }
}

/// Human and root accounts of `/etc/passwd`: uid 0 or 1000..65534 with a
/// login shell (service accounts are the same on every host).
pub(crate) fn accounts(src: &Sources) -> Vec<Account> {
    let Some(text) = read_text(&src.path("/etc/passwd")) else {
        return Vec::new();
    };
    text.lines().take(MAX_USERS).filter_map(account).collect()
}

/// One `/etc/passwd` line, if it is a human or root account.
fn account(line: &str) -> Option<Account> {
    let fields: Vec<&str> = line.trim().split(':').collect();
    let [name, _, uid, _, _, home, shell] = fields.as_slice() else {
        return None;
    };
    let uid: u32 = uid.parse().ok()?;
    let human = uid == 0 || (1000..65534).contains(&uid);
    let shell_name = shell.rsplit('/').next().unwrap_or_default();
    let login = shell.starts_with('/') && !NO_LOGIN_SHELLS.contains(&shell_name);
    (human && login && !name.is_empty()).then(|| Account {
        name: (*name).to_owned(),
        home: (*home).to_owned(),
    })
}

/// Most entries of a working directory kept as facts.
const MAX_DIR_ENTRIES: usize = 48;

/// Most entries of a working directory looked at.
const MAX_DIR_SCAN: usize = 4096;

/// Entry names too common across projects to say whose tree it is.
const COMMON_ENTRIES: &[&str] = &[
    ".git",
    ".github",
    ".gitignore",
    ".gitattributes",
    ".editorconfig",
    ".vscode",
    ".idea",
    "README",
    "README.md",
    "README.rst",
    "LICENSE",
    "LICENSE.md",
    "Makefile",
    "Dockerfile",
    "Cargo.toml",
    "Cargo.lock",
    "package.json",
    "package-lock.json",
    "yarn.lock",
    "node_modules",
    "tsconfig.json",
    "pyproject.toml",
    "setup.py",
    "requirements.txt",
    "go.mod",
    "go.sum",
    "docs",
    "tests",
    "test",
    "build",
    "dist",
    "target",
    "vendor",
    "scripts",
    "config",
];

/// A process's own facts besides its environment: working directory and the
/// names in it, user and home from its root's `/etc/passwd`, executable path.
pub(crate) fn process_facts(root: &Path, pid: u32, out: &mut Found) {
    let proc_dir = format!("/proc/{pid}");
    let cwd_link = under(root, &format!("{proc_dir}/cwd"));
    if let Ok(cwd) = std::fs::read_link(&cwd_link)
        && let Some(cwd) = cwd.to_str()
    {
        let cwd = cwd.trim_end_matches('/');
        // `/` and `/tmp` say nothing about anyone.
        if cwd.len() > 1 && !matches!(cwd, "/tmp" | "/root" | "/home") {
            out.push(
                FactKind::WorkingDirectory,
                format!("pid {pid} cwd"),
                cwd,
                Strength::Strong,
            );
            dir_entry_facts(&cwd_link, pid, out);
        }
    }
    if let Ok(exe) = std::fs::read_link(under(root, &format!("{proc_dir}/exe")))
        && let Some(exe) = exe.to_str()
    {
        out.push(
            FactKind::Program,
            format!("pid {pid} exe"),
            exe,
            Strength::Weak,
        );
    }
    let uid = read_text(&under(root, &format!("{proc_dir}/status"))).and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u32>().ok())
    });
    let Some(uid) = uid else {
        return;
    };
    let passwd = under(root, &format!("{proc_dir}/root/etc/passwd"));
    let Some(text) = read_text(&passwd) else {
        return;
    };
    let account = text.lines().take(MAX_USERS).find_map(|line| {
        let f: Vec<&str> = line.trim().split(':').collect();
        let [name, _, id, _, _, home, _] = f.as_slice() else {
            return None;
        };
        (id.parse::<u32>().ok()? == uid && !name.is_empty()).then(|| Account {
            name: (*name).to_owned(),
            home: (*home).to_owned(),
        })
    });
    if let Some(a) = account {
        let mut found = Found::default();
        user_facts(std::slice::from_ref(&a), &mut found);
        for f in found.finish() {
            let name = format!("pid {pid} user {}", f.name);
            out.push(f.kind, name, &f.value, f.strength);
        }
    }
}

/// Names in a process's working directory (through `/proc/PID/cwd`, which
/// works across mount namespaces), sorted, common project files left out.
fn dir_entry_facts(cwd: &Path, pid: u32, out: &mut Found) {
    let Ok(entries) = std::fs::read_dir(cwd) else {
        return;
    };
    let mut names: Vec<String> = entries
        .take(MAX_DIR_SCAN)
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| n.chars().count() >= 6 && !COMMON_ENTRIES.contains(&n.as_str()))
        .collect();
    names.sort();
    for (i, n) in names.iter().take(MAX_DIR_ENTRIES).enumerate() {
        // The name in the fact's name would repeat the value in alerts.
        out.push(
            FactKind::FileName,
            format!("pid {pid} cwd entry {i}"),
            n,
            Strength::Weak,
        );
    }
}

/// User and home facts of the accounts.
pub(crate) fn user_facts(accounts: &[Account], out: &mut Found) {
    for a in accounts {
        // Short names (`bob`) occur inside too many words to mean much alone.
        let common = a.name.chars().count() <= 3 || COMMON_USERS.contains(&a.name.as_str());
        out.push(
            FactKind::User,
            "/etc/passwd",
            &a.name,
            if common {
                Strength::Weak
            } else {
                Strength::Strong
            },
        );
        let home = a.home.trim_end_matches('/');
        if home.is_empty() || home == "/nonexistent" {
            continue;
        }
        let strength = if home == "/root" {
            Strength::Weak
        } else {
            Strength::Strong
        };
        out.push(
            FactKind::Home,
            format!("/etc/passwd {}", a.name),
            home,
            strength,
        );
    }
}

/// machine-id (and its UUID spelling), boot id, DMI UUID and serials.
pub(crate) fn id_facts(src: &Sources, out: &mut Found) {
    let machine = ["/etc/machine-id", "/var/lib/dbus/machine-id"]
        .into_iter()
        .find_map(|p| first_line(&src.path(p)).map(|id| (p, id)));
    if let Some((path, id)) = machine.filter(|(_, id)| id != "uninitialized") {
        out.push(FactKind::MachineId, path, &id, Strength::Strong);
        if let Some(uuid) = dashed_uuid(&id) {
            out.push(
                FactKind::MachineId,
                format!("{path} (UUID form)"),
                &uuid,
                Strength::Strong,
            );
        }
    }
    let boot = "/proc/sys/kernel/random/boot_id";
    if let Some(id) = first_line(&src.path(boot)) {
        out.push(FactKind::BootId, boot, &id, Strength::Strong);
    }
    let uuid = "/sys/class/dmi/id/product_uuid";
    if let Some(id) = first_line(&src.path(uuid))
        .map(|u| u.to_ascii_lowercase())
        .filter(|u| !placeholder_uuid(u))
    {
        out.push(FactKind::DmiUuid, uuid, &id, Strength::Strong);
    }
    for file in ["product_serial", "board_serial", "chassis_serial"] {
        let path = format!("/sys/class/dmi/id/{file}");
        if let Some(serial) = first_line(&src.path(&path)).filter(|s| !placeholder_serial(s)) {
            out.push(FactKind::DmiSerial, path, &serial, Strength::Strong);
        }
    }
}

/// `4c4c4544…` (32 hex digits) as `4c4c4544-0034-…`, the spelling tools that
/// read it as a UUID send.
fn dashed_uuid(id: &str) -> Option<String> {
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let id = id.to_ascii_lowercase();
    Some(format!(
        "{}-{}-{}-{}-{}",
        id.get(..8)?,
        id.get(8..12)?,
        id.get(12..16)?,
        id.get(16..20)?,
        id.get(20..)?
    ))
}

/// A firmware's stand-in for a missing DMI UUID (all one digit, or the
/// sequence some boards ship).
fn placeholder_uuid(uuid: &str) -> bool {
    uuid == "03000200-0400-0500-0006-000700080009" || repeated_char(&uuid.replace('-', ""))
}

/// A firmware's stand-in for a missing serial number.
fn placeholder_serial(serial: &str) -> bool {
    let lower = serial.trim().to_ascii_lowercase();
    lower.is_empty() || DMI_PLACEHOLDERS.contains(&lower.as_str()) || repeated_char(&lower)
}

/// Whether a string is one character repeated (`000000`, `FFFF`, `0`).
fn repeated_char(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_none_or(|first| chars.all(|c| c == first))
}

/// CPU model from `/proc/cpuinfo` (`model name`; ARM boards say `Model`).
pub(crate) fn cpu_facts(src: &Sources, out: &mut Found) {
    let Some(text) = read_text(&src.path("/proc/cpuinfo")) else {
        return;
    };
    let field = |want: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(want)
                .then(|| v.trim().to_owned())
        })
    };
    if let Some(model) = field("model name").or_else(|| field("Model")) {
        out.push(FactKind::CpuModel, "/proc/cpuinfo", &model, Strength::Weak);
    }
}

/// Locale from `LANG`/`LC_ALL` of the sensor's environment and the system
/// locale files.
pub(crate) fn locale_facts(src: &Sources, out: &mut Found) {
    for var in ["LANG", "LC_ALL"] {
        if let Some(value) = src.env_var(var) {
            locale_fact(var, value, out);
        }
    }
    for path in ["/etc/default/locale", "/etc/locale.conf"] {
        let Some(text) = read_text(&src.path(path)) else {
            continue;
        };
        for (key, value) in text.lines().filter_map(parse_assignment) {
            if key == "LANG" || key == "LC_ALL" {
                locale_fact(&format!("{path} {key}"), &value, out);
            }
        }
    }
}

/// One locale value, unless it is the C/POSIX default every system has.
pub(crate) fn locale_fact(name: &str, value: &str, out: &mut Found) {
    let v = value.trim();
    let default = ["C", "POSIX", "C.UTF-8", "C.utf8"]
        .iter()
        .any(|d| v.eq_ignore_ascii_case(d));
    if !default {
        out.push(FactKind::Locale, name, v, Strength::Weak);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lines() {
        let a = |l: &str| account(l).map(|a| (a.name, a.home));
        assert_eq!(
            a("root:x:0:0:root:/root:/bin/bash"),
            Some(("root".into(), "/root".into()))
        );
        assert_eq!(
            a("alice:x:1000:1000:A,,,:/home/alice:/usr/bin/zsh"),
            Some(("alice".into(), "/home/alice".into()))
        );
        assert_eq!(a("daemon:x:1:1::/usr/sbin:/usr/sbin/nologin"), None);
        assert_eq!(a("svc:x:1001:1001::/srv:/bin/false"), None);
        assert_eq!(a("nobody:x:65534:65534::/nonexistent:/bin/sh"), None);
        assert_eq!(a("bad:x:notanumber:0::/:/bin/sh"), None);
        assert_eq!(a("short:x:1000"), None);
    }

    #[test]
    fn hosts_fqdn() {
        let hosts = "127.0.0.1 localhost\n# 10.0.0.1 web.example web\n127.0.1.1\tweb7.eu.corp.example web7\n";
        assert_eq!(
            fqdn_of(hosts, "web7").as_deref(),
            Some("web7.eu.corp.example")
        );
        assert_eq!(fqdn_of(hosts, "web"), None);
        assert_eq!(
            fqdn_of("10.0.0.2 db db.corp.example\n", "db").as_deref(),
            Some("db.corp.example")
        );
    }

    #[test]
    fn identifiers() {
        assert_eq!(
            dashed_uuid("4C4C4544003457108052B4C04F384D32").as_deref(),
            Some("4c4c4544-0034-5710-8052-b4c04f384d32")
        );
        assert_eq!(dashed_uuid("xyz"), None);
        for p in [
            "To be filled by O.E.M.",
            "Not Specified",
            "0",
            "None",
            "Default string",
            "",
            "00000000",
        ] {
            assert!(placeholder_serial(p), "{p}");
        }
        assert!(!placeholder_serial("CZ20240117XK"));
        assert!(placeholder_uuid("00000000-0000-0000-0000-000000000000"));
        assert!(!placeholder_uuid("ec2a9b1f-3c4d-4e5f-8a9b-0c1d2e3f4a5b"));
    }
}
