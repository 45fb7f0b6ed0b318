//! A bounded on-disk queue of records, in order, that survives restarts: where a
//! sink's records wait while its destination is down or slow.
//!
//! Records are appended to segment files (`NNNNNNNNNN.seg`, at most
//! [`SEGMENT_BYTES`] each) as `[u32 header length][header JSON][u32 body
//! length][body]`, little-endian. A `cursor` file (written atomically) says how
//! far delivery got; segments wholly behind it are deleted. After a crash a torn
//! last record is cut off, and records after the cursor are delivered again (at
//! least once). Appends past `max_bytes` are refused and counted by the caller.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, BufReader, Read, Seek, SeekFrom, Write},
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    sync::Arc,
};

use serde::{Deserialize, Serialize};

use super::{Level, Record};

/// Number of the first segment of a new spool: room below it for records put
/// back in front ([`Spool::prepend`]).
const FIRST_SEGMENT: u64 = 1 << 32;

/// Segment size at which a new segment starts.
pub const SEGMENT_BYTES: u64 = 16 << 20;
/// Largest record accepted (header and body).
const MAX_RECORD: u32 = 64 << 20;

#[derive(Serialize, Deserialize)]
struct Header {
    id: Arc<str>,
    event_type: Arc<str>,
    time: Arc<str>,
    level: Level,
    host: Arc<str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Cursor {
    segment: u64,
    offset: u64,
}

/// The spool of one sink.
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// Segment numbers on disk, oldest first, with their sizes.
    segments: Vec<(u64, u64)>,
    cursor: Cursor,
    writer: Option<File>,
    /// Records not yet delivered.
    pending: u64,
}

impl Spool {
    /// Opens (creating, 0700) the spool in `dir`, recovering what a previous run
    /// left.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        let mut segments: Vec<(u64, u64)> = Vec::new();
        for e in fs::read_dir(dir)?.flatten() {
            let name = e.file_name();
            let Some(n) = name
                .to_str()
                .and_then(|s| s.strip_suffix(".seg"))
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            segments.push((n, e.metadata()?.len()));
        }
        segments.sort_unstable();
        let cursor = fs::read(dir.join("cursor"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Cursor>(&b).ok())
            .unwrap_or(Cursor {
                segment: segments.first().map_or(FIRST_SEGMENT, |s| s.0),
                offset: 0,
            });
        let mut spool = Self {
            dir: dir.to_path_buf(),
            max_bytes,
            segments,
            cursor,
            writer: None,
            pending: 0,
        };
        spool.recover()?;
        Ok(spool)
    }

