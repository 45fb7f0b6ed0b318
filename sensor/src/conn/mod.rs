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

pub(crate) mod socket;

use std::{collections::HashMap, sync::Arc};

use sensor_common::{COMM_LEN, Direction, MAX_CAPTURE_PER_CALL, TlsFunction};
use serde::Serialize;

pub use socket::{SocketInfo, established_tcp};

use crate::capture::{Chunk, FdBind, FdSource};

/// Finds the flow behind a process's descriptor (the real one reads `/proc`).
pub type SocketResolver = Box<dyn FnMut(u32, i32) -> Result<SocketInfo, String> + Send>;

/// The resolver that reads `/proc/PID/fd` and `/proc/PID/net/tcp{,6}`.
pub fn proc_socket_resolver() -> SocketResolver {
    Box::new(socket::resolve)
}

/// What an event says about a connection's flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketView {
    /// The flow, and how its descriptor was found.
    Known(Arc<SocketInfo>, FdSource),
    /// Why the flow is not known.
    Unknown(Arc<str>),
}

/// How long a message whose call made no socket I/O of its own waits for the
/// connection's descriptor to be learned: an `SSL_write` of a memory-BIO stack
/// (the thread writes the socket right after), or an `SSL_read` served from
/// data the library buffered earlier (TLS 1.3 servers read a client's first
/// request with its handshake; the response's write names the socket). Longer
/// than the kernel's 50 ms correlation window, for loaded hosts.
const ATTRIBUTION_WAIT_NS: u64 = 200_000_000;

/// Held messages per connection before they are released without a flow.
const MAX_HELD_PER_CONN: usize = 64;

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
    /// The server name the client asked for (SNI), when the client set one.
    pub server_name: Option<Arc<str>>,
    /// The connection's network flow.
    pub socket: SocketView,
    /// Descriptor reported with the call (-1 if none) and how it was found.
    fd: (i32, FdSource),
}

/// What is known about a connection's flow.
#[derive(Debug, Clone)]
enum Flow {
    /// No descriptor seen yet.
    Unseen,
    /// Resolved (or failed to resolve) once; kept for the connection's life.
    Done(SocketView),
}

