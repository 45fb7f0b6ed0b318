//! Collection over fake root trees built in the temporary directory.
//!
//! Zone files are copied from the host's `/usr/share/zoneinfo`, so offsets are
//! checked against real TZif data rather than files this code wrote itself.

use std::{
    fs,
    path::PathBuf,
    sync::atomic::{AtomicUsize, Ordering},
};

use super::*;
use crate::facts::{FactKind, Strength, Uname};

/// 2024-07-01 12:00:00 UTC (Berlin on summer time).
const SUMMER_2024: i64 = 1_719_835_200;

/// A fake root directory, removed on drop.
struct Root(PathBuf);

impl Root {
    fn new(label: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("telltale-facts-{}-{label}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create fake root");
        Self(dir)
    }

    fn write(&self, path: &str, text: &str) {
        let p = under(&self.0, path);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(&p, text).expect("write");
    }

    /// Copy the host's zone file `zone` to `path` under the root.
    fn copy_zone(&self, zone: &str, path: &str) {
        let p = under(&self.0, path);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::copy(format!("/usr/share/zoneinfo/{zone}"), &p)
            .expect("host zoneinfo is needed by these tests");
    }

    fn zone(&self, zone: &str) {
        self.copy_zone(zone, &format!("/usr/share/zoneinfo/{zone}"));
    }

