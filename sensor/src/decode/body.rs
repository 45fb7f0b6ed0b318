//! Content decoding of message bodies (`Content-Encoding`: gzip, deflate, br,
//! zstd, identity) under hard bounds on output size and expansion ratio, so that a
//! decompression bomb is stopped and reported instead of filling memory.

use std::{
    cell::Cell,
    io::{self, Read},
};

use serde::Serialize;

/// Bounds of content decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// Decoded bytes kept per body; decoding stops there.
    pub max_decoded_bytes: usize,
    /// Largest decoded/encoded ratio accepted once the output passes
    /// [`RATIO_FLOOR`] bytes. Real JSON compresses 5–20×; a bomb, thousands.
    pub max_ratio: u64,
}

/// Output size below which the ratio is not checked (small bodies compress well).
pub const RATIO_FLOOR: usize = 1 << 20;

/// A content coding from `Content-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Coding {
    /// RFC 1952 gzip (also `x-gzip`).
    Gzip,
    /// RFC 1950 zlib; raw RFC 1951 deflate accepted too (some servers send it).
    Deflate,
    /// RFC 7932 Brotli.
    Br,
    /// RFC 8878 Zstandard.
    Zstd,
}

impl Coding {
    fn parse(token: &str) -> Result<Option<Self>, String> {
        match token.trim().to_ascii_lowercase().as_str() {
            "" | "identity" => Ok(None),
            "gzip" | "x-gzip" => Ok(Some(Self::Gzip)),
            "deflate" => Ok(Some(Self::Deflate)),
            "br" => Ok(Some(Self::Br)),
            "zstd" => Ok(Some(Self::Zstd)),
            other => Err(format!(
                "unsupported content coding {:?}",
                other.chars().take(32).collect::<String>()
            )),
        }
    }
}

/// Parses `Content-Encoding` header values (in order of application).
pub fn codings<'a>(values: impl Iterator<Item = &'a [u8]>) -> Result<Vec<Coding>, String> {
    let mut out = Vec::new();
    for v in values {
        let text = std::str::from_utf8(v).map_err(|_| "Content-Encoding is not text")?;
        for token in text.split(',') {
            if let Some(c) = Coding::parse(token)? {
                out.push(c);
            }
        }
    }
    Ok(out)
}

/// Why decoding stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The encoded input ended early (the body was truncated or aborted).
    InputEnded,
    /// The decoded size reached [`BodyLimits::max_decoded_bytes`].
    SizeLimit,
    /// The expansion ratio exceeded [`BodyLimits::max_ratio`]: a decompression bomb.
    Bomb {
        /// Decoded bytes produced when decoding stopped.
        decoded: usize,
        /// Encoded bytes consumed by then.
        consumed: usize,
    },
    /// The encoded data is corrupt.
    Corrupt(String),
}

/// The decoded body (as far as it could be decoded) and why it stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Decoded bytes.
    pub bytes: Vec<u8>,
    /// `None` when the whole input decoded within the bounds.
    pub stop: Option<Stop>,
}

/// Undoes `codings` (applied in the order listed) on `input`.
pub fn decode(input: &[u8], codings: &[Coding], limits: BodyLimits) -> Decoded {
    let mut current: Option<Vec<u8>> = None;
    for &coding in codings.iter().rev() {
        let src = current.as_deref().unwrap_or(input);
        let d = decode_one(src, coding, limits);
        if d.stop.is_some() {
            return d;
        }
        current = Some(d.bytes);
    }
    Decoded {
        bytes: current.unwrap_or_else(|| input.to_vec()),
        stop: None,
    }
}

/// Counts the bytes a decoder pulls from its input.
struct Counting<'a> {
    data: &'a [u8],
    consumed: &'a Cell<usize>,
}

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.data.len().min(buf.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        self.consumed.set(self.consumed.get() + n);
        Ok(n)
    }
}

/// zstd window bound: RFC 9659 caps the window of `zstd` content coding at 8 MiB,
/// which also bounds the decoder's own allocation.
const ZSTD_WINDOW_LOG_MAX: u32 = 23;