/// What is known about an open connection besides its bytes.
#[derive(Debug)]
struct ConnState {
    id: u64,
    server_name: Option<Arc<str>>,
    flow: Flow,
    /// Messages waiting for the descriptor, oldest first, with their deadline.
    held: Vec<(u64, TlsMessage)>,
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
    /// Connections open now (a gauge).
    pub open_connections: u64,
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

/// Reassembles chunks into messages and keeps per-connection state.
pub struct Reassembler {
    limits: Limits,
    resolver: SocketResolver,
    /// Open connections, by (pid, address).
    conns: HashMap<(u32, u64), ConnState>,
    next_conn_id: u64,
    pending: HashMap<StreamKey, Pending>,
    pending_bytes: usize,
    seq: u64,
    stats: ReassemblyStats,
}

impl Reassembler {
    /// A reassembler with the given limits that resolves flows with `resolver`.
    pub fn new(limits: Limits, resolver: SocketResolver) -> Self {
        Self {
            limits,
            resolver,
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
        ReassemblyStats {
            open_connections: self.conns.len() as u64,
            ..self.stats
        }
    }

    /// Partial messages held now.
    #[cfg(test)]
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The id of the open connection at (pid, address), allocating one for a new
    /// connection.
    fn conn_state(&mut self, pid: u32, conn: u64) -> &mut ConnState {
        if !self.conns.contains_key(&(pid, conn)) {
            if self.conns.len() >= self.limits.max_connections {
                self.prune_connections();
            }
            self.next_conn_id += 1;
            let state = ConnState {
                id: self.next_conn_id,
                server_name: None,
                flow: Flow::Unseen,
                held: Vec::new(),
            };
            self.conns.insert((pid, conn), state);
        }
        self.conns
            .get_mut(&(pid, conn))
            .expect("inserted above when missing")
    }

    /// The key of the connection at (pid, address), when it is followed.
    pub fn key(&self, pid: u32, conn: u64) -> Option<ConnKey> {
        self.conns.get(&(pid, conn)).map(|c| ConnKey {
            pid,
            conn,
            id: c.id,
        })
    }

    /// The server name the client set for the connection at (pid, address).
    pub fn server_name(&self, pid: u32, conn: u64) -> Option<Arc<str>> {
        self.conns.get(&(pid, conn))?.server_name.clone()
    }

    /// A client set the server name of the connection at (pid, address).
    pub fn set_server_name(&mut self, pid: u32, conn: u64, name: &str) {
        self.conn_state(pid, conn).server_name = Some(Arc::from(name));
    }

    /// Makes room in the connection table: first forget connections of processes
    /// that no longer exist, then the oldest half.
    fn prune_connections(&mut self) {
        let before = self.conns.len();
        self.conns
            .retain(|(pid, _), _| std::path::Path::new(&format!("/proc/{pid}")).exists());
        if self.conns.len() >= self.limits.max_connections {
            let mut ids: Vec<u64> = self.conns.values().map(|c| c.id).collect();
            ids.sort_unstable();
            let cut = ids[ids.len() / 2];
            self.conns.retain(|_, c| c.id > cut);
        }
        self.stats.forgotten += (before - self.conns.len()) as u64;
    }

    /// A process freed the connection object at `conn`: the next connection at
    /// that address is a new one. Messages still waiting for its flow go out.
    /// Returns the connection that ended, if it was known.
    pub fn close<F: FnMut(TlsMessage)>(
        &mut self,
        pid: u32,
        conn: u64,
        mut out: F,
    ) -> Option<ConnKey> {
        let mut st = self.conns.remove(&(pid, conn))?;
        self.stats.closed += 1;
        release(
            &mut st,
            "the connection closed before its socket was seen",
            &mut out,
        );
        Some(ConnKey {
            pid,
            conn,
            id: st.id,
        })
    }

    /// The kernel tied the connection at (pid, address) to a descriptor, and read
    /// its addresses when it could.
    pub fn bind_fd<F: FnMut(TlsMessage)>(&mut self, bind: &FdBind, mut out: F) {
        let view = match bind.addrs {
            Some((local, remote, proto)) => SocketView::Known(
                Arc::new(SocketInfo::new(bind.fd, proto, local, remote)),
                bind.source,
            ),
            None => resolve_view(&mut self.resolver, bind.pid, bind.fd, bind.source),
        };
        let st = self.conn_state(bind.pid, bind.conn);
        st.flow = Flow::Done(view);
        release(st, "", &mut out);
    }

    /// Process `pid` exited: its connections end, held messages go out. Returns
    /// the connections that ended.
    pub fn forget_pid<F: FnMut(TlsMessage)>(&mut self, pid: u32, mut out: F) -> Vec<ConnKey> {
        let keys: Vec<(u32, u64)> = self.conns.keys().filter(|k| k.0 == pid).copied().collect();
        let mut ended = Vec::with_capacity(keys.len());
        for k in keys {
            if let Some(mut st) = self.conns.remove(&k) {
                self.stats.closed += 1;
                release(
                    &mut st,
                    "the process exited before its socket was seen",
                    &mut out,
                );
                ended.push(ConnKey {
                    pid: k.0,
                    conn: k.1,
                    id: st.id,
                });
            }
        }
        ended
    }

    /// Releases messages that waited longer than the attribution window.
    pub fn release_overdue<F: FnMut(TlsMessage)>(&mut self, now_ns: u64, mut out: F) {
        for st in self.conns.values_mut() {
            if st
                .held
                .first()
                .is_some_and(|(deadline, _)| *deadline <= now_ns)
            {
                release(st, "no socket I/O seen around the call", &mut out);
            }
        }
    }

    /// Feeds one chunk; messages it completes or ends are passed to `out`.
    pub fn push<F: FnMut(TlsMessage)>(&mut self, c: &Chunk<'_>, mut out: F) {
        let state = self.conn_state(c.pid, c.conn);
        let id = state.id;
        let server_name = state.server_name.clone();
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
                server_name,
                socket: SocketView::Unknown(Arc::from("")),
                fd: (c.fd, c.fd_source),
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

    /// Ends every partial message and releases every held one (at shutdown).
    pub fn flush<F: FnMut(TlsMessage)>(&mut self, mut out: F) {
        let keys: Vec<StreamKey> = self.pending.keys().copied().collect();
        for k in keys {
            if let Some(p) = self.remove(&k) {
                self.finish(p, &mut out);
            }
        }
        for st in self.conns.values_mut() {
            release(
                st,
                "the sensor stopped before the socket was seen",
                &mut out,
            );
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
        self.attribute(p.msg, p.last_seen_ns, out);
    }

    /// Gives a finished message its flow, or holds it briefly when the flow is
    /// about to be learned (an `SSL_write` of a memory-BIO stack).
    fn attribute<F: FnMut(TlsMessage)>(&mut self, mut msg: TlsMessage, now_ns: u64, out: &mut F) {
        let Some(st) = self.conns.get_mut(&(msg.key.pid, msg.key.conn)) else {
            msg.socket = SocketView::Unknown(Arc::from("connection state was forgotten"));
            out(msg);
            return;
        };
        let (fd, source) = msg.fd;
        if matches!(st.flow, Flow::Unseen) && fd >= 0 {
            st.flow = Flow::Done(resolve_view(&mut self.resolver, msg.key.pid, fd, source));
        }
        match &st.flow {
            Flow::Done(view) if st.held.is_empty() => {
                msg.socket = view.clone();
                out(msg);
            }
            Flow::Done(_) => {
                st.held.push((now_ns, msg));
                release(st, "", out);
            }
            Flow::Unseen => {
                if st.held.len() < MAX_HELD_PER_CONN {
                    st.held.push((now_ns + ATTRIBUTION_WAIT_NS, msg));
                } else {
                    release(st, "no socket I/O seen around the call", out);
                    msg.socket =
                        SocketView::Unknown(Arc::from("no socket I/O seen around the call"));
                    out(msg);
                }
            }
        }
    }
}

fn resolve_view(resolver: &mut SocketResolver, pid: u32, fd: i32, source: FdSource) -> SocketView {
    match resolver(pid, fd) {
        Ok(info) => SocketView::Known(Arc::new(info), source),
        Err(why) => SocketView::Unknown(Arc::from(why)),
    }
}

/// Sends a connection's held messages, in order, with its flow (or `why` not).
fn release<F: FnMut(TlsMessage)>(st: &mut ConnState, why: &str, out: &mut F) {
    let view = match &st.flow {
        Flow::Done(v) => v.clone(),
        Flow::Unseen => SocketView::Unknown(Arc::from(why)),
    };
    for (_, mut m) in st.held.drain(..) {
        m.socket = view.clone();
        out(m);
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

    fn reasm(limits: Limits) -> Reassembler {
        Reassembler::new(
            limits,
            Box::new(|_, fd| {
                if fd == 99 {
                    return Err("not a socket".to_owned());
                }
                let a: std::net::SocketAddr = "127.0.0.1:1000".parse().unwrap();
                let b: std::net::SocketAddr = "127.0.0.1:443".parse().unwrap();
                Ok(SocketInfo::new(fd, 6, a, b))
            }),
        )
    }

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
            fd: 5,
            fd_source: FdSource::Nested,
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
        let mut r = reasm(LIMITS);
        let out = run(&mut r, &[chunk(1, 7, 0, b"GET / HTTP/1.1\r\n\r\n", 18)]);
        assert_eq!(out.len(), 1);
        assert!(out[0].complete);
        assert_eq!(out[0].data, b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn chunks_are_joined_in_order_and_interleaved_streams_stay_apart() {
        let mut r = reasm(LIMITS);
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
        let mut r = reasm(LIMITS);
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
        let mut r = reasm(LIMITS);
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
        let mut r = reasm(LIMITS);
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
        let mut r = reasm(Limits {
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
        let mut r = reasm(LIMITS);
        let a = run(&mut r, &[chunk(1, 7, 0, b"one", 3)]);
        let b = run(&mut r, &[chunk(1, 7, 0, b"two", 3)]);
        assert_eq!(a[0].key, b[0].key, "same connection until closed");
        r.close(1, 7, |_| {});
        let c = run(&mut r, &[chunk(1, 7, 0, b"three", 5)]);
        assert_ne!(a[0].key.id, c[0].key.id);
        assert_ne!(a[0].key.to_string(), c[0].key.to_string());
        assert_eq!(r.stats().closed, 1);
    }

    #[test]
    fn the_server_name_follows_the_connection_until_it_closes() {
        let mut r = reasm(LIMITS);
        r.set_server_name(1, 7, "api.example.com");
        let a = run(&mut r, &[chunk(1, 7, 0, b"one", 3)]);
        assert_eq!(a[0].server_name.as_deref(), Some("api.example.com"));
        let other = run(&mut r, &[chunk(1, 8, 0, b"x", 1)]);
        assert_eq!(other[0].server_name, None);
        r.close(1, 7, |_| {});
        let b = run(&mut r, &[chunk(1, 7, 0, b"two", 3)]);
        assert_eq!(b[0].server_name, None, "a new connection at the address");
    }

    #[test]
    fn the_flow_is_resolved_once_and_carried_by_every_message() {
        let mut r = reasm(LIMITS);
        let out = run(&mut r, &[chunk(1, 7, 0, b"a", 1), chunk(1, 7, 0, b"b", 1)]);
        for m in &out {
            let SocketView::Known(info, FdSource::Nested) = &m.socket else {
                panic!("{:?}", m.socket);
            };
            assert_eq!(info.remote.port(), 443);
        }
    }

    #[test]
    fn a_write_without_io_waits_for_the_following_write() {
        let mut r = reasm(LIMITS);
        let mut c = chunk(1, 7, 0, b"req", 3);
        c.fd = -1;
        c.fd_source = FdSource::Unknown;
        assert!(run(&mut r, &[c.clone()]).is_empty(), "held");
        // A read on the same connection keeps the order: held too.
        let mut rd = c.clone();
        rd.direction = Direction::Ingress;
        rd.function = TlsFunction::SslRead;
        assert!(run(&mut r, &[rd]).is_empty());
        let mut out = Vec::new();
        let bind = FdBind {
            pid: 1,
            conn: 7,
            fd: 5,
            source: FdSource::FollowingWrite,
            addrs: None,
        };
        r.bind_fd(&bind, |m| out.push(m));
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].data, b"req");
        assert!(
            out.iter()
                .all(|m| matches!(m.socket, SocketView::Known(_, FdSource::FollowingWrite)))
        );
        // Without a bind, the deadline releases the message as unknown.
        let mut c2 = c.clone();
        c2.conn = 8;
        assert!(run(&mut r, &[c2]).is_empty());
        let mut late = Vec::new();
        r.release_overdue(100 + ATTRIBUTION_WAIT_NS - 1, |m| late.push(m));
        assert!(late.is_empty());
        r.release_overdue(100 + ATTRIBUTION_WAIT_NS, |m| late.push(m));
        assert_eq!(late.len(), 1);
        assert!(matches!(late[0].socket, SocketView::Unknown(_)));
    }

    /// A server's first read served from data its library buffered during the
    /// handshake waits for the socket its response's write names.
    #[test]
    fn a_read_without_io_waits_for_the_connection_s_socket() {
        let mut r = reasm(LIMITS);
        let mut rd = chunk(1, 9, 0, b"GET / HTTP/1.1\r\n\r\n", 18);
        rd.fd = -1;
        rd.fd_source = FdSource::Unknown;
        rd.direction = Direction::Ingress;
        rd.function = TlsFunction::SslRead;
        assert!(run(&mut r, &[rd]).is_empty(), "held");
        let mut out = Vec::new();
        let bind = FdBind {
            pid: 1,
            conn: 9,
            fd: 5,
            source: FdSource::Nested,
            addrs: None,
        };
        r.bind_fd(&bind, |m| out.push(m));
        assert_eq!(out.len(), 1);
        assert!(matches!(
            out[0].socket,
            SocketView::Known(_, FdSource::Nested)
        ));
    }

    #[test]
    fn a_descriptor_that_is_no_socket_is_reported_as_such() {
        let mut r = reasm(LIMITS);
        let mut c = chunk(1, 7, 0, b"x", 1);
        c.fd = 99;
        let out = run(&mut r, &[c]);
        let SocketView::Unknown(why) = &out[0].socket else {
            panic!("unknown expected");
        };
        assert_eq!(&**why, "not a socket");
    }

    #[test]
    fn the_connection_table_is_bounded() {
        let mut r = reasm(Limits {
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
        let mut r = reasm(LIMITS);
        let big = vec![b'z'; MAX_CAPTURE_PER_CALL as usize];
        let total = MAX_CAPTURE_PER_CALL + 10;
        let out = run(&mut r, &[chunk(1, 7, 0, &big, total)]);
        assert_eq!(out.len(), 1);
        assert!(out[0].complete && out[0].truncated);
    }
}
