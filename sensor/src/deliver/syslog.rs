//! The syslog sink: RFC 5424 messages over TCP (RFC 6587) or TLS (RFC 5425),
//! octet-counting framing (`LEN SP MSG`, RFC 6587 §3.4.1), so that a message may
//! hold any bytes, newlines included.
//!
//! Each record becomes
//!
//! ```text
//! <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [telltale@32473 id="…" type="…"] {json}
//! ```
//!
//! with PRI = facility × 8 + severity (Critical → crit, High → err, Medium →
//! warning, Low → notice, Info → info), TIMESTAMP the record's time (fraction cut
//! to the 6 digits RFC 5424 allows), HOSTNAME the record's host, PROCID the
//! sensor's pid and MSGID the event type. MSG is the JSON body without a UTF-8
//! BOM: RFC 5424 allows that (MSG-ANY), and JSON parsers downstream of the
//! collector choke on a leading BOM more often than collectors need one.
//!
//! One connection stays open across batches; any error drops it and the next
//! [`deliver`](Transport::deliver) reconnects.
//!
//! # Delivery guarantee
//!
//! Syslog over TCP has no application acknowledgement. A batch counts as
//! delivered once its bytes are written and flushed to the kernel and the
//! connection still looks open (no FIN or RST seen). Bytes the kernel accepted
//! but the server never processed — in flight, in the server's socket buffer or
//! in its memory queue when it dies — are lost without an error: for those,
//! syslog delivery is at most once. That is why every message carries the event
//! id (in the structured data), and why the spool only protects against outages
//! the transport can see (refused connections, write errors, a closed peer). A
//! batch that fails part-way is retried whole, so the server may also see some
//! records twice.

use std::{
    io::{self, Read as _, Write as _},
    net::{SocketAddr, TcpStream, ToSocketAddrs as _},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject as _};
use serde::{Deserialize, Serialize};

use super::{DeliveryError, Level, Record, Transport};

/// The syslog sink's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogCfg {
    /// The collector, `host:port` (required; `[v6addr]:port` for IPv6). Resolved
    /// at each connection.
    pub address: String,
    /// TLS (RFC 5425) instead of plain TCP (default false).
    #[serde(default)]
    pub tls: bool,
    /// PEM certificates to trust for TLS (default: the system's CA bundle,
    /// `/etc/ssl/certs/ca-certificates.crt` or its equivalent on other
    /// distributions).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The name the server's certificate must carry (default: the host part of
    /// `address`, a DNS name or an IP address).
    #[serde(default)]
    pub server_name: Option<String>,
    /// The syslog facility (default `local0`).
    #[serde(default)]
    pub facility: Facility,
    /// APP-NAME (default `telltale`; at most 48 printable ASCII characters).
    #[serde(default = "default_app_name")]
    pub app_name: String,
    /// Connection (and TLS handshake) timeout in milliseconds (default 5000).
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// A write blocked longer than this many milliseconds fails the batch and
    /// drops the connection (default 10000).
    #[serde(default = "default_write_timeout_ms")]
    pub write_timeout_ms: u64,
}

fn default_app_name() -> String {
    "telltale".into()
}

fn default_connect_timeout_ms() -> u64 {
    5_000
}

fn default_write_timeout_ms() -> u64 {
    10_000
}

/// Syslog facilities (RFC 5424 §6.2.1, with their customary names).
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Facility {
    Kern = 0,
    User = 1,
    Mail = 2,
    Daemon = 3,
    Auth = 4,
    Syslog = 5,
    Lpr = 6,
    News = 7,
    Uucp = 8,
    Cron = 9,
    Authpriv = 10,
    Ftp = 11,
    Ntp = 12,
    /// Log audit.
    Audit = 13,
    /// Log alert.
    Alert = 14,
    /// Clock daemon (the second one).
    Clock = 15,
    #[default]
    Local0 = 16,
    Local1 = 17,
    Local2 = 18,
    Local3 = 19,
    Local4 = 20,
    Local5 = 21,
    Local6 = 22,
    Local7 = 23,
}

/// The RFC 5424 severity of a level.
fn severity(level: Level) -> u8 {
    match level {
        Level::Critical => 2,
        Level::High => 3,
        Level::Medium => 4,
        Level::Low => 5,
        Level::Info => 6,
    }
}

/// The structured-data id: `telltale` under the private enterprise number
/// RFC 5424 uses in its examples (32473, reserved for documentation, RFC 5612).
const SD_ID: &str = "telltale@32473";

