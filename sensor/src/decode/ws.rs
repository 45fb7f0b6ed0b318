//! WebSocket frames (RFC 6455) after an HTTP/1.1 upgrade, with permessage-deflate
//! (RFC 7692).
//!
//! One [`WsHalf`] decodes one direction. Frames are streamed: payload bytes go
//! into the message being assembled (at most `max_ws_message_bytes` of it, the
//! rest is skipped), so a frame is never buffered whole whatever length it
//! declares. Only a frame header (at most 14 bytes), a control frame payload
//! (at most 125 bytes) and the kept message bytes are held.

use flate2::{Decompress, FlushDecompress, Status};

use super::{ErrorKind, Head, Part, Side, StreamId};

/// Opcode of a continuation frame.
const CONTINUATION: u8 = 0;
/// Largest control frame payload (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: u64 = 125;
/// Longest frame header: 2 bytes, 8-byte length, 4-byte masking key.
const MAX_FRAME_HEADER: usize = 14;
/// Bytes unmasked or inflated per step; bounds the stack scratch buffers.
const CHUNK: usize = 4096;
/// With context takeover the inflater has to see every byte of every message
/// to stay in sync, so a truncated message is still inflated (output dropped).
/// This caps that work at this many times the message bound, so a small
/// compressed frame cannot make the sensor inflate gigabytes.
const INFLATE_WORK_FACTOR: usize = 16;
/// RFC 7692 §7.2.2: the sender strips this tail from each message; the receiver
/// appends it before inflating the last bytes.
const DEFLATE_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// What the 101 response negotiated for permessage-deflate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Deflate {
    /// The client starts each message with an empty window.
    pub(super) client_no_context_takeover: bool,
    /// The server starts each message with an empty window.
    pub(super) server_no_context_takeover: bool,
}

impl Deflate {
    /// Whether `side` resets its compression context between messages.
    fn no_context_takeover(self, side: Side) -> bool {
        match side {
            Side::Client => self.client_no_context_takeover,
            Side::Server => self.server_no_context_takeover,
        }
    }
}

/// permessage-deflate parameters the server accepted in its 101 response
/// (`Sec-WebSocket-Extensions`), if it accepted the extension. Window sizes
/// need no handling: a 15-bit inflate window decodes any smaller one.
pub(super) fn negotiated_deflate(head: &Head) -> Option<Deflate> {
    let extension = head
        .values("sec-websocket-extensions")
        .flat_map(|value| value.split(|&b| b == b','))
        .find(|ext| {
            let name = ext.split(|&b| b == b';').next().unwrap_or_default();
            name.trim_ascii()
                .eq_ignore_ascii_case(b"permessage-deflate")
        })?;
    let mut deflate = Deflate {
        client_no_context_takeover: false,
        server_no_context_takeover: false,
    };
    for param in extension.split(|&b| b == b';').skip(1) {
        let name = param.split(|&b| b == b'=').next().unwrap_or_default();
        let name = name.trim_ascii();
        if name.eq_ignore_ascii_case(b"client_no_context_takeover") {
            deflate.client_no_context_takeover = true;
        } else if name.eq_ignore_ascii_case(b"server_no_context_takeover") {
            deflate.server_no_context_takeover = true;
        }
    }
    Some(deflate)
}

/// Bounds one [`WsHalf`] enforces.
#[derive(Debug, Clone, Copy)]
pub(super) struct WsLimits {
    /// Message bytes kept; the rest is skipped and the message flagged truncated.
    pub(super) max_message: usize,
}

/// A parsed frame header and how much of its payload is still to come.
#[derive(Debug)]
struct Frame {
    fin: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    /// Payload bytes not yet read.
    remaining: u64,
    /// Payload bytes read so far (selects the masking key byte).
    offset: u64,
}

impl Frame {
    fn is_control(&self) -> bool {
        self.opcode & 0x08 != 0
    }
}

/// A data message being assembled from its fragments.
#[derive(Debug, Default)]
struct Message {
    /// Opcode of the first fragment; `None` between messages.
    opcode: Option<u8>,
    /// The first fragment had RSV1 set: the payload is deflated.
    compressed: bool,
    /// Kept payload (inflated if compressed), at most the bound.
    data: Vec<u8>,
    /// Payload bytes beyond the bound were dropped.
    truncated: bool,
    /// Bytes the inflater produced for this message (kept or not).
    inflated: usize,
}

