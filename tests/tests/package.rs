//! The Debian package (`./x package`, which `./x test` runs first): installs
//! target/debian/*.deb into this very system with dpkg, checks what it put where,
//! runs the installed binary the way the installed systemd unit does (user,
//! ambient capabilities, no_new_privs, ExecStart), then purges the package and
//! checks that nothing is left. Needs root and dpkg; the package is never left
//! installed, and a /var/lib/telltale that was there before is put back.

use std::{
    fs,
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use telltale_tests::{can_load_probes, workspace_root};

const PACKAGE: &str = "telltale";
const BIN: &str = "/usr/bin/telltale";
const UNIT: &str = "/lib/systemd/system/telltale.service";
const CONF: &str = "/etc/telltale/telltale.toml";
const DOC: &str = "/usr/share/doc/telltale/README.md";
const STATE: &str = "/var/lib/telltale";
const LOGS: &str = "/var/log/telltale";
const USER: &str = "telltale";

/// PATH as systemd gives it to system services.
const SERVICE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin";

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}:\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout_of(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run(cmd).stdout).into_owned()
}

fn installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", PACKAGE])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).ends_with(" installed"))
}

fn user_exists(name: &str) -> bool {
    Command::new("getent")
        .args(["passwd", name])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The one package in target/debian.
fn find_deb() -> Option<PathBuf> {
    let dir = workspace_root().join("target").join("debian");
    let mut debs: Vec<PathBuf> = fs::read_dir(&dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    debs.sort();
    debs.pop()
}

/// Purges the package (if installed) and puts back a state directory that was
/// there before, on every exit of the test, panics included.
struct Installation {
    saved_state: Option<PathBuf>,
}

impl Installation {
    fn new() -> Self {
        let saved_state = Path::new(STATE).exists().then(|| {
            let aside = PathBuf::from(format!("{STATE}.package-test-{}", std::process::id()));
            fs::rename(STATE, &aside)
                .unwrap_or_else(|e| panic!("moving {STATE} aside to {}: {e}", aside.display()));
            aside
        });
        Self { saved_state }
    }

    fn purge(&self) -> Output {
        run(Command::new("dpkg")
            .args(["--purge", PACKAGE])
            .env("DEBIAN_FRONTEND", "noninteractive"))
    }
}

impl Drop for Installation {
    fn drop(&mut self) {
        if installed() {
            let _ = Command::new("dpkg")
                .args(["--purge", PACKAGE])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status();
        }
        if let Some(aside) = self.saved_state.take() {
            let _ = fs::remove_dir_all(STATE);
            if let Err(e) = fs::rename(&aside, STATE) {
                eprintln!("could not put {} back at {STATE}: {e}", aside.display());
            }
        }
    }
}

/// `Key=value` lines of the unit's [Service] section.
fn service_settings(unit: &str) -> Vec<(String, String)> {
    let mut in_service = false;
    let mut out = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
        } else if in_service
            && !line.starts_with('#')
            && let Some((k, v)) = line.split_once('=')
        {
            out.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    out
}

fn setting<'a>(settings: &'a [(String, String)], key: &str) -> Option<&'a str> {
    settings
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn assert_mode(path: &str, mode: u32, uid: u32) {
    let md = fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(
        md.permissions().mode() & 0o7777,
        mode,
        "{path} has mode {:o}",
        md.permissions().mode()
    );
    assert_eq!(md.uid(), uid, "owner of {path}");
}

fn uid_of(user: &str) -> u32 {
    let line = stdout_of(Command::new("getent").args(["passwd", user]));
    line.split(':')
        .nth(2)
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| panic!("bad passwd line {line:?}"))
}

