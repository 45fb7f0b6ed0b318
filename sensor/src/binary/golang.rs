//! Go's `crypto/tls` inside Go executables.
//!
//! Go programs link no shared TLS library: `crypto/tls` is compiled into every
//! executable, so its plaintext is captured by probing
//! `crypto/tls.(*Conn).Write` and `crypto/tls.(*Conn).Read` in each binary.
//!
//! The functions are found through the pc-line table (`.gopclntab`), which the
//! Go runtime needs for stack traces and garbage collection and which therefore
//! survives `go build -ldflags="-s -w"` and `strip`; the ELF symbol table is
//! only a hint. When the section headers are gone too, the table is found by its
//! magic number in the loaded segments.
//!
//! Only the register-based calling convention (go1.17+ on amd64, Go's internal
//! ABI, `cmd/compile/abi-internal.md`) is supported: at the entry of a method
//! `RAX` holds the receiver (`*Conn`), `RBX` and `RCX` the buffer's pointer and
//! length, and at a `RET` `RAX` holds the result `n`; `R14` always holds the
//! current goroutine `g`.
//!
//! Every read of the input is bounds-checked: a truncated or hostile file gives
//! an error, never a panic, and the work is linear in the file's size.

use iced_x86::{
    Code, Decoder, DecoderOptions, FlowControl, Formatter, GasFormatter, Instruction,
    InstructionInfoFactory, Mnemonic, OpAccess, Register,
};
use object::{
    Endianness,
    elf::{self, FileHeader32, FileHeader64},
    read::elf::{FileHeader, NoteIterator, ProgramHeader, SectionHeader, SectionTable},
};
use serde::Serialize;

/// The method that encrypts and sends application data.
const WRITE: &str = "crypto/tls.(*Conn).Write";
/// The method that receives and decrypts application data.
const READ: &str = "crypto/tls.(*Conn).Read";

/// Largest function accepted (its code is decoded whole). The TLS methods are a
/// few kilobytes; anything near this limit comes from a damaged table.
const MAX_FUNCTION_SIZE: u64 = 1 << 20;

/// How many instructions from the entry are examined for the entry site and
/// for Go's stack-bound check.
const ENTRY_WINDOW: usize = 8;

/// How many places holding a pc-line table magic number are tried when the
/// table has to be found without section headers.
const MAX_TABLE_CANDIDATES: usize = 32;

/// How many `PT_LOAD` segments are read (Go's linker writes three or four; the
/// limit keeps the scans of segments linear in the file's size).
const MAX_SEGMENTS: usize = 16;

/// One Go function to probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GoFunction {
    /// Go's name for it, e.g. `crypto/tls.(*Conn).Write`.
    pub name: String,
    /// Virtual address of its entry.
    pub vaddr: u64,
    /// File offset of its entry (through the `PT_LOAD` segments): where a
    /// uprobe on the entry is attached.
    pub file_offset: u64,
    /// Size of its code in bytes, from the pc-line table: up to the next
    /// function's entry (or the end of the text), so it includes the `int3`
    /// padding after the last instruction.
    pub size: u64,
    /// Offset from the entry of the instruction where the entry probe goes: the
    /// first instruction on the straight-line path that the kernel emulates
    /// (`jcc`, `jmp`, `call`, `nop`, `push`) with the arguments (`RAX`, `RBX`,
    /// `RCX`) and `g` (`R14`) still intact; 0 when there is none near the start.
    pub entry_site: u64,
    /// The instruction at `entry_site`, in GAS syntax.
    pub entry_insn: String,
    /// Offsets from the entry of every near `RET` instruction, ascending.
    pub ret_sites: Vec<u64>,
}

/// Where Go's TLS functions are in one executable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GoTls {
    /// The Go release that built it, e.g. `go1.19.8`, from `.go.buildinfo` (or
    /// the `runtime.buildVersion` symbol); `None` when neither is readable.
    pub go_version: Option<String>,
    /// Whether the file has no ELF symbol table (`.symtab`).
    pub stripped: bool,
    /// `crypto/tls.(*Conn).Write`.
    pub write: GoFunction,
    /// `crypto/tls.(*Conn).Read`.
    pub read: GoFunction,
}

/// Why the TLS functions of a Go executable could not be placed.
#[derive(Debug, thiserror::Error)]
pub enum GoError {
    /// The input is not an ELF file.
    #[error("not an ELF file: {0}")]
    NotElf(&'static str),
    /// A Go executable for another architecture or ELF class.
    #[error("Go executable for {0}; only x86-64 is supported")]
    NotX86_64(String),
    /// A Go executable without a readable pc-line table.
    #[error("no Go pc-line table (.gopclntab) found")]
    NoPclntab,
    /// The pc-line table is damaged.
    #[error("malformed Go pc-line table: {0}")]
    Pclntab(String),
    /// Built by a Go release that passes arguments on the stack.
    #[error(
        "built by {0}, which passes arguments on the stack; only go1.17+ (register ABI) is supported"
    )]
    StackAbi(String),
    /// The binary has one of the two methods but not the other (the linker
    /// drops methods that are never called).
    #[error("{0} is missing although the other crypto/tls.(*Conn) I/O method is present")]
    MissingFunction(&'static str),
    /// No candidate start of the text puts the functions on Go code.
    #[error(
        "cannot find the start of the Go text: no candidate among [{0}] puts both crypto/tls methods on a register-ABI entry (stack check against 16(%r14))"
    )]
    TextStart(String),
    /// A go1.17+ function whose entry is not Go's register-ABI stack check.
    #[error(
        "{name} at {vaddr:#x} does not start with Go's register-ABI stack check (cmp against 16(%r14))"
    )]
    NotGoEntry {
        /// The function.
        name: &'static str,
        /// Its entry.
        vaddr: u64,
    },
    /// The function's code is not in a loaded executable segment of the file.
    #[error("{name} at {vaddr:#x} (+{size:#x} bytes) is not in a loaded executable segment")]
    NotMapped {
        /// The function.
        name: &'static str,
        /// Its entry.
        vaddr: u64,
        /// Its size.
        size: u64,
    },
    /// Linear decoding of the function hit an undecodable instruction.
    #[error("{name}: undecodable instruction at +{offset:#x} of {size:#x} bytes")]
    Desync {
        /// The function.
        name: &'static str,
        /// Offset of the bad instruction from the entry.
        offset: u64,
        /// The function's size.
        size: u64,
    },
    /// The function has no `RET` instruction.
    #[error("{0} has no RET instruction")]
    NoRet(&'static str),
}

/// Finds `crypto/tls.(*Conn).Write` and `crypto/tls.(*Conn).Read` in an ELF
/// file's bytes and where to probe them.
///
/// Returns `Ok(None)` for an ELF file that is not a Go program and for a Go
/// program that does not link `crypto/tls`.
pub fn go_tls(data: &[u8]) -> Result<Option<GoTls>, GoError> {
    aligned(data, go_tls_in)
}

/// Whether `data` is an ELF file that looks like a Go program: it has a Go
/// pc-line table, build-info or build-id section, or a Go build-id note.
/// Reads only the headers and notes.
pub fn is_go(data: &[u8]) -> bool {
    aligned(data, |d| Elf::parse(d).is_ok_and(|elf| elf.looks_like_go()))
}

/// Runs `f` on `data`, or on an 8-byte aligned copy of it: `object` reads ELF
/// structures in place and needs them aligned, as they are in a mapped file
/// or a heap buffer, but not necessarily in a sub-slice.
fn aligned<T>(data: &[u8], f: impl FnOnce(&[u8]) -> T) -> T {
    const ALIGN: usize = 8;
    if data.as_ptr().align_offset(ALIGN) == 0 {
        return f(data);
    }
    let mut buf = vec![0u8; data.len() + ALIGN];
    let start = buf.as_ptr().align_offset(ALIGN).min(ALIGN);
    let copy = &mut buf[start..start + data.len()];
    copy.copy_from_slice(data);
    f(copy)
}

fn go_tls_in(data: &[u8]) -> Result<Option<GoTls>, GoError> {
    let elf = Elf::parse(data)?;
    if !elf.looks_like_go() {
        return Ok(None);
    }
    if let Some(what) = elf.unsupported_target() {
        return Err(GoError::NotX86_64(what));
    }
    let go_version = buildinfo::version(&elf);
    if let Some(v) = go_version.as_deref()
        && buildinfo::minor(v).is_some_and(|m| m < 17)
    {
        return Err(GoError::StackAbi(v.to_string()));
    }
    let table = pclntab::find(&elf)?;
    let [write, read] = match table.find([WRITE, READ]) {
        [None, None] => return Ok(None),
        [Some(w), Some(r)] => [w, r],
        [None, Some(_)] => return Err(GoError::MissingFunction(WRITE)),
        [Some(_), None] => return Err(GoError::MissingFunction(READ)),
    };
    let spans = [table.span(write, WRITE)?, table.span(read, READ)?];
    let [write, read] = place::place(&elf, &table, spans, go_version.as_deref())?;
    Ok(Some(GoTls {
        go_version,
        stripped: !elf.has_symtab(),
        write: code::analyse(&write)?,
        read: code::analyse(&read)?,
    }))
}