    fn sources(&self, env: &[(&str, &str)]) -> Sources {
        let env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Sources {
            root: self.0.clone(),
            env,
            uname: None,
        }
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

type Row = (FactKind, &'static str, &'static str, Strength);

fn rows(facts: &[Fact]) -> Vec<(FactKind, String, String, Strength)> {
    facts
        .iter()
        .map(|f| (f.kind, f.name.clone(), f.value.clone(), f.strength))
        .collect()
}

fn expected(rows: &[Row]) -> Vec<(FactKind, String, String, Strength)> {
    let mut v: Vec<_> = rows
        .iter()
        .map(|(k, n, v, s)| (*k, (*n).to_owned(), (*v).to_owned(), *s))
        .collect();
    v.sort();
    v
}

/// Berlin's offset in minutes at `t`, computed without the module's calendar
/// code: summer time runs from 01:00 UTC on the last Sunday of March to
/// 01:00 UTC on the last Sunday of October.
fn berlin_minutes(t: i64) -> i32 {
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = t.div_euclid(86_400);
    let (mut year, mut rest) = (1970, days);
    loop {
        let len = if leap(year) { 366 } else { 365 };
        if rest < len {
            break;
        }
        rest -= len;
        year += 1;
    }
    let jan1 = days - rest;
    let lengths = [
        31,
        if leap(year) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let last_sunday = |month: usize| {
        let last = jan1 + lengths[..month].iter().sum::<i64>() - 1;
        last - (last + 4).rem_euclid(7) // 1970-01-01 was a Thursday
    };
    let start = last_sunday(3) * 86_400 + 3600;
    let end = last_sunday(10) * 86_400 + 3600;
    if (start..end).contains(&t) { 120 } else { 60 }
}

/// A root with every source file.
fn full_root() -> Root {
    let r = Root::new("full");
    r.write("/etc/timezone", "Europe/Berlin\n");
    r.zone("Europe/Berlin");
    r.zone("Etc/GMT-5");
    std::os::unix::fs::symlink(
        "/usr/share/zoneinfo/Europe/Berlin",
        under(&r.0, "/etc/localtime"),
    )
    .expect("symlink");
    r.write(
        "/etc/environment",
        "PATH=\"/usr/local/bin:/usr/bin\"\nftp_proxy=\"ftp://ftp-proxy.corp.example:2121\"\nno_proxy=.env.corp.example,localhost\n",
    );
    r.write(
        "/etc/profile.d/proxy.sh",
        "# export https_proxy=http://commented.example:1\nexport ALL_PROXY=socks5://socks.corp.example:1080\n\
         export http_proxy=$HTTPS_PROXY\nif [ -n \"$X\" ]; then :; fi\n",
    );
    r.write(
        "/etc/profile.d/notes.txt",
        "export http_proxy=http://ignored.example:1\n",
    );
    r.write(
        "/etc/apt/apt.conf.d/95proxy",
        "Acquire::http::Proxy \"http://apt.corp.example:3142\";\nAcquire::https::Proxy \"DIRECT\";\n",
    );
    // Same proxy as the environment's: adds nothing.
    r.write(
        "/etc/pip.conf",
        "[global]\nproxy = http://proxy.corp.example:3128\n",
    );
    r.write(
        "/home/alice/.config/pip/pip.conf",
        "[global]\nindex-url = https://pypi.org/simple\nproxy = http://pip.corp.example:8080\n",
    );
    r.write(
        "/home/alice/.npmrc",
        "https-proxy=http://npm.corp.example:8081/\nnoproxy=registry.corp.example\n",
    );
    r.write(
        "/home/alice/.gitconfig",
        "[user]\n\tname = Alice\n[http]\n\tproxy = http://git.corp.example:3128\n",
    );
    r.write("/proc/sys/kernel/osrelease", "6.1.0-18-amd64\n");
    r.write(
        "/proc/sys/kernel/version",
        "#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)\n",
    );
    r.write("/proc/sys/kernel/arch", "x86_64\n");
    r.write(
        "/etc/os-release",
        "PRETTY_NAME=\"Ubuntu 22.04.4 LTS\"\nNAME=\"Ubuntu\"\nVERSION_ID=\"22.04\"\n\
         VERSION=\"22.04.4 LTS (Jammy Jellyfish)\"\nVERSION_CODENAME=jammy\nID=ubuntu\n",
    );
    r.write("/proc/sys/kernel/hostname", "build-host-7\n");
    r.write("/etc/hostname", "build-host-7\n");
    r.write(
        "/etc/hosts",
        "127.0.0.1 localhost\n127.0.1.1 build-host-7.eu.corp.example build-host-7\n",
    );
    r.write(
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
         alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash\nbob:x:1001:1001::/home/bob:/bin/sh\n\
         ubuntu:x:1002:1002::/home/ubuntu:/bin/bash\nsvc:x:1003:1003::/srv/svc:/usr/sbin/nologin\n\
         ghost:x:1004:1004::/nonexistent:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    );
    r.write("/etc/machine-id", "4c4c4544003457108052b4c04f384d32\n");
    r.write(
        "/proc/sys/kernel/random/boot_id",
        "8d3f6a7e-2b1c-4e5f-9a0b-1c2d3e4f5a6b\n",
    );
    r.write(
        "/sys/class/dmi/id/product_uuid",
        "EC2A9B1F-3C4D-4E5F-8A9B-0C1D2E3F4A5B\n",
    );
    r.write("/sys/class/dmi/id/product_serial", "CZ20240117XK\n");
    r.write("/sys/class/dmi/id/board_serial", "To be filled by O.E.M.\n");
    r.write("/sys/class/dmi/id/chassis_serial", "Default string\n");
    r.write("/sys/class/net/lo/address", "00:00:00:00:00:00\n");
    r.write("/sys/class/net/eth0/address", "52:54:00:12:34:56\n");
    r.write("/sys/class/net/wlan0/address", "AA:BB:CC:DD:EE:FF\n");
    r.write("/sys/class/net/dummy0/address", "00:00:00:00:00:00\n");
    r.write(
        "/proc/net/fib_trie",
        "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n\
         \x20    +-- 10.20.30.0/24 2 0 2\n        |-- 10.20.30.40\n           /32 host LOCAL\n\
         \x20       |-- 10.20.30.255\n           /32 link BROADCAST\n     |-- 127.0.0.1\n        /32 host LOCAL\n\
         \x20    |-- 172.17.0.1\n        /32 host LOCAL\n",
    );
    let hex = |a: [u8; 4]| format!("{:08X}", u32::from_ne_bytes(a));
    r.write(
        "/proc/net/route",
        &format!(
            "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n\
             eth0\t00000000\t{}\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
             eth0\t{}\t00000000\t0001\t0\t0\t0\t{}\t0\t0\t0\n",
            hex([10, 20, 30, 1]),
            hex([10, 20, 30, 0]),
            hex([255, 255, 255, 0])
        ),
    );
    r.write(
        "/proc/net/if_inet6",
        "00000000000000000000000000000001 01 80 10 80       lo\n\
         20010db8000000000000000000000001 02 40 00 80     eth0\n\
         fe800000000000005054fffe12345678 02 40 20 80     eth0\n",
    );
    r.write(
        "/proc/cpuinfo",
        "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Gold 6248R CPU @ 3.00GHz\n\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R) Gold 6248R CPU @ 3.00GHz\n",
    );
    r.write(
        "/etc/default/locale",
        "LANG=\"en_GB.UTF-8\"\nLC_ALL=POSIX\n",
    );
    r
}

/// The environment of the sensor in [`full_root`] tests.
const FULL_ENV: &[(&str, &str)] = &[
    ("TZ", ":/usr/share/zoneinfo/Etc/GMT-5"),
    ("HTTPS_PROXY", "http://user:secret@proxy.corp.example:3128/"),
    ("Http_Proxy", "http://10.9.8.7:8080"),
    ("NO_PROXY", "localhost,127.0.0.1,*,.corp.example,10.0.0.0/8"),
    ("LANG", "de_DE.UTF-8"),
    ("LC_ALL", "C.UTF-8"),
    ("PATH", "/usr/bin:/bin"),
];

#[test]
fn full_host() {
    use FactKind::*;
    use Strength::*;
    let root = full_root();
    let facts = collect_at(&root.sources(FULL_ENV), SUMMER_2024);
    let want: &[Row] = &[
        (Timezone, "TZ", "Etc/GMT-5", Strong),
        (UtcOffset, "Etc/GMT-5", "300", Weak),
        (Timezone, "/etc/timezone", "Europe/Berlin", Strong),
        (UtcOffset, "Europe/Berlin", "120", Weak),
        (
            Proxy,
            "HTTPS_PROXY",
            "http://user:secret@proxy.corp.example:3128/",
            Strong,
        ),
        (
            Proxy,
            "HTTPS_PROXY",
            "http://proxy.corp.example:3128",
            Strong,
        ),
        (Proxy, "HTTPS_PROXY", "proxy.corp.example:3128", Strong),
        (Proxy, "HTTPS_PROXY", "proxy.corp.example", Strong),
        (Proxy, "Http_Proxy", "http://10.9.8.7:8080", Strong),
        (Proxy, "Http_Proxy", "10.9.8.7:8080", Strong),
        (NoProxy, "NO_PROXY", "corp.example", Strong),
        (
            Proxy,
            "/etc/environment ftp_proxy",
            "ftp://ftp-proxy.corp.example:2121",
            Strong,
        ),
        (
            Proxy,
            "/etc/environment ftp_proxy",
            "ftp-proxy.corp.example:2121",
            Strong,
        ),
        (
            Proxy,
            "/etc/environment ftp_proxy",
            "ftp-proxy.corp.example",
            Strong,
        ),
        (
            NoProxy,
            "/etc/environment no_proxy",
            "env.corp.example",
            Strong,
        ),
        (
            Proxy,
            "/etc/profile.d/proxy.sh ALL_PROXY",
            "socks5://socks.corp.example:1080",
            Strong,
        ),
        (
            Proxy,
            "/etc/profile.d/proxy.sh ALL_PROXY",
            "socks.corp.example:1080",
            Strong,
        ),
        (
            Proxy,
            "/etc/profile.d/proxy.sh ALL_PROXY",
            "socks.corp.example",
            Strong,
        ),
        (
            Proxy,
            "/etc/apt/apt.conf.d/95proxy Acquire::http::Proxy",
            "http://apt.corp.example:3142",
            Strong,
        ),
        (
            Proxy,
            "/etc/apt/apt.conf.d/95proxy Acquire::http::Proxy",
            "apt.corp.example:3142",
            Strong,
        ),
        (
            Proxy,
            "/etc/apt/apt.conf.d/95proxy Acquire::http::Proxy",
            "apt.corp.example",
            Strong,
        ),
        (
            Proxy,
            "/home/alice/.config/pip/pip.conf proxy",
            "http://pip.corp.example:8080",
            Strong,
        ),
        (
            Proxy,
            "/home/alice/.config/pip/pip.conf proxy",
            "pip.corp.example:8080",
            Strong,
        ),
        (
            Proxy,
            "/home/alice/.config/pip/pip.conf proxy",
            "pip.corp.example",
            Strong,
        ),
        (
            Proxy,
            "/home/alice/.npmrc https-proxy",
            "http://npm.corp.example:8081/",
            Strong,
        ),
        (
            Proxy,
            "/home/alice/.npmrc https-proxy",
            "npm.corp.example:8081",
            Strong,
        ),
        (
            Proxy,
            "/home/alice/.npmrc https-proxy",
            "npm.corp.example",
            Strong,
        ),
        (
            NoProxy,
            "/home/alice/.npmrc noproxy",
            "registry.corp.example",
            Strong,
        ),
        (
            Proxy,
            "/home/alice/.gitconfig http.proxy",
            "http://git.corp.example:3128",
            Strong,
        ),
        (
            Proxy,
            "/home/alice/.gitconfig http.proxy",
            "git.corp.example:3128",
            Strong,
        ),
        (
            Proxy,
            "/home/alice/.gitconfig http.proxy",
            "git.corp.example",
            Strong,
        ),
        (Arch, "uname -m", "x86_64", Weak),
        (KernelRelease, "uname -r", "6.1.0-18-amd64", Strong),
        (
            KernelVersion,
            "uname -v",
            "#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)",
            Strong,
        ),
        (
            OsRelease,
            "/etc/os-release PRETTY_NAME",
            "Ubuntu 22.04.4 LTS",
            Weak,
        ),
        (
            OsRelease,
            "/etc/os-release NAME VERSION",
            "Ubuntu 22.04.4 LTS (Jammy Jellyfish)",
            Weak,
        ),
        (OsRelease, "/etc/os-release VERSION_ID", "22.04", Weak),
        (OsRelease, "/etc/os-release VERSION_CODENAME", "jammy", Weak),
        (
            Hostname,
            "/proc/sys/kernel/hostname",
            "build-host-7",
            Strong,
        ),
        (Fqdn, "/etc/hosts", "build-host-7.eu.corp.example", Strong),
        (User, "/etc/passwd", "root", Weak),
        (Home, "/etc/passwd root", "/root", Weak),
        (User, "/etc/passwd", "alice", Strong),
        (Home, "/etc/passwd alice", "/home/alice", Strong),
        (User, "/etc/passwd", "bob", Weak),
        (Home, "/etc/passwd bob", "/home/bob", Strong),
        (User, "/etc/passwd", "ubuntu", Weak),
        (Home, "/etc/passwd ubuntu", "/home/ubuntu", Strong),
        (User, "/etc/passwd", "ghost", Strong),
        (
            MachineId,
            "/etc/machine-id",
            "4c4c4544003457108052b4c04f384d32",
            Strong,
        ),
        (
            MachineId,
            "/etc/machine-id (UUID form)",
            "4c4c4544-0034-5710-8052-b4c04f384d32",
            Strong,
        ),
        (
            BootId,
            "/proc/sys/kernel/random/boot_id",
            "8d3f6a7e-2b1c-4e5f-9a0b-1c2d3e4f5a6b",
            Strong,
        ),
        (
            DmiUuid,
            "/sys/class/dmi/id/product_uuid",
            "ec2a9b1f-3c4d-4e5f-8a9b-0c1d2e3f4a5b",
            Strong,
        ),
        (
            DmiSerial,
            "/sys/class/dmi/id/product_serial",
            "CZ20240117XK",
            Strong,
        ),
        (Mac, "eth0", "52:54:00:12:34:56", Strong),
        (Mac, "wlan0", "aa:bb:cc:dd:ee:ff", Strong),
        (Ip, "eth0", "10.20.30.40", Strong),
        (Ip, "/proc/net/fib_trie", "172.17.0.1", Strong),
        (Ip, "eth0", "2001:db8::1", Strong),
        (
            CpuModel,
            "/proc/cpuinfo",
            "Intel(R) Xeon(R) Gold 6248R CPU @ 3.00GHz",
            Weak,
        ),
        (Locale, "LANG", "de_DE.UTF-8", Weak),
        (Locale, "/etc/default/locale LANG", "en_GB.UTF-8", Weak),
    ];
    let got = rows(&facts);
    let want = expected(want);
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w);
    }
    assert_eq!(got, want);
}

#[test]
fn given_uname_wins() {
    let root = Root::new("uname");
    let mut src = root.sources(&[]);
    src.uname = Some(Uname {
        arch: "aarch64".into(),
        release: "6.8.0-rc1".into(),
        version: "#2 SMP".into(),
    });
    let got = rows(&collect_at(&src, 0));
    let want = expected(&[
        (FactKind::Arch, "uname -m", "aarch64", Strength::Weak),
        (
            FactKind::KernelRelease,
            "uname -r",
            "6.8.0-rc1",
            Strength::Strong,
        ),
        (
            FactKind::KernelVersion,
            "uname -v",
            "#2 SMP",
            Strength::Strong,
        ),
    ]);
    assert_eq!(got, want);
}

#[test]
fn berlin_offset_follows_dst() {
    let root = Root::new("berlin");
    root.zone("Europe/Berlin");
    root.write("/etc/timezone", "Europe/Berlin\n");
    let offset_at = |t: i64| {
        let facts = collect_at(&root.sources(&[]), t);
        facts
            .iter()
            .find(|f| f.kind == FactKind::UtcOffset)
            .map(|f| f.value.clone())
    };
    // 2024-03-31 01:00 UTC and 2024-10-27 01:00 UTC are the switches; 2050
    // lies past the file's transitions (footer rule).
    let switch_on = 1_711_846_800;
    let switch_off = 1_729_990_800;
    let far = 2_540_000_000;
    for t in [
        0,
        switch_on - 1,
        switch_on,
        switch_off - 1,
        switch_off,
        SUMMER_2024,
        far,
        far + 180 * 86_400,
    ] {
        assert_eq!(offset_at(t), Some(berlin_minutes(t).to_string()), "t = {t}");
    }
    assert_eq!(offset_at(switch_on).as_deref(), Some("120"));
    assert_eq!(offset_at(switch_off).as_deref(), Some("60"));
    // And now, through the public entry point.
    let before = berlin_minutes(now());
    let facts = collect(&root.sources(&[]));
    let offset = facts
        .iter()
        .find(|f| f.kind == FactKind::UtcOffset)
        .map(|f| f.value.clone());
    let after = berlin_minutes(now());
    assert!(
        offset == Some(before.to_string()) || offset == Some(after.to_string()),
        "{offset:?}"
    );
}

#[test]
fn utc_is_weak() {
    let root = Root::new("utc");
    root.zone("UTC");
    root.zone("Etc/UTC");
    root.write("/etc/timezone", "Etc/UTC\n");
    let got = rows(&collect_at(&root.sources(&[("TZ", "UTC")]), SUMMER_2024));
    let want = expected(&[
        (FactKind::Timezone, "TZ", "UTC", Strength::Weak),
        (FactKind::UtcOffset, "UTC", "0", Strength::Weak),
        (
            FactKind::Timezone,
            "/etc/timezone",
            "Etc/UTC",
            Strength::Weak,
        ),
    ]);
    assert_eq!(got, want);
}

#[test]
fn fixed_zone_from_copied_localtime() {
    // A copied (not linked) /etc/localtime has no zone name, only an offset;
    // os-release from its /usr/lib fallback.
    let root = Root::new("fixed");
    root.copy_zone("Etc/GMT-5", "/etc/localtime");
    root.write("/usr/lib/os-release", "PRETTY_NAME=\"Fedora Linux 40\"\n");
    let got = rows(&collect_at(&root.sources(&[]), SUMMER_2024));
    let want = expected(&[
        (FactKind::UtcOffset, "/etc/localtime", "300", Strength::Weak),
        (
            FactKind::OsRelease,
            "/usr/lib/os-release PRETTY_NAME",
            "Fedora Linux 40",
            Strength::Weak,
        ),
    ]);
    assert_eq!(got, want);
}

#[test]
fn process_environment() {
    let root = Root::new("proc");
    root.zone("Asia/Kolkata");
    root.write(
        "/proc/4242/environ",
        "PATH=/bin\0https_PROXY=http://p.corp.example:3128\0no_proxy=.int.example\0TZ=Asia/Kolkata\0\
         LANG=fr_FR.UTF-8\0LC_ALL=C\0garbage\0",
    );
    root.write("/proc/7/environ", "TZ=CET-1CEST,M3.5.0,M10.5.0/3\0");
    let got = rows(&process_facts_at(&root.0, 4242, SUMMER_2024));
    let want = expected(&[
        (
            FactKind::Proxy,
            "pid 4242 env https_PROXY",
            "http://p.corp.example:3128",
            Strength::Strong,
        ),
        (
            FactKind::Proxy,
            "pid 4242 env https_PROXY",
            "p.corp.example:3128",
            Strength::Strong,
        ),
        (
            FactKind::Proxy,
            "pid 4242 env https_PROXY",
            "p.corp.example",
            Strength::Strong,
        ),
        (
            FactKind::NoProxy,
            "pid 4242 env no_proxy",
            "int.example",
            Strength::Strong,
        ),
        (
            FactKind::Timezone,
            "pid 4242 env TZ",
            "Asia/Kolkata",
            Strength::Strong,
        ),
        (FactKind::UtcOffset, "Asia/Kolkata", "330", Strength::Weak),
        (
            FactKind::Locale,
            "pid 4242 env LANG",
            "fr_FR.UTF-8",
            Strength::Weak,
        ),
    ]);
    assert_eq!(got, want);
    let posix = rows(&process_facts_at(&root.0, 7, SUMMER_2024));
    assert_eq!(
        posix,
        expected(&[(FactKind::UtcOffset, "pid 7 env TZ", "120", Strength::Weak)])
    );
    assert!(process_facts(&root.0, 99_999).is_empty());
}

#[test]
fn refresh_reports_changes() {
    let root = Root::new("refresh");
    root.write("/etc/hostname", "alpha-host\n");
    let mut set = FactSet::new(root.sources(&[]));
    let first = set.fingerprint();
    assert_eq!(set.facts().len(), 1);
    assert!(!set.refresh());
    assert_eq!(set.fingerprint(), first);
    root.write("/etc/hostname", "beta-host\n");
    assert!(set.refresh());
    assert_ne!(set.fingerprint(), first);
    assert_eq!(set.facts()[0].value, "beta-host");
    assert!(!set.refresh());
}

#[test]
fn hostile_files_are_skipped() {
    let root = Root::new("hostile");
    // A directory where a file is expected, an oversized file, non-UTF-8.
    fs::create_dir_all(under(&root.0, "/etc/hostname")).expect("mkdir");
    let mut big = "x".repeat(2 << 20);
    big.insert_str(0, "alice:x:1000:1000::/home/alice:/bin/bash\n");
    root.write("/etc/passwd", &big);
    fs::create_dir_all(under(&root.0, "/proc/sys/kernel")).expect("mkdir");
    fs::write(under(&root.0, "/proc/sys/kernel/hostname"), b"h\xffst-9\n").expect("write");
    let got = rows(&collect_at(&root.sources(&[]), 0));
    let want = expected(&[
        (
            FactKind::Hostname,
            "/proc/sys/kernel/hostname",
            "h\u{fffd}st-9",
            Strength::Strong,
        ),
        (FactKind::User, "/etc/passwd", "alice", Strength::Strong),
        (
            FactKind::Home,
            "/etc/passwd alice",
            "/home/alice",
            Strength::Strong,
        ),
    ]);
    assert_eq!(got, want);
    // A missing root yields nothing, without panicking.
    let gone = Sources {
        root: root.0.join("missing"),
        env: Vec::new(),
        uname: None,
    };
    assert!(collect(&gone).is_empty());
}

#[test]
fn this_host() {
    let facts = collect(&Sources::host());
    assert!(
        facts.iter().any(|f| f.kind == FactKind::KernelRelease),
        "{facts:?}"
    );
    // The host name is a fact unless it is under the three-character floor
    // every value has (this build machine is called `vm`).
    let kernel_name = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let kernel_name = kernel_name.trim();
    let hostname = facts.iter().find(|f| f.kind == FactKind::Hostname);
    if kernel_name.chars().count() >= 3 {
        assert_eq!(hostname.map(|f| f.value.as_str()), Some(kernel_name));
    } else {
        assert!(hostname.is_none() || hostname.is_some_and(|f| f.name == "/etc/hostname"));
    }
    assert!(facts.iter().any(|f| f.kind == FactKind::KernelVersion));
    assert!(facts.iter().any(|f| f.kind == FactKind::Arch));
    // Sorted and free of kind/value duplicates.
    assert!(facts.windows(2).all(|w| w[0] <= w[1]));
    let mut seen = std::collections::HashSet::new();
    assert!(facts.iter().all(|f| seen.insert((f.kind, f.value.clone()))));
}

/// A process's working directory, the names in it (common project files left
/// out, values never in the fact's name), its user and home from its own
/// root's passwd, and its executable.
#[test]
fn process_directory_user_and_program() {
    let root = Root::new("process-cwd");
    let project = root.0.join("work/acme-payments");
    fs::create_dir_all(project.join("src")).expect("mkdir");
    for f in [
        "ledger_reconcile.py",
        "invoice-export.sql",
        "README.md",
        "Cargo.toml",
        "a.txt",
    ] {
        fs::write(project.join(f), "x").expect("write");
    }
    fs::create_dir_all(under(&root.0, "/proc/77")).expect("mkdir");
    std::os::unix::fs::symlink(&project, under(&root.0, "/proc/77/cwd")).expect("cwd link");
    std::os::unix::fs::symlink("/opt/agent/bin/agent-cli", under(&root.0, "/proc/77/exe"))
        .expect("exe link");
    root.write("/proc/77/environ", "PATH=/usr/bin\0");
    root.write(
        "/proc/77/status",
        "Name:\tagent-cli\nUid:\t1042\t1042\t1042\t1042\nGid:\t1042\n",
    );
    root.write(
        "/proc/77/root/etc/passwd",
        "root:x:0:0:root:/root:/bin/bash\nmallory:x:1042:1042::/srv/mallory:/bin/zsh\n",
    );
    let facts = process_facts_at(&root.0, 77, SUMMER_2024);
    let of = |k: FactKind| -> Vec<(&str, &str)> {
        facts
            .iter()
            .filter(|f| f.kind == k)
            .map(|f| (f.name.as_str(), f.value.as_str()))
            .collect()
    };
    let cwd = project.to_str().expect("utf-8 path");
    assert_eq!(of(FactKind::WorkingDirectory), [("pid 77 cwd", cwd)]);
    let names: Vec<&str> = of(FactKind::FileName).iter().map(|(_, v)| *v).collect();
    assert_eq!(names, ["invoice-export.sql", "ledger_reconcile.py"]);
    assert!(
        facts
            .iter()
            .filter(|f| f.kind == FactKind::FileName)
            .all(|f| !f.name.contains(&f.value) && f.strength == Strength::Weak)
    );
    assert_eq!(
        of(FactKind::Program),
        [("pid 77 exe", "/opt/agent/bin/agent-cli")]
    );
    assert_eq!(of(FactKind::User), [("pid 77 user /etc/passwd", "mallory")]);
    assert_eq!(
        of(FactKind::Home),
        [("pid 77 user /etc/passwd mallory", "/srv/mallory")]
    );
}
