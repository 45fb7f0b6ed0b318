//! Connection-state stage: reassembles the kernel's ordered chunks into whole
//! messages (one per successful SSL call), per connection and direction.
//!
//! The kernel emits the chunks of one call back to back from one thread, so a
//! message is complete when its chunks cover `0..total_len`. A chunk that does not
//! continue the pending message (a gap after a ring-buffer drop) ends that message
//! as incomplete. A connection object's address is reused after `SSL_free`, so
//! each (process, address) pair gets a fresh connection id after every close.
//! Memory is bounded: at most `max_pending` partial messages and
//! `max_pending_bytes` buffered bytes; the oldest partial message is given up
//! first, and every such loss is counted.

use std::collections::HashMap;

use sensor_common::{COMM_LEN, Direction, MAX_CAPTURE_PER_CALL, TlsFunction};
use serde::Serialize;

use crate::capture::Chunk;

/// Names a TLS connection: the process, the library's connection object, and a
/// sensor-wide id that tells apart connections that reused one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnKey {
    /// Process id.
    pub pid: u32,
    /// `SSL *` address in that process.
    pub conn: u64,
    /// Unique for the sensor's lifetime.
    pub id: u64,
}

impl std::fmt::Display for ConnKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{:#x}:{}", self.pid, self.conn, self.id)
    }
}

/// One SSL call's plaintext, reassembled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsMessage {
    /// The connection.
    pub key: ConnKey,
    /// Thread that made the call.
    pub tid: u32,
    /// Real uid.
    pub uid: u32,
    /// Real gid.
    pub gid: u32,
    /// Thread `comm`.
    pub comm: [u8; COMM_LEN],
    /// Attach cookie of the target (0 if unknown).
    pub target: u64,
    /// Function the bytes came from.
    pub function: TlsFunction,
    /// Direction.
    pub direction: Direction,
    /// `CLOCK_MONOTONIC` ns of the call's return.
    pub ts_ns: u64,
    /// Bytes the call transferred.
    pub total_len: u64,
    /// The bytes that arrived, from offset 0, without holes.
    pub data: Vec<u8>,
    /// Every byte the kernel was able to capture arrived.
    pub complete: bool,
    /// The call was longer than the kernel captures per call
    /// ([`MAX_CAPTURE_PER_CALL`]); `data` holds the first part.
    pub truncated: bool,
}

/// Limits of the reassembler.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Partial messages kept at once.
    pub max_pending: usize,
    /// Bytes buffered in partial messages at once.
    pub max_pending_bytes: usize,
    /// A partial message that received nothing for this long is given up.
    pub stale_after_ns: u64,
    /// Open connections remembered at once.
    pub max_connections: usize,
}

/// What the reassembler gave up on, for `sensor.status`.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct ReassemblyStats {
    /// Whole messages produced.
    pub messages: u64,
    /// Messages produced with missing bytes.
    pub incomplete: u64,
    /// Partial messages given up because a limit was reached.
    pub evicted: u64,
    /// Chunks that continued no known message (their start was lost).
    pub orphan_chunks: u64,
    /// Bytes in those chunks.
    pub orphan_bytes: u64,
    /// Connections closed by their process.
    pub closed: u64,
    /// Connections forgotten without a close (their process exited, or the
    /// connection table was full).
    pub forgotten: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct StreamKey {
    key: ConnKey,
    tid: u32,
    direction: Direction,
}

#[derive(Debug)]
struct Pending {
    msg: TlsMessage,
    /// Bytes expected in total: `min(total_len, MAX_CAPTURE_PER_CALL)`.
    expected: u64,
    last_seen_ns: u64,
    seq: u64,
}

/// Reassembles chunks into messages.
#[derive(Debug)]
pub struct Reassembler {
    limits: Limits,
    /// Connection ids of open connections, by (pid, address).
    conns: HashMap<(u32, u64), u64>,
    next_conn_id: u64,
    pending: HashMap<StreamKey, Pending>,
    pending_bytes: usize,
    seq: u64,
    stats: ReassemblyStats,
}

