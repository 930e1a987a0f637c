//! Just enough of a BTF reader to find struct member offsets in the running
//! kernel (`/sys/kernel/btf/vmlinux`). Rust eBPF gets no CO-RE relocations, so
//! the offsets the kernel programs use are looked up here and passed at load.
use std::path::Path;

use crate::error::BtfError;

const MAGIC: u16 = 0xeb9f;
const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Debug, Clone, Copy)]
struct Member {
    name_off: u32,
    type_id: u32,
    bit_offset: u32,
}

#[derive(Debug, Default)]
struct Type {
    name_off: u32,
    kind: u32,
    /// For modifiers and typedefs: the type they refer to.
    ref_type: u32,
    members: Vec<Member>,
}

/// Parsed kernel BTF: types and the string table.
pub struct Btf {
    types: Vec<Type>,
    strings: Vec<u8>,
}

fn u32_at(data: &[u8], at: usize) -> Result<u32, BtfError> {
    data.get(at..at + 4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]])).ok_or(BtfError::Truncated)
}

impl Btf {
    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        let data = std::fs::read(path).map_err(|source| BtfError::Read { path: path.to_owned(), source })?;
        Self::parse(&data)
    }

    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        if data.len() < 24 || u16::from_ne_bytes([data[0], data[1]]) != MAGIC {
            return Err(BtfError::BadMagic);
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let type_off = hdr_len + u32_at(data, 8)? as usize;
        let type_len = u32_at(data, 12)? as usize;
        let str_off = hdr_len + u32_at(data, 16)? as usize;
        let str_len = u32_at(data, 20)? as usize;
        let strings = data.get(str_off..str_off + str_len).ok_or(BtfError::Truncated)?.to_vec();
        let section = data.get(type_off..type_off + type_len).ok_or(BtfError::Truncated)?;

        let mut types = vec![Type::default()]; // id 0 is void
        let mut at = 0;
        while at < section.len() {
            let name_off = u32_at(section, at)?;
            let info = u32_at(section, at + 4)?;
            let size_or_type = u32_at(section, at + 8)?;
            at += 12;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let bitfield_offsets = info >> 31 == 1;
            let mut members = Vec::new();
            let trailing = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen {
                        let base = at + i * 12;
                        let offset = u32_at(section, base + 8)?;
                        members.push(Member {
                            name_off: u32_at(section, base)?,
                            type_id: u32_at(section, base + 4)?,
                            // With kind_flag set the high 8 bits hold a bitfield size.
                            bit_offset: if bitfield_offsets { offset & 0xff_ffff } else { offset },
                        });
                    }
                    vlen * 12
                }
                KIND_ENUM | KIND_FUNC_PROTO => vlen * 8,
                KIND_DATASEC | KIND_ENUM64 => vlen * 12,
                k if k <= KIND_TYPE_TAG => 0,
                other => return Err(BtfError::UnknownKind(other)),
            };
            at += trailing;
            types.push(Type { name_off, kind, ref_type: size_or_type, members });
        }
        Ok(Self { types, strings })
    }

    fn name(&self, off: u32) -> &str {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    /// Follows typedefs and qualifiers to the type underneath.
    fn resolve(&self, mut id: u32) -> Option<&Type> {
        for _ in 0..32 {
            let ty = self.types.get(id as usize)?;
            match ty.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => id = ty.ref_type,
                _ => return Some(ty),
            }
        }
        None
    }

    fn find_struct(&self, name: &str) -> Option<&Type> {
        self.types.iter().find(|t| {
            (t.kind == KIND_STRUCT || t.kind == KIND_UNION) && !t.members.is_empty() && self.name(t.name_off) == name
        })
    }

    /// Bit offset and type of member `name` in `ty`, looking through anonymous
    /// struct and union members the way C does.
    fn member(&self, ty: &Type, name: &str) -> Option<(u32, u32)> {
        for m in &ty.members {
            if m.name_off != 0 && self.name(m.name_off) == name {
                return Some((m.bit_offset, m.type_id));
            }
        }
        for m in ty.members.iter().filter(|m| m.name_off == 0) {
            let inner = self.resolve(m.type_id)?;
            if let Some((bits, type_id)) = self.member(inner, name) {
                return Some((m.bit_offset + bits, type_id));
            }
        }
        None
    }

    /// Byte offset of `path` ("ns.inum") inside `struct struct_name`.
    pub fn offset_of(&self, struct_name: &str, path: &str) -> Result<u32, BtfError> {
        let missing = || BtfError::MissingMember { structure: struct_name.to_owned(), member: path.to_owned() };
        let mut ty = self.find_struct(struct_name).ok_or_else(missing)?;
        let mut bits = 0;
        let mut parts = path.split('.').peekable();
        while let Some(part) = parts.next() {
            let (member_bits, type_id) = self.member(ty, part).ok_or_else(missing)?;
            bits += member_bits;
            if parts.peek().is_some() {
                ty = self.resolve(type_id).ok_or_else(missing)?;
            }
        }
        if bits % 8 != 0 {
            return Err(BtfError::Bitfield { structure: struct_name.to_owned(), member: path.to_owned() });
        }
        Ok(bits / 8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-built BTF blob: `struct outer { int a; union { int b; struct inner c; }; }`
    /// with `struct inner { int x; int y; }`, as the kernel would lay it out.
    fn sample() -> Vec<u8> {
        let strings = b"\0int\0outer\0a\0b\0c\0inner\0x\0y\0".to_vec();
        let s = |name: &str| {
            let needle = format!("\0{name}\0");
            strings.windows(needle.len()).position(|w| w == needle.as_bytes()).map(|p| p as u32 + 1).unwrap_or(0)
        };
        let mut types = Vec::new();
        let mut push = |words: &[u32]| words.iter().for_each(|w| types.extend_from_slice(&w.to_ne_bytes()));
        push(&[s("int"), KIND_INT << 24, 4, 32]); // 1: int
        push(&[s("inner"), (KIND_STRUCT << 24) | 2, 8, s("x"), 1, 0, s("y"), 1, 32]); // 2
        push(&[0, (KIND_UNION << 24) | 2, 8, s("b"), 1, 0, s("c"), 2, 0]); // 3: anonymous union
        push(&[s("outer"), (KIND_STRUCT << 24) | 2, 12, s("a"), 1, 0, 0, 3, 32]); // 4
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC.to_ne_bytes());
        out.extend_from_slice(&[1, 0]);
        for w in [24u32, 0, types.len() as u32, types.len() as u32, strings.len() as u32] {
            out.extend_from_slice(&w.to_ne_bytes());
        }
        out.extend_from_slice(&types);
        out.extend_from_slice(&strings);
        out
    }

    #[test]
    fn finds_members_through_anonymous_unions_and_paths() {
        let btf = Btf::parse(&sample()).expect("parse");
        assert_eq!(btf.offset_of("outer", "a").expect("a"), 0);
        assert_eq!(btf.offset_of("outer", "b").expect("b"), 4);
        assert_eq!(btf.offset_of("outer", "c.y").expect("c.y"), 8);
        assert!(matches!(btf.offset_of("outer", "nope"), Err(BtfError::MissingMember { .. })));
        assert!(matches!(btf.offset_of("absent", "a"), Err(BtfError::MissingMember { .. })));
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(Btf::parse(b"not btf at all, clearly"), Err(BtfError::BadMagic)));
        let mut short = sample();
        short.truncate(40);
        assert!(Btf::parse(&short).is_err());
    }
}