fn decode_one(input: &[u8], coding: Coding, limits: BodyLimits) -> Decoded {
    let consumed = Cell::new(0);
    let src = Counting {
        data: input,
        consumed: &consumed,
    };
    match coding {
        Coding::Gzip => pump(flate2::read::MultiGzDecoder::new(src), &consumed, limits),
        Coding::Deflate => {
            // zlib has a 2-byte header whose check bits make it a multiple of 31.
            let zlib = input.len() >= 2
                && input[0] & 0x0f == 8
                && (u16::from(input[0]) << 8 | u16::from(input[1])) % 31 == 0;
            if zlib {
                pump(flate2::read::ZlibDecoder::new(src), &consumed, limits)
            } else {
                pump(flate2::read::DeflateDecoder::new(src), &consumed, limits)
            }
        }
        Coding::Br => pump(
            brotli_decompressor::Decompressor::new(src, 32 * 1024),
            &consumed,
            limits,
        ),
        Coding::Zstd => match zstd::stream::read::Decoder::with_buffer(io::BufReader::new(src)) {
            Ok(mut d) => match d.window_log_max(ZSTD_WINDOW_LOG_MAX) {
                Ok(()) => pump(d, &consumed, limits),
                Err(e) => corrupt(e),
            },
            Err(e) => corrupt(e),
        },
    }
}

fn corrupt(e: io::Error) -> Decoded {
    Decoded {
        bytes: Vec::new(),
        stop: Some(Stop::Corrupt(e.to_string())),
    }
}

/// Reads `r` to its end within the bounds; `consumed` is the count of encoded
/// bytes `r` pulled so far.
fn pump<R: Read>(mut r: R, consumed: &Cell<usize>, limits: BodyLimits) -> Decoded {
    let mut out: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let room = limits.max_decoded_bytes.saturating_sub(out.len());
        if room == 0 {
            // One more byte tells a body that fits exactly from a longer one.
            let mut probe = [0u8; 1];
            let more = matches!(r.read(&mut probe), Ok(n) if n > 0);
            return Decoded {
                bytes: out,
                stop: more.then_some(Stop::SizeLimit),
            };
        }
        let want = room.min(buf.len());
        match r.read(&mut buf[..want]) {
            Ok(0) => {
                return Decoded {
                    bytes: out,
                    stop: None,
                };
            }
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Decoded {
                    bytes: out,
                    stop: Some(Stop::InputEnded),
                };
            }
            Err(e) => {
                return Decoded {
                    bytes: out,
                    stop: Some(Stop::Corrupt(e.to_string())),
                };
            }
        }
        let used = consumed.get().max(1);
        if out.len() >= RATIO_FLOOR
            && out.len() as u64 > limits.max_ratio.saturating_mul(used as u64)
        {
            return Decoded {
                stop: Some(Stop::Bomb {
                    decoded: out.len(),
                    consumed: used,
                }),
                bytes: out,
            };
        }
    }
}

/// A valid Brotli stream of `data` in stored (uncompressed) meta-blocks, for
/// tests (the decompressor crate cannot compress).
#[cfg(test)]
pub(crate) fn brotli_stored(data: &[u8]) -> Vec<u8> {
    // brotli-decompressor cannot compress; a stored (uncompressed) meta-block
    // stream is valid Brotli: WBITS=16, ISLAST=0, MNIBBLES, MLEN-1, ISUNCOMPRESSED.
    let mut w = BitWriter::default();
    w.bits(0, 1); // WBITS = 16
    for chunk in data.chunks(65536) {
        w.bits(0, 1); // ISLAST = 0
        w.bits(0, 2); // MNIBBLES = 4
        w.bits((chunk.len() - 1) as u64, 16);
        w.bits(1, 1); // ISUNCOMPRESSED
        w.align();
        w.out.extend_from_slice(chunk);
    }
    w.bits(1, 1); // ISLAST
    w.bits(1, 1); // ISLASTEMPTY
    w.align();
    w.out
}

#[cfg(test)]
#[derive(Default)]
struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

