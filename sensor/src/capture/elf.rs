//! Finding the TLS functions inside an ELF file.

use std::{fs::File, path::Path};

use object::{Object, ObjectSegment, ObjectSymbol, SymbolKind};
use sensor_common::TlsFunction;

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

/// What a file offers to hook.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSymbols {
    /// The read/write functions; empty when the file is no TLS library.
    pub io: Vec<FunctionSite>,
    /// File offset of `SSL_free`, which marks the end of a connection.
    pub free_offset: Option<u64>,
    /// File offset of `SSL_ctrl`, through which clients set the server name.
    pub ctrl_offset: Option<u64>,
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
/// with their file offsets. Empty when the file carries no OpenSSL-compatible API.
///
/// Both `SSL_write` and `SSL_read` must be present: a file defining only one of
/// them is not a TLS library we understand, and half a connection would mislead.
pub fn tls_functions(path: &Path) -> Result<TlsSymbols, ElfError> {
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

/// [`tls_functions`] on the bytes of an ELF file.
pub fn tls_functions_in(data: &[u8]) -> Result<TlsSymbols, object::Error> {
    let obj = object::File::parse(data)?;
    let mut sites: Vec<FunctionSite> = Vec::new();
    let mut free_offset = None;
    let mut ctrl_offset = None;
    for sym in obj.dynamic_symbols().chain(obj.symbols()) {
        if sym.kind() != SymbolKind::Text || sym.is_undefined() || sym.address() == 0 {
            continue;
        }
        let Ok(name) = sym.name() else { continue };
        if name == sensor_common::SSL_FREE_SYMBOL && free_offset.is_none() {
            free_offset = file_offset(&obj, sym.address());
            continue;
        }
        if name == sensor_common::SSL_CTRL_SYMBOL && ctrl_offset.is_none() {
            ctrl_offset = file_offset(&obj, sym.address());
            continue;
        }
        let Some(function) = TlsFunction::ALL.into_iter().find(|f| f.symbol() == name) else {
            continue;
        };
        if sites.iter().any(|s| s.function == function) {
            continue;
        }
        let Some(file_offset) = file_offset(&obj, sym.address()) else {
            continue;
        };
        sites.push(FunctionSite {
            function,
            vaddr: sym.address(),
            file_offset,
            size: sym.size(),
            plan: Plan::EntryUretprobe {
                first_insn: String::new(),
                emulated: false,
                reason: String::new(),
            },
        });
    }
    // Plan each function on its own bytes (bounded by its symbol size; the
    // analysis only looks at the first instructions anyway).
    let code = |s: &FunctionSite| {
        let len = if s.size == 0 { 256 } else { s.size.min(4096) };
        let start = usize::try_from(s.file_offset).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        data.get(start..end.min(data.len()))
    };
    let callee_of = |f: TlsFunction| {
        let s = sites.iter().find(|s| s.function == f)?;
        sites::first_call_target(code(s)?, s.vaddr)
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
            match code(s) {
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
    let has = |f| sites.iter().any(|s| s.function == f);
    if !(has(TlsFunction::SslWrite) && has(TlsFunction::SslRead)) {
        return Ok(TlsSymbols::default());
    }
    sites.sort_by_key(|s| s.function as u8);
    Ok(TlsSymbols {
        io: sites,
        free_offset,
        ctrl_offset,
    })
}

/// Converts a virtual address to a file offset through the loadable segments.
fn file_offset(obj: &object::File<'_>, vaddr: u64) -> Option<u64> {
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
        let found = tls_functions(path).expect("libssl parses");
        assert!(found.free_offset.is_some(), "SSL_free found");
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
            for s in &found.io {
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

    #[test]
    fn non_tls_and_garbage_files_yield_nothing() {
        assert!(tls_functions_in(b"not an elf").is_err());
        let own = std::env::current_exe().expect("test binary");
        assert!(
            tls_functions(&own)
                .expect("own binary parses")
                .io
                .is_empty()
        );
    }
}
