//! A thread that consumes a tracer's stdout: it tells when the tracer is ready,
//! counts lines, keeps the last one (the sensor's `stopped` status), and
//! optionally counts the load generator's markers in the sensor's events.

use std::{
    io::{BufRead as _, BufReader, Read},
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
        mpsc::{self, Receiver, RecvTimeoutError, SyncSender},
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};

use super::proc::pin_current_thread;

/// Highest marker number counted (`sslpingpong rate` numbers its writes from 0).
const MAX_MARKER: u32 = 1 << 26;

/// Latency samples kept per session.
pub const MAX_LATENCY_SAMPLES: usize = 4 << 20;

/// CLOCK_MONOTONIC now, in ns (the clock of the kernel's `bpf_ktime_get_ns`).
fn mono_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// `message.mono_ns` of a sensor `tls.data` line.
fn event_mono_ns(line: &[u8]) -> Option<u64> {
    let at = find(line, 0, br#""mono_ns":"#)?;
    leading_number(&line[at..]).map(|(n, _)| n)
}

/// What the reader thread should do besides draining the pipe.
pub struct TapOptions {
    /// Whether a line shows that the tracer is ready (its first such line is
    /// handed to [`Tap::wait_ready`]).
    pub ready: fn(&[u8]) -> bool,
    /// Count `"MARK%010u"` markers in egress `tls.data` events of the process
    /// whose pid this holds (0 until the generator runs).
    pub marker_pid: Option<Arc<AtomicU32>>,
    /// CPU to pin the reader thread to (consuming the output is part of the
    /// tracer's cost, so it runs on the tracer's CPU).
    pub cpu: Option<usize>,
}

/// What the tracer printed, known once its stdout closed.
#[derive(Debug, Default)]
pub struct TapSummary {
    pub lines: u64,
    pub bytes: u64,
    /// The last non-empty line, without its newline.
    pub last_line: String,
    /// Sum of bpftrace's "Lost N events" lines.
    pub bpftrace_lost: u64,
    /// Distinct markers seen (with [`TapOptions::marker_pid`]).
    pub markers: u64,
    /// Delay of each `tls.data` event, in µs: from the SSL call's return
    /// (`message.mono_ns`, CLOCK_MONOTONIC in the kernel) to the moment this
    /// reader got the line — what an alert consumer would wait. At most
    /// [`MAX_LATENCY_SAMPLES`] are kept.
    pub latency_us: Vec<u32>,
    /// Why reading stopped early, if it did.
    pub read_error: Option<String>,
}

/// The reader thread of one tracer.
pub struct Tap {
    ready: Receiver<String>,
    thread: JoinHandle<TapSummary>,
}

/// Why [`Tap::wait_ready`] returned without a ready line.
pub enum NotReady {
    /// The tracer's stdout closed (it exited).
    Closed,
    /// Nothing came within the timeout.
    Timeout,
}

impl Tap {
    /// Starts the reader thread on `out`.
    pub fn start(out: impl Read + Send + 'static, opts: TapOptions) -> Result<Self> {
        let (tx, ready) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("bench-tap".into())
            .spawn(move || read_lines(out, &opts, tx))
            .context("spawning the reader thread")?;
        Ok(Self { ready, thread })
    }

    /// Waits for the first ready line.
    pub fn wait_ready(&self, timeout: Duration) -> Result<String, NotReady> {
        self.ready.recv_timeout(timeout).map_err(|e| match e {
            RecvTimeoutError::Timeout => NotReady::Timeout,
            RecvTimeoutError::Disconnected => NotReady::Closed,
        })
    }

    /// Waits for the end of the output (call once the tracer has exited).
    pub fn finish(self) -> Result<TapSummary> {
        match self.thread.join() {
            Ok(summary) => Ok(summary),
            Err(_) => bail!("the reader thread panicked"),
        }
    }
}

fn read_lines(out: impl Read, opts: &TapOptions, ready: SyncSender<String>) -> TapSummary {
    if let Some(cpu) = opts.cpu {
        pin_current_thread(cpu);
    }
    let mut ready = Some(ready);
    let mut reader = BufReader::with_capacity(1 << 20, out);
    let mut summary = TapSummary::default();
    let mut markers = MarkerSet::default();
    let (mut line, mut last) = (Vec::new(), Vec::new());
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(n) => {
                summary.lines += 1;
                summary.bytes += n as u64;
            }
            Err(e) => {
                summary.read_error = Some(e.to_string());
                break;
            }
        }
        let text = trim_newline(&line);
        if ready.is_some()
            && (opts.ready)(text)
            && let Some(tx) = ready.take()
        {
            let _ = tx.send(String::from_utf8_lossy(text).into_owned());
        }
        if summary.latency_us.len() < MAX_LATENCY_SAMPLES
            && let Some(at) = event_mono_ns(text)
        {
            let delay = mono_now_ns().saturating_sub(at) / 1000;
            summary
                .latency_us
                .push(u32::try_from(delay).unwrap_or(u32::MAX));
        }
        if let Some(pid) = &opts.marker_pid {
            let pid = pid.load(Ordering::Relaxed);
            if let Some(n) = marker_of(text, pid) {
                markers.insert(n);
            }
        }
        summary.bpftrace_lost += bpftrace_lost(text);
        if !text.is_empty() {
            std::mem::swap(&mut line, &mut last);
        }
    }
    summary.last_line = String::from_utf8_lossy(trim_newline(&last)).into_owned();
    summary.markers = markers.count;
    summary
}