/// Where distributions keep the system's CA bundle.
const SYSTEM_CA_FILES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// An open connection.
enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => &s.sock,
        }
    }

    fn write_all_flush(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Conn::Plain(s) => {
                s.write_all(buf)?;
                s.flush()
            }
            Conn::Tls(s) => {
                s.write_all(buf)?;
                // Pushes the TLS records rustls still buffers to the socket.
                s.flush()
            }
        }
    }

    /// Whether the server closed or reset the connection, without blocking.
    /// Servers send nothing on a syslog connection, so anything but "no data
    /// yet" is read and looked at: EOF (or TLS close_notify) means closed.
    fn check_open(&mut self) -> io::Result<()> {
        self.tcp().set_nonblocking(true)?;
        let res = self.poll_closed();
        let restore = self.tcp().set_nonblocking(false);
        res.and(restore)
    }

    fn poll_closed(&mut self) -> io::Result<()> {
        let closed = || {
            io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "server closed the connection",
            )
        };
        let mut scratch = [0u8; 4096];
        loop {
            match self {
                Conn::Plain(s) => match s.read(&mut scratch) {
                    Ok(0) => return Err(closed()),
                    // Unexpected data from the server: discard it.
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                },
                Conn::Tls(s) => {
                    let StreamOwned { conn, sock } = &mut **s;
                    match conn.read_tls(sock) {
                        Ok(0) => return Err(closed()),
                        Ok(_) => {
                            // Session tickets and alerts arrive here.
                            conn.process_new_packets().map_err(io::Error::other)?;
                            loop {
                                match conn.reader().read(&mut scratch) {
                                    Ok(0) => return Err(closed()),
                                    Ok(_) => continue,
                                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                                    Err(e) => return Err(e),
                                }
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }
}

/// Sends records as RFC 5424 syslog messages; see the [module docs](self).
pub struct SyslogTransport {
    cfg: SyslogCfg,
    /// Present when `cfg.tls`.
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    conn: Option<Conn>,
    /// The PROCID field: this sensor's pid.
    procid: String,
}

/// Validates `cfg` and prepares TLS (reads the CA file); connects at the first
/// [`deliver`](Transport::deliver).
pub fn open(cfg: &SyslogCfg) -> Result<SyslogTransport, String> {
    let err = |m: String| format!("syslog {}: {m}", cfg.address);
    let (host, _port) = split_host_port(&cfg.address).map_err(err)?;
    if cfg.app_name.is_empty() || cfg.app_name.len() > 48 || !printable(&cfg.app_name) {
        return Err(err(format!(
            "app_name {:?} must be 1 to 48 printable ASCII characters",
            cfg.app_name
        )));
    }
    if cfg.connect_timeout_ms == 0 || cfg.write_timeout_ms == 0 {
        return Err(err(
            "connect_timeout_ms and write_timeout_ms must be above 0".into(),
        ));
    }
    let tls = if cfg.tls {
        let name = cfg.server_name.as_deref().unwrap_or(host);
        let server_name = ServerName::try_from(name.to_owned())
            .map_err(|e| err(format!("server_name {name:?}: {e}")))?;
        Some((
            tls_config(cfg.ca_file.as_deref()).map_err(err)?,
            server_name,
        ))
    } else {
        if cfg.ca_file.is_some() || cfg.server_name.is_some() {
            return Err(err("ca_file and server_name need tls = true".into()));
        }
        None
    };
    Ok(SyslogTransport {
        cfg: cfg.clone(),
        tls,
        conn: None,
        procid: std::process::id().to_string(),
    })
}

/// `host` and `port` of `host:port` or `[v6]:port`.
fn split_host_port(address: &str) -> Result<(&str, u16), String> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| "address must be host:port".to_string())?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err("address has no host".into());
    }
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("bad port {port:?}"))?;
    Ok((host, port))
}

/// A rustls client configuration trusting `ca_file`, or the system's bundle.
fn tls_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let path = match ca_file {
        Some(p) => p,
        None => SYSTEM_CA_FILES
            .iter()
            .map(Path::new)
            .find(|p| p.is_file())
            .ok_or_else(|| {
                format!(
                    "no system CA bundle (looked for {}); set ca_file",
                    SYSTEM_CA_FILES.join(", ")
                )
            })?,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("reading CA file {}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("parsing CA file {}: {e}", path.display()))?;
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!(
            "CA file {} holds no usable certificate",
            path.display()
        ));
    }
    // The ring provider explicitly: other crates in the process may enable
    // another one, and then rustls has no unambiguous default.
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(config))
}

