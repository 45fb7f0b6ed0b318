//! What identifies a program file: its SHA-256 and its GNU build id.
//!
//! Many processes run the same file (`/usr/bin/node`), so the facts are computed
//! once per file version — its (device, inode, size, mtime) — and cached.

use std::{collections::HashMap, fs::File, os::unix::fs::FileExt, os::unix::fs::MetadataExt};

use object::{
    Endianness, FileKind,
    elf::{self, FileHeader32, FileHeader64},
    read::elf::{FileHeader, ProgramHeader, SectionHeader},
};
use sha2::{Digest, Sha256};

/// Files larger than this are not hashed: reading them would stall the pipeline.
pub(super) const MAX_HASHED_BYTES: u64 = 512 << 20;

/// What the cache knows about one program file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct ExeFacts {
    /// SHA-256 of the file's contents, lower-case hex.
    pub sha256: Option<String>,
    /// ELF `NT_GNU_BUILD_ID`, lower-case hex.
    pub build_id: Option<String>,
}

/// One version of one file: a changed file gets a new key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ExeKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

#[derive(Debug)]
struct Cached {
    facts: ExeFacts,
    last_used: u64,
}

/// [`ExeFacts`] per file version, bounded; the least recently used goes first.
#[derive(Debug)]
pub(super) struct ExeCache {
    entries: HashMap<ExeKey, Cached>,
    max_entries: usize,
    clock: u64,
}

impl ExeCache {
    /// A cache of at most `max_entries` files (at least one).
    pub(super) fn new(max_entries: usize) -> Self {
        Self {
            entries: HashMap::new(),
            max_entries: max_entries.max(1),
            clock: 0,
        }
    }

    /// The facts about the open file `file` (typically `/proc/PID/exe`, which
    /// reaches deleted files and files inside containers alike).
    pub(super) fn facts(&mut self, file: &File) -> ExeFacts {
        let Ok(meta) = file.metadata() else {
            return ExeFacts::default();
        };
        if !meta.is_file() {
            return ExeFacts::default();
        }
        let key = ExeKey {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        };
        self.clock += 1;
        if let Some(cached) = self.entries.get_mut(&key) {
            cached.last_used = self.clock;
            return cached.facts.clone();
        }
        let facts = ExeFacts {
            sha256: (key.size <= MAX_HASHED_BYTES)
                .then(|| sha256_hex(file, key.size))
                .flatten(),
            build_id: build_id_hex(file, key.size),
        };
        if self.entries.len() >= self.max_entries
            && let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, c)| c.last_used)
                .map(|(k, _)| *k)
        {
            self.entries.remove(&oldest);
        }
        self.entries.insert(
            key,
            Cached {
                facts: facts.clone(),
                last_used: self.clock,
            },
        );
        facts
    }

    /// How many files are cached.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// SHA-256 of the file, if it could be read whole and still had `size` bytes.
fn sha256_hex(file: &File, size: u64) -> Option<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut offset = 0u64;
    loop {
        let n = match file.read_at(&mut buf, offset) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        };
        hasher.update(&buf[..n]);
        offset += n as u64;
        if offset > size {
            return None;
        }
    }
    (offset == size).then(|| hex(&hasher.finalize()))
}

/// The GNU build id of an ELF file, read from its note segments (or note
/// sections when it has no program headers) through a mapping, so that only
/// the pages holding the headers and notes are read.
fn build_id_hex(file: &File, size: u64) -> Option<String> {
    if size == 0 {
        return None;
    }
    // SAFETY: the mapping is read-only and private. A file being executed cannot
    // be written (ETXTBSY); a concurrent truncation otherwise could fault.
    let map = unsafe { memmap2::Mmap::map(file) }.ok()?;
    gnu_build_id(&map).map(hex)
}

/// The `NT_GNU_BUILD_ID` note of an ELF image, if it has one.
pub(super) fn gnu_build_id(data: &[u8]) -> Option<&[u8]> {
    match FileKind::parse(data).ok()? {
        FileKind::Elf32 => gnu_build_id_in::<FileHeader32<Endianness>>(data),
        FileKind::Elf64 => gnu_build_id_in::<FileHeader64<Endianness>>(data),
        _ => None,
    }
}

