//! Just enough of a BTF reader to find struct member offsets and enum values in
//! the running kernel (`/sys/kernel/btf/vmlinux`). Rust eBPF gets no CO-RE
//! relocations, so what the kernel programs use is looked up here and passed
//! at load.
use std::{cell::RefCell, collections::HashMap, fs::File, ops::Deref, path::Path};

use memmap2::{Mmap, MmapOptions};

use crate::error::BtfError;

pub const MAGIC: u16 = 0xeb9f;
const KIND_INT: u32 = 1;
pub const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
pub const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

pub const KIND_FUNC: u32 = 12;

/// The named kinds whose ids programs attach to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `btf_trace_<tracepoint>`, a BTF tracepoint's target.
    Typedef,
    /// A kernel function, an fentry or fexit target.
    Function,
}

impl Kind {
    const fn code(self) -> u32 {
        match self {
            Self::Typedef => KIND_TYPEDEF,
            Self::Function => KIND_FUNC,
        }
    }
}

/// One type record's header fields.
#[derive(Debug, Clone, Copy)]
struct Type {
    name_off: u32,
    kind: u32,
    vlen: usize,
    /// With kind_flag set, member offsets carry a bitfield size in the high 8 bits.
    bitfield_offsets: bool,
    /// For modifiers and typedefs: the type they refer to.
    ref_type: u32,
    /// Where its trailing data (members, for structs) starts in the file.
    trailing_at: usize,
}

/// A named type's id and record.
type Found = (u32, Type);

/// Kernel BTF, indexed but not expanded: the file's bytes and where each type
/// record starts. Members are read from the bytes when asked for, so a parse
/// allocates two buffers, not one object per type.
pub struct Btf {
    data: Bytes,
    /// Byte offset in `data` of each type id's record (index 0, void, unused).
    records: Vec<u32>,
    strings_at: usize,
    strings_len: usize,
    /// Named types found so far: each lookup is a scan of every type (~130,000),
    /// and the offsets ask for the same dozen structs thirty times.
    found: RefCell<HashMap<(u32, String), Option<Found>>>,
}

/// The file's bytes, mapped or read.
pub enum Bytes {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl From<Vec<u8>> for Bytes {
    fn from(bytes: Vec<u8>) -> Self {
        Self::Owned(bytes)
    }
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Self::Mapped(map) => map,
            Self::Owned(bytes) => bytes,
        }
    }
}

