//! Finding the TLS functions inside an ELF file.

use std::{collections::HashMap, fs::File, path::Path};

use telltale::binary::{
    golang,
    stripped::{self, Cache},
};

use object::{Object, ObjectSegment, ObjectSymbol, SymbolKind};
use sensor_common::TlsFunction;
use serde::Serialize;

use super::sites::{self, Plan};

/// Where one TLS function lives in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSite {
    /// Which function.
    pub function: TlsFunction,
    /// Its virtual address in the ELF file.
    pub vaddr: u64,
    /// Its offset in the file: what a uprobe is attached at.
    pub file_offset: u64,
    /// Size of the function's code in bytes, as the symbol table says.
    pub size: u64,
    /// Where its probes go.
    pub plan: Plan,
}

/// The TLS library family a target's functions belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Library {
    /// OpenSSL (and API-compatible forks such as LibreSSL).
    Openssl,
    /// BoringSSL (Chromium, Bun, many Go-free native CLIs).
    Boringssl,
    /// GnuTLS.
    Gnutls,
    /// NSS, used through NSPR's I/O functions.
    Nss,
    /// Go's crypto/tls.
    Go,
}

impl Library {
    /// The name used in events and `telltale targets`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Openssl => "openssl",
            Self::Boringssl => "boringssl",
            Self::Gnutls => "gnutls",
            Self::Nss => "nss",
            Self::Go => "go",
        }
    }
}

/// A probe that is not on a read/write function: connection ends, server
/// names, NSS's layer identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HookKind {
    /// Entry of a destructor taking the connection as its first argument
    /// (`SSL_free`, `gnutls_deinit`).
    ConnEnd,
    /// Entry of `SSL_ctrl` (OpenSSL's `SSL_set_tlsext_host_name` macro).
    SslCtrlSni,
    /// Entry of a function taking (connection, NUL-terminated name): BoringSSL's
    /// `SSL_set_tlsext_host_name`, NSS's `SSL_SetURL`.
    SniArg1,
    /// Entry of `gnutls_server_name_set`.
    GnutlsSni,
    /// Return of NSS's `SSL_ImportFD`: teaches the kernel the SSL layer's
    /// identity, without which NSPR calls are not captured.
    NssImport,
    /// Entry of `PR_Close`: the end of an NSS connection.
    NsprClose,
}

impl HookKind {
    /// What the hook is for, in one line.
    pub fn describe(self) -> &'static str {
        match self {
            Self::ConnEnd => "entry: marks the end of a connection",
            Self::SslCtrlSni | Self::SniArg1 | Self::GnutlsSni => {
                "entry: the server name (SNI) a client sets"
            }
            Self::NssImport => "uretprobe: learns the SSL layer's identity (NSPR filter)",
            Self::NsprClose => "entry: marks the end of an SSL-layer descriptor",
        }
    }
}

/// One auxiliary probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hook {
    /// What it does.
    pub kind: HookKind,
    /// The function's symbol.
    pub symbol: &'static str,
    /// Its file offset.
    #[serde(serialize_with = "hex")]
    pub file_offset: u64,
}

fn hex<S: serde::Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{v:#x}"))
}

/// What a file offers to hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSymbols {
    /// The library family.
    pub library: Library,
    /// The read/write functions; empty for a file that only carries hooks
    /// (NSS's libssl3, whose I/O goes through libnspr4).
    pub io: Vec<FunctionSite>,
    /// The auxiliary probes.
    pub hooks: Vec<Hook>,
    /// How the functions were found, in one line.
    pub found_by: String,
}

/// Why a file could not be inspected.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    /// Opening or mapping the file failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not an ELF object `object` can parse.
    #[error("{path} is not a readable ELF file: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's error.
        #[source]
        source: object::Error,
    },
}