/// Reads the JSON events of a file being written, until `pred` holds for one of
/// them or `timeout` passes.
fn wait_for_event(file: &Path, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        let text = fs::read_to_string(file).unwrap_or_default();
        if let Some(v) = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| pred(v))
        {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// Starts the installed binary as the unit would (ExecStart, User, Group,
/// AmbientCapabilities, CapabilityBoundingSet, NoNewPrivileges, systemd's PATH,
/// working directory /), checks its `sensor.status` start event, stops it with
/// SIGTERM and checks that it stops cleanly within TimeoutStopSec.
fn run_like_the_unit(settings: &[(String, String)]) {
    let exec = setting(settings, "ExecStart").expect("ExecStart");
    let argv: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(argv[0], BIN, "ExecStart runs the installed binary");
    let user = setting(settings, "User").expect("User");
    let group = setting(settings, "Group").unwrap_or(user);
    let caps = |key: &str| {
        let list: Vec<String> = setting(settings, key)
            .unwrap_or_else(|| panic!("{key}"))
            .split_whitespace()
            .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
            .collect();
        format!("-all,{}", list.join(","))
    };
    let stop_timeout: u64 = setting(settings, "TimeoutStopSec").map_or(90, |s| {
        s.trim_end_matches('s').parse().expect("TimeoutStopSec")
    });

    let tmp = tempfile::tempdir().expect("tempdir");
    let out_path = tmp.path().join("stdout");
    let err_path = tmp.path().join("stderr");
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={user}"))
        .arg(format!("--regid={group}"))
        .arg("--init-groups")
        .arg(format!("--inh-caps={}", caps("AmbientCapabilities")))
        .arg(format!("--ambient-caps={}", caps("AmbientCapabilities")))
        .arg(format!("--bounding-set={}", caps("CapabilityBoundingSet")));
    if setting(settings, "NoNewPrivileges") == Some("yes") {
        cmd.arg("--no-new-privs");
    }
    cmd.arg("--")
        .args(&argv)
        .env_clear()
        .env("PATH", SERVICE_PATH)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).expect("stdout file"))
        .stderr(fs::File::create(&err_path).expect("stderr file"));
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    let started = wait_for_event(&out_path, Duration::from_secs(60), |v| {
        v["event_type"] == "sensor.status" && v["state"] == "started"
    });
    let stderr = || fs::read_to_string(&err_path).unwrap_or_default();
    let Some(started) = started else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "the installed sensor printed no started event:\n{}",
            stderr()
        );
    };
    // Attached to the system's libssl, as the unprivileged user.
    assert!(
        started["targets"]["attached"].as_u64().unwrap_or(0) > 0,
        "nothing attached: {started}\n{}",
        stderr()
    );
    // A few seconds of running, as a service would.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        child.try_wait().expect("wait").is_none(),
        "the sensor exited early:\n{}",
        stderr()
    );
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > Duration::from_secs(stop_timeout) {
            let _ = child.kill();
            panic!(
                "the sensor did not stop within TimeoutStopSec={stop_timeout}:\n{}",
                stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit {status}:\n{}", stderr());
    assert!(
        wait_for_event(&out_path, Duration::from_millis(500), |v| {
            v["event_type"] == "sensor.status" && v["state"] == "stopped"
        })
        .is_some(),
        "no stopped event"
    );
    // Its state went into the state directory, owned by the service user.
    let key = format!("{STATE}/evidence.key");
    assert_mode(&key, 0o600, uid_of(user));
}

#[test]
fn deb_installs_runs_like_the_unit_and_purges() {
    const TEST: &str = "deb_installs_runs_like_the_unit_and_purges";
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        eprintln!("skipping {TEST}: installing a package needs root (euid {euid})");
        return;
    }
    if !have("dpkg") {
        eprintln!("skipping {TEST}: no dpkg");
        return;
    }
    let Some(deb) = find_deb() else {
        let msg = "no target/debian/*.deb (`./x package` builds it; `./x test` does too)";
        assert!(std::env::var_os("CI").is_none(), "{TEST}: {msg}");
        eprintln!("skipping {TEST}: {msg}");
        return;
    };
    assert!(
        !installed(),
        "{TEST}: package {PACKAGE} is already installed here; `dpkg --purge {PACKAGE}` first"
    );
    let inst = Installation::new();

    run(Command::new("dpkg")
        .arg("-i")
        .arg(&deb)
        .env("DEBIAN_FRONTEND", "noninteractive"));
    assert!(installed(), "dpkg -i did not leave {PACKAGE} installed");

    // Files, modes, owners.
    assert_mode(BIN, 0o755, 0);
    assert_mode(UNIT, 0o644, 0);
    assert_mode(CONF, 0o644, 0);
    assert_mode(DOC, 0o644, 0);
    let deploy = workspace_root().join("deploy");
    let unit = fs::read_to_string(UNIT).expect("unit");
    assert_eq!(
        unit,
        fs::read_to_string(deploy.join("systemd/telltale.service")).expect("source unit")
    );
    assert_eq!(
        fs::read_to_string(CONF).expect("conffile"),
        fs::read_to_string(deploy.join("etc/telltale.toml")).expect("source conffile")
    );
    let conffiles = stdout_of(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", PACKAGE]));
    assert!(
        conffiles.lines().any(|l| l.trim().starts_with(CONF)),
        "{CONF} is not a conffile: {conffiles:?}"
    );
    assert!(user_exists(USER), "postinst made no user {USER}");
    let uid = uid_of(USER);
    assert_ne!(uid, 0);
    assert_mode(STATE, 0o700, uid);
    assert_mode(LOGS, 0o750, uid);

    // The unit as systemd reads it (systemd-analyze works without systemd as PID 1).
    if have("systemd-analyze") {
        let out = Command::new("systemd-analyze")
            .args(["verify", UNIT])
            .output()
            .expect("systemd-analyze");
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !text.contains("telltale.service"),
            "systemd-analyze verify {UNIT}: {}\n{text}",
            out.status
        );
    }

    // The installed binary with the installed configuration.
    let config = stdout_of(Command::new(BIN).args(["--config", CONF, "config"]));
    assert!(
        config.contains("[state]") && config.contains(&format!("dir = \"{STATE}\"")),
        "telltale config:\n{config}"
    );
    let rules = stdout_of(Command::new(BIN).args(["--config", CONF, "rules", "test"]));
    assert!(
        rules.lines().any(|l| l.starts_with("ok ")) && !rules.contains("FAIL"),
        "telltale rules test:\n{rules}"
    );

    let settings = service_settings(&unit);
    if !can_load_probes(&format!("{TEST} (running the installed sensor)")) {
        // Printed by can_load_probes.
    } else if !have("setpriv") {
        eprintln!("{TEST}: no setpriv (util-linux); not running the installed sensor");
    } else {
        run_like_the_unit(&settings);
    }

    // Where systemd runs (not on every test VM), the service itself.
    if Path::new("/run/systemd/system").is_dir() {
        run(Command::new("systemctl").args(["restart", "telltale.service"]));
        let start = Instant::now();
        loop {
            let state = Command::new("systemctl")
                .args(["is-active", "telltale.service"])
                .output()
                .expect("systemctl");
            let state = String::from_utf8_lossy(&state.stdout).trim().to_owned();
            if state == "active" {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "telltale.service is {state}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    } else {
        eprintln!("{TEST}: systemd is not running here; the service itself is not started");
    }

    inst.purge();
    assert!(!installed(), "{PACKAGE} still installed after purge");
    for gone in [BIN, UNIT, CONF, "/etc/telltale", DOC, STATE, LOGS] {
        assert!(!Path::new(gone).exists(), "{gone} is left after purge");
    }
    assert!(!user_exists(USER), "user {USER} is left after purge");
    drop(inst);
}

/// deploy/kubernetes/daemonset.yaml parses (PyYAML, when python3 has it), has the
/// objects and fields the deployment relies on, and its ConfigMap's
/// telltale.toml is a configuration the sensor accepts.
#[test]
fn kubernetes_manifest_parses() {
    const TEST: &str = "kubernetes_manifest_parses";
    let manifest = workspace_root().join("deploy/kubernetes/daemonset.yaml");
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml\n\
             docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]\n\
             print(json.dumps(docs))",
        ])
        .arg(&manifest)
        .output();
    let out = match out {
        Ok(o) if o.status.success() => o,
        Ok(o) if String::from_utf8_lossy(&o.stderr).contains("No module named 'yaml'") => {
            eprintln!("skipping {TEST}: python3 has no yaml module (python3-yaml)");
            return;
        }
        Ok(o) => panic!(
            "{} does not parse: {}",
            manifest.display(),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => {
            eprintln!("skipping {TEST}: no python3 ({e})");
            return;
        }
    };
    let docs: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON from python");
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        ["Namespace", "ServiceAccount", "ConfigMap", "DaemonSet"]
    );
    for d in &docs[1..] {
        assert_eq!(d["metadata"]["namespace"], "telltale", "{d}");
    }
    let ds = &docs[3];
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"], true);
    assert_eq!(pod["serviceAccountName"], "telltale");
    assert_eq!(pod["tolerations"][0]["operator"], "Exists");
    let labels = &ds["spec"]["template"]["metadata"]["labels"];
    for (k, v) in ds["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels")
    {
        assert_eq!(&labels[k], v, "selector label {k}");
    }
    let c = &pod["containers"][0];
    assert_eq!(c["command"][0], BIN);
    assert_eq!(c["args"][0], "run");
    let sc = &c["securityContext"];
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");
    let mut caps: Vec<&str> = sc["capabilities"]["add"]
        .as_array()
        .expect("added capabilities")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    caps.sort_unstable();
    assert_eq!(
        caps,
        [
            "BPF",
            "DAC_READ_SEARCH",
            "KILL",
            "PERFMON",
            "SYS_ADMIN",
            "SYS_PTRACE"
        ]
    );
    assert!(c["resources"]["limits"]["memory"].is_string());
    // Every mount has its volume and the reverse.
    let names = |v: &Value| -> Vec<String> {
        let mut n: Vec<String> = v
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|m| m["name"].as_str().map(str::to_owned))
            .collect();
        n.sort();
        n
    };
    assert_eq!(names(&c["volumeMounts"]), names(&pod["volumes"]));
    let mount_of = |path: &str| {
        c["volumeMounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .find(|m| m["mountPath"] == path)
            .unwrap_or_else(|| panic!("no mount at {path}"))
            .clone()
    };
    for path in [
        "/sys/kernel/btf",
        "/etc/machine-id",
        "/etc/os-release",
        "/etc/timezone",
        "/etc/localtime",
        "/etc/hostname",
    ] {
        assert_eq!(mount_of(path)["readOnly"], true, "{path}");
    }
    assert_ne!(mount_of("/var/lib/telltale")["readOnly"], true);
    let config_path = c["args"]
        .as_array()
        .expect("args")
        .iter()
        .skip_while(|a| *a != "--config")
        .nth(1)
        .and_then(Value::as_str)
        .expect("--config FILE in args");
    let config_dir = Path::new(config_path).parent().expect("config dir");
    assert_eq!(
        mount_of(config_dir.to_str().expect("utf-8"))["name"],
        "config"
    );

    // The ConfigMap's file, checked by the sensor itself.
    let toml = docs[2]["data"]["telltale.toml"]
        .as_str()
        .expect("telltale.toml in the ConfigMap");
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("telltale.toml");
    fs::write(&file, toml).expect("write");
    let shown = stdout_of(
        Command::new(telltale_tests::sensor_bin())
            .arg("--config")
            .arg(&file)
            .arg("config"),
    );
    assert!(shown.contains("[state]"), "{shown}");
}