impl SyslogTransport {
    fn connect(&self) -> io::Result<Conn> {
        let connect_timeout = Duration::from_millis(self.cfg.connect_timeout_ms);
        let addrs: Vec<SocketAddr> = self.cfg.address.to_socket_addrs()?.collect();
        let mut last = io::Error::new(io::ErrorKind::NotFound, "address resolves to nothing");
        let mut sock = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, connect_timeout) {
                Ok(s) => {
                    sock = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let sock = sock.ok_or(last)?;
        sock.set_write_timeout(Some(Duration::from_millis(self.cfg.write_timeout_ms)))?;
        let Some((config, name)) = &self.tls else {
            return Ok(Conn::Plain(sock));
        };
        // The handshake reads: bound it by the connect timeout.
        sock.set_read_timeout(Some(connect_timeout))?;
        let mut conn =
            ClientConnection::new(config.clone(), name.clone()).map_err(io::Error::other)?;
        let mut sock = sock;
        while conn.is_handshaking() {
            conn.complete_io(&mut sock)
                .map_err(|e| io::Error::new(e.kind(), format!("TLS handshake: {e}")))?;
        }
        sock.set_read_timeout(None)?;
        Ok(Conn::Tls(Box::new(StreamOwned::new(conn, sock))))
    }

    fn deliver_io(&mut self, batch: &[Record]) -> io::Result<()> {
        // A connection the server closed while we were idle: find out before
        // writing into it, and reconnect right away.
        if let Some(c) = &mut self.conn
            && c.check_open().is_err()
        {
            self.conn = None;
        }
        let conn = match &mut self.conn {
            Some(c) => c,
            None => self
                .conn
                .insert(self.connect().map_err(|e| ctx(e, "connect"))?),
        };
        let mut buf = Vec::with_capacity(batch.iter().map(|r| r.body.len() + 160).sum());
        for r in batch {
            frame(
                &mut buf,
                r,
                self.cfg.facility,
                &self.cfg.app_name,
                &self.procid,
            );
        }
        conn.write_all_flush(&buf).map_err(|e| ctx(e, "write"))?;
        // The server may have died while we wrote: the data then sits unread
        // (or is refused with a reset). Whatever it saw is up to it; this batch
        // at least is retried.
        conn.check_open()
    }
}

impl Transport for SyslogTransport {
    fn describe(&self) -> String {
        let proto = if self.cfg.tls { "tls" } else { "tcp" };
        format!("syslog {proto} {}", self.cfg.address)
    }

    fn deliver(&mut self, batch: &[Record]) -> Result<(), DeliveryError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.deliver_io(batch).map_err(|e| {
            self.conn = None;
            DeliveryError::retry(format!("{}: {e}", self.describe()))
        })
    }
}

fn ctx(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Printable US-ASCII (RFC 5424 PRINTUSASCII, 33–126).
fn printable(s: &str) -> bool {
    s.bytes().all(|b| (33..=126).contains(&b))
}

/// `s` when it is a valid header field of at most `max` printable ASCII
/// characters, else the NILVALUE `-`.
fn field(s: &str, max: usize) -> &str {
    if !s.is_empty() && s.len() <= max && printable(s) {
        s
    } else {
        "-"
    }
}

/// The record's RFC 3339 time as an RFC 5424 TIMESTAMP: at most 6 fraction
/// digits (the sensor keeps nanoseconds), `-` when it is not RFC 3339.
fn timestamp(time: &str) -> std::borrow::Cow<'_, str> {
    let b = time.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let date_time_ok = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !date_time_ok {
        return "-".into();
    }
    let (frac, zone) = match b[19] {
        b'.' => {
            let n = b[20..].iter().take_while(|d| d.is_ascii_digit()).count();
            (&time[20..20 + n], &time[20 + n..])
        }
        _ => ("", &time[19..]),
    };
    let zb = zone.as_bytes();
    let zone_ok = zone == "Z"
        || (zb.len() == 6
            && (zb[0] == b'+' || zb[0] == b'-')
            && zb[1..3].iter().all(u8::is_ascii_digit)
            && zb[3] == b':'
            && zb[4..6].iter().all(u8::is_ascii_digit));
    if !zone_ok || (b[19] == b'.' && frac.is_empty()) {
        return "-".into();
    }
    if frac.len() <= 6 {
        return time.into();
    }
    format!("{}.{}{zone}", &time[..19], &frac[..6]).into()
}

/// Appends `value` escaped as an SD-PARAM value (RFC 5424 §6.3.3).
fn escape_param(out: &mut Vec<u8>, value: &str) {
    for b in value.bytes() {
        if matches!(b, b'"' | b'\\' | b']') {
            out.push(b'\\');
        }
        out.push(b);
    }
}

