//! HTTP/1.1 request framing for held writes: where a request written over one
//! or more TLS writes ends, so that a decision is made on the whole request
//! before its last byte leaves. Never panics on hostile input.

/// The start of a request that is not complete yet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeadInfo {
    /// Method.
    pub method: String,
    /// Request target.
    pub target: String,
    /// `Host` header.
    pub host: Option<String>,
    /// `User-Agent` header.
    pub user_agent: Option<String>,
}

/// What the bytes at the start of a connection's unfinished output are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// A whole request: the first `len` bytes.
    Complete(usize),
    /// The start of a request; its head when complete.
    Incomplete(Option<HeadInfo>),
    /// Not an HTTP/1.x request (HTTP/2, WebSocket frames, another protocol).
    NotHttp1(&'static str),
}

/// Header fields a request head may have.
const MAX_HEADERS: usize = 128;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Frames the request at the start of `buf`.
pub fn next_request(buf: &[u8]) -> Next {
    if buf.is_empty() {
        return Next::Incomplete(None);
    }
    let n = buf.len().min(H2_PREFACE.len());
    if buf[..n] == H2_PREFACE[..n] {
        return Next::NotHttp1("HTTP/2");
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Next::Incomplete(None),
        Err(httparse::Error::TooManyHeaders) => return Next::NotHttp1("too many header fields"),
        Err(_) => return Next::NotHttp1("not an HTTP/1 request"),
    };
    let mut length: Option<usize> = None;
    let mut chunked = false;
    let mut info = HeadInfo {
        method: req.method.unwrap_or_default().to_owned(),
        target: req.path.unwrap_or_default().to_owned(),
        ..HeadInfo::default()
    };
    for h in req.headers.iter() {
        let value = String::from_utf8_lossy(h.value);
        if h.name.eq_ignore_ascii_case("content-length") {
            let Ok(n) = value.trim().parse::<usize>() else {
                return Next::NotHttp1("invalid Content-Length");
            };
            if length.is_some_and(|l| l != n) {
                return Next::NotHttp1("conflicting Content-Length");
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let last = value.rsplit(',').next().unwrap_or("").trim();
            if !last.eq_ignore_ascii_case("chunked") {
                return Next::NotHttp1("a request body without chunked framing");
            }
            chunked = true;
        } else if h.name.eq_ignore_ascii_case("host") {
            info.host = Some(value.trim().to_owned());
        } else if h.name.eq_ignore_ascii_case("user-agent") {
            info.user_agent = Some(value.trim().to_owned());
        }
    }
    let body = &buf[head_len..];
    if chunked {
        return match chunked_len(body) {
            Ok(Some(n)) => Next::Complete(head_len + n),
            Ok(None) => Next::Incomplete(Some(info)),
            Err(e) => Next::NotHttp1(e),
        };
    }
    match length {
        Some(n) if body.len() >= n => Next::Complete(head_len + n),
        Some(_) => Next::Incomplete(Some(info)),
        // RFC 9112 §6.3: a request with neither has no body.
        None => Next::Complete(head_len),
    }
}

/// Bytes of a whole chunked body at the start of `b`, trailers included; None
/// while incomplete.
fn chunked_len(b: &[u8]) -> Result<Option<usize>, &'static str> {
    let mut pos = 0usize;
    loop {
        let rest = &b[pos..];
        let (used, size) = match httparse::parse_chunk_size(rest) {
            Ok(httparse::Status::Complete(x)) => x,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err("invalid chunk size"),
        };
        pos += used;
        if size == 0 {
            // Trailer fields, then an empty line.
            let rest = &b[pos..];
            if rest.starts_with(b"\r\n") {
                return Ok(Some(pos + 2));
            }
            return Ok(memchr::memmem::find(rest, b"\r\n\r\n").map(|i| pos + i + 4));
        }
        let size = usize::try_from(size).map_err(|_| "chunk too large")?;
        let end = pos.checked_add(size).and_then(|e| e.checked_add(2));
        match end {
            Some(e) if e <= b.len() => {
                if &b[e - 2..e] != b"\r\n" {
                    return Err("chunk without its line end");
                }
                pos = e;
            }
            Some(_) => return Ok(None),
            None => return Err("chunk too large"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "POST /v1/messages HTTP/1.1\r\nHost: api.anthropic.com\r\nUser-Agent: Anthropic/Python 2.14.0\r\n";

    #[test]
    fn content_length_requests_complete_at_their_last_byte() {
        let req = format!("{HEAD}Content-Length: 5\r\n\r\nhello");
        let b = req.as_bytes();
        assert_eq!(next_request(b), Next::Complete(b.len()));
        let Next::Incomplete(Some(h)) = next_request(&b[..b.len() - 1]) else {
            panic!("incomplete body");
        };
        assert_eq!(h.host.as_deref(), Some("api.anthropic.com"));
        assert_eq!(h.user_agent.as_deref(), Some("Anthropic/Python 2.14.0"));
        assert_eq!(
            (h.method.as_str(), h.target.as_str()),
            ("POST", "/v1/messages")
        );
        assert_eq!(next_request(&b[..20]), Next::Incomplete(None));
        // A pipelined second request: the first ends where it ends.
        let two = format!("{req}GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(next_request(two.as_bytes()), Next::Complete(b.len()));
    }

    #[test]
    fn chunked_requests() {
        let req = format!(
            "{HEAD}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;x=y\r\n, w\r\n0\r\n\r\n"
        );
        let b = req.as_bytes();
        assert_eq!(next_request(b), Next::Complete(b.len()));
        // Every cut inside the 27-byte body.
        for cut in 1..=27 {
            assert!(
                matches!(next_request(&b[..b.len() - cut]), Next::Incomplete(Some(_))),
                "cut {cut}"
            );
        }
        let trailers = format!("{HEAD}Transfer-Encoding: chunked\r\n\r\n0\r\nX-T: 1\r\n\r\n");
        assert_eq!(
            next_request(trailers.as_bytes()),
            Next::Complete(trailers.len())
        );
        let bad = format!("{HEAD}Transfer-Encoding: chunked\r\n\r\nzz\r\n");
        assert!(matches!(next_request(bad.as_bytes()), Next::NotHttp1(_)));
        let no_crlf = format!("{HEAD}Transfer-Encoding: chunked\r\n\r\n2\r\nabXY");
        assert!(matches!(
            next_request(no_crlf.as_bytes()),
            Next::NotHttp1(_)
        ));
    }

    #[test]
    fn other_protocols_and_broken_heads() {
        assert_eq!(
            next_request(b"PRI * HTTP/2.0\r\n"),
            Next::NotHttp1("HTTP/2")
        );
        assert_eq!(next_request(b"PRI"), Next::NotHttp1("HTTP/2"));
        assert!(matches!(
            next_request(b"\x16\x03\x01\x00"),
            Next::NotHttp1(_)
        ));
        let conflict = format!("{HEAD}Content-Length: 1\r\nContent-Length: 2\r\n\r\nab");
        assert!(matches!(
            next_request(conflict.as_bytes()),
            Next::NotHttp1(_)
        ));
        let gzip_te = format!("{HEAD}Transfer-Encoding: gzip\r\n\r\n");
        assert!(matches!(
            next_request(gzip_te.as_bytes()),
            Next::NotHttp1(_)
        ));
        // No body framing: the head is the request.
        let get = b"GET /v1/models HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(next_request(get), Next::Complete(get.len()));
        assert_eq!(next_request(b""), Next::Incomplete(None));
    }

    #[test]
    fn hostile_bytes_never_panic() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..400usize {
            let mut b = format!("{HEAD}Transfer-Encoding: chunked\r\n\r\n").into_bytes();
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b.push(b"0123456789abcdef\r\n;"[(x % 19) as usize]);
            }
            let _ = next_request(&b);
            let _ = next_request(&b[(x as usize) % b.len()..]);
        }
        // A chunk size near usize::MAX.
        let huge = format!("{HEAD}Transfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n");
        let _ = next_request(huge.as_bytes());
    }
}
