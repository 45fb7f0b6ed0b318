//! Host facts: what a fingerprinting client could learn about this host and send
//! away — time zone, proxy settings, OS and kernel, host and user names, machine
//! identifiers, addresses. Detection looks for their values in requests.
//!
//! [`collect`] reads them from a root directory ([`Sources`]: `/` on a real
//! host, a copied tree in tests), [`process_facts`] from one process's
//! environment, and [`FactSet`] keeps them current. Every source is optional
//! and every read bounded; collection never fails, it only finds less.

mod collect;
mod net;
mod proxy;
mod source;
mod system;
mod tz;

use serde::{Deserialize, Serialize};

pub use collect::{FactSet, collect, process_facts};
pub use source::{Sources, Uname};

/// What a fact is about. Detection rules name these kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FactKind {
    /// IANA time zone name (`Europe/Berlin`).
    Timezone,
    /// The zone's current UTC offset in minutes east of UTC, rendered by the
    /// matcher in several spellings (`+01:00`, `UTC+1`, `GMT+0100`, …).
    UtcOffset,
    /// A proxy URL or `host:port` from the environment or a tool's configuration.
    Proxy,
    /// `no_proxy` entries (internal domain names).
    NoProxy,
    /// `uname -m` (`x86_64`).
    Arch,
    /// `uname -r` (`6.1.0-18-amd64`).
    KernelRelease,
    /// `uname -v` (`#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)`).
    KernelVersion,
    /// `/etc/os-release` values (`PRETTY_NAME`, `VERSION_ID`, …).
    OsRelease,
    /// Host name.
    Hostname,
    /// Fully qualified domain name.
    Fqdn,
    /// A user name present on the host (`/etc/passwd`, human and root accounts).
    User,
    /// A user's home directory (`/home/alice`).
    Home,
    /// `/etc/machine-id`.
    MachineId,
    /// `/proc/sys/kernel/random/boot_id`.
    BootId,
    /// DMI product UUID.
    DmiUuid,
    /// DMI product or board serial number.
    DmiSerial,
    /// A network interface's MAC address.
    Mac,
    /// An IP address of the host (not loopback).
    Ip,
    /// CPU model name.
    CpuModel,
    /// Locale (`LANG`, `LC_ALL`, `/etc/default/locale`).
    Locale,
    /// A client process's working directory (`/home/alice/src/acme`).
    WorkingDirectory,
    /// The name of an entry of a client process's working directory: several
    /// of them in one request mean its file tree was sent.
    FileName,
    /// A client process's executable path.
    Program,
}

impl FactKind {
    /// The kind's name as rules and events spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timezone => "timezone",
            Self::UtcOffset => "utc_offset",
            Self::Proxy => "proxy",
            Self::NoProxy => "no_proxy",
            Self::Arch => "arch",
            Self::KernelRelease => "kernel_release",
            Self::KernelVersion => "kernel_version",
            Self::OsRelease => "os_release",
            Self::Hostname => "hostname",
            Self::Fqdn => "fqdn",
            Self::User => "user",
            Self::Home => "home",
            Self::MachineId => "machine_id",
            Self::BootId => "boot_id",
            Self::DmiUuid => "dmi_uuid",
            Self::DmiSerial => "dmi_serial",
            Self::Mac => "mac",
            Self::Ip => "ip",
            Self::CpuModel => "cpu_model",
            Self::Locale => "locale",
            Self::WorkingDirectory => "working_directory",
            Self::FileName => "file_name",
            Self::Program => "program",
        }
    }
}

/// How much one match of a fact says on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strength {
    /// Identifies this host or user (machine-id, hostname, a non-default user name,
    /// a proxy URL): one match is meaningful.
    Strong,
    /// Shared by many hosts (`x86_64`, `UTC`, `en_US.UTF-8`, `root`, a distribution
    /// name): meaningful only together with other facts (rule thresholds).
    Weak,
}

/// One fact about the host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Fact {
    /// What it is about.
    pub kind: FactKind,
    /// Where it came from, for the alert (`TZ`, `/etc/timezone`, `https_proxy`,
    /// `/etc/os-release PRETTY_NAME`, `eth0`, …).
    pub name: String,
    /// The value as the host has it.
    pub value: String,
    /// Whether one match says much.
    pub strength: Strength,
}