fn gnu_build_id_in<Elf: FileHeader<Endian = Endianness>>(data: &[u8]) -> Option<&[u8]> {
    let header = Elf::parse(data).ok()?;
    let endian = header.endian().ok()?;
    let is_build_id = |note: &object::read::elf::Note<'_, Elf>| {
        note.name() == elf::ELF_NOTE_GNU && note.n_type(endian) == elf::NT_GNU_BUILD_ID
    };
    // What the loader maps: present in every executable, even a stripped one.
    for segment in header.program_headers(endian, data).ok()? {
        if let Ok(Some(mut notes)) = segment.notes(endian, data) {
            while let Ok(Some(note)) = notes.next() {
                if is_build_id(&note) {
                    return Some(note.desc());
                }
            }
        }
    }
    for section in header.section_headers(endian, data).ok()? {
        if let Ok(Some(mut notes)) = section.notes(endian, data) {
            while let Ok(Some(note)) = notes.next() {
                if is_build_id(&note) {
                    return Some(note.desc());
                }
            }
        }
    }
    None
}

/// Lower-case hex of `bytes`.
pub(super) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use object::Object;

    use super::*;

    /// A scratch file that removes itself.
    struct Scratch(std::path::PathBuf);

    impl Scratch {
        fn new(name: &str, contents: &[u8]) -> Self {
            let path =
                std::env::temp_dir().join(format!("telltale-exe-{}-{name}", std::process::id()));
            let mut f = File::create(&path).expect("create scratch file");
            f.write_all(contents).expect("write scratch file");
            Self(path)
        }

        fn open(&self) -> File {
            File::open(&self.0).expect("open scratch file")
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn hex_is_lower_case_and_padded() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn sha256_of_known_contents() {
        let file = Scratch::new("abc", b"abc");
        let facts = ExeCache::new(4).facts(&file.open());
        assert_eq!(
            facts.sha256.as_deref(),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        // Not an ELF file.
        assert_eq!(facts.build_id, None);

        let empty = Scratch::new("empty", b"");
        let facts = ExeCache::new(4).facts(&empty.open());
        assert_eq!(
            facts.sha256.as_deref(),
            Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        assert_eq!(facts.build_id, None);
    }

    #[test]
    fn build_id_of_this_binary_agrees_with_object() {
        let exe = std::env::current_exe().expect("current exe");
        let data = std::fs::read(&exe).expect("read current exe");
        let expected = object::File::parse(&*data)
            .expect("parse current exe")
            .build_id()
            .expect("read build id");
        assert_eq!(gnu_build_id(&data), expected);
        let facts = ExeCache::new(4).facts(&File::open(&exe).expect("open current exe"));
        assert_eq!(facts.build_id, expected.map(hex));
    }

    #[test]
    fn garbage_is_no_elf() {
        assert_eq!(gnu_build_id(b""), None);
        assert_eq!(gnu_build_id(b"\x7fELF"), None);
        assert_eq!(
            gnu_build_id(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0]),
            None
        );
    }

    #[test]
    fn the_cache_is_bounded_and_keyed_by_file_version() {
        let files: Vec<Scratch> = (0..5)
            .map(|i| Scratch::new(&format!("bound{i}"), format!("file {i}").as_bytes()))
            .collect();
        let mut cache = ExeCache::new(3);
        for f in &files {
            cache.facts(&f.open());
        }
        assert_eq!(cache.len(), 3);

        // Rewriting a file (new size) yields a new key and a new hash.
        let f = Scratch::new("rewrite", b"one");
        let first = cache.facts(&f.open());
        std::fs::write(&f.0, b"three").expect("rewrite");
        let second = cache.facts(&f.open());
        assert_ne!(first.sha256, second.sha256);
        assert_eq!(cache.len(), 3);
    }
}
