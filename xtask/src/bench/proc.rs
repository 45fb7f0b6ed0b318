//! Child processes of the benchmark: a guard that stops its child when dropped,
//! bounded runs, CPU pinning and readings from /proc.

use std::{
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::cmd::{describe, status_text};

/// How often a wait polls its child.
const POLL: Duration = Duration::from_millis(10);

/// A running child that is stopped (signal, then SIGKILL) when dropped, so that
/// an error anywhere in the benchmark leaves no process behind.
pub struct Guard {
    child: Child,
    name: String,
    /// Signal that asks the child to stop cleanly (SIGTERM, SIGINT, SIGQUIT).
    signal: i32,
    status: Option<ExitStatus>,
}

impl Guard {
    /// Spawns `cmd`; `name` is used in messages.
    pub fn spawn(cmd: &mut Command, name: &str, signal: i32) -> Result<Self> {
        let child = cmd
            .spawn()
            .with_context(|| format!("could not start `{}`", describe(cmd)))?;
        Ok(Self {
            child,
            name: name.to_owned(),
            signal,
            status: None,
        })
    }

    /// The child's process id (the program itself: `taskset` executes it).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The child, to take its pipes.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// The exit status when the child has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits up to `timeout` for the child to exit by itself.
    pub fn wait_for(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Sends the stop signal, waits up to `grace`, then kills. Returns the exit
    /// status and whether the child had to be killed.
    pub fn stop(&mut self, grace: Duration) -> (Option<ExitStatus>, bool) {
        if let Some(status) = self.exited() {
            return (Some(status), false);
        }
        signal(self.id(), self.signal);
        if let Some(status) = self.wait_for(grace) {
            return (Some(status), false);
        }
        let _ = self.child.kill();
        self.status = self.child.wait().ok();
        (self.status, true)
    }

    /// "`name` (exit status 1)" style description of how it ended, if it did.
    pub fn describe_exit(&mut self) -> String {
        match self.exited() {
            Some(status) => format!("{} exited ({})", self.name, status_text(status)),
            None => format!("{} is running", self.name),
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let (_, killed) = self.stop(Duration::from_secs(5));
        if killed {
            eprintln!("bench: {} did not stop on its signal; killed", self.name);
        }
    }
}

/// Sends `sig` to process `pid`; ignores a process that is already gone.
pub fn signal(pid: u32, sig: i32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill(2) with a pid of our own child and a valid signal number.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Runs `cmd` to completion within `timeout` and returns its stdout. Meant for
/// programs that print little (the pipes are read after the exit).
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> Result<String> {
    run_bounded_with(cmd, timeout, |_| ())
}

/// [`run_bounded`], calling `spawned` with the child's pid once it runs.
pub fn run_bounded_with(
    cmd: &mut Command,
    timeout: Duration,
    spawned: impl FnOnce(u32),
) -> Result<String> {
    let desc = describe(cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut guard = Guard::spawn(cmd, &desc, libc::SIGKILL)?;
    spawned(guard.id());
    let Some(status) = guard.wait_for(timeout) else {
        bail!(
            "`{desc}` did not finish within {}s; killed",
            timeout.as_secs()
        );
    };
    let child = guard.child_mut();
    let stdout = read_all(child.stdout.take());
    let stderr = read_all(child.stderr.take());
    if !status.success() {
        bail!(
            "`{desc}` failed ({}): {}",
            status_text(status),
            last_lines(&stderr, 5)
        );
    }
    Ok(stdout)
}

/// Everything left in a pipe of an exited child (lossy UTF-8).
fn read_all(pipe: Option<impl std::io::Read>) -> String {
    let mut bytes = Vec::new();
    if let Some(mut pipe) = pipe {
        let _ = pipe.read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The last `n` non-empty lines of `text`, joined with " | ".
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// The last `n` lines of a log file, or why it cannot be read.
pub fn log_tail(path: &Path, n: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => last_lines(&strip_ansi(&text), n),
        Err(e) => format!("({}: {e})", path.display()),
    }
}

/// `text` without ANSI colour sequences (the sensor colours its logs).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ ... final byte in '@'..='~'
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `program` run through `taskset -c CPU` when `cpu` is set.
pub fn pinned(program: &Path, cpu: Option<usize>) -> Command {
    match cpu {
        Some(cpu) => {
            let mut cmd = Command::new("taskset");
            cmd.args(["-c", &cpu.to_string()]).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// Pins the calling thread to `cpu`; returns whether it worked.
pub fn pin_current_thread(cpu: usize) -> bool {
    // SAFETY: cpu_set_t is plain data; CPU_SET and sched_setaffinity(0, ...) act
    // on the calling thread with a correctly sized set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// User + system CPU seconds used so far by process `pid` (all its threads).
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // Fields after "(comm)": state is field 3, utime 14, stime 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| anyhow!("{path}: no ')' after the command name"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Result<u64> {
        fields
            .get(n - 3)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("{path}: field {n} is missing or not a number"))
    };
    let ticks = field(14)? + field(15)?;
    Ok(ticks as f64 / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

/// Peak resident set size (VmHWM) of process `pid`, in KiB.
pub fn peak_rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("{path}: no readable VmHWM line"))
}

/// Resets the peak RSS of process `pid` to its current RSS (clear_refs 5).
pub fn reset_peak_rss(pid: u32) -> Result<()> {
    let path = format!("/proc/{pid}/clear_refs");
    std::fs::write(&path, "5").with_context(|| format!("writing 5 to {path}"))
}

/// Processes that would distort the measurements when they are not ours: other
/// telltale sensors, bpftrace scripts and load generators (as "comm (pid)").
/// Call it when none of ours runs.
pub fn foreign_load() -> Vec<String> {
    const NAMES: [&str; 4] = ["telltale", "bpftrace", "wrk", "sslpingpong"];
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<String> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != std::process::id())
        .filter_map(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            let comm = comm.trim();
            NAMES.contains(&comm).then(|| format!("{comm} ({pid})"))
        })
        .collect();
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansi_colours_are_removed() {
        let line = "\u{1b}[2m2026\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m run: ok";
        assert_eq!(strip_ansi(line), "2026  INFO run: ok");
    }

    #[test]
    fn last_lines_skip_blank_ones() {
        assert_eq!(last_lines("a\n\nb\nc\n\n", 2), "b | c");
        assert_eq!(last_lines("", 2), "");
    }

    #[test]
    fn own_cpu_time_and_peak_rss_are_readable() {
        let pid = std::process::id();
        assert!(cpu_seconds(pid).unwrap() >= 0.0);
        assert!(peak_rss_kib(pid).unwrap() > 0);
    }
}