/// The TLS functions an ELF file defines (in its dynamic or static symbol table),
/// with their file offsets. `None` when the file carries no TLS API we hook.
///
/// Both directions must be present: a file defining only a write function is
/// not a TLS library we understand, and half a connection would mislead.
#[cfg(test)]
pub fn tls_functions(path: &Path) -> Result<Option<TlsSymbols>, ElfError> {
    let io = |source| ElfError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    // SAFETY: the mapping is read-only and private; a concurrent truncation of the
    // file could fault, which libraries on a running system do not undergo.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    tls_functions_in(&map).map_err(|source| ElfError::Parse {
        path: path.display().to_string(),
        source,
    })
}

/// What inspecting one file found: its hooks, or, for a file that carries a
/// TLS stack we cannot hook, why (a coverage note).
#[derive(Debug, Default)]
pub struct Inspection {
    /// The functions and hooks, when the file is a target.
    pub symbols: Option<TlsSymbols>,
    /// Why a TLS stack in the file is not hooked.
    pub note: Option<String>,
}

/// Inspects a file for every TLS stack Telltale hooks: exported or static
/// symbols of OpenSSL/BoringSSL, GnuTLS and NSS, then Go's crypto/tls through
/// its `.gopclntab`, then OpenSSL/BoringSSL linked in and stripped (machine-code
/// analysis, remembered per build-id in `cache` when one is given).
pub fn inspect(path: &Path, cache: Option<&mut Cache>) -> Result<Inspection, ElfError> {
    let io = |source| ElfError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    // SAFETY: as in `tls_functions`.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    inspect_bytes(&map, cache).map_err(|source| ElfError::Parse {
        path: path.display().to_string(),
        source,
    })
}

/// [`inspect`] on a file's bytes.
pub fn inspect_bytes(data: &[u8], cache: Option<&mut Cache>) -> Result<Inspection, object::Error> {
    if let Some(symbols) = tls_functions_in(data)? {
        return Ok(Inspection {
            symbols: Some(symbols),
            note: None,
        });
    }
    match golang::go_tls(data) {
        Ok(Some(go)) => {
            return Ok(Inspection {
                symbols: Some(go_symbols(&go)),
                note: None,
            });
        }
        Ok(None) => {}
        Err(e) => {
            return Ok(Inspection {
                symbols: None,
                note: Some(format!("Go crypto/tls not hookable: {e}")),
            });
        }
    }
    let found = match cache {
        Some(cache) => stripped::resolve(data, cache),
        None => stripped::discover(data),
    };
    match found {
        Ok(Some(found)) => Ok(Inspection {
            symbols: stripped_symbols(data, &found),
            note: None,
        }),
        Ok(None) => Ok(Inspection::default()),
        Err(e) => Ok(Inspection {
            symbols: None,
            note: Some(format!("statically linked TLS library not located: {e}")),
        }),
    }
}

/// What the machine-code analysis found, as sites planned like symbols'.
fn stripped_symbols(data: &[u8], found: &stripped::Found) -> Option<TlsSymbols> {
    let obj = object::File::parse(data).ok()?;
    let io: Vec<(TlsFunction, Sym)> = [
        (TlsFunction::SslWrite, Some(found.ssl_write)),
        (TlsFunction::SslWriteEx, found.ssl_write_ex),
        (TlsFunction::SslRead, Some(found.ssl_read)),
        (TlsFunction::SslReadEx, found.ssl_read_ex),
    ]
    .into_iter()
    // Sizes are unknown: the site analysis reads a bounded prefix.
    .filter_map(|(f, a)| Some((f, (a?, 0))))
    .collect();
    let mut hooks = Vec::new();
    let mut hook = |kind, symbol, vaddr: Option<u64>| {
        if let Some(file_offset) = vaddr.and_then(|v| file_offset(&obj, v)) {
            hooks.push(Hook {
                kind,
                symbol,
                file_offset,
            });
        }
    };
    hook(
        HookKind::ConnEnd,
        sensor_common::SSL_FREE_SYMBOL,
        found.ssl_free,
    );
    match found.sni {
        Some(stripped::Sni::SslCtrl(a)) => {
            hook(
                HookKind::SslCtrlSni,
                sensor_common::SSL_CTRL_SYMBOL,
                Some(a),
            );
        }
        Some(stripped::Sni::SetHostName(a)) => {
            hook(HookKind::SniArg1, BORINGSSL_SNI_SYMBOL, Some(a));
        }
        None => {}
    }
    Some(TlsSymbols {
        library: match found.library {
            stripped::Library::OpenSsl => Library::Openssl,
            stripped::Library::BoringSsl => Library::Boringssl,
        },
        io: openssl_sites(&obj, data, &io),
        hooks,
        found_by: found.method.clone(),
    })
}