// ---------------------------------------------------------------------------
// Little-endian reads that never panic.

fn bytes_at(b: &[u8], at: usize, len: usize) -> Option<&[u8]> {
    b.get(at..at.checked_add(len)?)
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes_at(b, at, 4)?.try_into().ok()?))
}

fn le_i32(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_le_bytes(bytes_at(b, at, 4)?.try_into().ok()?))
}

fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes_at(b, at, 8)?.try_into().ok()?))
}

/// A `u64` from the file as an index into it.
fn index(v: u64) -> Option<usize> {
    usize::try_from(v).ok()
}

// ---------------------------------------------------------------------------
// The parts of the ELF file this module reads.

/// A `PT_LOAD` segment, limited to the bytes present in the file.
#[derive(Debug, Clone, Copy)]
struct Segment {
    vaddr: u64,
    offset: usize,
    /// Bytes of the segment present in the file (`p_filesz`, cut at the end of
    /// a truncated file).
    filesz: usize,
    flags: u32,
}

impl Segment {
    /// File offset of `[vaddr, vaddr + len)` if the segment's file bytes hold it.
    fn file_offset(&self, vaddr: u64, len: u64) -> Option<usize> {
        let rel = vaddr.checked_sub(self.vaddr)?;
        let end = rel.checked_add(len)?;
        if end > self.filesz as u64 {
            return None;
        }
        self.offset.checked_add(index(rel)?)
    }

    fn executable(&self) -> bool {
        self.flags & elf::PF_X != 0
    }
}

/// A section header, with its bytes when they are in the file.
#[derive(Debug, Clone, Copy)]
struct Section<'a> {
    name: &'a [u8],
    kind: u32,
    addr: u64,
    link: u32,
    data: Option<&'a [u8]>,
}

/// An ELF file, reduced to what this module needs.
#[derive(Debug)]
struct Elf<'a> {
    data: &'a [u8],
    machine: u16,
    is_64: bool,
    little_endian: bool,
    segments: Vec<Segment>,
    /// Empty when the file has no (readable) section headers.
    sections: Vec<Section<'a>>,
    /// Whether a `PT_NOTE` segment holds Go's build-id note.
    go_note: bool,
}

/// Owner name and type of the note holding Go's build ID
/// (cmd/link/internal/ld/elf.go: `ELF_NOTE_GO_NAME`, `ELF_NOTE_GOBUILDID_TAG`).
const GO_NOTE_NAME: &[u8] = b"Go";
const GO_NOTE_BUILD_ID: u32 = 4;

/// Names of the sections that only Go's linker writes. PIE and externally
/// linked executables put the pc-line table in a RELRO section.
const PCLNTAB_SECTIONS: [&[u8]; 2] = [b".gopclntab", b".data.rel.ro.gopclntab"];
const GO_SECTIONS: [&[u8]; 4] = [
    b".gopclntab",
    b".data.rel.ro.gopclntab",
    b".go.buildinfo",
    b".note.go.buildid",
];

impl<'a> Elf<'a> {
    fn parse(data: &'a [u8]) -> Result<Self, GoError> {
        if let Ok(h) = FileHeader64::<Endianness>::parse(data) {
            read_elf(data, h)
        } else if let Ok(h) = FileHeader32::<Endianness>::parse(data) {
            read_elf(data, h)
        } else {
            Err(GoError::NotElf("no valid ELF header"))
        }
    }

    fn looks_like_go(&self) -> bool {
        self.go_note || self.sections.iter().any(|s| GO_SECTIONS.contains(&s.name))
    }

    /// Why this is not a target this module reads, if it is not.
    fn unsupported_target(&self) -> Option<String> {
        if self.machine != elf::EM_X86_64 {
            Some(machine_name(self.machine))
        } else if !self.is_64 {
            Some("32-bit x86-64 (x32)".to_string())
        } else if !self.little_endian {
            Some("big-endian x86-64".to_string())
        } else {
            None
        }
    }

    fn section(&self, names: &[&[u8]]) -> Option<&Section<'a>> {
        self.sections.iter().find(|s| names.contains(&s.name))
    }

    fn has_symtab(&self) -> bool {
        self.sections.iter().any(|s| s.kind == elf::SHT_SYMTAB)
    }

    /// The value of a symbol in `.symtab` (x86-64 layout, `Elf64_Sym`).
    fn symbol(&self, name: &str) -> Option<u64> {
        const SYM_SIZE: usize = 24;
        let symtab = self.sections.iter().find(|s| s.kind == elf::SHT_SYMTAB)?;
        let strtab = self
            .sections
            .get(usize::try_from(symtab.link).ok()?)?
            .data?;
        let mut wanted = name.as_bytes().to_vec();
        wanted.push(0);
        symtab
            .data?
            .as_chunks::<SYM_SIZE>()
            .0
            .iter()
            .find_map(|sym| {
                let name_at = index(u64::from(le_u32(sym, 0)?))?;
                (bytes_at(strtab, name_at, wanted.len())? == wanted.as_slice())
                    .then(|| le_u64(sym, 8))
                    .flatten()
            })
    }

    /// The file bytes at `[vaddr, vaddr + len)` in a `PT_LOAD` segment.
    fn bytes(&self, vaddr: u64, len: u64) -> Option<&'a [u8]> {
        let (_, offset) = self.locate(vaddr, len)?;
        bytes_at(self.data, offset, index(len)?)
    }

    /// The segment holding `[vaddr, vaddr + len)` and the range's file offset.
    fn locate(&self, vaddr: u64, len: u64) -> Option<(&Segment, usize)> {
        self.segments
            .iter()
            .find_map(|s| Some((s, s.file_offset(vaddr, len)?)))
    }

    /// The file bytes of a segment.
    fn segment_bytes(&self, seg: &Segment) -> &'a [u8] {
        bytes_at(self.data, seg.offset, seg.filesz).unwrap_or_default()
    }

    /// Whether `vaddr` is inside a loaded executable segment.
    fn is_code(&self, vaddr: u64) -> bool {
        self.locate(vaddr, 1).is_some_and(|(s, _)| s.executable())
    }
}

/// Go's name for the architecture of an ELF machine number.
fn machine_name(machine: u16) -> String {
    let name = match machine {
        elf::EM_386 => "386",
        elf::EM_ARM => "arm",
        elf::EM_AARCH64 => "arm64",
        elf::EM_PPC64 => "ppc64",
        elf::EM_S390 => "s390x",
        elf::EM_MIPS => "mips",
        elf::EM_RISCV => "riscv64",
        elf::EM_LOONGARCH => "loong64",
        _ => return format!("ELF machine {machine}"),
    };
    name.to_string()
}

fn read_elf<'a, H: FileHeader<Endian = Endianness>>(
    data: &'a [u8],
    header: &'a H,
) -> Result<Elf<'a>, GoError> {
    let endian = header
        .endian()
        .map_err(|_| GoError::NotElf("unsupported byte order"))?;
    let phdrs = header
        .program_headers(endian, data)
        .map_err(|_| GoError::NotElf("program headers out of the file"))?;
    let mut segments = Vec::new();
    let mut go_note = false;
    for ph in phdrs {
        match ph.p_type(endian) {
            elf::PT_LOAD if segments.len() < MAX_SEGMENTS => {
                segments.extend(load_segment(data.len(), endian, ph));
            }
            elf::PT_NOTE => {
                if let Ok(Some(notes)) = ph.notes(endian, data) {
                    go_note |= has_go_note(endian, notes);
                }
            }
            _ => {}
        }
    }
    // A damaged section table is treated as absent: the pc-line table is then
    // found through the segments.
    let sections = header
        .sections(endian, data)
        .map(|t| sections(endian, data, &t))
        .unwrap_or_default();
    Ok(Elf {
        data,
        machine: header.e_machine(endian),
        is_64: header.is_type_64(),
        little_endian: header.is_little_endian(),
        segments,
        sections,
        go_note,
    })
}

fn load_segment<P: ProgramHeader>(file_len: usize, endian: P::Endian, ph: &P) -> Option<Segment> {
    let offset = index(ph.p_offset(endian).into())?;
    let available = file_len.checked_sub(offset)?;
    let filesz = index(ph.p_filesz(endian).into())?.min(available);
    Some(Segment {
        vaddr: ph.p_vaddr(endian).into(),
        offset,
        filesz,
        flags: ph.p_flags(endian),
    })
}

fn has_go_note<H: FileHeader>(endian: H::Endian, mut notes: NoteIterator<'_, H>) -> bool {
    while let Ok(Some(note)) = notes.next() {
        if note.name() == GO_NOTE_NAME && note.n_type(endian) == GO_NOTE_BUILD_ID {
            return true;
        }
    }
    false
}