/// The inflater of one direction and whether it still follows the sender.
struct Inflater {
    inner: Decompress,
    /// The sender resets its window between messages, so may we.
    no_context_takeover: bool,
    /// The deflate stream of the current message ended with a final block.
    stream_ended: bool,
}

/// How a frame or message went wrong; ends decoding of the direction.
struct Fault {
    kind: ErrorKind,
    detail: &'static str,
}

impl Fault {
    fn malformed(detail: &'static str) -> Self {
        Self {
            kind: ErrorKind::Malformed,
            detail,
        }
    }
}

/// Decodes the frames one side sends after the upgrade.
pub(super) struct WsHalf {
    side: Side,
    stream: StreamId,
    limits: WsLimits,
    /// Header bytes of the next frame received so far.
    header: [u8; MAX_FRAME_HEADER],
    header_len: usize,
    /// The frame whose payload is being read.
    frame: Option<Frame>,
    message: Message,
    /// Payload of the control frame being read.
    control: Vec<u8>,
    /// Present when permessage-deflate was negotiated.
    inflater: Option<Inflater>,
    /// A fault or gap ended decoding; the rest of this side is ignored.
    dead: bool,
}

impl WsHalf {
    /// Decoder for what `side` sends on the connection upgraded by `stream`.
    pub(super) fn new(
        side: Side,
        stream: StreamId,
        limits: WsLimits,
        deflate: Option<Deflate>,
    ) -> Self {
        Self {
            side,
            stream,
            limits,
            header: [0; MAX_FRAME_HEADER],
            header_len: 0,
            frame: None,
            message: Message::default(),
            control: Vec::new(),
            inflater: deflate.map(|d| Inflater {
                inner: Decompress::new(false),
                no_context_takeover: d.no_context_takeover(side),
                stream_ended: false,
            }),
            dead: false,
        }
    }

    /// Bytes held: a partial frame header, a control payload, the kept message.
    pub(super) fn buffered(&self) -> usize {
        self.header_len + self.control.len() + self.message.data.len()
    }

    /// Bytes were lost: frame boundaries cannot be found again, so the rest of
    /// this side is ignored. The caller reports the gap.
    pub(super) fn lose(&mut self) {
        self.stop();
    }