/// Appends one octet-counted RFC 5424 message for `r` to `out`.
fn frame(out: &mut Vec<u8>, r: &Record, facility: Facility, app_name: &str, procid: &str) {
    let mut msg = Vec::with_capacity(r.body.len() + 160);
    let pri = facility as u8 * 8 + severity(r.level);
    // Writing into a Vec cannot fail.
    let _ = write!(
        msg,
        "<{pri}>1 {} {} {app_name} {procid} {} [{SD_ID} id=\"",
        timestamp(&r.time),
        field(&r.host, 255),
        field(&r.event_type, 32),
    );
    escape_param(&mut msg, &r.id);
    msg.extend_from_slice(b"\" type=\"");
    escape_param(&mut msg, &r.event_type);
    msg.extend_from_slice(b"\"] ");
    msg.extend_from_slice(&r.body);
    let _ = write!(out, "{} ", msg.len());
    out.extend_from_slice(&msg);
}

#[cfg(test)]
mod tests {
    use std::{io::BufRead as _, net::TcpListener, sync::mpsc, thread};

    use super::*;

    fn rec(id: &str, event_type: &str, level: Level) -> Record {
        Record {
            id: id.into(),
            event_type: event_type.into(),
            time: "2025-03-04T05:06:07.123456789Z".into(),
            level,
            host: "web-1".into(),
            body: br#"{"a":"x\ny"}"#.to_vec(),
        }
    }

    fn cfg(address: String) -> SyslogCfg {
        toml::from_str(&format!("address = \"{address}\"")).unwrap()
    }

    /// Reads octet-counted frames from `r` until EOF.
    fn read_frames(r: impl io::Read) -> Vec<String> {
        let mut r = io::BufReader::new(r);
        let mut out = Vec::new();
        loop {
            let mut len = Vec::new();
            if r.read_until(b' ', &mut len).unwrap() == 0 {
                return out;
            }
            let n: usize = std::str::from_utf8(&len[..len.len() - 1])
                .unwrap()
                .parse()
                .unwrap();
            let mut msg = vec![0; n];
            r.read_exact(&mut msg).unwrap();
            out.push(String::from_utf8(msg).unwrap());
        }
    }

    #[test]
    fn defaults() {
        let c = cfg("h:514".into());
        assert!(!c.tls);
        assert_eq!(c.facility, Facility::Local0);
        assert_eq!(c.app_name, "telltale");
        assert_eq!((c.connect_timeout_ms, c.write_timeout_ms), (5000, 10000));
        assert_eq!((c.ca_file, c.server_name), (None, None));
        let c: SyslogCfg = toml::from_str("address = \"h:1\"\nfacility = \"authpriv\"").unwrap();
        assert_eq!(c.facility as u8, 10);
        assert!(toml::from_str::<SyslogCfg>("address = \"h:1\"\nfacility = \"local8\"").is_err());
        assert!(toml::from_str::<SyslogCfg>("address = \"h:1\"\nport = 1").is_err());
    }

    #[test]
    fn open_validates() {
        for bad in ["nohost", ":514", "h:0", "h:x", "h:70000"] {
            let e = open(&cfg(bad.into())).err().unwrap();
            assert!(e.contains(bad), "{e}");
        }
        let mut c = cfg("h:514".into());
        c.app_name = "has space".into();
        assert!(open(&c).err().unwrap().contains("app_name"));
        let mut c = cfg("h:514".into());
        c.ca_file = Some("/x".into());
        assert!(open(&c).is_err(), "ca_file without tls");
        let mut c = cfg("h:6514".into());
        c.tls = true;
        c.ca_file = Some("/nonexistent/ca.pem".into());
        let e = open(&c).err().unwrap();
        assert!(
            e.contains("/nonexistent/ca.pem") && e.contains("h:6514"),
            "{e}"
        );
        assert_eq!(split_host_port("[::1]:514").unwrap(), ("::1", 514));
        let t = open(&cfg("[::1]:514".into())).unwrap();
        assert_eq!(t.describe(), "syslog tcp [::1]:514");
    }