fn sections<'a, H: FileHeader>(
    endian: H::Endian,
    data: &'a [u8],
    table: &SectionTable<'a, H, &'a [u8]>,
) -> Vec<Section<'a>> {
    table
        .iter()
        .map(|sh| {
            let kind = sh.sh_type(endian);
            Section {
                name: table.section_name(endian, sh).unwrap_or_default(),
                kind,
                addr: sh.sh_addr(endian).into(),
                link: sh.sh_link(endian),
                data: if kind == elf::SHT_NOBITS {
                    None
                } else {
                    sh.data(endian, data).ok()
                },
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------

/// The Go release that built a binary.
mod buildinfo {
    use super::{Elf, bytes_at, elf, index, le_u64};

    /// Start of the `.go.buildinfo` blob (debug/buildinfo/buildinfo.go
    /// `buildInfoMagic`), followed by the pointer size and a flags byte.
    const MAGIC: &[u8] = b"\xff Go buildinf:";
    /// The blob is 16-byte aligned (debug/buildinfo `buildInfoAlign`).
    const ALIGN: u64 = 16;
    /// Go 1.18+: the version and module strings follow the 32-byte header
    /// inline, each prefixed by its uvarint length (flag bit 1). Before, the
    /// header held pointers to the `runtime.buildVersion` and `runtime.modinfo`
    /// string headers.
    const FLAG_INLINE: u8 = 2;
    const FLAG_BIG_ENDIAN: u8 = 1;
    const INLINE_AT: usize = 32;
    /// Longest version string accepted (e.g. `devel go1.23-abcdef1 Tue ...`).
    const MAX_LEN: u64 = 128;

    /// The version string of the Go release that built the file.
    pub(super) fn version(elf: &Elf<'_>) -> Option<String> {
        blob(elf)
            .and_then(|b| from_blob(elf, b))
            .or_else(|| string(elf, elf.symbol("runtime.buildVersion")?))
    }

    /// The minor release number of a version such as `go1.19.8` or
    /// `devel go1.23-1234abc ...`.
    pub(super) fn minor(version: &str) -> Option<u32> {
        let rest = version.strip_prefix("devel ").unwrap_or(version);
        let rest = rest.strip_prefix("go1.")?;
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        rest.get(..digits)?.parse().ok()
    }

    /// The build-info blob: its section, or (without section headers) found by
    /// its magic at an aligned address in a writable segment, where Go's
    /// linker puts it.
    fn blob<'a>(elf: &Elf<'a>) -> Option<&'a [u8]> {
        if let Some(s) = elf.section(&[b".go.buildinfo"]) {
            return s.data.filter(|d| d.starts_with(MAGIC));
        }
        elf.segments
            .iter()
            .filter(|s| s.flags & elf::PF_W != 0)
            .find_map(|s| {
                let bytes = elf.segment_bytes(s);
                let first = index((ALIGN - s.vaddr % ALIGN) % ALIGN)?;
                (first..bytes.len())
                    .step_by(ALIGN as usize)
                    .find(|&at| bytes[at..].starts_with(MAGIC))
                    .map(|at| &bytes[at..])
            })
    }

    fn from_blob(elf: &Elf<'_>, blob: &[u8]) -> Option<String> {
        let ptr_size = *blob.get(MAGIC.len())?;
        let flags = *blob.get(MAGIC.len() + 1)?;
        if flags & FLAG_INLINE != 0 {
            let (len, used) = uvarint(blob.get(INLINE_AT..)?)?;
            if len > MAX_LEN {
                return None;
            }
            let start = INLINE_AT.checked_add(used)?;
            return text(bytes_at(blob, start, index(len)?)?);
        }
        if ptr_size != 8 || flags & FLAG_BIG_ENDIAN != 0 {
            return None;
        }
        string(elf, le_u64(blob, 16)?)
    }

    /// A Go string whose header (pointer, length) is at `addr`.
    fn string(elf: &Elf<'_>, addr: u64) -> Option<String> {
        let header = elf.bytes(addr, 16)?;
        let (ptr, len) = (le_u64(header, 0)?, le_u64(header, 8)?);
        if len > MAX_LEN {
            return None;
        }
        text(elf.bytes(ptr, len)?)
    }

    fn text(b: &[u8]) -> Option<String> {
        let s = std::str::from_utf8(b).ok()?;
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_graphic() || c == b' '))
            .then(|| s.to_string())
    }

    /// An unsigned LEB128 value and the bytes it used (encoding/binary.Uvarint).
    fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
        let mut v = 0u64;
        for (i, &byte) in b.iter().enumerate().take(10) {
            v |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Some((v, i + 1));
            }
        }
        None
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn minor_versions() {
            assert_eq!(minor("go1.19.8"), Some(19));
            assert_eq!(minor("go1.21rc2"), Some(21));
            assert_eq!(minor("go1.16"), Some(16));
            assert_eq!(minor("devel go1.23-1234abc Tue Jan 1"), Some(23));
            assert_eq!(minor("go1"), None);
            assert_eq!(minor("weekly"), None);
        }

        #[test]
        fn uvarints() {
            assert_eq!(uvarint(&[8]), Some((8, 1)));
            assert_eq!(uvarint(&[0x80, 0x01]), Some((128, 2)));
            assert_eq!(uvarint(&[0x80]), None);
            assert_eq!(uvarint(&[0xff; 12]), None);
        }
    }
}

// ---------------------------------------------------------------------------

/// The Go pc-line table: the runtime's map from program counters to functions.
///
/// Layout (little-endian, 64-bit pointers), as written by
/// cmd/link/internal/ld/pcln.go and read by debug/gosym/pclntab.go:
///
/// - a header, runtime/symtab.go `pcHeader`: `magic u32`, two zero bytes,
///   `minLC u8` (1 on x86), `ptrSize u8` (8), then pointer-sized words:
///   `nfunc`, `nfiles`, [`textStart`, go1.18+], `funcnameOffset`, `cuOffset`,
///   `filetabOffset`, `pctabOffset`, `pclnOffset`; offsets are from the header;
/// - at `pclnOffset`, the function table (runtime/symtab.go `functab`): `nfunc`
///   pairs (entry, offset of the function's `_func` record from `pclnOffset`)
///   and a final entry, the end of the text. Go 1.16–1.17 store
///   pointer-sized absolute entries; go1.18+ `uint32` offsets from the start
///   of the text;
/// - `_func` records (runtime/runtime2.go `_func`): the entry again (same
///   encoding), then `nameoff int32`, the offset of the function's
///   NUL-terminated name in the name table at `funcnameOffset`.
///
/// `textStart` holds the text start (`runtime.text`) from go1.18 to go1.25;
/// go1.26 stopped filling it in (it needed a relocation) and it is 0 there.
mod pclntab {
    use super::{
        Elf, GoError, MAX_FUNCTION_SIZE, MAX_TABLE_CANDIDATES, Segment, elf, index, le_i32, le_u32,
        le_u64,
    };

    /// `pcHeader.magic` of each table format (debug/gosym/pclntab.go).
    const MAGIC_GO12: u32 = 0xffff_fffb;
    const MAGIC_GO116: u32 = 0xffff_fffa;
    const MAGIC_GO118: u32 = 0xffff_fff0;
    const MAGIC_GO120: u32 = 0xffff_fff1;
    /// Bytes 4..8 of the header on x86-64: two zero pads, `minLC` 1, `ptrSize` 8.
    const X86_64_TAIL: [u8; 4] = [0, 0, 1, 8];