    /// Decodes `data`, reporting each whole message.
    pub(super) fn feed(&mut self, mut data: &[u8], ts_ns: u64, out: &mut dyn FnMut(Part<'_>)) {
        while !data.is_empty() && !self.dead {
            let step = if self.frame.is_some() {
                self.read_payload(data, ts_ns, out)
            } else {
                self.read_header(data, ts_ns, out)
            };
            match step {
                Ok(used) => data = &data[used..],
                Err(fault) => {
                    out(Part::Error {
                        side: Some(self.side),
                        stream: None,
                        kind: fault.kind,
                        detail: format!("websocket: {}", fault.detail),
                    });
                    self.stop();
                }
            }
        }
    }

    /// Drops everything held and ignores what follows.
    fn stop(&mut self) {
        self.dead = true;
        self.frame = None;
        self.header_len = 0;
        self.message = Message::default();
        self.control = Vec::new();
        self.inflater = None;
    }

    /// Collects header bytes; once the header is whole, starts its frame.
    fn read_header(
        &mut self,
        data: &[u8],
        ts_ns: u64,
        out: &mut dyn FnMut(Part<'_>),
    ) -> Result<usize, Fault> {
        let need = header_len(&self.header[..self.header_len]);
        let take = (need - self.header_len).min(data.len());
        self.header[self.header_len..self.header_len + take].copy_from_slice(&data[..take]);
        self.header_len += take;
        // The first two bytes tell how long the header is; then more may be needed.
        if self.header_len < header_len(&self.header[..self.header_len]) {
            return Ok(take);
        }
        let frame = parse_header(&self.header[..self.header_len])?;
        self.header_len = 0;
        self.start_frame(frame)?;
        if self.frame.as_ref().is_some_and(|f| f.remaining == 0) {
            self.end_frame(ts_ns, out)?;
        }
        Ok(take)
    }

    /// Checks a frame against the message state (RFC 6455 §5.4, §5.5, RFC 7692 §6).
    fn start_frame(&mut self, frame: (Frame, u8)) -> Result<(), Fault> {
        let (frame, rsv) = frame;
        let rsv1 = rsv & 0b100 != 0;
        if rsv & 0b011 != 0 || (rsv1 && self.inflater.is_none()) {
            return Err(Fault {
                kind: ErrorKind::Unsupported,
                detail: "frame uses an extension that was not negotiated (RSV bits)",
            });
        }
        if frame.is_control() {
            if !frame.fin || frame.remaining > MAX_CONTROL_PAYLOAD || rsv1 {
                return Err(Fault::malformed("invalid control frame"));
            }
        } else if frame.opcode == CONTINUATION {
            if self.message.opcode.is_none() {
                return Err(Fault::malformed("continuation frame without a message"));
            }
            if rsv1 {
                return Err(Fault::malformed("RSV1 set on a continuation frame"));
            }
        } else {
            if self.message.opcode.is_some() {
                return Err(Fault::malformed(
                    "new message before the previous one ended",
                ));
            }
            self.message.opcode = Some(frame.opcode);
            self.message.compressed = rsv1;
        }
        self.frame = Some(frame);
        Ok(())
    }

    /// Streams payload bytes of the current frame into its message.
    fn read_payload(
        &mut self,
        data: &[u8],
        ts_ns: u64,
        out: &mut dyn FnMut(Part<'_>),
    ) -> Result<usize, Fault> {
        let Some(frame) = self.frame.as_mut() else {
            return Ok(0);
        };
        let take = usize::try_from(frame.remaining).map_or(data.len(), |r| r.min(data.len()));
        let (mask, offset, control) = (frame.mask, frame.offset, frame.is_control());
        frame.remaining -= take as u64;
        frame.offset += take as u64;
        let mut scratch = [0u8; CHUNK];
        for (i, piece) in data[..take].chunks(CHUNK).enumerate() {
            let plain = unmask(piece, mask, offset + (i * CHUNK) as u64, &mut scratch);
            if control {
                self.control.extend_from_slice(plain);
            } else if self.message.compressed {
                self.inflate(plain, false)?;
            } else {
                keep(&mut self.message, plain, self.limits.max_message);
            }
        }
        if self.frame.as_ref().is_some_and(|f| f.remaining == 0) {
            self.end_frame(ts_ns, out)?;
        }
        Ok(take)
    }

    /// The current frame's payload is complete: report a control frame, or the
    /// message if this was its final fragment.
    fn end_frame(&mut self, ts_ns: u64, out: &mut dyn FnMut(Part<'_>)) -> Result<(), Fault> {
        let Some(frame) = self.frame.take() else {
            return Ok(());
        };
        if frame.is_control() {
            out(Part::WebSocket {
                stream: self.stream,
                side: self.side,
                opcode: frame.opcode,
                payload: &self.control,
                truncated: false,
                ts_ns,
            });
            self.control.clear();
            return Ok(());
        }
        if !frame.fin {
            return Ok(());
        }
        if self.message.compressed {
            self.inflate(&DEFLATE_TAIL, true)?;
        }
        let message = std::mem::take(&mut self.message);
        out(Part::WebSocket {
            stream: self.stream,
            side: self.side,
            opcode: message.opcode.unwrap_or(frame.opcode),
            payload: &message.data,
            truncated: message.truncated,
            ts_ns,
        });
        if message.compressed {
            self.end_compressed_message();
        }
        // Reuse the allocation for the next message unless it is large.
        if message.data.capacity() <= 64 * 1024 {
            let mut data = message.data;
            data.clear();
            self.message.data = data;
        }
        Ok(())
    }

    /// Resets the inflater where the sender resets its compressor.
    fn end_compressed_message(&mut self) {
        if let Some(inflater) = self.inflater.as_mut() {
            // A final deflate block ends the sender's stream: its next message
            // starts a new one, as it does without context takeover.
            if inflater.no_context_takeover || inflater.stream_ended {
                inflater.inner.reset(false);
            }
            inflater.stream_ended = false;
        }
    }

    /// Inflates compressed message bytes, keeping output up to the bound.
    fn inflate(&mut self, mut input: &[u8], last: bool) -> Result<(), Fault> {
        let max_message = self.limits.max_message;
        let Some(inflater) = self.inflater.as_mut() else {
            return Err(Fault::malformed("compressed frame without an inflater"));
        };
        let flush = if last {
            FlushDecompress::Sync
        } else {
            FlushDecompress::None
        };
        let mut output = [0u8; CHUNK];
        while !inflater.stream_ended {
            // Once truncated, a reset-per-message inflater need not see the rest.
            if self.message.truncated && inflater.no_context_takeover {
                return Ok(());
            }
            if self.message.inflated > max_message.max(CHUNK).saturating_mul(INFLATE_WORK_FACTOR) {
                return Err(Fault {
                    kind: ErrorKind::Limit,
                    detail: "compressed message inflates far beyond the message bound",
                });
            }
            let (in_before, out_before) = (inflater.inner.total_in(), inflater.inner.total_out());
            let status = inflater
                .inner
                .decompress(input, &mut output, flush)
                .map_err(|_| Fault::malformed("invalid permessage-deflate data"))?;
            let used =
                usize::try_from(inflater.inner.total_in() - in_before).unwrap_or(input.len());
            let produced = usize::try_from(inflater.inner.total_out() - out_before).unwrap_or(0);
            input = input.get(used..).unwrap_or_default();
            self.message.inflated = self.message.inflated.saturating_add(produced);
            keep(
                &mut self.message,
                &output[..produced.min(CHUNK)],
                max_message,
            );
            if status == Status::StreamEnd {
                inflater.stream_ended = true;
            }
            // Done when the input is used up and the inflater had room to spare.
            if (input.is_empty() && produced < CHUNK) || (used == 0 && produced == 0) {
                break;
            }
        }
        Ok(())
    }
}

/// Header length implied by the bytes seen so far (2 until the second byte is known).
fn header_len(header: &[u8]) -> usize {
    let Some(&second) = header.get(1) else {
        return 2;
    };
    let length = match second & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    2 + length + mask
}

/// Parses a whole frame header; returns the frame and its RSV bits.
fn parse_header(header: &[u8]) -> Result<(Frame, u8), Fault> {
    let (first, second) = match header {
        [first, second, ..] => (*first, *second),
        _ => return Err(Fault::malformed("short frame header")),
    };
    let opcode = first & 0x0f;
    if matches!(opcode, 3..=7 | 11..=15) {
        return Err(Fault::malformed("reserved opcode"));
    }
    let mut rest = &header[2..];
    let remaining = match second & 0x7f {
        126 => take_be(&mut rest, 2),
        127 => take_be(&mut rest, 8),
        short => u64::from(short),
    };
    // RFC 6455 §5.2: the most significant bit of a 64-bit length must be 0.
    if remaining >> 63 != 0 {
        return Err(Fault::malformed("frame length has the top bit set"));
    }
    let mask = (second & 0x80 != 0).then(|| {
        let mut key = [0u8; 4];
        let n = rest.len().min(4);
        key[..n].copy_from_slice(&rest[..n]);
        key
    });
    let frame = Frame {
        fin: first & 0x80 != 0,
        opcode,
        mask,
        remaining,
        offset: 0,
    };
    Ok((frame, (first >> 4) & 0x07))
}

/// Reads an `n`-byte big-endian integer from the front of `bytes`.
fn take_be(bytes: &mut &[u8], n: usize) -> u64 {
    let n = n.min(bytes.len());
    let (value, rest) = bytes.split_at(n);
    *bytes = rest;
    value.iter().fold(0, |acc, &b| (acc << 8) | u64::from(b))
}

/// Removes client masking from `piece`, whose first byte is at payload `offset`.
fn unmask<'a>(
    piece: &'a [u8],
    mask: Option<[u8; 4]>,
    offset: u64,
    scratch: &'a mut [u8; CHUNK],
) -> &'a [u8] {
    let Some(key) = mask else {
        return piece;
    };
    let plain = &mut scratch[..piece.len()];
    for (i, (dst, src)) in plain.iter_mut().zip(piece).enumerate() {
        // `offset + i` mod 4 picks the key byte; only the low two bits matter.
        *dst = src ^ key[((offset as usize).wrapping_add(i)) & 3];
    }
    plain
}

/// Appends to the message up to `max` bytes; flags the message if bytes are dropped.
fn keep(message: &mut Message, bytes: &[u8], max: usize) {
    let room = max.saturating_sub(message.data.len());
    if bytes.len() > room {
        message.truncated = true;
    }
    let bytes = &bytes[..bytes.len().min(room)];
    let needed = message.data.len() + bytes.len();
    if needed > message.data.capacity() {
        // Grow geometrically but never past the bound, so capacity stays ≤ max.
        let target = (message.data.capacity() * 2).max(needed).min(max);
        message.data.reserve_exact(target - message.data.len());
    }
    message.data.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};
    use proptest::prelude::*;

    /// What a [`WsHalf`] reported: messages and error kinds.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Ev {
        Msg(u8, Vec<u8>, bool),
        Error(ErrorKind),
    }