fn trim_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// N from bpftrace's "Lost N events" line, else 0.
fn bpftrace_lost(line: &[u8]) -> u64 {
    let Some(rest) = line.strip_prefix(b"Lost ") else {
        return 0;
    };
    leading_number(rest).map_or(0, |(n, _)| n)
}

/// The marker number of an egress `tls.data` event of process `pid` whose data
/// starts with "MARK" and ten digits. Relies on the sensor's field order
/// (process, then tls, then message with data last) and on JSON escaping every
/// quote inside strings, so a key pattern cannot match inside a value.
fn marker_of(line: &[u8], pid: u32) -> Option<u32> {
    if pid == 0 {
        return None;
    }
    let at = find(line, 0, br#""pid":"#)?;
    let (got, _) = leading_number(&line[at..])?;
    if got != u64::from(pid) {
        return None;
    }
    let at = find(line, at, br#""direction":""#)?;
    if !line[at..].starts_with(b"egress\"") {
        return None;
    }
    let at = find(line, at, br#""data":"MARK"#)?;
    let digits = line.get(at..at + 10)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Index just past the first occurrence of `needle` (which starts with a quote)
/// at or after `from`.
fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    // The reader must keep up with the sensor's output, or its backpressure is
    // what gets measured: a SIMD search, not a byte loop.
    let tail = hay.get(from..)?;
    memchr::memmem::find(tail, needle).map(|i| from + i + needle.len())
}

/// The decimal number at the start of `s` and the count of its digits.
fn leading_number(s: &[u8]) -> Option<(u64, usize)> {
    let len = s.iter().take_while(|b| b.is_ascii_digit()).count();
    let n = std::str::from_utf8(&s[..len]).ok()?.parse().ok()?;
    Some((n, len))
}

/// Distinct marker numbers seen, as a growable bit set.
#[derive(Default)]
struct MarkerSet {
    bits: Vec<u64>,
    count: u64,
}

impl MarkerSet {
    fn insert(&mut self, n: u32) {
        if n >= MAX_MARKER {
            return;
        }
        let (word, bit) = ((n / 64) as usize, n % 64);
        if word >= self.bits.len() {
            self.bits.resize(word + 1, 0);
        }
        if self.bits[word] & (1 << bit) == 0 {
            self.bits[word] |= 1 << bit;
            self.count += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: &str = r#"{"event_type":"tls.data","process":{"pid":4242,"tid":4242,"comm":"sslpingpong"},"tls":{"connection":"4242:0x1:1","direction":"egress","function":"SSL_write"},"message":{"length":512,"encoding":"utf8","data":"MARK0000000042xxxx"}}"#;

    #[test]
    fn markers_of_the_generators_egress_events_are_found() {
        assert_eq!(marker_of(EVENT.as_bytes(), 4242), Some(42));
        assert_eq!(marker_of(EVENT.as_bytes(), 424), None);
        assert_eq!(marker_of(EVENT.as_bytes(), 0), None);
        let ingress = EVENT.replace("egress", "ingress");
        assert_eq!(marker_of(ingress.as_bytes(), 4242), None);
        let warmup = EVENT.replace("MARK0000000042", "WARMUPxxxxxxxx");
        assert_eq!(marker_of(warmup.as_bytes(), 4242), None);
    }

    #[test]
    fn event_times_are_read_from_data_lines() {
        let line = br#"{"event_type":"tls.data","message":{"mono_ns":123456789,"length":1}}"#;
        assert_eq!(event_mono_ns(line), Some(123_456_789));
        assert_eq!(event_mono_ns(br#"{"event_type":"sensor.status"}"#), None);
        assert!(mono_now_ns() > 0);
    }

    #[test]
    fn markers_are_counted_once() {
        let mut set = MarkerSet::default();
        for n in [0, 63, 64, 63, 1000, MAX_MARKER] {
            set.insert(n);
        }
        assert_eq!(set.count, 4);
    }

    #[test]
    fn bpftrace_loss_lines_are_summed() {
        assert_eq!(bpftrace_lost(b"Lost 17 events"), 17);
        assert_eq!(bpftrace_lost(b"1234 nginx uretprobe Lost 5"), 0);
    }

    #[test]
    fn the_reader_reports_ready_last_line_and_markers() {
        let pid = Arc::new(AtomicU32::new(4242));
        let text = format!("hello\nready now\n{EVENT}\n{EVENT}\nLost 3 events\nbye\n\n");
        let tap = Tap::start(
            std::io::Cursor::new(text.into_bytes()),
            TapOptions {
                ready: |l| l.starts_with(b"ready"),
                marker_pid: Some(pid),
                cpu: None,
            },
        )
        .unwrap();
        assert_eq!(
            tap.wait_ready(Duration::from_secs(5)).ok().as_deref(),
            Some("ready now")
        );
        let summary = tap.finish().unwrap();
        assert_eq!(summary.lines, 7);
        assert_eq!(summary.last_line, "bye");
        assert_eq!(summary.markers, 1);
        assert_eq!(summary.bpftrace_lost, 3);
    }
}