    /// How function entries are encoded.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) enum Layout {
        /// Go 1.16–1.17 (magic `0xfffffffa`): absolute pointer-sized entries.
        Go116,
        /// go1.18+ (magics `0xfffffff0`, `0xfffffff1`): `uint32` offsets from
        /// the start of the text.
        Go118,
    }

    impl Layout {
        /// Size of a function table field and of `_func`'s entry field.
        pub(super) fn field_size(self) -> usize {
            match self {
                Self::Go116 => 8,
                Self::Go118 => 4,
            }
        }
    }

    /// A function's entry (as the table encodes it) and size.
    #[derive(Debug, Clone, Copy)]
    pub(super) struct Span {
        pub name: &'static str,
        pub entry: u64,
        pub size: u64,
    }

    /// A parsed pc-line table header over the table's bytes.
    #[derive(Debug)]
    pub(super) struct Pclntab<'a> {
        pub layout: Layout,
        /// From the header to the end of its section (or segment).
        bytes: &'a [u8],
        /// Where the header is loaded.
        pub vaddr: u64,
        pub nfunc: usize,
        /// `pcHeader.textStart` (go1.18+; 0 from go1.26 on and for Go 1.16).
        pub text_start: u64,
        pub funcname: usize,
        pub pcln: usize,
    }

    /// Finds the table: in its section, or else by its magic in the loaded
    /// segments, validated by the header's fields.
    pub(super) fn find<'a>(elf: &Elf<'a>) -> Result<Pclntab<'a>, GoError> {
        if let Some(s) = elf.section(&super::PCLNTAB_SECTIONS)
            && let Some(bytes) = s.data
        {
            return parse(bytes, s.addr);
        }
        // Read-only data first, where Go's linker puts the table; then RELRO
        // (PIE, external linking); then code (old single-segment layouts).
        let rank = |s: &&Segment| match (s.flags & elf::PF_W != 0, s.executable()) {
            (false, false) => 0,
            (true, _) => 1,
            (false, true) => 2,
        };
        let mut segments: Vec<&Segment> = elf.segments.iter().collect();
        segments.sort_by_key(rank);
        let mut tried = 0;
        for seg in segments {
            for at in header_candidates(elf.segment_bytes(seg), seg.vaddr) {
                let Some(bytes) = elf.segment_bytes(seg).get(at..) else {
                    continue;
                };
                if let Ok(t) = parse(bytes, seg.vaddr.wrapping_add(at as u64)) {
                    return Ok(t);
                }
                tried += 1;
                if tried == MAX_TABLE_CANDIDATES {
                    return Err(GoError::NoPclntab);
                }
            }
        }
        Err(GoError::NoPclntab)
    }

    /// Offsets in a segment's bytes (loaded at `vaddr`) of the 8-byte aligned
    /// words that start like a supported x86-64 table header (the `pcHeader`
    /// holds pointer-sized fields, so the linker aligns it to 8).
    fn header_candidates(bytes: &[u8], vaddr: u64) -> impl Iterator<Item = usize> + '_ {
        const fn start(magic: u32) -> u64 {
            magic as u64 | (u32::from_le_bytes(X86_64_TAIL) as u64) << 32
        }
        const STARTS: [u64; 3] = [start(MAGIC_GO116), start(MAGIC_GO118), start(MAGIC_GO120)];
        let first = ((8 - vaddr % 8) % 8) as usize;
        let words = bytes.get(first..).unwrap_or_default().as_chunks::<8>().0;
        words
            .iter()
            .enumerate()
            .filter(|(_, w)| STARTS.contains(&u64::from_le_bytes(**w)))
            .map(move |(i, _)| first + 8 * i)
    }

    /// Parses and checks the header of the table in `bytes`, loaded at `vaddr`.
    pub(super) fn parse(bytes: &[u8], vaddr: u64) -> Result<Pclntab<'_>, GoError> {
        let bad = |what: String| Err(GoError::Pclntab(what));
        let Some(magic) = le_u32(bytes, 0) else {
            return bad(format!("{} bytes, shorter than its header", bytes.len()));
        };
        let layout = match magic {
            MAGIC_GO116 => Layout::Go116,
            MAGIC_GO118 | MAGIC_GO120 => Layout::Go118,
            MAGIC_GO12 => return Err(GoError::StackAbi("a Go release before 1.16".into())),
            m => return bad(format!("unknown magic {m:#x}")),
        };
        if bytes.get(4..8) != Some(&X86_64_TAIL[..]) {
            return bad(
                "header is not for x86-64 (pads, instruction size 1, pointer size 8)".into(),
            );
        }
        // Word indexes of the fields after the first 8 bytes.
        let (text_start_word, funcname_word, pcln_word, words) = match layout {
            Layout::Go116 => (None, 2, 6, 7),
            Layout::Go118 => (Some(2), 3, 7, 8),
        };
        let word = |i: usize| le_u64(bytes, 8 + 8 * i);
        let header_len = 8 + 8 * words;
        let (Some(nfunc), Some(funcname), Some(pcln)) =
            (word(0), word(funcname_word), word(pcln_word))
        else {
            return bad(format!("{} bytes, shorter than its header", bytes.len()));
        };
        // An offset from the header that lands after it, inside the table.
        let inside = |off: u64| index(off).filter(|&o| o >= header_len && o < bytes.len());
        let (Some(funcname), Some(pcln)) = (inside(funcname), inside(pcln)) else {
            return bad(format!(
                "name table at {funcname:#x} or function table at {pcln:#x} outside the {:#x} bytes",
                bytes.len()
            ));
        };
        // nfunc (entry, record) pairs and the end of the text.
        let ftab_len = index(nfunc).and_then(|n| {
            n.checked_mul(2)?
                .checked_add(1)?
                .checked_mul(layout.field_size())
        });
        let nfunc = match (index(nfunc), ftab_len) {
            (Some(n), Some(len)) if n > 0 && len <= bytes.len() - pcln => n,
            _ => return bad(format!("{nfunc} functions do not fit in the table")),
        };
        let table = Pclntab {
            layout,
            bytes,
            vaddr,
            nfunc,
            text_start: text_start_word.and_then(word).unwrap_or(0),
            funcname,
            pcln,
        };
        table.check_ends()?;
        Ok(table)
    }

    impl Pclntab<'_> {
        /// Field `k` of the function table.
        fn ftab_field(&self, k: usize) -> Option<u64> {
            let size = self.layout.field_size();
            let at = self.pcln.checked_add(k.checked_mul(size)?)?;
            match self.layout {
                Layout::Go116 => le_u64(self.bytes, at),
                Layout::Go118 => le_u32(self.bytes, at).map(u64::from),
            }
        }

        /// Entry of function `i`; `i == nfunc` is the end of the text.
        fn entry(&self, i: usize) -> Option<u64> {
            (i <= self.nfunc).then(|| self.ftab_field(2 * i)).flatten()
        }

        /// Offset of function `i`'s `_func` record in the table.
        pub(super) fn record(&self, i: usize) -> Option<usize> {
            if i >= self.nfunc {
                return None;
            }
            let off = usize::try_from(self.ftab_field(2 * i + 1)?).ok()?;
            self.pcln.checked_add(off)
        }

        /// The entry stored in function `i`'s `_func` record.
        fn record_entry(&self, i: usize) -> Option<u64> {
            let at = self.record(i)?;
            match self.layout {
                Layout::Go116 => le_u64(self.bytes, at),
                Layout::Go118 => le_u32(self.bytes, at).map(u64::from),
            }
        }

        /// Whether function `i` is called `name`.
        fn is_named(&self, i: usize, name: &str) -> bool {
            let Some(at) = self.record(i) else {
                return false;
            };
            let Some(nameoff) = at
                .checked_add(self.layout.field_size())
                .and_then(|a| le_i32(self.bytes, a))
                .and_then(|o| usize::try_from(o).ok())
            else {
                return false;
            };
            let Some(start) = self.funcname.checked_add(nameoff) else {
                return false;
            };
            let len = name.len();
            self.bytes.get(start..start.saturating_add(len)) == Some(name.as_bytes())
                && self.bytes.get(start.saturating_add(len)) == Some(&0)
        }

        /// Indexes of the functions with the given names, in one pass.
        pub(super) fn find<const N: usize>(&self, names: [&str; N]) -> [Option<usize>; N] {
            let mut found = [None; N];
            for i in 0..self.nfunc {
                for (slot, name) in found.iter_mut().zip(names) {
                    if slot.is_none() && self.is_named(i, name) {
                        *slot = Some(i);
                    }
                }
                if found.iter().all(Option::is_some) {
                    break;
                }
            }
            found
        }

        /// The first entry must not be after the end of the text, and the
        /// first record must repeat the first entry.
        fn check_ends(&self) -> Result<(), GoError> {
            let (first, end) = (self.entry(0), self.entry(self.nfunc));
            if !matches!((first, end), (Some(f), Some(e)) if f <= e) {
                return Err(GoError::Pclntab(format!(
                    "function table does not ascend (first entry {first:#x?}, end of text {end:#x?})"
                )));
            }
            if self.record_entry(0) != first {
                return Err(GoError::Pclntab(
                    "first function record disagrees with the function table".into(),
                ));
            }
            Ok(())
        }

        /// Entry and size of function `i`, checked against its record.
        pub(super) fn span(&self, i: usize, name: &'static str) -> Result<Span, GoError> {
            let (Some(entry), Some(next)) = (self.entry(i), self.entry(i + 1)) else {
                return Err(GoError::Pclntab(format!(
                    "{name}: function table entry {i} out of the table"
                )));
            };
            if self.record_entry(i) != Some(entry) {
                return Err(GoError::Pclntab(format!(
                    "{name}: function record disagrees with the function table entry {entry:#x}"
                )));
            }
            match next.checked_sub(entry) {
                Some(size) if size > 0 && size <= MAX_FUNCTION_SIZE => {
                    Ok(Span { name, entry, size })
                }
                _ => Err(GoError::Pclntab(format!(
                    "{name}: entry {entry:#x} followed by {next:#x} gives no plausible size"
                ))),
            }
        }
    }
    #[cfg(test)]
    mod tests {
        use super::*;

        const TEXT: u64 = 0x40_1000;
        const WRITE: &str = "crypto/tls.(*Conn).Write";

        fn put(out: &mut Vec<u8>, value: u64, size: usize) {
            out.extend_from_slice(&value.to_le_bytes()[..size]);
        }

        /// A table with `a` at the text start, `crypto/tls.(*Conn).Write` at
        /// +0x40 and the end of the text at +0x100.
        fn table(layout: Layout) -> Vec<u8> {
            let (magic, words) = match layout {
                Layout::Go116 => (MAGIC_GO116, 7),
                Layout::Go118 => (MAGIC_GO120, 8),
            };
            let fs = layout.field_size();
            let names = format!("a\0{WRITE}\0");
            let funcname = 8 + 8 * words;
            let pcln = (funcname + names.len()).next_multiple_of(8);
            let records = 5 * fs; // two (entry, record) pairs and the end
            let entries: [u64; 3] = match layout {
                Layout::Go116 => [TEXT, TEXT + 0x40, TEXT + 0x100],
                Layout::Go118 => [0, 0x40, 0x100],
            };
            let mut t = Vec::new();
            put(&mut t, u64::from(magic), 4);
            t.extend_from_slice(&X86_64_TAIL);
            let offsets = [funcname, pcln, pcln, pcln, pcln].map(|o| o as u64);
            let mut header = vec![2, 0];
            if layout == Layout::Go118 {
                header.push(TEXT);
            }
            header.extend(offsets);
            for w in header {
                put(&mut t, w, 8);
            }
            t.extend_from_slice(names.as_bytes());
            t.resize(pcln, 0);
            for (i, entry) in entries.iter().enumerate() {
                put(&mut t, *entry, fs);
                if i < 2 {
                    put(&mut t, (records + 16 * i) as u64, fs);
                }
            }
            for (i, (entry, nameoff)) in [(entries[0], 0), (entries[1], 2)].into_iter().enumerate()
            {
                put(&mut t, entry, fs);
                put(&mut t, nameoff, 4);
                t.resize(pcln + records + 16 * (i + 1), 0);
            }
            t
        }

        #[test]
        fn both_layouts() {
            for layout in [Layout::Go116, Layout::Go118] {
                let bytes = table(layout);
                let t = parse(&bytes, 0x60_0000).unwrap();
                assert_eq!(t.layout, layout);
                assert_eq!(t.nfunc, 2);
                assert_eq!(
                    t.find([WRITE, "a", "b", "crypto/tls.(*Conn).Writ"]),
                    [Some(1), Some(0), None, None]
                );
                let span = t.span(1, "w").unwrap();
                assert_eq!(span.size, 0xc0);
                let base = if layout == Layout::Go116 { 0 } else { TEXT };
                assert_eq!(base + span.entry, TEXT + 0x40);
                assert_eq!(t.text_start, base);
                assert!(t.span(2, "past the end").is_err());
            }
        }

        #[test]
        fn damaged_headers_are_errors() {
            for layout in [Layout::Go116, Layout::Go118] {
                let good = table(layout);
                for cut in 0..good.len() {
                    if let Ok(t) = parse(&good[..cut], 0) {
                        let _ = t.find([WRITE]);
                        let _ = (t.span(0, "a"), t.span(1, "w"));
                    }
                }
                let mut huge = good.clone();
                huge[8..16].copy_from_slice(&u64::MAX.to_le_bytes()); // nfunc
                assert!(matches!(parse(&huge, 0), Err(GoError::Pclntab(_))));
                let mut moved = good.clone();
                let last_word = 8 + 8 * if layout == Layout::Go116 { 6 } else { 7 };
                moved[last_word..last_word + 8].copy_from_slice(&(1u64 << 40).to_le_bytes()); // pclnOffset
                assert!(matches!(parse(&moved, 0), Err(GoError::Pclntab(_))));
                let mut pointer_size_4 = good.clone();
                pointer_size_4[7] = 4;
                assert!(matches!(
                    parse(&pointer_size_4, 0),
                    Err(GoError::Pclntab(_))
                ));
            }
            let mut old = table(Layout::Go116);
            old[..4].copy_from_slice(&MAGIC_GO12.to_le_bytes());
            assert!(matches!(parse(&old, 0), Err(GoError::StackAbi(_))));
        }

        #[test]
        fn a_record_that_disagrees_is_an_error() {
            let mut bytes = table(Layout::Go118);
            let t = parse(&bytes, 0).unwrap();
            let record = t.record(1).unwrap();
            bytes[record] ^= 0x10;
            let t = parse(&bytes, 0).unwrap();
            assert!(matches!(t.span(1, "w"), Err(GoError::Pclntab(_))));
        }
    }
}

