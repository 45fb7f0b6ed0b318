//! The worker of one sink: a thread that takes records from the sink's bounded
//! in-memory queue (or, while the destination is behind, from its spool) and
//! hands them to the transport in batches, in order, retrying with back-off.
//!
//! Records are never reordered: once a batch fails, it and everything queued
//! after it go to the spool, and new records follow them there until the spool
//! is empty again. A sink without a spool makes [`Sink::offer`] wait when its
//! queue is full (backpressure to the pipeline) instead.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde::Serialize;

use super::{Record, Transport, spool::Spool};

/// Counters of one sink, for `sensor.status` and metrics.
#[derive(Debug, Default)]
struct Counters {
    delivered: AtomicU64,
    batches: AtomicU64,
    failures: AtomicU64,
    spooled: AtomicU64,
    dropped_spool_full: AtomicU64,
    dropped_rejected: AtomicU64,
    queued: AtomicUsize,
    queued_bytes: AtomicUsize,
    spool_pending: AtomicU64,
    spool_bytes: AtomicU64,
    last_error: Mutex<Option<String>>,
    connected: AtomicBool,
}

/// A snapshot of a sink's counters.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SinkStats {
    /// The sink's name.
    pub name: String,
    /// The destination.
    pub destination: String,
    /// Records the destination acknowledged.
    pub delivered: u64,
    /// Delivery attempts that failed (each retried, or dropped when fatal).
    pub failures: u64,
    /// Records written to the spool.
    pub spooled: u64,
    /// Records dropped because the spool was full (or the sink has none and was
    /// closed with records left).
    pub dropped_spool_full: u64,
    /// Records the destination refused for good (dropped).
    pub dropped_rejected: u64,
    /// Records in the memory queue now.
    pub queued: usize,
    /// Their bytes.
    pub queued_bytes: usize,
    /// Records in the spool now.
    pub spool_pending: u64,
    /// Spool bytes on disk now.
    pub spool_bytes: u64,
    /// Whether the last delivery succeeded.
    pub healthy: bool,
    /// The last error, if the last delivery failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Bounds of a sink.
#[derive(Debug, Clone, Copy)]
pub struct SinkLimits {
    /// Records queued in memory.
    pub queue: usize,
    /// Bytes queued in memory.
    pub queue_bytes: usize,
    /// Longest wait between retries.
    pub max_backoff: Duration,
}

struct Shared {
    counters: Counters,
    /// Set while records wait in the spool: new ones must follow them there.
    spooling: AtomicBool,
    spool: Option<Mutex<Spool>>,
    stop: AtomicBool,
}

/// A running sink.
pub struct Sink {
    name: String,
    destination: String,
    tx: Option<SyncSender<Record>>,
    shared: Arc<Shared>,
    limits: SinkLimits,
    thread: Option<JoinHandle<()>>,
}