    /// Records waiting.
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.1).sum()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.pending == 0
    }

    fn seg_path(&self, n: u64) -> PathBuf {
        self.dir.join(format!("{n:010}.seg"))
    }

    /// Drops segments behind the cursor, cuts torn tails, counts what waits.
    fn recover(&mut self) -> io::Result<()> {
        let cur = self.cursor;
        let stale: Vec<u64> = self
            .segments
            .iter()
            .filter(|s| s.0 < cur.segment)
            .map(|s| s.0)
            .collect();
        for n in stale {
            let _ = fs::remove_file(self.seg_path(n));
        }
        self.segments.retain(|s| s.0 >= cur.segment);
        let mut pending = 0;
        for i in 0..self.segments.len() {
            let (n, len) = self.segments[i];
            let start = if n == cur.segment { cur.offset } else { 0 };
            let (count, good) = scan(&self.seg_path(n), start)?;
            if good < len {
                // A torn last record (the previous run died while writing it).
                OpenOptions::new()
                    .write(true)
                    .open(self.seg_path(n))?
                    .set_len(good)?;
                self.segments[i].1 = good;
            }
            pending += count;
        }
        self.pending = pending;
        Ok(())
    }

    /// Appends records; `Ok(n)` is how many fit under the byte bound (the rest
    /// were refused: the caller counts them as dropped).
    pub fn append(&mut self, records: &[Record]) -> io::Result<usize> {
        let mut written = 0;
        for r in records {
            let buf = encode(r)?;
            let size = buf.len() as u64;
            if self.bytes() + size > self.max_bytes || size > u64::from(MAX_RECORD) {
                break;
            }
            let last_full = self
                .segments
                .last()
                .is_none_or(|s| s.1 + size > SEGMENT_BYTES);
            if last_full {
                let n = self
                    .segments
                    .last()
                    .map_or(self.cursor.segment, |s| s.0 + 1);
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(self.seg_path(n))?;
                self.segments.push((n, 0));
                self.writer = Some(f);
            }
            if self.writer.is_none() {
                let n = self.segments.last().map_or(0, |s| s.0);
                self.writer = Some(OpenOptions::new().append(true).open(self.seg_path(n))?);
            }
            let w = self
                .writer
                .as_mut()
                .ok_or_else(|| io::Error::other("no segment"))?;
            w.write_all(&buf)?;
            if let Some(last) = self.segments.last_mut() {
                last.1 += size;
            }
            self.pending += 1;
            written += 1;
        }
        if let Some(w) = self.writer.as_mut() {
            w.flush()?;
        }
        Ok(written)
    }

    /// Up to `max` records from the front, without removing them.
    pub fn peek(&self, max: usize) -> io::Result<Vec<Record>> {
        let mut out = Vec::new();
        let mut cur = self.cursor;
        for &(n, len) in &self.segments {
            if n < cur.segment {
                continue;
            }
            if n > cur.segment {
                cur = Cursor {
                    segment: n,
                    offset: 0,
                };
            }
            if cur.offset >= len {
                continue;
            }
            let mut f = BufReader::new(File::open(self.seg_path(n))?);
            f.seek(SeekFrom::Start(cur.offset))?;
            while out.len() < max && cur.offset < len {
                match read_record(&mut f)? {
                    Some((r, size)) => {
                        out.push(r);
                        cur.offset += size;
                    }
                    None => break,
                }
            }
            if out.len() >= max {
                break;
            }
        }
        Ok(out)
    }

    /// Removes `n` records from the front (they were delivered) and persists the
    /// position; deletes segments left behind.
    pub fn commit(&mut self, n: usize) -> io::Result<()> {
        let mut left = n;
        while left > 0 {
            let Some(&(seg, len)) = self.segments.iter().find(|s| s.0 >= self.cursor.segment)
            else {
                break;
            };
            if seg > self.cursor.segment {
                self.cursor = Cursor {
                    segment: seg,
                    offset: 0,
                };
            }
            if self.cursor.offset >= len {
                // This segment is done; move on unless it is the one being written.
                if self.segments.last().is_some_and(|l| l.0 == seg) {
                    break;
                }
                self.cursor = Cursor {
                    segment: seg + 1,
                    offset: 0,
                };
                continue;
            }
            let mut f = BufReader::new(File::open(self.seg_path(seg))?);
            f.seek(SeekFrom::Start(self.cursor.offset))?;
            while left > 0 && self.cursor.offset < len {
                match read_record(&mut f)? {
                    Some((_, size)) => {
                        self.cursor.offset += size;
                        left -= 1;
                        self.pending = self.pending.saturating_sub(1);
                    }
                    None => break,
                }
            }
        }
        // Segments wholly delivered go; the one being written stays (emptied when
        // everything is delivered, so the spool does not grow without bound).
        let cur = self.cursor;
        let done: Vec<u64> = self
            .segments
            .iter()
            .filter(|s| s.0 < cur.segment || (s.0 == cur.segment && cur.offset >= s.1))
            .map(|s| s.0)
            .collect();
        for seg in done {
            let is_last = self.segments.last().is_some_and(|l| l.0 == seg);
            if is_last {
                // Everything delivered: start the next segment afresh.
                self.writer = None;
            }
            fs::remove_file(self.seg_path(seg))?;
            self.segments.retain(|s| s.0 != seg);
            if is_last {
                self.cursor = Cursor {
                    segment: seg + 1,
                    offset: 0,
                };
            }
        }
        self.save_cursor()
    }

    /// Puts records back in front of everything spooled (a sink stopping with
    /// records older than its spool): they go to a new segment before the
    /// first. Returns how many fit under the bound.
    pub fn prepend(&mut self, records: &[Record]) -> io::Result<usize> {
        if records.is_empty() {
            return Ok(0);
        }
        self.drop_delivered_prefix()?;
        let first = self
            .segments
            .first()
            .map_or(self.cursor.segment, |s| s.0)
            .min(self.cursor.segment);
        let Some(n) = first.checked_sub(1) else {
            return Ok(0);
        };
        let mut buf = Vec::new();
        let mut written = 0;
        for r in records {
            let bytes = encode(r)?;
            if self.bytes() + (buf.len() + bytes.len()) as u64 > self.max_bytes {
                break;
            }
            buf.extend_from_slice(&bytes);
            written += 1;
        }
        let mut f = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(self.seg_path(n))?;
        f.write_all(&buf)?;
        f.sync_all()?;
        self.segments.insert(0, (n, buf.len() as u64));
        self.cursor = Cursor {
            segment: n,
            offset: 0,
        };
        self.pending += written as u64;
        self.save_cursor()?;
        Ok(written)
    }

    /// Rewrites the cursor's segment without its delivered records, so that
    /// segments before it can be read from their start.
    fn drop_delivered_prefix(&mut self) -> io::Result<()> {
        let cur = self.cursor;
        if cur.offset == 0 {
            return Ok(());
        }
        let Some(i) = self.segments.iter().position(|s| s.0 == cur.segment) else {
            self.cursor.offset = 0;
            return Ok(());
        };
        let path = self.seg_path(cur.segment);
        let mut rest = Vec::new();
        let mut f = File::open(&path)?;
        f.seek(SeekFrom::Start(cur.offset))?;
        f.read_to_end(&mut rest)?;
        let tmp = self.dir.join("rewrite.tmp");
        let mut w = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        w.write_all(&rest)?;
        w.sync_all()?;
        fs::rename(&tmp, &path)?;
        self.segments[i].1 = rest.len() as u64;
        self.writer = None;
        self.cursor.offset = 0;
        self.save_cursor()
    }

    fn save_cursor(&self) -> io::Result<()> {
        let tmp = self.dir.join("cursor.tmp");
        let mut f = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&serde_json::to_vec(&self.cursor).map_err(io::Error::other)?)?;
        f.sync_all()?;
        fs::rename(tmp, self.dir.join("cursor"))
    }
}