// ---------------------------------------------------------------------------

/// From table entries to addresses in the file.
mod place {
    use super::{
        Elf, GoError, Located,
        buildinfo::minor,
        bytes_at,
        code::has_stack_check,
        le_u64,
        pclntab::{Layout, Pclntab, Span},
    };

    /// Places both functions. Go 1.16–1.17 tables hold absolute entries; go1.18+
    /// entries are offsets from the start of the text, which is taken from, in
    /// order: the table header, the `runtime.text` symbol, the runtime's module
    /// data, the `.text` section. A candidate is accepted only if it puts every
    /// function on a Go register-ABI entry (the stack-bound check against `g`
    /// in `R14`): an externally linked binary's `.text` starts with C code
    /// before `runtime.text`, and a wrong base must never become a probe
    /// address.
    pub(super) fn place<'a>(
        elf: &Elf<'a>,
        table: &Pclntab<'_>,
        spans: [Span; 2],
        go_version: Option<&str>,
    ) -> Result<[Located<'a>; 2], GoError> {
        if table.layout == Layout::Go116 {
            let located = locate_all(elf, spans, 0)?;
            return match located.iter().find(|f| !is_go_entry(f)) {
                None => Ok(located),
                // The format serves Go 1.16 (stack ABI) and go1.17 (registers).
                Some(f) if go_version.and_then(minor).is_some_and(|m| m >= 17) => {
                    Err(GoError::NotGoEntry {
                        name: f.name,
                        vaddr: f.vaddr,
                    })
                }
                Some(_) => Err(GoError::StackAbi(
                    go_version
                        .unwrap_or("Go 1.16 (pc-line table format 0xfffffffa)")
                        .to_string(),
                )),
            };
        }
        let candidates = [table.text_start]
            .into_iter()
            .chain(std::iter::once_with(|| {
                elf.symbol("runtime.text").unwrap_or(0)
            }))
            .chain(std::iter::once_with(|| {
                module_text(elf, table).unwrap_or(0)
            }))
            .chain(std::iter::once_with(|| {
                elf.section(&[b".text"]).map_or(0, |s| s.addr)
            }));
        let mut tried: Vec<u64> = Vec::new();
        for base in candidates {
            if base == 0 || tried.contains(&base) {
                continue;
            }
            tried.push(base);
            if let Ok(located) = locate_all(elf, spans, base)
                && located.iter().all(is_go_entry)
            {
                return Ok(located);
            }
        }
        let tried: Vec<String> = tried.iter().map(|a| format!("{a:#x}")).collect();
        Err(GoError::TextStart(tried.join(", ")))
    }

    fn is_go_entry(f: &Located<'_>) -> bool {
        has_stack_check(f.code, f.vaddr)
    }

    fn locate_all<'a>(
        elf: &Elf<'a>,
        spans: [Span; 2],
        base: u64,
    ) -> Result<[Located<'a>; 2], GoError> {
        let [a, b] = spans;
        Ok([locate(elf, a, base)?, locate(elf, b, base)?])
    }

    /// The function's code in an executable segment, `base` added to its entry.
    fn locate<'a>(elf: &Elf<'a>, span: Span, base: u64) -> Result<Located<'a>, GoError> {
        let not_mapped = GoError::NotMapped {
            name: span.name,
            vaddr: base.wrapping_add(span.entry),
            size: span.size,
        };
        let Some(vaddr) = base.checked_add(span.entry) else {
            return Err(not_mapped);
        };
        let Some((seg, offset)) = elf.locate(vaddr, span.size) else {
            return Err(not_mapped);
        };
        let code = usize::try_from(span.size)
            .ok()
            .and_then(|n| bytes_at(elf.data, offset, n));
        match code {
            Some(code) if seg.executable() => Ok(Located {
                name: span.name,
                vaddr,
                file_offset: offset as u64,
                code,
            }),
            _ => Err(not_mapped),
        }
    }

    /// Field indexes (in pointer-sized words) of runtime/symtab.go
    /// `moduledata`, unchanged from Go 1.16 to go1.27: `pcHeader`, then the
    /// slices `funcnametab`, `cutab`, `filetab`, `pctab`, `pclntable`, `ftab`
    /// (pointer, length, capacity each), `findfunctab`, `minpc`, `maxpc`,
    /// `text`, `etext`.
    const MD_PCHEADER: usize = 0;
    const MD_FUNCNAMETAB: usize = 1;
    const MD_PCLNTABLE: usize = 13;
    const MD_FTAB: usize = 16;
    const MD_FTAB_LEN: usize = 17;
    const MD_TEXT: usize = 22;

    /// `moduledata.text` of the module whose `pcHeader` is `table`: the
    /// runtime's record of its module (`runtime.firstmoduledata`, in
    /// `.noptrdata`, or `.go.module` from go1.26 on) is found by its pointer to
    /// the table and checked against the table's other offsets.
    pub(super) fn module_text(elf: &Elf<'_>, table: &Pclntab<'_>) -> Option<u64> {
        let funcnametab = table.vaddr.checked_add(table.funcname as u64)?;
        let pclntable = table.vaddr.checked_add(table.pcln as u64)?;
        let ftab_len = (table.nfunc as u64).checked_add(1)?;
        elf.segments
            .iter()
            .filter(|s| !s.executable())
            .find_map(|seg| {
                let bytes = elf.segment_bytes(seg);
                let first = usize::try_from((8 - seg.vaddr % 8) % 8).ok()?;
                (first..bytes.len()).step_by(8).find_map(|at| {
                    let w = |i: usize| le_u64(bytes, at.checked_add(8 * i)?);
                    let matches = w(MD_PCHEADER)? == table.vaddr
                        && w(MD_FUNCNAMETAB)? == funcnametab
                        && w(MD_PCLNTABLE)? == pclntable
                        && w(MD_FTAB)? == pclntable
                        && w(MD_FTAB_LEN)? == ftab_len;
                    let text = w(MD_TEXT).filter(|_| matches)?;
                    elf.is_code(text).then_some(text)
                })
            })
    }
}