impl Reassembler {
    /// A reassembler with the given limits.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            conns: HashMap::new(),
            next_conn_id: 0,
            pending: HashMap::new(),
            pending_bytes: 0,
            seq: 0,
            stats: ReassemblyStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> ReassemblyStats {
        self.stats
    }

    /// Partial messages held now.
    #[cfg(test)]
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The id of the open connection at (pid, address), allocating one for a new
    /// connection.
    fn conn_id(&mut self, pid: u32, conn: u64) -> u64 {
        if let Some(id) = self.conns.get(&(pid, conn)) {
            return *id;
        }
        if self.conns.len() >= self.limits.max_connections {
            self.prune_connections();
        }
        self.next_conn_id += 1;
        self.conns.insert((pid, conn), self.next_conn_id);
        self.next_conn_id
    }

    /// Makes room in the connection table: first forget connections of processes
    /// that no longer exist, then the oldest half.
    fn prune_connections(&mut self) {
        let before = self.conns.len();
        self.conns
            .retain(|(pid, _), _| std::path::Path::new(&format!("/proc/{pid}")).exists());
        if self.conns.len() >= self.limits.max_connections {
            let mut ids: Vec<u64> = self.conns.values().copied().collect();
            ids.sort_unstable();
            let cut = ids[ids.len() / 2];
            self.conns.retain(|_, id| *id > cut);
        }
        self.stats.forgotten += (before - self.conns.len()) as u64;
    }

    /// A process freed the connection object at `conn`: the next connection at
    /// that address is a new one.
    pub fn close(&mut self, pid: u32, conn: u64) {
        if self.conns.remove(&(pid, conn)).is_some() {
            self.stats.closed += 1;
        }
    }

    /// Feeds one chunk; messages it completes or ends are passed to `out`.
    pub fn push<F: FnMut(TlsMessage)>(&mut self, c: &Chunk<'_>, mut out: F) {
        let id = self.conn_id(c.pid, c.conn);
        let sk = StreamKey {
            key: ConnKey {
                pid: c.pid,
                conn: c.conn,
                id,
            },
            tid: c.tid,
            direction: c.direction,
        };
        let expected = c.total_len.min(MAX_CAPTURE_PER_CALL);
        if c.offset == 0 {
            if let Some(p) = self.remove(&sk) {
                self.finish(p, &mut out);
            }
            let msg = TlsMessage {
                key: sk.key,
                tid: c.tid,
                uid: c.uid,
                gid: c.gid,
                comm: c.comm,
                target: c.target,
                function: c.function,
                direction: c.direction,
                ts_ns: c.ts_ns,
                total_len: c.total_len,
                data: c.data.to_vec(),
                complete: false,
                truncated: c.total_len > MAX_CAPTURE_PER_CALL,
            };
            let p = Pending {
                msg,
                expected,
                last_seen_ns: c.ts_ns,
                seq: 0,
            };
            if c.data.len() as u64 >= expected {
                self.finish(p, &mut out);
            } else {
                self.insert(sk, p, &mut out);
            }
            return;
        }
        match self.pending.get_mut(&sk) {
            Some(p) if p.msg.data.len() as u64 == c.offset && p.msg.total_len == c.total_len => {
                p.msg.data.extend_from_slice(c.data);
                p.last_seen_ns = c.ts_ns;
                self.pending_bytes += c.data.len();
                if p.msg.data.len() as u64 >= p.expected {
                    if let Some(p) = self.remove(&sk) {
                        self.finish(p, &mut out);
                    }
                } else {
                    self.enforce_limits(&mut out);
                }
            }
            Some(_) => {
                // A gap: the pending message lost chunks, and this chunk belongs to
                // a message whose start we never saw.
                if let Some(p) = self.remove(&sk) {
                    self.finish(p, &mut out);
                }
                self.orphan(c);
            }
            None => self.orphan(c),
        }
    }