/// A record as the spool stores it.
fn encode(r: &Record) -> io::Result<Vec<u8>> {
    let header = serde_json::to_vec(&Header {
        id: r.id.clone(),
        event_type: r.event_type.clone(),
        time: r.time.clone(),
        level: r.level,
        host: r.host.clone(),
    })
    .map_err(io::Error::other)?;
    let mut buf = Vec::with_capacity(8 + header.len() + r.body.len());
    buf.extend_from_slice(&(header.len() as u32).to_le_bytes());
    buf.extend_from_slice(&header);
    buf.extend_from_slice(&(r.body.len() as u32).to_le_bytes());
    buf.extend_from_slice(&r.body);
    Ok(buf)
}

/// Counts whole records from `start`; returns (records, offset after the last).
fn scan(path: &Path, start: u64) -> io::Result<(u64, u64)> {
    let mut f = BufReader::new(File::open(path)?);
    f.seek(SeekFrom::Start(start))?;
    let mut count = 0;
    let mut at = start;
    while let Some((_, size)) = read_record(&mut f)? {
        count += 1;
        at += size;
    }
    Ok((count, at))
}

/// One record and its size on disk; `None` at the end or at a torn record.
fn read_record<R: Read>(r: &mut R) -> io::Result<Option<(Record, u64)>> {
    let Some(hlen) = read_u32(r)? else {
        return Ok(None);
    };
    if hlen > MAX_RECORD {
        return Ok(None);
    }
    let mut header = vec![0u8; hlen as usize];
    if !read_full(r, &mut header)? {
        return Ok(None);
    }
    let Some(blen) = read_u32(r)? else {
        return Ok(None);
    };
    if blen > MAX_RECORD {
        return Ok(None);
    }
    let mut body = vec![0u8; blen as usize];
    if !read_full(r, &mut body)? {
        return Ok(None);
    }
    let Ok(h) = serde_json::from_slice::<Header>(&header) else {
        return Ok(None);
    };
    Ok(Some((
        Record {
            id: h.id,
            event_type: h.event_type,
            time: h.time,
            level: h.level,
            host: h.host,
            body,
        },
        8 + u64::from(hlen) + u64::from(blen),
    )))
}