    fn decoder(side: Side, max_message: usize, deflate: Option<Deflate>) -> WsHalf {
        WsHalf::new(side, 3, WsLimits { max_message }, deflate)
    }

    fn feed(ws: &mut WsHalf, data: &[u8]) -> Vec<Ev> {
        let mut events = Vec::new();
        ws.feed(data, 1, &mut |part| match part {
            Part::WebSocket {
                stream,
                opcode,
                payload,
                truncated,
                ..
            } => {
                assert_eq!(stream, 3);
                events.push(Ev::Msg(opcode, payload.to_vec(), truncated));
            }
            Part::Error { kind, .. } => events.push(Ev::Error(kind)),
            other => panic!("unexpected {other:?}"),
        });
        events
    }

    /// Encodes one frame, choosing the shortest length form.
    fn frame(fin: bool, rsv1: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = vec![(u8::from(fin) << 7) | (u8::from(rsv1) << 6) | opcode];
        let masked = if mask.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => out.push(masked | n as u8),
            n if n <= 0xffff => {
                out.push(masked | 126);
                out.extend((n as u16).to_be_bytes());
            }
            n => {
                out.push(masked | 127);
                out.extend((n as u64).to_be_bytes());
            }
        }
        match mask {
            Some(key) => {
                out.extend(key);
                out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
            }
            None => out.extend_from_slice(payload),
        }
        out
    }

    /// permessage-deflate payload of `message` (sync flush, tail removed).
    fn deflate(compress: &mut Compress, message: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let start = compress.total_in();
        loop {
            out.reserve(message.len() + 64);
            let done = (compress.total_in() - start) as usize;
            compress
                .compress_vec(&message[done..], &mut out, FlushCompress::Sync)
                .expect("deflate");
            // Flushed completely once the output did not fill the room it had.
            if (compress.total_in() - start) as usize == message.len() && out.len() < out.capacity()
            {
                break;
            }
        }
        assert!(out.ends_with(&DEFLATE_TAIL));
        out.truncate(out.len() - DEFLATE_TAIL.len());
        out
    }

    #[test]
    fn length_forms_and_masking() {
        let mut ws = decoder(Side::Client, 1 << 20, None);
        for len in [0usize, 125, 126, 300, 65535, 65536, 70000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let events = feed(
                &mut ws,
                &frame(true, false, 2, &payload, Some([0xde, 0xad, 0xbe, 0xef])),
            );
            assert_eq!(events, vec![Ev::Msg(2, payload, false)], "{len}");
        }
        assert_eq!(ws.buffered(), 0);
    }

    #[test]
    fn fragments_join_around_control_frames() {
        let mut ws = decoder(Side::Server, 100, None);
        let mut wire = frame(false, false, 1, b"Hel", None);
        wire.extend(frame(true, false, 9, b"ping", None));
        wire.extend(frame(false, false, 0, b"lo, ", None));
        wire.extend(frame(true, false, 0, b"world", None));
        let mut events = Vec::new();
        for b in &wire {
            events.extend(feed(&mut ws, std::slice::from_ref(b)));
        }
        assert_eq!(
            events,
            vec![
                Ev::Msg(9, b"ping".to_vec(), false),
                Ev::Msg(1, b"Hello, world".to_vec(), false)
            ]
        );
    }

    #[test]
    fn long_messages_are_truncated_and_huge_frames_streamed() {
        let mut ws = decoder(Side::Client, 8, None);
        let events = feed(
            &mut ws,
            &frame(true, false, 1, b"0123456789abcdef", Some([1, 2, 3, 4])),
        );
        assert_eq!(events, vec![Ev::Msg(1, b"01234567".to_vec(), true)]);
        // A frame declaring 2^40 bytes: streamed, never buffered whole.
        let mut header = vec![0x82, 127];
        header.extend((1u64 << 40).to_be_bytes());
        assert!(feed(&mut ws, &header).is_empty());
        for _ in 0..16 {
            assert!(feed(&mut ws, &[7; 4096]).is_empty());
            assert!(ws.buffered() <= 8);
        }
    }

    #[test]
    fn protocol_violations_stop_the_side() {
        let cases: [(Vec<u8>, ErrorKind); 6] = [
            (frame(true, false, 3, b"", None), ErrorKind::Malformed),
            (frame(false, false, 9, b"", None), ErrorKind::Malformed),
            (frame(true, false, 0, b"x", None), ErrorKind::Malformed),
            (frame(true, true, 1, b"x", None), ErrorKind::Unsupported),
            (
                [
                    frame(false, false, 1, b"a", None),
                    frame(true, false, 1, b"b", None),
                ]
                .concat(),
                ErrorKind::Malformed,
            ),
            (
                vec![0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0],
                ErrorKind::Malformed,
            ),
        ];
        for (wire, kind) in cases {
            let mut ws = decoder(Side::Server, 64, None);
            assert_eq!(feed(&mut ws, &wire), vec![Ev::Error(kind)], "{wire:?}");
            assert!(feed(&mut ws, &frame(true, false, 1, b"after", None)).is_empty());
            assert_eq!(ws.buffered(), 0);
        }
        let mut ws = decoder(Side::Server, 64, None);
        let long_ping = frame(true, false, 9, &[0; 126], None);
        assert_eq!(
            feed(&mut ws, &long_ping),
            vec![Ev::Error(ErrorKind::Malformed)]
        );
    }

    #[test]
    fn negotiation_is_read_from_the_response() {
        let head = |value: &str| Head {
            start: crate::decode::Start::Response { status: 101 },
            version: crate::decode::Version::Http11,
            headers: vec![crate::decode::Header::new(
                "Sec-WebSocket-Extensions",
                value.as_bytes(),
            )],
        };
        assert_eq!(negotiated_deflate(&head("x-other")), None);
        assert_eq!(
            negotiated_deflate(&head(
                "permessage-deflate; client_max_window_bits=10; Server_No_Context_Takeover"
            )),
            Some(Deflate {
                client_no_context_takeover: false,
                server_no_context_takeover: true
            })
        );
        assert_eq!(
            negotiated_deflate(&head("foo, permessage-deflate;client_no_context_takeover")),
            Some(Deflate {
                client_no_context_takeover: true,
                server_no_context_takeover: false
            })
        );
    }

    const TAKEOVER: Deflate = Deflate {
        client_no_context_takeover: false,
        server_no_context_takeover: false,
    };

    #[test]
    fn compressed_messages_with_context_takeover() {
        let mut compress = Compress::new(Compression::default(), false);
        let mut ws = decoder(Side::Client, 1 << 16, Some(TAKEOVER));
        let text = b"the same words again and again, the same words again and again";
        for _ in 0..3 {
            let deflated = deflate(&mut compress, text);
            // Split over two fragments with a ping between them.
            let (a, b) = deflated.split_at(deflated.len() / 2);
            let mut wire = frame(false, true, 1, a, Some([5, 6, 7, 8]));
            wire.extend(frame(true, false, 9, b"", Some([1, 1, 1, 1])));
            wire.extend(frame(true, false, 0, b, Some([9, 8, 7, 6])));
            assert_eq!(
                feed(&mut ws, &wire),
                vec![Ev::Msg(9, vec![], false), Ev::Msg(1, text.to_vec(), false)]
            );
        }
    }

    #[test]
    fn compressed_truncation_keeps_the_context() {
        let mut compress = Compress::new(Compression::default(), false);
        let mut ws = decoder(Side::Server, 10, Some(TAKEOVER));
        let long: Vec<u8> = (0..5000u32).flat_map(|i| i.to_le_bytes()).collect();
        let events = feed(
            &mut ws,
            &frame(true, true, 2, &deflate(&mut compress, &long), None),
        );
        assert_eq!(events, vec![Ev::Msg(2, long[..10].to_vec(), true)]);
        let events = feed(
            &mut ws,
            &frame(true, true, 2, &deflate(&mut compress, &long[..8]), None),
        );
        assert_eq!(events, vec![Ev::Msg(2, long[..8].to_vec(), false)]);
    }

    #[test]
    fn no_context_takeover_resets_between_messages() {
        let mut ws = decoder(
            Side::Server,
            100,
            Some(Deflate {
                server_no_context_takeover: true,
                ..TAKEOVER
            }),
        );
        for message in [&b"first"[..], b"second", b"first"] {
            let mut compress = Compress::new(Compression::default(), false);
            let wire = frame(true, true, 1, &deflate(&mut compress, message), None);
            assert_eq!(
                feed(&mut ws, &wire),
                vec![Ev::Msg(1, message.to_vec(), false)]
            );
        }
    }

    #[test]
    fn corrupt_deflate_data_is_malformed() {
        let mut ws = decoder(Side::Server, 100, Some(TAKEOVER));
        let wire = frame(true, true, 1, &[0xff; 20], None);
        assert_eq!(feed(&mut ws, &wire), vec![Ev::Error(ErrorKind::Malformed)]);
    }

    #[test]
    fn inflation_work_is_bounded() {
        let mut compress = Compress::new(Compression::best(), false);
        let mut ws = decoder(Side::Server, 16, Some(TAKEOVER));
        let zeros = vec![0u8; 4 << 20];
        let events = feed(
            &mut ws,
            &frame(true, true, 2, &deflate(&mut compress, &zeros), None),
        );
        assert_eq!(events, vec![Ev::Error(ErrorKind::Limit)]);
    }

    /// A generated message: opcode, payload, fragment sizes.
    fn message() -> impl Strategy<Value = (u8, Vec<u8>, Vec<usize>)> {
        (
            1u8..=2,
            proptest::collection::vec(any::<u8>(), 0..400),
            proptest::collection::vec(0usize..200, 0..4),
        )
    }

    /// Frames of one message cut at `cuts` (fragment lengths), a ping after the first.
    fn frames_of(
        opcode: u8,
        payload: &[u8],
        cuts: &[usize],
        rsv1: bool,
        mask: Option<[u8; 4]>,
    ) -> Vec<u8> {
        let mut parts = Vec::new();
        let mut rest = payload;
        for &cut in cuts {
            let (a, b) = rest.split_at(cut.min(rest.len()));
            parts.push(a);
            rest = b;
        }
        parts.push(rest);
        let mut wire = Vec::new();
        let last = parts.len() - 1;
        for (i, part) in parts.into_iter().enumerate() {
            let op = if i == 0 { opcode } else { 0 };
            wire.extend(frame(i == last, rsv1 && i == 0, op, part, mask));
            if i == 0 && last > 0 {
                wire.extend(frame(true, false, 10, b"pong", mask));
            }
        }
        wire
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn messages_round_trip(
            messages in proptest::collection::vec(message(), 1..6),
            masked in any::<bool>(),
            compressed in any::<bool>(),
            max_message in 1usize..500,
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
        ) {
            let mask = masked.then_some([0x37, 0xfa, 0x21, 0x3d]);
            let mut compress = Compress::new(Compression::fast(), false);
            let mut wire = Vec::new();
            let mut expected = Vec::new();
            for (opcode, payload, fragments) in &messages {
                let body = if compressed { deflate(&mut compress, payload) } else { payload.clone() };
                wire.extend(frames_of(*opcode, &body, fragments, compressed, mask));
                if !fragments.is_empty() {
                    expected.push(Ev::Msg(10, b"pong".to_vec(), false));
                }
                let kept = payload.len().min(max_message);
                expected.push(Ev::Msg(*opcode, payload[..kept].to_vec(), payload.len() > max_message));
            }
            let mut at: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
            at.sort_unstable();
            at.push(wire.len());
            let side = if masked { Side::Client } else { Side::Server };
            let mut ws = decoder(side, max_message, compressed.then_some(TAKEOVER));
            let mut events = Vec::new();
            let mut start = 0;
            for end in at {
                events.extend(feed(&mut ws, &wire[start..end]));
                start = end;
                prop_assert!(ws.buffered() <= max_message + MAX_FRAME_HEADER + MAX_CONTROL_PAYLOAD as usize);
            }
            prop_assert_eq!(events, expected);
        }
    }
}