#[cfg(test)]
impl BitWriter {
    fn bits(&mut self, v: u64, n: u32) {
        self.acc |= v << self.n;
        self.n += n;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }
    fn align(&mut self) {
        if self.n > 0 {
            self.out.push(self.acc as u8);
            self.acc = 0;
            self.n = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const LIMITS: BodyLimits = BodyLimits {
        max_decoded_bytes: 8 << 20,
        max_ratio: 100,
    };

    fn json(n: usize) -> Vec<u8> {
        let mut s = String::from("{\"messages\":[");
        for i in 0..n {
            s.push_str(&format!(
                "{{\"role\":\"user\",\"content\":\"message {i} about Europe/Berlin\"}},"
            ));
        }
        s.push_str("{}]}");
        s.into_bytes()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    use super::brotli_stored as br;

    #[test]
    fn parses_coding_lists_in_order() {
        let v: Vec<&[u8]> = vec![b"gzip, identity", b"BR"];
        assert_eq!(codings(v.into_iter()), Ok(vec![Coding::Gzip, Coding::Br]));
        let bad: Vec<&[u8]> = vec![b"compress"];
        assert!(codings(bad.into_iter()).unwrap_err().contains("compress"));
    }

    #[test]
    fn decodes_every_coding() {
        let body = json(200);
        let z = zstd::encode_all(&body[..], 3).unwrap();
        let mut zl = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        zl.write_all(&body).unwrap();
        let zl = zl.finish().unwrap();
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        raw.write_all(&body).unwrap();
        let raw = raw.finish().unwrap();
        for (enc, coding) in [
            (gzip(&body), Coding::Gzip),
            (z, Coding::Zstd),
            (zl, Coding::Deflate),
            (raw, Coding::Deflate),
            (br(&body), Coding::Br),
        ] {
            let d = decode(&enc, &[coding], LIMITS);
            assert_eq!(d.stop, None, "{coding:?}");
            assert_eq!(d.bytes, body, "{coding:?}");
        }
    }

    #[test]
    fn undoes_stacked_codings_last_first() {
        let body = json(10);
        let enc = br(&gzip(&body));
        let d = decode(&enc, &[Coding::Gzip, Coding::Br], LIMITS);
        assert_eq!((d.bytes, d.stop), (body, None));
    }

    #[test]
    fn truncated_input_keeps_what_decoded() {
        let body = json(2000);
        let enc = gzip(&body);
        let d = decode(&enc[..enc.len() / 2], &[Coding::Gzip], LIMITS);
        assert_eq!(d.stop, Some(Stop::InputEnded));
        assert!(!d.bytes.is_empty() && body.starts_with(&d.bytes));
    }

    #[test]
    fn stops_a_bomb_by_ratio() {
        let zeros = vec![0u8; 64 << 20];
        let enc = gzip(&zeros);
        assert!(enc.len() < 100_000);
        let limits = BodyLimits {
            max_decoded_bytes: 256 << 20,
            max_ratio: 100,
        };
        let d = decode(&enc, &[Coding::Gzip], limits);
        match d.stop {
            Some(Stop::Bomb { decoded, consumed }) => {
                assert!((RATIO_FLOOR..4 << 20).contains(&decoded), "{decoded}");
                assert!(decoded as u64 > 100 * consumed as u64);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn stops_at_the_size_bound() {
        let body = json(2000);
        let limits = BodyLimits {
            max_decoded_bytes: 1000,
            max_ratio: 1000,
        };
        let d = decode(&gzip(&body), &[Coding::Gzip], limits);
        assert_eq!(d.stop, Some(Stop::SizeLimit));
        assert_eq!(d.bytes, body[..1000]);
        // A body that fits exactly is whole.
        let exact = BodyLimits {
            max_decoded_bytes: body.len(),
            max_ratio: 1000,
        };
        assert_eq!(decode(&gzip(&body), &[Coding::Gzip], exact).stop, None);
    }

    #[test]
    fn corrupt_input_is_an_error_not_a_panic() {
        for coding in [Coding::Gzip, Coding::Deflate, Coding::Br, Coding::Zstd] {
            let d = decode(
                b"\x1f\x8b\x08\x00garbage-garbage-garbage",
                &[coding],
                LIMITS,
            );
            assert!(
                matches!(d.stop, Some(Stop::Corrupt(_) | Stop::InputEnded)),
                "{coding:?}: {:?}",
                d.stop
            );
        }
    }

    #[test]
    fn zstd_window_above_8_mib_is_refused() {
        let body = vec![7u8; 1000];
        let mut e = zstd::stream::Encoder::new(Vec::new(), 1).unwrap();
        e.window_log(27).unwrap();
        e.long_distance_matching(true).unwrap();
        e.include_contentsize(false).unwrap();
        e.write_all(&body).unwrap();
        let enc = e.finish().unwrap();
        let d = decode(&enc, &[Coding::Zstd], LIMITS);
        assert!(matches!(d.stop, Some(Stop::Corrupt(_))), "{:?}", d.stop);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_input_never_panics(data: Vec<u8>, which in 0usize..4) {
            let coding = [Coding::Gzip, Coding::Deflate, Coding::Br, Coding::Zstd][which];
            let d = decode(&data, &[coding], BodyLimits { max_decoded_bytes: 1 << 16, max_ratio: 100 });
            proptest::prop_assert!(d.bytes.len() <= 1 << 16);
        }
    }
}