    /// Gives up partial messages that saw nothing since `now_ns - stale_after`.
    pub fn expire<F: FnMut(TlsMessage)>(&mut self, now_ns: u64, mut out: F) {
        let stale = self.limits.stale_after_ns;
        let old: Vec<StreamKey> = self
            .pending
            .iter()
            .filter(|(_, p)| now_ns.saturating_sub(p.last_seen_ns) >= stale)
            .map(|(k, _)| *k)
            .collect();
        for k in old {
            if let Some(p) = self.remove(&k) {
                self.finish(p, &mut out);
            }
        }
    }

    /// Ends every partial message (at shutdown).
    pub fn flush<F: FnMut(TlsMessage)>(&mut self, mut out: F) {
        let keys: Vec<StreamKey> = self.pending.keys().copied().collect();
        for k in keys {
            if let Some(p) = self.remove(&k) {
                self.finish(p, &mut out);
            }
        }
    }

    fn orphan(&mut self, c: &Chunk<'_>) {
        self.stats.orphan_chunks += 1;
        self.stats.orphan_bytes += c.data.len() as u64;
    }

    fn insert<F: FnMut(TlsMessage)>(&mut self, sk: StreamKey, mut p: Pending, out: &mut F) {
        self.seq += 1;
        p.seq = self.seq;
        self.pending_bytes += p.msg.data.len();
        self.pending.insert(sk, p);
        self.enforce_limits(out);
    }

    fn remove(&mut self, sk: &StreamKey) -> Option<Pending> {
        let p = self.pending.remove(sk)?;
        self.pending_bytes -= p.msg.data.len();
        Some(p)
    }

    fn enforce_limits<F: FnMut(TlsMessage)>(&mut self, out: &mut F) {
        while self.pending.len() > self.limits.max_pending
            || self.pending_bytes > self.limits.max_pending_bytes
        {
            let Some(oldest) = self
                .pending
                .iter()
                .min_by_key(|(_, p)| p.seq)
                .map(|(k, _)| *k)
            else {
                break;
            };
            if let Some(p) = self.remove(&oldest) {
                self.stats.evicted += 1;
                self.finish(p, out);
            }
        }
    }

    fn finish<F: FnMut(TlsMessage)>(&mut self, mut p: Pending, out: &mut F) {
        p.msg.complete = p.msg.data.len() as u64 >= p.expected;
        self.stats.messages += 1;
        if !p.msg.complete {
            self.stats.incomplete += 1;
        }
        out(p.msg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_pending: 4,
        max_pending_bytes: 1 << 20,
        stale_after_ns: 1_000,
        max_connections: 1024,
    };

    fn chunk(tid: u32, conn: u64, offset: u64, data: &[u8], total: u64) -> Chunk<'_> {
        Chunk {
            pid: 1,
            tid,
            uid: 0,
            gid: 0,
            comm: [0; COMM_LEN],
            conn,
            target: 1,
            function: TlsFunction::SslWrite,
            direction: Direction::Egress,
            ts_ns: 100,
            total_len: total,
            offset,
            data,
        }
    }