/// The word at `at`. An Option, not a Result: the scans read millions of
/// words, and a Result with BtfError's strings costs them a drop each.
fn word(data: &[u8], at: usize) -> Option<u32> {
    data.get(at..at + 4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

fn u32_at(data: &[u8], at: usize) -> Result<u32, BtfError> {
    word(data, at).ok_or(BtfError::Truncated)
}

impl Btf {
    /// Maps the file where the kernel allows it (vmlinux BTF, 6.16+; private
    /// and read-only, or EACCES): sysfs serves reads 4 KiB at a time, ~1,400
    /// calls and ~4 ms for 5.5 MB.
    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        let read_error = |source| BtfError::Read { path: path.to_owned(), source };
        let file = File::open(path).map_err(read_error)?;
        // SAFETY: kernel BTF is immutable while the system runs; nobody
        // truncates or rewrites it under the mapping.
        match unsafe { MmapOptions::new().map_copy_read_only(&file) } {
            Ok(map) => Self::parse(Bytes::Mapped(map)),
            Err(_) => Self::parse(Bytes::Owned(std::fs::read(path).map_err(read_error)?)),
        }
    }

    pub fn parse(data: impl Into<Bytes>) -> Result<Self, BtfError> {
        let data = data.into();
        if data.len() < 24 || u16::from_ne_bytes([data[0], data[1]]) != MAGIC {
            return Err(BtfError::BadMagic);
        }
        let hdr_len = u32_at(&data, 4)? as usize;
        let types_at = hdr_len + u32_at(&data, 8)? as usize;
        let types_end = types_at + u32_at(&data, 12)? as usize;
        let strings_at = hdr_len + u32_at(&data, 16)? as usize;
        let strings_len = u32_at(&data, 20)? as usize;
        if data.len() < types_end || data.len() < strings_at + strings_len {
            return Err(BtfError::Truncated);
        }
        let mut records = vec![0]; // id 0 is void
        let mut at = types_at;
        while at < types_end {
            records.push(at as u32);
            let ty = Self::record(&data, at).ok_or(BtfError::Truncated)?;
            let trailing = match ty.kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => ty.vlen * 12,
                KIND_ENUM | KIND_FUNC_PROTO => ty.vlen * 8,
                k if k <= KIND_TYPE_TAG => 0,
                other => return Err(BtfError::UnknownKind(other)),
            };
            at = ty.trailing_at + trailing;
        }
        Ok(Self { data, records, strings_at, strings_len, found: RefCell::default() })
    }

    fn record(data: &[u8], at: usize) -> Option<Type> {
        let info = word(data, at + 4)?;
        Some(Type {
            name_off: word(data, at)?,
            kind: (info >> 24) & 0x1f,
            vlen: (info & 0xffff) as usize,
            bitfield_offsets: info >> 31 == 1,
            ref_type: word(data, at + 8)?,
            trailing_at: at + 12,
        })
    }

    fn type_by_id(&self, id: u32) -> Option<Type> {
        let at = *self.records.get(id as usize).filter(|&&at| at != 0)?;
        Self::record(&self.data, at as usize)
    }

    /// Whether the string at `off` is `name`: compared in place, no UTF-8 check.
    fn name_is(&self, off: u32, name: &str) -> bool {
        let start = self.strings_at + off as usize;
        let end = start + name.len();
        end < self.strings_at + self.strings_len && &self.data[start..end] == name.as_bytes() && self.data[end] == 0
    }

    /// Member `i` of a struct or union: (name offset, type id, bit offset).
    fn member_at(&self, ty: &Type, i: usize) -> Option<(u32, u32, u32)> {
        let at = ty.trailing_at + i * 12;
        let offset = word(&self.data, at + 8)?;
        let bits = if ty.bitfield_offsets { offset & 0xff_ffff } else { offset };
        Some((word(&self.data, at)?, word(&self.data, at + 4)?, bits))
    }

    /// Follows typedefs and qualifiers to the type underneath.
    fn resolve(&self, mut id: u32) -> Option<Type> {
        for _ in 0..32 {
            let ty = self.type_by_id(id)?;
            match ty.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => id = ty.ref_type,
                _ => return Some(ty),
            }
        }
        None
    }

    /// The id of the first type of `kind` named `name` (with members, for structs and enums).
    fn find(&self, kind: u32, name: &str) -> Option<(u32, Type)> {
        let key = (kind, name.to_owned());
        if let Some(&found) = self.found.borrow().get(&key) {
            return found;
        }
        let found = self.scan(kind, name);
        self.found.borrow_mut().insert(key, found);
        found
    }

    fn scan(&self, kind: u32, name: &str) -> Option<(u32, Type)> {
        (1..self.records.len() as u32).find_map(|id| {
            let ty = self.type_by_id(id)?;
            let complete = !matches!(kind, KIND_STRUCT | KIND_ENUM | KIND_ENUM64) || ty.vlen > 0;
            (ty.kind == kind && complete && self.name_is(ty.name_off, name)).then_some((id, ty))
        })
    }

    /// The BTF id of kernel function `name`.
    pub fn function_id(&self, name: &str) -> Option<u32> {
        self.find(KIND_FUNC, name).map(|(id, _)| id)
    }

    /// The ids of the first types of each kind and name, in one pass over
    /// the types rather than one each; names not found are left out.
    pub fn ids_of<'a>(&self, wanted: &[(Kind, &'a str)]) -> Vec<(u32, Kind, &'a str)> {
        let mut found: Vec<(u32, Kind, &str)> = Vec::with_capacity(wanted.len());
        for id in 1..self.records.len() as u32 {
            if found.len() == wanted.len() {
                break;
            }
            let Some(ty) = self.type_by_id(id) else { continue };
            for &(kind, name) in wanted {
                let first = !found.iter().any(|&(_, k, n)| k == kind && n == name);
                if ty.kind == kind.code() && first && self.name_is(ty.name_off, name) {
                    found.push((id, kind, name));
                }
            }
        }
        found
    }

    /// Bit offset and type of member `name` in `ty`, looking through anonymous
    /// struct and union members the way C does.
    fn member(&self, ty: &Type, name: &str) -> Option<(u32, u32)> {
        let members = || (0..ty.vlen).filter_map(|i| self.member_at(ty, i));
        for (name_off, type_id, bits) in members() {
            if name_off != 0 && self.name_is(name_off, name) {
                return Some((bits, type_id));
            }
        }
        for (_, type_id, bits) in members().filter(|&(name_off, ..)| name_off == 0) {
            let inner = self.resolve(type_id)?;
            if let Some((inner_bits, inner_type)) = self.member(&inner, name) {
                return Some((bits + inner_bits, inner_type));
            }
        }
        None
    }

    /// The value of `name` in `enum enum_name` (sock_flags, SOCK_DONE).
    pub fn enum_value(&self, enum_name: &str, name: &str) -> Result<u64, BtfError> {
        let missing = || BtfError::MissingEnumerator { enumeration: enum_name.to_owned(), name: name.to_owned() };
        let (_, ty) =
            self.find(KIND_ENUM, enum_name).or_else(|| self.find(KIND_ENUM64, enum_name)).ok_or_else(missing)?;
        // Each enumerator: its name, then the value in 32 bits (ENUM) or as
        // low and high halves (ENUM64).
        let size = if ty.kind == KIND_ENUM64 { 12 } else { 8 };
        (0..ty.vlen)
            .map(|i| ty.trailing_at + i * size)
            .find(|&at| word(&self.data, at).is_some_and(|name_off| self.name_is(name_off, name)))
            .map(|at| {
                let low = u64::from(u32_at(&self.data, at + 4)?);
                let high = if size == 12 { u64::from(u32_at(&self.data, at + 8)?) } else { 0 };
                Ok(high << 32 | low)
            })
            .ok_or_else(missing)?
    }

    /// Byte offset of `path` ("ns.inum") inside `struct struct_name`.
    pub fn offset_of(&self, struct_name: &str, path: &str) -> Result<u32, BtfError> {
        let missing = || BtfError::MissingMember { structure: struct_name.to_owned(), member: path.to_owned() };
        let (_, mut ty) = self.find(KIND_STRUCT, struct_name).ok_or_else(missing)?;
        let mut bits = 0;
        let mut parts = path.split('.').peekable();
        while let Some(part) = parts.next() {
            let (member_bits, type_id) = self.member(&ty, part).ok_or_else(missing)?;
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
    /// with `struct inner { int x; int y; }`, as the kernel would lay it out,
    /// `enum flags { DEAD, DONE }`, `typedef int btf_trace_x` and function `f`.
    fn sample() -> Vec<u8> {
        let strings = b"\0int\0outer\0a\0b\0c\0inner\0x\0y\0flags\0DEAD\0DONE\0btf_trace_x\0f\0".to_vec();
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
        push(&[s("flags"), (KIND_ENUM << 24) | 2, 4, s("DEAD"), 0, s("DONE"), 1]); // 5
        push(&[s("btf_trace_x"), KIND_TYPEDEF << 24, 1]); // 6
        push(&[s("f"), KIND_FUNC << 24, 0]); // 7 (its prototype left out)
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
        let btf = Btf::parse(sample()).expect("parse");
        assert_eq!(btf.offset_of("outer", "a").expect("a"), 0);
        assert_eq!(btf.offset_of("outer", "b").expect("b"), 4);
        assert_eq!(btf.offset_of("outer", "c.y").expect("c.y"), 8);
        assert!(matches!(btf.offset_of("outer", "nope"), Err(BtfError::MissingMember { .. })));
        assert!(matches!(btf.offset_of("absent", "a"), Err(BtfError::MissingMember { .. })));
    }

    #[test]
    fn finds_enum_values() {
        let btf = Btf::parse(sample()).expect("parse");
        assert_eq!(btf.enum_value("flags", "DEAD").expect("DEAD"), 0);
        assert_eq!(btf.enum_value("flags", "DONE").expect("DONE"), 1);
        assert!(matches!(btf.enum_value("flags", "GONE"), Err(BtfError::MissingEnumerator { .. })));
        assert!(matches!(btf.enum_value("outer", "a"), Err(BtfError::MissingEnumerator { .. })));
    }

    #[test]
    fn finds_attach_targets_in_one_pass() {
        let btf = Btf::parse(sample()).expect("parse");
        let wanted =
            [(Kind::Function, "f"), (Kind::Typedef, "btf_trace_x"), (Kind::Typedef, "f"), (Kind::Function, "g")];
        assert_eq!(btf.ids_of(&wanted), [(6, Kind::Typedef, "btf_trace_x"), (7, Kind::Function, "f")]);
        assert_eq!(btf.function_id("f"), Some(7));
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(Btf::parse(b"not btf at all, clearly".to_vec()), Err(BtfError::BadMagic)));
        let mut short = sample();
        short.truncate(40);
        assert!(Btf::parse(short).is_err());
    }
}