    #[test]
    fn pri_values() {
        let facility = |f: Facility, l: Level| {
            let mut out = Vec::new();
            frame(&mut out, &rec("i", "t", l), f, "a", "1");
            let s = String::from_utf8(out).unwrap();
            let pri = s.split_once('<').unwrap().1.split_once('>').unwrap().0;
            pri.parse::<u8>().unwrap()
        };
        assert_eq!(facility(Facility::Local0, Level::Critical), 130);
        assert_eq!(facility(Facility::Local0, Level::High), 131);
        assert_eq!(facility(Facility::Local0, Level::Medium), 132);
        assert_eq!(facility(Facility::Local0, Level::Low), 133);
        assert_eq!(facility(Facility::Local0, Level::Info), 134);
        assert_eq!(facility(Facility::Kern, Level::Critical), 2);
        assert_eq!(facility(Facility::Auth, Level::Info), 38);
        assert_eq!(facility(Facility::Local7, Level::Info), 190);
    }

    #[test]
    fn escaping_and_header_fields() {
        let mut out = Vec::new();
        escape_param(&mut out, r#"a"b\c]d[e"#);
        assert_eq!(out, br#"a\"b\\c\]d[e"#);

        assert_eq!(field("web-1", 255), "web-1");
        assert_eq!(field("", 255), "-");
        assert_eq!(field("has space", 255), "-");
        assert_eq!(field("héte", 255), "-");
        assert_eq!(field(&"h".repeat(256), 255), "-");
        assert_eq!(field("sensor.status", 32), "sensor.status");
        assert_eq!(field(&"t".repeat(33), 32), "-");

        assert_eq!(timestamp("2025-03-04T05:06:07Z"), "2025-03-04T05:06:07Z");
        assert_eq!(
            timestamp("2025-03-04T05:06:07.123456789Z"),
            "2025-03-04T05:06:07.123456Z"
        );
        assert_eq!(
            timestamp("2025-03-04T05:06:07.12+01:00"),
            "2025-03-04T05:06:07.12+01:00"
        );
        for bad in [
            "",
            "yesterday",
            "2025-03-04 05:06:07Z",
            "2025-03-04T05:06:07.Z",
            "2025-03-04T05:06:07",
        ] {
            assert_eq!(timestamp(bad), "-", "{bad}");
        }
    }

    #[test]
    fn framing_and_header_on_the_wire() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel();
        let server = thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            tx.send(read_frames(s)).unwrap();
        });
        let mut t = open(&cfg(addr.to_string())).unwrap();
        assert_eq!(t.describe(), format!("syslog tcp {addr}"));
        let mut odd = rec(r#"id"with]\"#, "sensor.status", Level::Info);
        odd.host = "bad host".into();
        t.deliver(&[rec("0192-a", "alert", Level::High), odd])
            .unwrap();
        t.deliver(&[rec("0192-b", "http", Level::Medium)]).unwrap();
        drop(t);
        let frames = rx.recv().unwrap();
        server.join().unwrap();
        let pid = std::process::id();
        assert_eq!(
            frames,
            [
                format!(
                    "<131>1 2025-03-04T05:06:07.123456Z web-1 telltale {pid} alert \
                     [telltale@32473 id=\"0192-a\" type=\"alert\"] {{\"a\":\"x\\ny\"}}"
                ),
                format!(
                    "<134>1 2025-03-04T05:06:07.123456Z - telltale {pid} sensor.status \
                     [telltale@32473 id=\"id\\\"with\\]\\\\\" type=\"sensor.status\"] {{\"a\":\"x\\ny\"}}"
                ),
                format!(
                    "<132>1 2025-03-04T05:06:07.123456Z web-1 telltale {pid} http \
                     [telltale@32473 id=\"0192-b\" type=\"http\"] {{\"a\":\"x\\ny\"}}"
                ),
            ],
            "both batches on one connection"
        );
    }

    #[test]
    fn closed_peer_fails_the_batch_and_reconnects() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut t = open(&cfg(addr.to_string())).unwrap();
        // First connection: the server accepts, then closes without reading.
        let server = thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            drop(s);
            let (s, _) = listener.accept().unwrap();
            read_frames(s)
        });
        t.deliver(&[rec("a", "alert", Level::Low)]).ok();
        // Give the FIN time to arrive; the next batch sees the closed
        // connection and reconnects before writing.
        thread::sleep(Duration::from_millis(100));
        t.deliver(&[rec("b", "alert", Level::Low)]).unwrap();
        drop(t);
        let frames = server.join().unwrap();
        assert_eq!(frames.len(), 1);
        assert!(frames[0].contains("id=\"b\""));
    }

    #[test]
    fn refused_connection_is_retryable() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut t = open(&cfg(format!("127.0.0.1:{port}"))).unwrap();
        let e = t.deliver(&[rec("a", "alert", Level::Low)]).unwrap_err();
        assert!(e.retryable);
        assert!(
            e.message.contains(&format!("127.0.0.1:{port}")),
            "{}",
            e.message
        );
    }
}
