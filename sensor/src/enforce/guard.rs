//! The hold guard: a small separate process that continues held processes when
//! the sensor cannot.
//!
//! The sensor starts it (`telltale hold-guard`, not for operators) with a pipe
//! on its stdin and the kernel's `HOLD` map on descriptor 3; over the pipe the
//! sensor sends a heartbeat line at least every second, and, on a clean stop, a
//! line saying its probes are detached. The guard continues
//! every stopped process that the `HOLD` map marks as selected or pending —
//! whether or not the sensor had learned of its hold —
//! - when the pipe closes (the sensor exited, cleanly or killed with SIGKILL),
//!   twice, 200 ms apart, then exits;
//! - while no heartbeat came for longer than its stall limit (a sensor alive
//!   but stuck), every 100 ms until heartbeats resume.
//!
//! It ignores SIGINT, SIGTERM and SIGHUP, so that a terminal's Ctrl-C or a
//! service stop reaches the sensor first and the guard still does its job after.

use std::{
    io::{self, BufRead, Write},
    os::fd::{AsFd, AsRawFd, BorrowedFd},
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use super::act;

/// Descriptor of the `HOLD` map in the guard.
const MAP_FD: i32 = 3;

/// The sensor's end of the guard.
pub struct Guard {
    child: Child,
    pipe: ChildStdin,
    last_beat: Instant,
}

impl Guard {
    /// Starts the guard with the `HOLD` map's descriptor.
    /// Heartbeats older than `stall` make it continue held processes.
    pub fn start(map: BorrowedFd<'_>, stall: Duration) -> io::Result<Self> {
        use std::os::unix::process::CommandExt;
        let raw = map.as_raw_fd();
        let exe = std::env::current_exe()?;
        let mut cmd = Command::new(exe);
        cmd.arg("hold-guard")
            .arg(stall.as_millis().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // dup2 clears close-on-exec on the copy.
                if libc::dup2(raw, MAP_FD) < 0 {
                    return Err(io::Error::last_os_error());
                }
                // Its own session: a terminal's signals go to the sensor's group.
                libc::setsid();
                Ok(())
            });
        }
        let mut child = cmd.spawn()?;
        let pipe = child
            .stdin
            .take()
            .ok_or_else(|| io::Error::other("guard without stdin"))?;
        Ok(Self {
            child,
            pipe,
            last_beat: Instant::now(),
        })
    }

    /// The guard's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn send(&mut self, line: &str) {
        if let Err(e) = self.pipe.write_all(line.as_bytes()) {
            tracing::warn!(error = %e, "the hold guard is gone; held processes lose their safety net");
        }
    }

    /// The sensor is alive (sent at most every 250 ms, however often called).
    pub fn heartbeat(&mut self) {
        if self.last_beat.elapsed() >= Duration::from_millis(250) {
            self.last_beat = Instant::now();
            self.send("B\n");
        }
    }

    /// The probes are detached (a clean stop): no process can be held any more,
    /// so the guard need not wait for the sensor's exit before its sweep.
    pub fn detached(&mut self) {
        self.send("D\n");
    }

    /// Closes the pipe and waits for the guard to finish its sweep.
    pub fn stop(mut self) {
        drop(self.pipe);
        let _ = self.child.wait();
    }
}