    fn run(r: &mut Reassembler, chunks: &[Chunk<'_>]) -> Vec<TlsMessage> {
        let mut out = Vec::new();
        for c in chunks {
            r.push(c, |m| out.push(m));
        }
        out
    }

    #[test]
    fn single_chunk_message_is_complete_at_once() {
        let mut r = Reassembler::new(LIMITS);
        let out = run(&mut r, &[chunk(1, 7, 0, b"GET / HTTP/1.1\r\n\r\n", 18)]);
        assert_eq!(out.len(), 1);
        assert!(out[0].complete);
        assert_eq!(out[0].data, b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn chunks_are_joined_in_order_and_interleaved_streams_stay_apart() {
        let mut r = Reassembler::new(LIMITS);
        let out = run(
            &mut r,
            &[
                chunk(1, 7, 0, b"aaa", 6),
                chunk(2, 8, 0, b"xx", 4),
                chunk(1, 7, 3, b"bbb", 6),
                chunk(2, 8, 2, b"yy", 4),
            ],
        );
        assert_eq!(out.len(), 2);
        assert_eq!(
            (out[0].key.conn, out[0].data.as_slice()),
            (7, &b"aaabbb"[..])
        );
        assert_eq!((out[1].key.conn, out[1].data.as_slice()), (8, &b"xxyy"[..]));
        assert!(out.iter().all(|m| m.complete));
    }

    #[test]
    fn a_gap_ends_the_message_as_incomplete_and_counts_the_orphan() {
        let mut r = Reassembler::new(LIMITS);
        let out = run(
            &mut r,
            &[chunk(1, 7, 0, b"aaa", 9), chunk(1, 7, 6, b"ccc", 9)],
        );
        assert_eq!(out.len(), 1);
        assert!(!out[0].complete);
        assert_eq!(out[0].data, b"aaa");
        let s = r.stats();
        assert_eq!((s.incomplete, s.orphan_chunks, s.orphan_bytes), (1, 1, 3));
    }

    #[test]
    fn a_new_message_ends_the_unfinished_one() {
        let mut r = Reassembler::new(LIMITS);
        let out = run(
            &mut r,
            &[chunk(1, 7, 0, b"aaa", 9), chunk(1, 7, 0, b"new", 3)],
        );
        assert_eq!(out.len(), 2);
        assert!(!out[0].complete);
        assert!(out[1].complete);
    }

    #[test]
    fn limits_evict_the_oldest_and_expiry_flushes_stale() {
        let mut r = Reassembler::new(LIMITS);
        let chunks: Vec<_> = (0..6).map(|i| chunk(i, 7, 0, b"a", 10)).collect();
        let out = run(&mut r, &chunks);
        assert_eq!(out.len(), 2, "two evicted to keep four");
        assert_eq!(out[0].tid, 0);
        assert_eq!(r.stats().evicted, 2);
        let mut expired = Vec::new();
        r.expire(100 + 999, |m| expired.push(m));
        assert!(expired.is_empty());
        r.expire(100 + 1_000, |m| expired.push(m));
        assert_eq!(expired.len(), 4);
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn byte_budget_is_enforced() {
        let mut r = Reassembler::new(Limits {
            max_pending_bytes: 5,
            ..LIMITS
        });
        let out = run(
            &mut r,
            &[chunk(1, 7, 0, b"aaaa", 10), chunk(2, 7, 0, b"bbbb", 10)],
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].tid, 1);
        assert!(r.pending_bytes <= 5);
    }

    #[test]
    fn a_reused_address_after_close_is_a_new_connection() {
        let mut r = Reassembler::new(LIMITS);
        let a = run(&mut r, &[chunk(1, 7, 0, b"one", 3)]);
        let b = run(&mut r, &[chunk(1, 7, 0, b"two", 3)]);
        assert_eq!(a[0].key, b[0].key, "same connection until closed");
        r.close(1, 7);
        let c = run(&mut r, &[chunk(1, 7, 0, b"three", 5)]);
        assert_ne!(a[0].key.id, c[0].key.id);
        assert_ne!(a[0].key.to_string(), c[0].key.to_string());
        assert_eq!(r.stats().closed, 1);
    }

    #[test]
    fn the_connection_table_is_bounded() {
        let mut r = Reassembler::new(Limits {
            max_connections: 8,
            ..LIMITS
        });
        // pid 1 exists (init), so only the age rule can make room.
        for conn in 0..100u64 {
            run(&mut r, &[chunk(1, conn, 0, b"x", 1)]);
            assert!(r.conns.len() <= 8);
        }
        assert!(r.stats().forgotten > 0);
    }

    #[test]
    fn truncated_calls_complete_at_the_capture_limit() {
        let mut r = Reassembler::new(LIMITS);
        let big = vec![b'z'; MAX_CAPTURE_PER_CALL as usize];
        let total = MAX_CAPTURE_PER_CALL + 10;
        let out = run(&mut r, &[chunk(1, 7, 0, &big, total)]);
        assert_eq!(out.len(), 1);
        assert!(out[0].complete && out[0].truncated);
    }
}
