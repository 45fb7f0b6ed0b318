//! Just enough of the kernel's BTF (`/sys/kernel/btf/vmlinux`) to find where
//! fields live in kernel structures, so that the kernel programs can follow
//! `task → files → file → socket → sock` on this very kernel without
//! compile-time offsets (the loader passes the offsets in as constants).

use std::collections::HashMap;

/// Why an offset could not be found.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BtfError {
    /// The blob is not BTF or is cut short.
    #[error("malformed BTF: {0}")]
    Malformed(&'static str),
    /// No struct or union of that name.
    #[error("no struct {0} in the kernel's BTF")]
    NoStruct(String),
    /// The struct has no such member (also through anonymous members).
    #[error("struct {0} has no member {1}")]
    NoMember(String, String),
    /// The member is a bitfield, which a byte offset cannot name.
    #[error("{0}.{1} is a bitfield")]
    Bitfield(String, String),
}

const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_TYPE_TAG: u32 = 18;

#[derive(Debug, Clone)]
struct Member {
    name: u32,
    ty: u32,
    bit_offset: u32,
    bitfield: bool,
}

#[derive(Debug, Clone)]
struct Type {
    name: u32,
    kind: u32,
    /// `size_or_type`: the referenced type for modifiers and typedefs.
    refers: u32,
    members: Vec<Member>,
}

/// Parsed types and strings of a BTF blob.
pub struct Btf {
    types: Vec<Type>,
    strings: Vec<u8>,
    structs: HashMap<String, u32>,
}