/// Go's two methods, probed at an entry site and at every `RET`.
fn go_symbols(go: &golang::GoTls) -> TlsSymbols {
    let site = |function, f: &golang::GoFunction| FunctionSite {
        function,
        vaddr: f.vaddr,
        file_offset: f.file_offset,
        size: f.size,
        plan: Plan::GoReturnSites {
            entry: f.entry_site,
            entry_insn: f.entry_insn.clone(),
            rets: f.ret_sites.clone(),
        },
    };
    TlsSymbols {
        library: Library::Go,
        io: vec![
            site(TlsFunction::GoWrite, &go.write),
            site(TlsFunction::GoRead, &go.read),
        ],
        hooks: Vec::new(),
        found_by: format!(
            ".gopclntab ({}{})",
            go.go_version.as_deref().unwrap_or("Go version unknown"),
            if go.stripped { ", stripped" } else { "" }
        ),
    }
}

/// Names looked up in symbol tables.
const WANTED: &[&str] = &[
    "SSL_write",
    "SSL_write_ex",
    "SSL_read",
    "SSL_read_ex",
    sensor_common::SSL_FREE_SYMBOL,
    sensor_common::SSL_CTRL_SYMBOL,
    BORINGSSL_SNI_SYMBOL,
    "gnutls_record_send",
    "gnutls_record_recv",
    sensor_common::GNUTLS_DEINIT_SYMBOL,
    sensor_common::GNUTLS_SNI_SYMBOL,
    "PR_Write",
    "PR_Read",
    "PR_Send",
    "PR_Recv",
    sensor_common::NSPR_CLOSE_SYMBOL,
    sensor_common::NSS_IMPORT_SYMBOL,
    sensor_common::NSS_SET_URL_SYMBOL,
];

/// A real function in BoringSSL (a macro over `SSL_ctrl` in OpenSSL): its
/// presence tells the two apart.
const BORINGSSL_SNI_SYMBOL: &str = "SSL_set_tlsext_host_name";

/// A defined function symbol: address and size.
type Sym = (u64, u64);

