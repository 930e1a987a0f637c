//! What aya needs of the kernel's BTF to load the fentry, fexit and tp_btf
//! rungs and the socket-files iterator: each target's type id, nothing
//! else. aya's loaders take a parsed `aya::Btf` and look the id up by name;
//! parsing the kernel's whole BTF (~127,000 types) for that took ~35 ms and
//! ~16 MB at start. Our lean index finds the ids in one pass (~1 ms), and aya
//! gets a BTF of the same ids holding only the targets, the ids between them
//! filled with placeholder records.
use aya::{Btf, BtfError, Endianness};

use super::{Rung, hooks::HOOKS};
use crate::btf::{self, Kind};

/// A placeholder record: an unnamed `void *`, the smallest a BTF type can be.
const PLACEHOLDER: [u32; 3] = [0, btf::KIND_PTR << 24, 0];

/// The targets of every rung that needs BTF, with the ids the kernel gave them.
#[derive(Debug)]
pub struct Targets(Vec<(u32, Kind, String)>);

impl Targets {
    /// Functions only when fentry is allowed: they sit further into the
    /// kernel's ids than the tracepoints, so they cost a longer placeholder run.
    pub fn find(kernel: &btf::Btf, with_functions: bool) -> Self {
        let mut wanted: Vec<(Kind, String)> = Vec::new();
        for rung in HOOKS.iter().flat_map(|hook| hook.rungs.iter().chain(&hook.net)) {
            let targets = match rung {
                Rung::BtfTracepoints { points } => {
                    points.iter().map(|(_, point)| (Kind::Typedef, format!("btf_trace_{point}"))).collect()
                }
                Rung::Fentry { function, .. } | Rung::Fexit { function, .. } if with_functions => {
                    vec![(Kind::Function, (*function).to_owned())]
                }
                _ => Vec::new(),
            };
            for target in targets {
                if !wanted.contains(&target) {
                    wanted.push(target);
                }
            }
        }
        // The socket-files iterator (owners.rs) is found by its function's id too.
        wanted.push((Kind::Function, format!("bpf_iter_{}", super::socket_files::TARGET)));
        let names: Vec<(Kind, &str)> = wanted.iter().map(|(kind, name)| (*kind, name.as_str())).collect();
        Self(kernel.ids_of(&names).into_iter().map(|(id, kind, name)| (id, kind, name.to_owned())).collect())
    }

    /// aya's BTF of them. aya parses a record in ~90 ns, so the placeholders
    /// up to the iterator's id (~64,000 on 6.18; the tracepoints' ~38,000)
    /// take ~6 ms: the loader runs this beside the object's loading.
    pub fn into_btf(self) -> Result<Btf, BtfError> {
        Btf::parse(&encode(self.0), Endianness::default())
    }
}

/// A BTF blob (native byte order) with each `(id, kind, name)` at its id.
/// A name the kernel lacks is simply absent: aya then refuses that rung by
/// name, as it would have with the kernel's whole BTF.
fn encode(mut found: Vec<(u32, Kind, String)>) -> Vec<u8> {
    found.sort_unstable_by_key(|&(id, ..)| id);
    found.dedup_by_key(|&mut (id, ..)| id);
    let last = found.last().map_or(0, |&(id, ..)| id as usize);
    let mut types: Vec<u32> = Vec::with_capacity(3 * last);
    let mut strings = vec![0u8];
    let mut next_id = 1;
    for (id, kind, name) in found {
        for _ in next_id..id {
            types.extend_from_slice(&PLACEHOLDER);
        }
        let kind = match kind {
            Kind::Typedef => btf::KIND_TYPEDEF,
            Kind::Function => btf::KIND_FUNC,
        };
        types.extend_from_slice(&[strings.len() as u32, kind << 24, 0]);
        strings.extend_from_slice(name.as_bytes());
        strings.push(0);
        next_id = id + 1;
    }
    let types_len = (types.len() * 4) as u32;
    let header = [(1u32 << 16) | u32::from(btf::MAGIC), 24, 0, types_len, types_len, strings.len() as u32];
    let mut blob = Vec::with_capacity(24 + types.len() * 4 + strings.len());
    header.iter().chain(&types).for_each(|word| blob.extend_from_slice(&word.to_ne_bytes()));
    blob.extend_from_slice(&strings);
    blob
}

#[cfg(test)]
mod tests {
    use aya_obj::btf::BtfKind;

    use super::*;

    #[test]
    fn each_target_keeps_its_kernel_id() {
        let found = vec![(7, Kind::Function, "tcp_connect".to_owned()), (3, Kind::Typedef, "btf_trace_x".to_owned())];
        let btf = Targets(found).into_btf().expect("parse");
        assert_eq!(btf.id_by_type_name_kind("btf_trace_x", BtfKind::Typedef).ok(), Some(3));
        assert_eq!(btf.id_by_type_name_kind("tcp_connect", BtfKind::Func).ok(), Some(7));
        assert!(btf.id_by_type_name_kind("tcp_connect", BtfKind::Typedef).is_err());
        assert!(btf.id_by_type_name_kind("btf_trace_y", BtfKind::Typedef).is_err());
    }
}