impl Sink {
    /// Starts the worker of `transport`, with `spool` (none: backpressure).
    pub fn start(
        name: &str,
        transport: Box<dyn Transport>,
        spool: Option<Spool>,
        limits: SinkLimits,
    ) -> std::io::Result<Self> {
        let destination = transport.describe();
        let (tx, rx) = sync_channel(limits.queue.max(1));
        let shared = Arc::new(Shared {
            counters: Counters::default(),
            spooling: AtomicBool::new(spool.as_ref().is_some_and(|s| !s.is_empty())),
            spool: spool.map(Mutex::new),
            stop: AtomicBool::new(false),
        });
        let s2 = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("sink-{name}"))
            .spawn(move || run(transport, rx, &s2, limits))?;
        Ok(Self {
            name: name.to_owned(),
            destination,
            tx: Some(tx),
            shared,
            limits,
            thread: Some(thread),
        })
    }

    /// Hands a record to the sink. With a spool this never waits: the record
    /// goes to the queue, or — once the queue is full because the destination is
    /// down or slow — to the spool, and so do the records after it until the
    /// worker has caught up (past the spool's bound they are dropped and
    /// counted). Without a spool it waits for room in the queue.
    pub fn offer(&self, r: Record) {
        let c = &self.shared.counters;
        let Some(tx) = &self.tx else { return };
        let len = r.body.len();
        let Some(spool) = &self.shared.spool else {
            if tx.send(r).is_ok() {
                c.queued.fetch_add(1, Ordering::Relaxed);
                c.queued_bytes.fetch_add(len, Ordering::Relaxed);
            }
            return;
        };
        // The spool's lock orders this decision with the worker's switch back to
        // the queue: spooled records are always newer than queued ones.
        let Ok(mut s) = spool.lock() else { return };
        if !self.shared.spooling.load(Ordering::Acquire)
            && c.queued_bytes.load(Ordering::Relaxed) + len <= self.limits.queue_bytes
        {
            match tx.try_send(r) {
                Ok(()) => {
                    c.queued.fetch_add(1, Ordering::Relaxed);
                    c.queued_bytes.fetch_add(len, Ordering::Relaxed);
                    return;
                }
                Err(TrySendError::Full(r) | TrySendError::Disconnected(r)) => {
                    self.shared.spooling.store(true, Ordering::Release);
                    append(&mut s, c, &[r]);
                    return;
                }
            }
        }
        self.shared.spooling.store(true, Ordering::Release);
        append(&mut s, c, &[r]);
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SinkStats {
        let c = &self.shared.counters;
        SinkStats {
            name: self.name.clone(),
            destination: self.destination.clone(),
            delivered: c.delivered.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            spooled: c.spooled.load(Ordering::Relaxed),
            dropped_spool_full: c.dropped_spool_full.load(Ordering::Relaxed),
            dropped_rejected: c.dropped_rejected.load(Ordering::Relaxed),
            queued: c.queued.load(Ordering::Relaxed),
            queued_bytes: c.queued_bytes.load(Ordering::Relaxed),
            spool_pending: c.spool_pending.load(Ordering::Relaxed),
            spool_bytes: c.spool_bytes.load(Ordering::Relaxed),
            healthy: c.connected.load(Ordering::Relaxed),
            last_error: c.last_error.lock().ok().and_then(|e| e.clone()),
        }
    }

    /// Stops the worker: what is queued is delivered if the destination takes it
    /// within `grace`, else spooled for the next start.
    pub fn close(mut self, grace: Duration) -> SinkStats {
        self.tx = None;
        let deadline = Instant::now() + grace;
        if let Some(t) = self.thread.take() {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            self.shared.stop.store(true, Ordering::Release);
            let _ = t.join();
        }
        self.stats()
    }
}

/// Appends to the spool (its lock held), counting what did not fit.
fn append(s: &mut Spool, c: &Counters, records: &[Record]) {
    match s.append(records) {
        Ok(n) => {
            c.spooled.fetch_add(n as u64, Ordering::Relaxed);
            c.dropped_spool_full
                .fetch_add((records.len() - n) as u64, Ordering::Relaxed);
        }
        Err(e) => {
            c.dropped_spool_full
                .fetch_add(records.len() as u64, Ordering::Relaxed);
            set_error(c, &format!("spool: {e}"));
        }
    }
    c.spool_pending.store(s.pending(), Ordering::Relaxed);
    c.spool_bytes.store(s.bytes(), Ordering::Relaxed);
}

fn set_error(c: &Counters, e: &str) {
    if let Ok(mut slot) = c.last_error.lock() {
        *slot = Some(e.to_owned());
    }
}