fn u32_at(b: &[u8], off: usize) -> Result<u32, BtfError> {
    let s = b
        .get(off..off + 4)
        .ok_or(BtfError::Malformed("truncated"))?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

impl Btf {
    /// Reads the running kernel's BTF.
    pub fn from_sys() -> std::io::Result<Result<Self, BtfError>> {
        std::fs::read("/sys/kernel/btf/vmlinux").map(|b| Self::parse(&b))
    }

    /// Parses a little-endian BTF blob.
    pub fn parse(b: &[u8]) -> Result<Self, BtfError> {
        if b.get(..2) != Some(&[0x9f, 0xeb]) {
            return Err(BtfError::Malformed("bad magic"));
        }
        let hdr_len = u32_at(b, 4)? as usize;
        let type_off = u32_at(b, 8)? as usize;
        let type_len = u32_at(b, 12)? as usize;
        let str_off = u32_at(b, 16)? as usize;
        let str_len = u32_at(b, 20)? as usize;
        let types_bytes = b
            .get(hdr_len + type_off..hdr_len + type_off + type_len)
            .ok_or(BtfError::Malformed("type section out of bounds"))?;
        let strings = b
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or(BtfError::Malformed("string section out of bounds"))?
            .to_vec();
        // Type id 0 is `void`.
        let mut types = vec![Type {
            name: 0,
            kind: 0,
            refers: 0,
            members: Vec::new(),
        }];
        let mut pos = 0;
        while pos < types_bytes.len() {
            let name = u32_at(types_bytes, pos)?;
            let info = u32_at(types_bytes, pos + 4)?;
            let refers = u32_at(types_bytes, pos + 8)?;
            pos += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let mut members = Vec::new();
            let extra = match kind {
                1 | 14 | 17 => 4, // int, var, decl_tag
                3 => 12,          // array
                4 | 5 => {
                    for i in 0..vlen {
                        let m = pos + i * 12;
                        let off = u32_at(types_bytes, m + 8)?;
                        let (bit_offset, bitfield) = if kind_flag {
                            (off & 0xff_ffff, off >> 24 != 0)
                        } else {
                            (off, false)
                        };
                        members.push(Member {
                            name: u32_at(types_bytes, m)?,
                            ty: u32_at(types_bytes, m + 4)?,
                            bit_offset,
                            bitfield,
                        });
                    }
                    vlen * 12
                }
                6 | 13 => vlen * 8,   // enum, func_proto
                15 | 19 => vlen * 12, // datasec, enum64
                2 | 7 | 8 | 9 | 10 | 11 | 12 | 16 | 18 => 0,
                _ => return Err(BtfError::Malformed("unknown type kind")),
            };
            pos += extra;
            types.push(Type {
                name,
                kind,
                refers,
                members,
            });
        }
        let mut btf = Self {
            types,
            strings,
            structs: HashMap::new(),
        };
        for (id, t) in btf.types.iter().enumerate() {
            if matches!(t.kind, KIND_STRUCT | KIND_UNION) && t.name != 0 {
                let n = btf.name(t.name).to_owned();
                btf.structs.entry(n).or_insert(id as u32);
            }
        }
        Ok(btf)
    }

    fn name(&self, off: u32) -> &str {
        let s = self.strings.get(off as usize..).unwrap_or(&[]);
        let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
        std::str::from_utf8(&s[..end]).unwrap_or("")
    }

    /// Follows typedefs and qualifiers to the underlying type.
    fn resolve(&self, mut id: u32) -> Option<&Type> {
        for _ in 0..32 {
            let t = self.types.get(id as usize)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.refers;
                }
                _ => return Some(t),
            }
        }
        None
    }

    /// Bit offset of member `name` in struct/union `t`, looking through anonymous
    /// struct and union members; the member's type id and bitfield flag.
    fn find(&self, t: &Type, name: &str, depth: u32) -> Option<(u32, u32, bool)> {
        if depth > 8 {
            return None;
        }
        for m in &t.members {
            if m.name != 0 && self.name(m.name) == name {
                return Some((m.bit_offset, m.ty, m.bitfield));
            }
        }
        for m in t.members.iter().filter(|m| m.name == 0) {
            let inner = self.resolve(m.ty)?;
            if matches!(inner.kind, KIND_STRUCT | KIND_UNION)
                && let Some((off, ty, bf)) = self.find(inner, name, depth + 1)
            {
                return Some((m.bit_offset + off, ty, bf));
            }
        }
        None
    }

    /// Byte offset of `path` (a member, then members of that member, …) inside
    /// `struct_name`.
    pub fn offset(&self, struct_name: &str, path: &[&str]) -> Result<u32, BtfError> {
        let id = *self
            .structs
            .get(struct_name)
            .ok_or_else(|| BtfError::NoStruct(struct_name.to_owned()))?;
        let mut t = self
            .resolve(id)
            .ok_or(BtfError::Malformed("dangling type id"))?;
        let mut bits = 0u32;
        let mut where_ = struct_name.to_owned();
        for (i, &member) in path.iter().enumerate() {
            let (off, ty, bitfield) = self
                .find(t, member, 0)
                .ok_or_else(|| BtfError::NoMember(where_.clone(), member.to_owned()))?;
            if bitfield || off % 8 != 0 {
                return Err(BtfError::Bitfield(where_, member.to_owned()));
            }
            bits += off;
            if i + 1 < path.len() {
                t = self
                    .resolve(ty)
                    .ok_or(BtfError::Malformed("dangling member type"))?;
                where_ = format!("{where_}.{member}");
            }
        }
        Ok(bits / 8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_what_is_not_btf() {
        assert!(matches!(Btf::parse(b"nope"), Err(BtfError::Malformed(_))));
        assert!(matches!(
            Btf::parse(&[0x9f, 0xeb, 1, 0]),
            Err(BtfError::Malformed(_))
        ));
    }

    /// On the running kernel: offsets of the fields the socket lookup reads are
    /// found, and agree with what the kernel's own layout must satisfy.
    #[test]
    fn finds_socket_fields_in_the_running_kernel() {
        let Ok(parsed) = Btf::from_sys() else {
            eprintln!("skipping: no /sys/kernel/btf/vmlinux here");
            return;
        };
        let btf = parsed.expect("the kernel's BTF parses");
        // struct sock starts with struct sock_common.
        assert_eq!(btf.offset("sock", &["__sk_common"]), Ok(0));
        let daddr = btf.offset("sock_common", &["skc_daddr"]).expect("daddr");
        let saddr = btf
            .offset("sock_common", &["skc_rcv_saddr"])
            .expect("saddr");
        assert_eq!(saddr, daddr + 4, "skc_addrpair: daddr then rcv_saddr");
        let dport = btf.offset("sock_common", &["skc_dport"]).expect("dport");
        let num = btf.offset("sock_common", &["skc_num"]).expect("num");
        assert_eq!(num, dport + 2, "skc_portpair: dport then num");
        for (s, path) in [
            ("task_struct", &["files"][..]),
            ("files_struct", &["fdt"]),
            ("fdtable", &["fd"]),
            ("fdtable", &["max_fds"]),
            ("file", &["private_data"]),
            ("file", &["f_inode"]),
            ("inode", &["i_mode"]),
            ("socket", &["sk"]),
            ("sock_common", &["skc_family"]),
            ("sock_common", &["skc_v6_daddr"]),
            ("sock_common", &["skc_v6_rcv_saddr"]),
        ] {
            btf.offset(s, path)
                .unwrap_or_else(|e| panic!("{s}.{path:?}: {e}"));
        }
        assert!(matches!(
            btf.offset("sock_common", &["no_such_field"]),
            Err(BtfError::NoMember(..))
        ));
        assert!(matches!(
            btf.offset("no_such_struct", &["x"]),
            Err(BtfError::NoStruct(_))
        ));
    }
}