// ---------------------------------------------------------------------------

/// A function's code in the file.
#[derive(Debug, Clone, Copy)]
struct Located<'a> {
    name: &'static str,
    vaddr: u64,
    file_offset: u64,
    code: &'a [u8],
}

/// Instruction-level analysis of a function's code.
mod code {
    use super::{
        Code, Decoder, DecoderOptions, ENTRY_WINDOW, FlowControl, Formatter, GasFormatter, GoError,
        GoFunction, Instruction, InstructionInfoFactory, Located, Mnemonic, OpAccess, Register,
    };

    /// Registers the entry probe reads: the receiver, the buffer and its
    /// length, and the goroutine (cmd/compile/abi-internal.md, amd64).
    const PROBE_REGISTERS: [Register; 4] =
        [Register::RAX, Register::RBX, Register::RCX, Register::R14];

    /// Offset of `stackguard0` in runtime/runtime2.go `g` (after `stack`'s
    /// `lo` and `hi`).
    const STACKGUARD0: u64 = 16;

    /// Builds the probe description of a located function.
    pub(super) fn analyse(f: &Located<'_>) -> Result<GoFunction, GoError> {
        let ret_sites = ret_sites(f)?;
        let (entry_site, entry_insn) = entry_site(f.code, f.vaddr);
        Ok(GoFunction {
            name: f.name.to_string(),
            vaddr: f.vaddr,
            file_offset: f.file_offset,
            size: f.code.len() as u64,
            entry_site,
            entry_insn,
            ret_sites,
        })
    }