fn run(mut t: Box<dyn Transport>, rx: Receiver<Record>, shared: &Shared, limits: SinkLimits) {
    let c = &shared.counters;
    let max = t.max_batch().max(1);
    let mut backoff = Duration::from_millis(100);
    // A failed batch is retried from memory: it is older than everything
    // queued or spooled, so nothing may overtake it.
    let mut inflight: Vec<Record> = Vec::new();
    // Whether the current batch came from the spool (to commit it there).
    let mut from_spool = false;
    let mut closed = false;
    loop {
        if shared.stop.load(Ordering::Acquire) {
            // A batch taken from the spool is still there (not committed).
            let older = if from_spool { Vec::new() } else { inflight };
            keep_for_next_start(shared, older, rx.try_iter().collect());
            return;
        }
        if inflight.is_empty() {
            from_spool = false;
            // Queued records are older than spooled ones: the queue first.
            inflight = rx.try_iter().take(max).collect();
            if inflight.is_empty()
                && let Some(spool) = &shared.spool
                && shared.spooling.load(Ordering::Acquire)
            {
                if let Ok(s) = spool.lock() {
                    match s.peek(max) {
                        Ok(batch) if !batch.is_empty() => {
                            inflight = batch;
                            from_spool = true;
                        }
                        Ok(_) => {
                            // Caught up; under the lock no record can slip in.
                            shared.spooling.store(false, Ordering::Release);
                        }
                        Err(e) => set_error(c, &format!("spool: {e}")),
                    }
                }
                if !from_spool {
                    continue;
                }
            }
            if inflight.is_empty() {
                if closed {
                    return;
                }
                match rx.recv_timeout(Duration::from_millis(200)) {
                    Ok(r) => {
                        inflight.push(r);
                        inflight.extend(rx.try_iter().take(max - 1));
                    }
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => {
                        closed = true;
                        continue;
                    }
                }
            }
            if !from_spool {
                dequeued(c, &inflight);
            }
        }
        match attempt(&mut *t, &inflight, c) {
            Outcome::Done | Outcome::Rejected => {
                if from_spool
                    && let Some(spool) = &shared.spool
                    && let Ok(mut s) = spool.lock()
                {
                    if let Err(e) = s.commit(inflight.len()) {
                        set_error(c, &format!("spool: {e}"));
                    }
                    c.spool_pending.store(s.pending(), Ordering::Relaxed);
                    c.spool_bytes.store(s.bytes(), Ordering::Relaxed);
                }
                inflight.clear();
                backoff = Duration::from_millis(100);
            }
            Outcome::Retry => sleep(&mut backoff, limits.max_backoff, shared),
        }
    }
}

/// At stop, the failed batch and the queue (both older than the spool) go to
/// the front of the spool, so the next start delivers them first.
fn keep_for_next_start(shared: &Shared, inflight: Vec<Record>, queued: Vec<Record>) {
    let c = &shared.counters;
    let mut older = inflight;
    older.extend(queued);
    if older.is_empty() {
        return;
    }
    let Some(spool) = &shared.spool else {
        c.dropped_spool_full
            .fetch_add(older.len() as u64, Ordering::Relaxed);
        return;
    };
    let Ok(mut s) = spool.lock() else { return };
    match s.prepend(&older) {
        Ok(n) => {
            c.spooled.fetch_add(n as u64, Ordering::Relaxed);
            c.dropped_spool_full
                .fetch_add((older.len() - n) as u64, Ordering::Relaxed);
        }
        Err(e) => {
            c.dropped_spool_full
                .fetch_add(older.len() as u64, Ordering::Relaxed);
            set_error(c, &format!("spool: {e}"));
        }
    }
    c.spool_pending.store(s.pending(), Ordering::Relaxed);
    c.spool_bytes.store(s.bytes(), Ordering::Relaxed);
}

fn dequeued(c: &Counters, batch: &[Record]) {
    c.queued.fetch_sub(
        batch.len().min(c.queued.load(Ordering::Relaxed)),
        Ordering::Relaxed,
    );
    let bytes: usize = batch.iter().map(|r| r.body.len()).sum();
    c.queued_bytes.fetch_sub(
        bytes.min(c.queued_bytes.load(Ordering::Relaxed)),
        Ordering::Relaxed,
    );
}

enum Outcome {
    Done,
    Rejected,
    Retry,
}

fn attempt(t: &mut dyn Transport, batch: &[Record], c: &Counters) -> Outcome {
    c.batches.fetch_add(1, Ordering::Relaxed);
    match t.deliver(batch) {
        Ok(()) => {
            c.delivered.fetch_add(batch.len() as u64, Ordering::Relaxed);
            c.connected.store(true, Ordering::Relaxed);
            if let Ok(mut e) = c.last_error.lock() {
                *e = None;
            }
            Outcome::Done
        }
        Err(e) => {
            c.failures.fetch_add(1, Ordering::Relaxed);
            c.connected.store(false, Ordering::Relaxed);
            set_error(c, &e.message);
            if e.retryable {
                Outcome::Retry
            } else {
                c.dropped_rejected
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                Outcome::Rejected
            }
        }
    }
}