/// [`tls_functions`] on the bytes of an ELF file.
pub fn tls_functions_in(data: &[u8]) -> Result<Option<TlsSymbols>, object::Error> {
    let obj = object::File::parse(data)?;
    let mut syms: HashMap<&'static str, Sym> = HashMap::new();
    for sym in obj.dynamic_symbols().chain(obj.symbols()) {
        if sym.kind() != SymbolKind::Text || sym.is_undefined() || sym.address() == 0 {
            continue;
        }
        let Ok(name) = sym.name() else { continue };
        if let Some(&wanted) = WANTED.iter().find(|w| **w == name) {
            syms.entry(wanted).or_insert((sym.address(), sym.size()));
        }
    }
    let has = |n: &str| syms.contains_key(n);
    if has("SSL_write") && has("SSL_read") {
        let library = if has(BORINGSSL_SNI_SYMBOL) {
            Library::Boringssl
        } else {
            Library::Openssl
        };
        let io: Vec<(TlsFunction, Sym)> = TlsFunction::OPENSSL
            .into_iter()
            .filter_map(|f| Some((f, *syms.get(f.symbol())?)))
            .collect();
        let hooks = [
            (sensor_common::SSL_FREE_SYMBOL, HookKind::ConnEnd),
            (sensor_common::SSL_CTRL_SYMBOL, HookKind::SslCtrlSni),
            (BORINGSSL_SNI_SYMBOL, HookKind::SniArg1),
        ];
        return Ok(Some(TlsSymbols {
            library,
            io: openssl_sites(&obj, data, &io),
            hooks: hooks_of(&obj, &syms, &hooks),
            found_by: "symbol table".to_owned(),
        }));
    }
    let plain = |fs: &[TlsFunction], library, hooks: &[(&'static str, HookKind)]| {
        let io: Vec<FunctionSite> = fs
            .iter()
            .filter_map(|&f| {
                let s = *syms.get(f.symbol())?;
                entry_site(
                    &obj,
                    data,
                    f,
                    s,
                    "the library's API functions are probed at entry",
                )
            })
            .collect();
        TlsSymbols {
            library,
            io,
            hooks: hooks_of(&obj, &syms, hooks),
            found_by: "symbol table".to_owned(),
        }
    };
    if has("gnutls_record_send") && has("gnutls_record_recv") {
        return Ok(Some(plain(
            &TlsFunction::GNUTLS,
            Library::Gnutls,
            &[
                (sensor_common::GNUTLS_DEINIT_SYMBOL, HookKind::ConnEnd),
                (sensor_common::GNUTLS_SNI_SYMBOL, HookKind::GnutlsSni),
            ],
        )));
    }
    if has("PR_Write") && has("PR_Read") {
        return Ok(Some(plain(
            &TlsFunction::NSPR,
            Library::Nss,
            &[(sensor_common::NSPR_CLOSE_SYMBOL, HookKind::NsprClose)],
        )));
    }
    if has(sensor_common::NSS_IMPORT_SYMBOL) {
        return Ok(Some(plain(
            &[],
            Library::Nss,
            &[
                (sensor_common::NSS_IMPORT_SYMBOL, HookKind::NssImport),
                (sensor_common::NSS_SET_URL_SYMBOL, HookKind::SniArg1),
            ],
        )));
    }
    Ok(None)
}

/// The hooks among `wanted` that the file defines.
fn hooks_of(
    obj: &object::File<'_>,
    syms: &HashMap<&'static str, Sym>,
    wanted: &[(&'static str, HookKind)],
) -> Vec<Hook> {
    wanted
        .iter()
        .filter_map(|&(symbol, kind)| {
            let (addr, _) = *syms.get(symbol)?;
            Some(Hook {
                kind,
                symbol,
                file_offset: file_offset(obj, addr)?,
            })
        })
        .collect()
}

/// The bytes of a function (bounded: the analyses only look at its start).
fn code_of<'d>(data: &'d [u8], s: &FunctionSite) -> Option<&'d [u8]> {
    let len = if s.size == 0 { 256 } else { s.size.min(4096) };
    let start = usize::try_from(s.file_offset).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    data.get(start..end.min(data.len()))
}

/// A function probed at its first instruction with a uretprobe.
fn entry_site(
    obj: &object::File<'_>,
    data: &[u8],
    function: TlsFunction,
    (vaddr, size): Sym,
    reason: &str,
) -> Option<FunctionSite> {
    let mut site = FunctionSite {
        function,
        vaddr,
        file_offset: file_offset(obj, vaddr)?,
        size,
        plan: Plan::EntryUretprobe {
            first_insn: "(not analysed)".to_owned(),
            emulated: false,
            reason: reason.to_owned(),
        },
    };
    if obj.architecture() == object::Architecture::X86_64
        && let Some(code) = code_of(data, &site)
    {
        site.plan = sites::entry_uretprobe(code, vaddr, reason);
    }
    Some(site)
}

/// Plans OpenSSL's functions (`io`: function and symbol) on their own bytes.
pub(crate) fn openssl_sites(
    obj: &object::File<'_>,
    data: &[u8],
    io: &[(TlsFunction, Sym)],
) -> Vec<FunctionSite> {
    let mut sites: Vec<FunctionSite> = io
        .iter()
        .filter_map(|&(f, s)| entry_site(obj, data, f, s, ""))
        .collect();
    let callee_of = |f: TlsFunction| {
        let s = sites.iter().find(|s| s.function == f)?;
        sites::first_call_target(code_of(data, s)?, s.vaddr)
    };
    // The site analysis decodes x86-64 only; elsewhere every function keeps the
    // first-instruction plan.
    let x86_64 = obj.architecture() == object::Architecture::X86_64;
    let callees = [
        (TlsFunction::SslWrite, callee_of(TlsFunction::SslWriteEx)),
        (TlsFunction::SslRead, callee_of(TlsFunction::SslReadEx)),
    ];
    let plans: Vec<Plan> = sites
        .iter()
        .map(|s| {
            let sibling = callees.iter().find(|c| c.0 == s.function).and_then(|c| c.1);
            match code_of(data, s) {
                Some(bytes) if x86_64 => sites::plan(s.function, bytes, s.vaddr, sibling),
                _ => Plan::EntryUretprobe {
                    first_insn: "(not analysed)".to_owned(),
                    emulated: false,
                    reason: "site analysis covers x86-64 code only".to_owned(),
                },
            }
        })
        .collect();
    for (site, plan) in sites.iter_mut().zip(plans) {
        site.plan = plan;
    }
    sites.sort_by_key(|s| s.function as u8);
    sites
}

/// The GNU build-id of an ELF file, in hex.
pub fn build_id(data: &[u8]) -> Option<String> {
    let obj = object::File::parse(data).ok()?;
    let id = obj.build_id().ok()??;
    Some(id.iter().map(|b| format!("{b:02x}")).collect())
}

/// The shared libraries an ELF file names in its dynamic string table
/// (`DT_NEEDED` entries are among them): `lib*.so*` strings.
pub fn needed_libraries(data: &[u8]) -> Vec<String> {
    use object::ObjectSection;
    let Ok(obj) = object::File::parse(data) else {
        return Vec::new();
    };
    let Some(dynstr) = obj.section_by_name(".dynstr").and_then(|s| s.data().ok()) else {
        return Vec::new();
    };
    dynstr
        .split(|&b| b == 0)
        .filter_map(|s| std::str::from_utf8(s).ok())
        .filter(|s| s.starts_with("lib") && s.contains(".so"))
        .map(str::to_owned)
        .collect()
}

/// Converts a virtual address to a file offset through the loadable segments.
pub(crate) fn file_offset(obj: &object::File<'_>, vaddr: u64) -> Option<u64> {
    obj.segments().find_map(|seg| {
        let (off, size) = seg.file_range();
        let start = seg.address();
        (vaddr >= start && vaddr - start < size).then(|| off + (vaddr - start))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The system libssl is a real OpenSSL build: all four functions are found and
    /// their offsets point into the file.
    #[test]
    fn finds_openssl_functions_in_system_libssl() {
        let candidates = [
            "/usr/lib/x86_64-linux-gnu/libssl.so.3",
            "/lib/x86_64-linux-gnu/libssl.so.3",
            "/usr/lib64/libssl.so.3",
        ];
        let Some(path) = candidates.iter().map(Path::new).find(|p| p.exists()) else {
            eprintln!("skipping: no system libssl.so.3 on this machine");
            return;
        };
        let found = tls_functions(path)
            .expect("libssl parses")
            .expect("libssl is a TLS library");
        assert_eq!(found.library, Library::Openssl);
        assert!(
            found.hooks.iter().any(|h| h.kind == HookKind::ConnEnd),
            "SSL_free found"
        );
        let sites = found.io;
        let names: Vec<_> = sites.iter().map(|s| s.function.symbol()).collect();
        assert_eq!(
            names,
            ["SSL_write", "SSL_write_ex", "SSL_read", "SSL_read_ex"]
        );
        let len = std::fs::metadata(path).expect("stat").len();
        for s in &sites {
            assert!(s.file_offset > 0 && s.file_offset < len, "{s:?}");
            assert!(s.size > 0, "{s:?}");
        }
        // Debian's wrappers: SSL_write/SSL_read get emulated sites, the _ex
        // variants fall back. Other builds may differ; the placement must then
        // still be on decoded instruction boundaries (checked in sites.rs).
        for s in &sites {
            eprintln!("{}: {}", s.function.symbol(), s.plan.describe());
        }
    }

    /// Every libssl and runtime on this machine: each planned site lies on an
    /// instruction boundary of a linear decode from the function's start, is an
    /// instruction the kernel emulates, and the return site follows the entry.
    #[test]
    fn sites_on_every_tls_build_here_are_sound() {
        use iced_x86::{Decoder, DecoderOptions};
        let mut files: Vec<std::path::PathBuf> = Vec::new();
        for dir in ["/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/local/lib"] {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if e.file_name().to_string_lossy().starts_with("libssl.so") {
                    files.push(e.path());
                }
            }
        }
        for exe in ["/usr/bin/node", "/usr/local/bin/node"] {
            files.push(exe.into());
        }
        files.retain(|f| f.exists());
        let mut checked = 0;
        for f in &files {
            let data = std::fs::read(f).expect("read");
            let found = tls_functions_in(&data).expect("parses");
            for s in found.iter().flat_map(|f| &f.io) {
                let Plan::EmulatedSites { entry, ret } = &s.plan else {
                    continue;
                };
                assert!(entry.offset < ret.offset, "{}: {:?}", f.display(), s.plan);
                let start = s.file_offset as usize;
                let code = &data[start..start + s.size as usize];
                let mut d = Decoder::with_ip(64, code, 0, DecoderOptions::NONE);
                let mut seen = Vec::new();
                while d.can_decode() && d.position() as u64 <= ret.offset {
                    let ins = d.decode();
                    seen.push((ins.ip(), super::sites::is_emulated(&ins)));
                }
                for off in [entry.offset, ret.offset] {
                    assert!(
                        seen.contains(&(off, true)),
                        "{} {}: +{off:#x} is not an emulated instruction boundary",
                        f.display(),
                        s.function.symbol()
                    );
                }
                checked += 1;
            }
        }
        eprintln!(
            "checked {checked} emulated placements in {} files",
            files.len()
        );
    }

    /// GnuTLS and NSS as Debian ships them (versioned symbols): both directions,
    /// the destructor and the server-name setter are found.
    #[test]
    fn finds_gnutls_and_nss_functions() {
        let dir = Path::new("/usr/lib/x86_64-linux-gnu");
        let cases: [(&str, Library, &[&str], &[HookKind]); 3] = [
            (
                "libgnutls.so.30",
                Library::Gnutls,
                &["gnutls_record_send", "gnutls_record_recv"],
                &[HookKind::ConnEnd, HookKind::GnutlsSni],
            ),
            (
                "libnspr4.so",
                Library::Nss,
                &["PR_Write", "PR_Read", "PR_Send", "PR_Recv"],
                &[HookKind::NsprClose],
            ),
            (
                "libssl3.so",
                Library::Nss,
                &[],
                &[HookKind::NssImport, HookKind::SniArg1],
            ),
        ];
        for (file, library, functions, hooks) in cases {
            let path = dir.join(file);
            if !path.exists() {
                eprintln!("skipping {file}: not installed here");
                continue;
            }
            let found = tls_functions(&path)
                .expect("parses")
                .unwrap_or_else(|| panic!("{file} is a TLS library"));
            assert_eq!(found.library, library, "{file}");
            let names: Vec<_> = found.io.iter().map(|s| s.function.symbol()).collect();
            assert_eq!(names, functions, "{file}");
            let kinds: Vec<_> = found.hooks.iter().map(|h| h.kind).collect();
            assert_eq!(kinds, hooks, "{file}");
        }
    }

    #[test]
    fn non_tls_and_garbage_files_yield_nothing() {
        assert!(tls_functions_in(b"not an elf").is_err());
        let own = std::env::current_exe().expect("test binary");
        assert!(tls_functions(&own).expect("own binary parses").is_none());
    }
}