/// `telltale hold-guard STALL_MS`.
pub fn main(stall_ms: u64) -> std::process::ExitCode {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGPIPE] {
        // SAFETY: installing SIG_IGN.
        unsafe { libc::signal(sig, libc::SIG_IGN) };
    }
    // SAFETY: descriptor 3 was set up by the sensor; checked below.
    let map = unsafe { BorrowedFd::borrow_raw(MAP_FD) };
    if map_keys(map).is_err() {
        eprintln!(
            "telltale hold-guard: descriptor {MAP_FD} is not the HOLD map; only `telltale run` starts this"
        );
        return std::process::ExitCode::FAILURE;
    }
    let stall = Duration::from_millis(stall_ms.max(500));
    // SAFETY: no preconditions.
    let sensor = unsafe { libc::getppid() } as u32;
    let (tx, rx) = mpsc::channel::<bool>();
    std::thread::spawn(move || {
        for line in io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line == "D").is_err() {
                break;
            }
        }
    });
    let mut detached = false;
    let mut last_beat = Instant::now();
    let mut stalled = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(d) => {
                detached |= d;
                last_beat = Instant::now();
                if stalled {
                    eprintln!("telltale hold-guard: the sensor responds again");
                    stalled = false;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if last_beat.elapsed() > stall {
            let n = continue_held(map);
            if !stalled && n > 0 {
                eprintln!(
                    "telltale hold-guard: no heartbeat for {} ms; continued {n} held process(es)",
                    last_beat.elapsed().as_millis()
                );
                stalled = true;
            }
        }
    }
    // The sensor is going. Its probes can outlive it for seconds: the kernel
    // releases many uprobe links in deferred work after the process is gone,
    // and a process continued before that is held again at its next write,
    // with nobody to decide. So sweep every 50 ms until the sensor has exited
    // (or said its probes are detached) and no process needed continuing for
    // a second and a half, for 30 s at most.
    let start = Instant::now();
    let mut last_held = Instant::now();
    let mut n = 0;
    loop {
        let k = continue_held(map);
        if k > 0 {
            n += k;
            last_held = Instant::now();
        }
        let quiet = last_held.elapsed() > Duration::from_millis(1500);
        if ((detached || exited(sensor)) && quiet) || start.elapsed() > Duration::from_secs(30) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if n > 0 {
        eprintln!("telltale hold-guard: the sensor is gone; continued {n} held process(es)");
    }
    std::process::ExitCode::SUCCESS
}

/// Whether process `pid` — the guard's parent when it started — has exited:
/// it is a zombie, gone, or no longer the parent.
fn exited(pid: u32) -> bool {
    // SAFETY: no preconditions.
    (unsafe { libc::getppid() }) as u32 != pid
        || !matches!(act::state(pid), Some(c) if c != 'Z' && c != 'X')
}

/// Continues every stopped process the map marks as selected or pending;
/// returns how many.
fn continue_held(map: BorrowedFd<'_>) -> usize {
    held_in_map(map)
        .into_iter()
        .filter(|&pid| act::is_stopped(pid) && act::resume(pid).is_ok())
        .count()
}

/// Processes the map marks as selected or pending.
fn held_in_map(map: BorrowedFd<'_>) -> Vec<u32> {
    map_keys(map)
        .unwrap_or_default()
        .into_iter()
        .filter(|&pid| {
            map_lookup(map, pid).is_some_and(|v| {
                v == sensor_common::hold::SELECTED || v == sensor_common::hold::PENDING
            })
        })
        .collect()
}

/// `union bpf_attr` for the element commands.
#[repr(C)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;

fn bpf(cmd: libc::c_long, attr: &mut ElemAttr) -> io::Result<()> {
    // SAFETY: `attr` is a valid bpf_attr prefix of the size given.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut ElemAttr,
            std::mem::size_of::<ElemAttr>(),
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn map_keys(map: BorrowedFd<'_>) -> io::Result<Vec<u32>> {
    let fd = map.as_fd().as_raw_fd() as u32;
    let mut keys = Vec::new();
    let mut next: u32 = 0;
    let mut prev: Option<u32> = None;
    let limit = sensor_common::MAX_HOLD_PROCESSES as usize;
    while keys.len() < limit {
        let mut attr = ElemAttr {
            map_fd: fd,
            _pad: 0,
            key: prev.as_ref().map_or(0, |k| k as *const u32 as u64),
            value: &mut next as *mut u32 as u64,
            flags: 0,
        };
        match bpf(BPF_MAP_GET_NEXT_KEY, &mut attr) {
            Ok(()) => {
                keys.push(next);
                prev = Some(next);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(keys)
}

fn map_lookup(map: BorrowedFd<'_>, pid: u32) -> Option<u8> {
    let mut value: u8 = 0;
    let mut attr = ElemAttr {
        map_fd: map.as_raw_fd() as u32,
        _pad: 0,
        key: &pid as *const u32 as u64,
        value: &mut value as *mut u8 as u64,
        flags: 0,
    };
    bpf(BPF_MAP_LOOKUP_ELEM, &mut attr).ok().map(|()| value)
}