/// Waits `backoff` (waking early to stop) and doubles it up to `max`.
fn sleep(backoff: &mut Duration, max: Duration, shared: &Shared) {
    let until = Instant::now() + *backoff;
    while Instant::now() < until && !shared.stop.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(20));
    }
    *backoff = (*backoff * 2).min(max);
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::deliver::{DeliveryError, Level};

    /// A destination that can be down, records what it took, and counts tries.
    #[derive(Clone, Default)]
    struct Flaky {
        down: Arc<AtomicBool>,
        got: Arc<Mutex<Vec<String>>>,
    }

    impl Transport for Flaky {
        fn describe(&self) -> String {
            "flaky".into()
        }
        fn deliver(&mut self, batch: &[Record]) -> Result<(), DeliveryError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(DeliveryError::retry("down"));
            }
            let mut g = self.got.lock().unwrap();
            g.extend(batch.iter().map(|r| r.id.to_string()));
            Ok(())
        }
        fn max_batch(&self) -> usize {
            7
        }
    }

    fn rec(i: usize) -> Record {
        Record {
            id: format!("{i:05}").into(),
            event_type: "alert".into(),
            time: "t".into(),
            level: Level::Low,
            host: "h".into(),
            body: vec![b'{', b'}'],
        }
    }

    const LIMITS: SinkLimits = SinkLimits {
        queue: 50,
        queue_bytes: 1 << 20,
        max_backoff: Duration::from_millis(100),
    };

    fn wait_for(mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !f() {
            assert!(Instant::now() < deadline, "timed out");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn an_outage_spools_and_everything_arrives_once_in_order() {
        let dir = std::env::temp_dir().join(format!("telltale-worker-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let t = Flaky::default();
        let spool = Spool::open(&dir, 1 << 30).unwrap();
        let sink = Sink::start("t", Box::new(t.clone()), Some(spool), LIMITS).unwrap();
        for i in 0..100 {
            sink.offer(rec(i));
        }
        wait_for(|| t.got.lock().unwrap().len() >= 100);
        // Down: the worker fails, the queue (50) fills, the rest spills to disk.
        t.down.store(true, Ordering::SeqCst);
        for i in 100..250 {
            sink.offer(rec(i));
        }
        wait_for(|| sink.stats().failures > 0);
        t.down.store(false, Ordering::SeqCst);
        for i in 250..300 {
            sink.offer(rec(i));
        }
        wait_for(|| t.got.lock().unwrap().len() >= 300);
        let stats = sink.close(Duration::from_secs(5));
        let got = t.got.lock().unwrap().clone();
        let want: Vec<String> = (0..300).map(|i| format!("{i:05}")).collect();
        assert_eq!(got, want, "once each, in order");
        assert!(stats.spooled > 0 && stats.failures > 0, "{stats:?}");
        assert_eq!((stats.spool_pending, stats.dropped_spool_full), (0, 0));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn records_left_at_stop_are_delivered_by_the_next_start() {
        let dir = std::env::temp_dir().join(format!("telltale-worker2-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let t = Flaky::default();
        t.down.store(true, Ordering::SeqCst);
        let sink = Sink::start(
            "t",
            Box::new(t.clone()),
            Some(Spool::open(&dir, 1 << 30).unwrap()),
            LIMITS,
        )
        .unwrap();
        for i in 0..40 {
            sink.offer(rec(i));
        }
        let stats = sink.close(Duration::from_millis(300));
        assert_eq!(stats.delivered, 0);
        t.down.store(false, Ordering::SeqCst);
        let sink = Sink::start(
            "t",
            Box::new(t.clone()),
            Some(Spool::open(&dir, 1 << 30).unwrap()),
            LIMITS,
        )
        .unwrap();
        sink.offer(rec(40));
        wait_for(|| t.got.lock().unwrap().len() >= 41);
        sink.close(Duration::from_secs(2));
        let got = t.got.lock().unwrap().clone();
        assert_eq!(got, (0..41).map(|i| format!("{i:05}")).collect::<Vec<_>>());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_full_spool_drops_and_counts() {
        let dir = std::env::temp_dir().join(format!("telltale-worker3-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let t = Flaky::default();
        t.down.store(true, Ordering::SeqCst);
        let sink = Sink::start(
            "t",
            Box::new(t.clone()),
            Some(Spool::open(&dir, 2000).unwrap()),
            LIMITS,
        )
        .unwrap();
        for i in 0..500 {
            sink.offer(rec(i));
        }
        let stats = sink.close(Duration::from_millis(300));
        assert!(stats.dropped_spool_full > 0, "{stats:?}");
        assert_eq!(
            stats.spooled + stats.dropped_spool_full + stats.delivered,
            500,
            "{stats:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