    fn decoder(code: &[u8], vaddr: u64) -> Decoder<'_> {
        Decoder::with_ip(64, code, vaddr, DecoderOptions::NONE)
    }

    /// Offsets of every near `RET`, decoding the whole function linearly. Go
    /// puts no data in its functions and pads them with `int3`, so linear
    /// decoding stays on instruction boundaries; an undecodable instruction
    /// (or one running past the end) means it did not, and is an error.
    fn ret_sites(f: &Located<'_>) -> Result<Vec<u64>, GoError> {
        let mut d = decoder(f.code, f.vaddr);
        let mut rets = Vec::new();
        let mut ins = Instruction::default();
        while d.can_decode() {
            d.decode_out(&mut ins);
            let offset = ins.ip().wrapping_sub(f.vaddr);
            if ins.is_invalid() {
                return Err(GoError::Desync {
                    name: f.name,
                    offset,
                    size: f.code.len() as u64,
                });
            }
            if ins.mnemonic() == Mnemonic::Ret {
                rets.push(offset);
            }
        }
        if rets.is_empty() {
            return Err(GoError::NoRet(f.name));
        }
        Ok(rets)
    }

    /// The entry site and its instruction: the first instruction the kernel
    /// emulates on the straight-line path from the entry, within
    /// [`ENTRY_WINDOW`] instructions and before anything writes a register
    /// the probe reads; else the entry itself.
    pub(super) fn entry_site(code: &[u8], vaddr: u64) -> (u64, String) {
        let mut d = decoder(code, vaddr);
        let mut factory = InstructionInfoFactory::new();
        let mut first = None;
        for _ in 0..ENTRY_WINDOW {
            if !d.can_decode() {
                break;
            }
            let ins = d.decode();
            if ins.is_invalid() {
                break;
            }
            let offset = ins.ip().wrapping_sub(vaddr);
            if first.is_none() {
                first = Some(gas(&ins));
            }
            let bytes = usize::try_from(offset)
                .ok()
                .and_then(|o| code.get(o..o.checked_add(ins.len())?))
                .unwrap_or_default();
            if is_emulated(&ins, bytes) {
                return (offset, gas(&ins));
            }
            if ins.flow_control() != FlowControl::Next || writes_probe_register(&mut factory, &ins)
            {
                break;
            }
        }
        (0, first.unwrap_or_default())
    }

    /// Whether Linux's x86 uprobes emulate `ins` (whose encoding is `bytes`)
    /// instead of single-stepping it (arch/x86/kernel/uprobes.c,
    /// `branch_setup_xol_ops` and `push_setup_xol_ops`): a relative `call`,
    /// `jmp` or `jcc`, a one-byte `nop`, a `push` of a 64-bit register. Only
    /// the plain encodings are accepted (the kernel refuses a `0x66` prefix on
    /// branches and any REX prefix but `0x41` on `push`), which the lengths
    /// check.
    pub(super) fn is_emulated(ins: &Instruction, bytes: &[u8]) -> bool {
        let len = ins.len();
        match ins.code() {
            Code::Call_rel32_64 | Code::Jmp_rel32_64 => len == 5,
            Code::Jmp_rel8_64 => len == 2,
            Code::Nopd => len == 1,
            Code::Push_r64 => len == 1 || (len == 2 && bytes.first() == Some(&0x41)),
            _ => ins.is_jcc_short_or_near() && (len == 2 || len == 6),
        }
    }

    /// Whether `ins` writes (any part of) a register the entry probe reads.
    fn writes_probe_register(factory: &mut InstructionInfoFactory, ins: &Instruction) -> bool {
        factory.info(ins).used_registers().iter().any(|u| {
            matches!(
                u.access(),
                OpAccess::Write
                    | OpAccess::CondWrite
                    | OpAccess::ReadWrite
                    | OpAccess::ReadCondWrite
            ) && PROBE_REGISTERS.contains(&u.register().full_register())
        })
    }

    /// Whether the function starts with Go's register-ABI stack-bound check,
    /// a `cmp` against `g.stackguard0` through `R14`
    /// (cmd/internal/obj/x86/obj6.go `stacksplit`): `cmp 16(%r14),%rsp`, or
    /// for larger frames `lea -N(%rsp),%r12; cmp 16(%r14),%r12`, or for huge
    /// ones a `sub`/`jb` pair before the `cmp`.
    pub(super) fn has_stack_check(code: &[u8], vaddr: u64) -> bool {
        let mut d = decoder(code, vaddr);
        for _ in 0..ENTRY_WINDOW {
            if !d.can_decode() {
                return false;
            }
            let ins = d.decode();
            if ins.is_invalid() {
                return false;
            }
            if ins.mnemonic() == Mnemonic::Cmp
                && ins.memory_base() == Register::R14
                && ins.memory_index() == Register::None
                && ins.memory_displacement64() == STACKGUARD0
            {
                return true;
            }
            if !matches!(
                ins.flow_control(),
                FlowControl::Next | FlowControl::ConditionalBranch
            ) {
                return false;
            }
        }
        false
    }

    fn gas(ins: &Instruction) -> String {
        let mut out = String::new();
        GasFormatter::new().format(ins, &mut out);
        out
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn one(bytes: &[u8]) -> Instruction {
            decoder(bytes, 0x1000).decode()
        }

        fn emulated(bytes: &[u8]) -> bool {
            is_emulated(&one(bytes), bytes)
        }

        #[test]
        fn emulated_encodings() {
            assert!(emulated(&[0x55])); // push %rbp
            assert!(emulated(&[0x41, 0x54])); // push %r12
            assert!(!emulated(&[0x48, 0x55])); // rex.w push %rbp
            assert!(emulated(&[0x90])); // nop
            assert!(!emulated(&[0x0f, 0x1f, 0x00])); // nopl (%rax)
            assert!(emulated(&[0xe8, 0, 0, 0, 0])); // call
            assert!(emulated(&[0xe9, 0, 0, 0, 0])); // jmp rel32
            assert!(emulated(&[0xeb, 0x00])); // jmp rel8
            assert!(emulated(&[0x76, 0x10])); // jbe rel8
            assert!(emulated(&[0x0f, 0x86, 0, 1, 0, 0])); // jbe rel32
            assert!(!emulated(&[0x3e, 0x76, 0x10])); // ds jbe (branch hint)
            assert!(!emulated(&[0xc3])); // ret
            assert!(!emulated(&[0xff, 0xd0])); // call *%rax
            assert!(!emulated(&[0x49, 0x3b, 0x66, 0x10])); // cmp 0x10(%r14),%rsp
        }

        /// `cmp 0x10(%r14),%rsp; jbe; push %rbp; mov %rsp,%rbp`.
        const SMALL_FRAME: [u8; 10] = [0x49, 0x3b, 0x66, 0x10, 0x76, 0x40, 0x55, 0x48, 0x89, 0xe5];
        /// `lea -0x18(%rsp),%r12; cmp 0x10(%r14),%r12; jbe rel32`.
        const LARGE_FRAME: [u8; 15] = [
            0x4c, 0x8d, 0x64, 0x24, 0xe8, 0x4d, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0, 1, 0, 0,
        ];

        #[test]
        fn entry_site_is_the_stack_check_branch() {
            let (site, insn) = entry_site(&SMALL_FRAME, 0x1000);
            assert_eq!(site, 4);
            assert!(insn.starts_with("jbe"), "{insn}");
            let (site, insn) = entry_site(&LARGE_FRAME, 0x1000);
            assert_eq!(site, 9);
            assert!(insn.starts_with("jbe"), "{insn}");
            assert!(has_stack_check(&SMALL_FRAME, 0x1000));
            assert!(has_stack_check(&LARGE_FRAME, 0x1000));
        }

        #[test]
        fn a_written_argument_register_keeps_the_entry() {
            // mov $1,%ecx (writes rcx); jbe
            let code = [0xb9, 1, 0, 0, 0, 0x76, 0x10];
            let (site, insn) = entry_site(&code, 0x1000);
            assert_eq!(site, 0);
            assert!(insn.starts_with("mov"), "{insn}");
            // mov $1,%bl (writes part of rbx); push %rbp
            assert_eq!(entry_site(&[0xb3, 1, 0x55], 0).0, 0);
            // mov %rsp,%r12 (not a probe register); push %rbp
            assert_eq!(entry_site(&[0x49, 0x89, 0xe4, 0x55], 0).0, 3);
        }

        #[test]
        fn stack_abi_prologue_is_not_register_abi() {
            // mov %fs:0xfffffffffffffff8,%rcx; cmp 0x10(%rcx),%rsp; jbe
            let code = [
                0x64, 0x48, 0x8b, 0x0c, 0x25, 0xf8, 0xff, 0xff, 0xff, 0x48, 0x3b, 0x61, 0x10, 0x76,
                0x10,
            ];
            assert!(!has_stack_check(&code, 0));
        }

        #[test]
        fn rets_and_desync() {
            let f = |code: &'static [u8]| Located {
                name: "f",
                vaddr: 0x1000,
                file_offset: 0,
                code,
            };
            // push %rbp; pop %rbp; ret; int3; ret $8; int3
            let ok = f(&[0x55, 0x5d, 0xc3, 0xcc, 0xc2, 0x08, 0x00, 0xcc]);
            assert_eq!(ret_sites(&ok).unwrap(), vec![2, 4]);
            // push %rbp; then a call cut short
            assert!(matches!(
                ret_sites(&f(&[0x55, 0xc3, 0xe8, 0x00])),
                Err(GoError::Desync { offset: 2, .. })
            ));
            // an invalid opcode in 64-bit mode (0x06: push %es)
            assert!(matches!(
                ret_sites(&f(&[0xc3, 0x06, 0xc3])),
                Err(GoError::Desync { offset: 1, .. })
            ));
            assert!(matches!(
                ret_sites(&f(&[0x90, 0xcc])),
                Err(GoError::NoRet(_))
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    //! Real Go programs built with the installed `go` (skipped when there is
    //! none): the integration tests' HTTPS client normally, with
    //! `-ldflags="-s -w"`, through `strip`, as a PIE, and with its section
    //! headers removed; a program without TLS; and damaged copies.

    use std::{path::Path, process::Command, sync::OnceLock, time::Instant};

    use object::{Object, ObjectSymbol};

    use super::*;

    /// The integration tests' Go client (tests/clients/go-https).
    const CLIENT_MAIN: &str = include_str!("../../../tests/clients/go-https/main.go");
    const CLIENT_MOD: &str = include_str!("../../../tests/clients/go-https/go.mod");
    const HELLO_MAIN: &str =
        "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello\") }\n";
    const HELLO_MOD: &str = "module telltale.test/hello\n\ngo 1.19\n";

    /// Executables built once for all tests, read into memory.
    struct Builds {
        go_version: String,
        normal: Vec<u8>,
        sw: Vec<u8>,
        /// `None` when `strip` is not installed.
        stripped: Option<Vec<u8>>,
        pie: Vec<u8>,
        hello: Vec<u8>,
    }

    /// The builds, or `None` (after printing why) when `go` is not installed.
    fn builds() -> Option<&'static Builds> {
        static BUILDS: OnceLock<Option<Builds>> = OnceLock::new();
        let builds = BUILDS.get_or_init(|| {
            if Command::new("go").arg("version").output().is_err() {
                return None;
            }
            let start = Instant::now();
            let b = build_all();
            eprintln!("built the Go test programs in {:.1?}", start.elapsed());
            Some(b)
        });
        if builds.is_none() {
            println!("skipping: go is not installed");
        }
        builds.as_ref()
    }

    fn build_all() -> Builds {
        let tmp = crate::state::TempDir::new("golang");
        let client = tmp.path().join("client");
        let hello = tmp.path().join("hello");
        for (dir, main, module) in [
            (&client, CLIENT_MAIN, CLIENT_MOD),
            (&hello, HELLO_MAIN, HELLO_MOD),
        ] {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(dir.join("main.go"), main).unwrap();
            std::fs::write(dir.join("go.mod"), module).unwrap();
        }
        let bin = tmp.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let build = |dir: &Path, flags: &[&str], name: &str| {
            let out = bin.join(name);
            let mut args = vec!["build"];
            args.extend(flags);
            args.extend(["-o", out.to_str().unwrap(), "."]);
            go(tmp.path(), dir, &args);
            std::fs::read(out).unwrap()
        };
        let normal = build(&client, &[], "normal");
        let sw = build(&client, &["-ldflags=-s -w"], "sw");
        let pie = build(&client, &["-buildmode=pie"], "pie");
        let hello = build(&hello, &[], "hello");
        let stripped = bin.join("stripped");
        let stripped = match Command::new("strip")
            .arg("-o")
            .arg(&stripped)
            .arg(bin.join("normal"))
            .status()
        {
            Ok(s) if s.success() => Some(std::fs::read(stripped).unwrap()),
            Ok(s) => panic!("strip failed: {s}"),
            Err(_) => {
                println!("skipping the strip(1) copy: strip is not installed");
                None
            }
        };
        let version = go(tmp.path(), &client, &["env", "GOVERSION"]);
        Builds {
            go_version: version.trim().to_string(),
            normal,
            sw,
            stripped,
            pie,
            hello,
        }
    }

    /// Runs `go` hermetically (own caches, no network, no toolchain switch,
    /// pure-Go linux/amd64 output) and returns its standard output.
    fn go(tmp: &Path, dir: &Path, args: &[&str]) -> String {
        let out = Command::new("go")
            .args(args)
            .current_dir(dir)
            .env("GOCACHE", tmp.join("gocache"))
            .env("GOPATH", tmp.join("gopath"))
            .env("GOFLAGS", "-mod=mod")
            .env("GOTOOLCHAIN", "local")
            .env("GOPROXY", "off")
            .env("GOENV", "off")
            .env("CGO_ENABLED", "0")
            .env("GOOS", "linux")
            .env("GOARCH", "amd64")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "go {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn found(data: &[u8]) -> GoTls {
        go_tls(data)
            .expect("go_tls failed")
            .expect("crypto/tls not found")
    }

    /// Ground truth: the address and size of a symbol in `.symtab`, through
    /// `object`.
    fn symtab_function(data: &[u8], name: &str) -> (u64, u64) {
        let file = object::read::elf::ElfFile64::<Endianness>::parse(data).unwrap();
        let sym = file
            .symbols()
            .find(|s| s.name() == Ok(name))
            .unwrap_or_else(|| panic!("{name} not in .symtab"));
        (sym.address(), sym.size())
    }

    /// `data` without section headers (`e_shoff`, `e_shnum`, `e_shstrndx` zeroed).
    fn without_sections(data: &[u8]) -> Vec<u8> {
        let mut d = data.to_vec();
        d[0x28..0x30].fill(0); // e_shoff
        d[0x3c..0x40].fill(0); // e_shnum, e_shstrndx
        d
    }

    /// File offset of the pc-line table's header.
    fn pclntab_offset(data: &[u8]) -> usize {
        let elf = Elf::parse(data).unwrap();
        let s = elf.section(&PCLNTAB_SECTIONS).unwrap();
        elf.locate(s.addr, 1).unwrap().1
    }

    fn same_places(a: &GoTls, b: &GoTls) {
        for (x, y) in [(&a.write, &b.write), (&a.read, &b.read)] {
            assert_eq!(x, y);
        }
    }

    /// Every site is on an instruction of the expected kind, read through the
    /// file offset.
    fn check_sites(data: &[u8], f: &GoFunction) {
        let at = |off: u64| {
            let start = (f.file_offset + off) as usize;
            let ins =
                Decoder::with_ip(64, &data[start..], f.vaddr + off, DecoderOptions::NONE).decode();
            (ins, &data[start..start + ins.len()])
        };
        assert!(
            f.entry_site < 32,
            "{}: entry site +{:#x}",
            f.name,
            f.entry_site
        );
        let (entry, bytes) = at(f.entry_site);
        assert!(
            code::is_emulated(&entry, bytes),
            "{}: entry `{}` is not emulated",
            f.name,
            f.entry_insn
        );
        assert!(!f.ret_sites.is_empty());
        for &r in &f.ret_sites {
            assert!(r < f.size);
            assert_eq!(
                at(r).0.mnemonic(),
                Mnemonic::Ret,
                "{}: +{r:#x} is no RET",
                f.name
            );
        }
        assert!(f.ret_sites.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn finds_the_tls_methods_in_normal_sw_and_stripped_builds() {
        let Some(b) = builds() else { return };
        let normal = found(&b.normal);
        assert_eq!(normal.go_version.as_deref(), Some(b.go_version.as_str()));
        assert!(!normal.stripped);
        for f in [&normal.write, &normal.read] {
            let (address, size) = symtab_function(&b.normal, &f.name);
            // The table's size runs to the next function: it adds the padding.
            assert!(
                size <= f.size && f.size - size < 64,
                "{}: .symtab size {size:#x}",
                f.name
            );
            assert_eq!(f.vaddr, address, "{} disagrees with .symtab", f.name);
            check_sites(&b.normal, f);
            println!(
                "{}: vaddr {:#x}, offset {:#x}, size {:#x}, entry +{:#x} `{}`, {} RETs at {:x?}",
                f.name,
                f.vaddr,
                f.file_offset,
                f.size,
                f.entry_site,
                f.entry_insn,
                f.ret_sites.len(),
                f.ret_sites
            );
        }
        let sw = found(&b.sw);
        assert!(sw.stripped);
        assert_eq!(sw.go_version, normal.go_version);
        check_sites(&b.sw, &sw.write);
        check_sites(&b.sw, &sw.read);
        // -s -w changes the layout of the data after the text, not the code.
        assert_eq!(
            (sw.write.vaddr, sw.read.vaddr),
            (normal.write.vaddr, normal.read.vaddr)
        );
        assert_eq!(sw.write.ret_sites, normal.write.ret_sites);
        // A sub-slice that is not 8-byte aligned gives the same answer.
        let mut shifted = vec![0u8; b.sw.len() + 1];
        shifted[1..].copy_from_slice(&b.sw);
        assert_eq!(found(&shifted[1..]), sw);
        if let Some(stripped) = &b.stripped {
            let s = found(stripped);
            assert!(s.stripped);
            assert_eq!(s.go_version, normal.go_version);
            same_places(&s, &normal);
        }
    }

    #[test]
    fn finds_the_tls_methods_in_a_pie() {
        let Some(b) = builds() else { return };
        let pie = found(&b.pie);
        for f in [&pie.write, &pie.read] {
            assert_eq!(f.vaddr, symtab_function(&b.pie, &f.name).0);
            check_sites(&b.pie, f);
        }
    }

    #[test]
    fn finds_the_table_without_section_headers() {
        let Some(b) = builds() else { return };
        let normal = found(&b.normal);
        let bare = without_sections(&b.sw);
        assert!(is_go(&bare));
        let t = found(&bare);
        assert!(t.stripped);
        assert_eq!(t.go_version, normal.go_version);
        same_places(&t, &normal);

        // go1.26+ leaves pcHeader.textStart zero: the module data gives it.
        let elf = Elf::parse(&b.sw).unwrap();
        if pclntab::find(&elf).unwrap().layout != pclntab::Layout::Go118 {
            return;
        }
        let mut no_text_start = bare;
        let at = pclntab_offset(&b.sw) + 24;
        no_text_start[at..at + 8].fill(0);
        same_places(&found(&no_text_start), &normal);
        let elf = Elf::parse(&no_text_start).unwrap();
        let table = pclntab::find(&elf).unwrap();
        assert_eq!(table.text_start, 0);
        assert_eq!(
            place::module_text(&elf, &table),
            Some(symtab_function(&b.normal, "runtime.text").0)
        );
    }

    #[test]
    fn programs_without_tls_and_other_files() {
        let true_bin = Path::new("/usr/bin/true");
        if let Ok(c) = std::fs::read(true_bin) {
            assert!(!is_go(&c));
            assert!(go_tls(&c).unwrap().is_none());
        }
        assert!(matches!(
            go_tls(b"#!/bin/sh\necho hi\n"),
            Err(GoError::NotElf(_))
        ));
        assert!(matches!(go_tls(&[]), Err(GoError::NotElf(_))));
        assert!(!is_go(b"\x7fELF"));
        let Some(b) = builds() else { return };
        assert!(is_go(&b.hello));
        assert!(go_tls(&b.hello).unwrap().is_none());
        for d in [&b.normal, &b.sw, &b.pie] {
            assert!(is_go(d));
        }
        let mut arm64 = b.hello.clone();
        arm64[0x12..0x14].copy_from_slice(&elf::EM_AARCH64.to_le_bytes()); // e_machine
        assert!(matches!(go_tls(&arm64), Err(GoError::NotX86_64(m)) if m == "arm64"));
    }

    /// A small deterministic generator (xorshift64*).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// Byte ranges of a Go executable worth damaging: the table header, the
    /// name table, the function table entries and records of the TLS methods,
    /// their code, the ELF and program headers, and anything.
    fn sensitive_ranges(data: &[u8], source: &[u8]) -> Vec<std::ops::Range<usize>> {
        let header = pclntab_offset(source);
        let elf = Elf::parse(source).unwrap();
        let t = pclntab::find(&elf).unwrap();
        let fs = t.layout.field_size();
        let mut ranges = vec![header..header + 128, header..header + 0x40000, 0..0x1000];
        for i in t.find([WRITE, READ]).into_iter().flatten() {
            let entry = header + t.pcln + 2 * i * fs;
            ranges.push(entry - 4 * fs..entry + 4 * fs);
            let record = header + t.record(i).unwrap();
            ranges.push(record..record + 16);
        }
        let tls = found(data);
        for f in [&tls.write, &tls.read] {
            ranges.push(f.file_offset as usize..(f.file_offset + f.size) as usize);
        }
        ranges.push(0..data.len());
        ranges
    }

    #[test]
    fn damaged_copies_never_panic() {
        let Some(b) = builds() else { return };
        let start = Instant::now();
        let mut calls = 0usize;
        for (data, source) in [(&b.normal, &b.normal), (&without_sections(&b.sw), &b.sw)] {
            let tls = found(data);
            let header = pclntab_offset(source);
            let mut cuts: Vec<usize> = (0..256).collect();
            cuts.extend((1..40).map(|i| data.len() / 40 * i));
            cuts.extend((0..128).map(|i| header + i * 7));
            for f in [&tls.write, &tls.read] {
                let off = f.file_offset as usize;
                cuts.extend(off.saturating_sub(8)..off + 32);
                cuts.push(off + f.size as usize);
            }
            for cut in cuts.into_iter().filter(|&c| c <= data.len()) {
                let _ = go_tls(&data[..cut]);
                let _ = is_go(&data[..cut]);
                calls += 1;
            }

            let ranges = sensitive_ranges(data, source);
            let mut copy = data.clone();
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
            for round in 0..400 {
                let range = &ranges[round % ranges.len()];
                let flips: Vec<usize> = (0..1 + rng.below(4))
                    .map(|_| (range.start + rng.below(range.len())).min(copy.len() - 1))
                    .collect();
                let saved: Vec<u8> = flips.iter().map(|&i| copy[i]).collect();
                for &i in &flips {
                    copy[i] ^= 1 + rng.below(255) as u8;
                }
                if let Ok(Some(t)) = go_tls(&copy) {
                    // Whatever is reported still lies inside the functions.
                    for f in [&t.write, &t.read] {
                        assert!(f.entry_site < f.size && f.ret_sites.iter().all(|&r| r < f.size));
                    }
                }
                calls += 1;
                for (&i, &v) in flips.iter().zip(&saved) {
                    copy[i] = v;
                }
            }
        }
        println!("{calls} damaged inputs in {:.1?}", start.elapsed());
    }
}