fn read_u32<R: Read>(r: &mut R) -> io::Result<Option<u32>> {
    let mut b = [0u8; 4];
    Ok(read_full(r, &mut b)?.then(|| u32::from_le_bytes(b)))
}

/// Fills `buf`; `false` when the input ends first.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => return Ok(false),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn rec(i: usize, body_len: usize) -> Record {
        Record {
            id: format!("id-{i}").into(),
            event_type: "alert".into(),
            time: "2026-11-29T00:00:00Z".into(),
            level: Level::High,
            host: "h".into(),
            body: vec![b'x'; body_len],
        }
    }

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("telltale-spool-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn records_come_back_in_order_across_segments_and_restarts() {
        let d = dir("order");
        let mut s = Spool::open(&d, 1 << 30).unwrap();
        let big = (SEGMENT_BYTES / 3) as usize;
        let recs: Vec<_> = (0..7)
            .map(|i| rec(i, if i % 2 == 0 { big } else { 10 }))
            .collect();
        assert_eq!(s.append(&recs).unwrap(), 7);
        assert!(s.segments.len() >= 2, "rolled over");
        let first = s.peek(3).unwrap();
        assert_eq!(
            first.iter().map(|r| &*r.id).collect::<Vec<_>>(),
            ["id-0", "id-1", "id-2"]
        );
        s.commit(3).unwrap();
        drop(s);
        let mut s = Spool::open(&d, 1 << 30).unwrap();
        assert_eq!(s.pending(), 4);
        let rest = s.peek(100).unwrap();
        assert_eq!(
            rest.iter().map(|r| &*r.id).collect::<Vec<_>>(),
            ["id-3", "id-4", "id-5", "id-6"]
        );
        assert_eq!(rest[1].body.len(), big);
        s.commit(4).unwrap();
        assert!(s.is_empty());
        assert_eq!(s.bytes(), 0, "delivered segments are deleted");
        s.append(&[rec(9, 5)]).unwrap();
        assert_eq!(s.peek(9).unwrap()[0].id.as_ref(), "id-9");
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn the_byte_bound_refuses_what_does_not_fit() {
        let d = dir("bound");
        let mut s = Spool::open(&d, 1000).unwrap();
        let n = s
            .append(&(0..20).map(|i| rec(i, 100)).collect::<Vec<_>>())
            .unwrap();
        assert!(n > 0 && n < 20, "{n}");
        assert!(s.bytes() <= 1000);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_torn_last_record_is_cut_off() {
        let d = dir("torn");
        let mut s = Spool::open(&d, 1 << 20).unwrap();
        s.append(&[rec(1, 50), rec(2, 50)]).unwrap();
        let seg = s.seg_path(s.segments[0].0);
        drop(s);
        let len = fs::metadata(&seg).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len - 10)
            .unwrap();
        let s = Spool::open(&d, 1 << 20).unwrap();
        assert_eq!(s.pending(), 1);
        assert_eq!(s.peek(5).unwrap()[0].id.as_ref(), "id-1");
        let mode = fs::metadata(&seg).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let _ = fs::remove_dir_all(&d);
    }
}
