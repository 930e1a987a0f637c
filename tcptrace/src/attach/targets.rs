//! What aya needs of the kernel's BTF to load the fentry, fexit and tp_btf
//! rungs and the socket-files iterator: each target's type id, nothing
//! else. aya's loaders take a parsed `aya::Btf` and look the id up by name;
//! parsing the kernel's whole BTF (~127,000 types) for that took ~35 ms and
//! ~16 MB at start. Our lean index finds the ids (~1 ms a pass), and aya
//! gets a BTF of the same ids holding only the targets, the ids between them
//! filled with placeholder records: the tracepoints' part parsed on a thread
//! of its own, the functions' built onto it (`Pending`).
use std::thread::JoinHandle;

use aya::{Btf, BtfError, Endianness};
use aya_obj::btf::{BtfType, Func, FuncLinkage, Ptr};

use super::{Rung, hooks::HOOKS};
use crate::{
    btf::{self, Kind},
    error::LoadError,
};

/// A placeholder record: an unnamed `void *`, the smallest a BTF type can be.
const PLACEHOLDER: [u32; 3] = [0, btf::KIND_PTR << 24, 0];

/// Targets of the rungs that need BTF, with the ids the kernel gave them.
#[derive(Debug, Clone)]
pub struct Targets(Vec<(u32, Kind, String)>);

impl Targets {
    /// The BTF tracepoints' typedefs: found first, because aya's BTF of them
    /// is what attaching waits for longest (see `parse`).
    pub fn tracepoints(kernel: &btf::Btf) -> Self {
        Self::find(
            kernel,
            wanted(|rung| match rung {
                Rung::BtfTracepoints { points } => {
                    points.iter().map(|(_, point)| (Kind::Typedef, format!("btf_trace_{point}"))).collect()
                }
                _ => Vec::new(),
            }),
        )
    }

    /// The functions: the socket-files iterator's (owners.rs), and the
    /// fentry and fexit targets' only when fentry is allowed, since they sit
    /// further into the kernel's ids (~114,000 on 6.18, against the
    /// iterator's ~64,000) and every id up to them costs aya a record.
    pub fn functions(kernel: &btf::Btf, with_fentry: bool) -> Self {
        let mut functions = wanted(|rung| match rung {
            Rung::Fentry { function, .. } | Rung::Fexit { function, .. } if with_fentry => {
                vec![(Kind::Function, (*function).to_owned())]
            }
            _ => Vec::new(),
        });
        functions.push((Kind::Function, format!("bpf_iter_{}", super::socket_files::TARGET)));
        Self::find(kernel, functions)
    }

    /// Their ids, in one pass over the kernel's types; names not found are left out.
    fn find(kernel: &btf::Btf, wanted: Vec<(Kind, String)>) -> Self {
        let names: Vec<(Kind, &str)> = wanted.iter().map(|(kind, name)| (*kind, name.as_str())).collect();
        Self(kernel.ids_of(&names).into_iter().map(|(id, kind, name)| (id, kind, name.to_owned())).collect())
    }

    /// aya's BTF of them, parsed: ~90 ns a record, placeholders included
    /// (~38,000 up to the tracepoints on 6.18), so the loader runs it on a
    /// thread of its own from the moment the ids are known.
    pub fn parse(&self) -> Result<Btf, BtfError> {
        Btf::parse(&encode(self.0.clone()), Endianness::default())
    }

    /// `parsed`, aya's BTF of `parsed_from`, with these functions added.
    /// aya builds a record in a few ns but builds no typedef, so functions
    /// past the last typedef are built; should one come before it (not so on
    /// 6.18), all of them are parsed again together.
    pub fn add_to(self, mut parsed: Btf, parsed_from: &Targets) -> Result<Btf, BtfError> {
        let mut next_id = parsed_from.0.iter().map(|&(id, ..)| id + 1).max().unwrap_or(1);
        let mut functions = self.0;
        functions.sort_unstable_by_key(|&(id, ..)| id);
        functions.dedup_by_key(|&mut (id, ..)| id);
        if functions.first().is_some_and(|&(id, ..)| id < next_id) {
            functions.extend(parsed_from.0.iter().cloned());
            return Self(functions).parse();
        }
        for (id, _, name) in functions {
            for _ in next_id..id {
                parsed.add_type(BtfType::Ptr(Ptr::new(0, 0)));
            }
            let name = parsed.add_string(&name);
            parsed.add_type(BtfType::Func(Func::new(name, 0, FuncLinkage::Static)));
            next_id = id + 1;
        }
        Ok(parsed)
    }
}

/// aya's BTF of the targets in the making: the tracepoints' parse, which
/// attaching waits for longest, on a thread of its own from the moment their
/// ids are known; the functions added when it is done.
pub struct Pending {
    tracepoints: Targets,
    parsing: JoinHandle<Result<Btf, BtfError>>,
}

impl Pending {
    pub fn start(kernel: &btf::Btf) -> Self {
        let tracepoints = Targets::tracepoints(kernel);
        let parsing = std::thread::spawn({
            let tracepoints = tracepoints.clone();
            move || tracepoints.parse()
        });
        Self { tracepoints, parsing }
    }

    /// The whole BTF, with `functions` (`Targets::functions`); the inner
    /// error is aya's, which refuses the rungs that needed it.
    pub fn finish(self, functions: Targets) -> Result<Result<Btf, BtfError>, LoadError> {
        let parsed = self.parsing.join().map_err(|_| LoadError::BtfThread)?;
        Ok(parsed.and_then(|btf| functions.add_to(btf, &self.tracepoints)))
    }
}

/// The targets `targets_of` names across every hook's rungs, each once.
fn wanted(targets_of: impl Fn(&Rung) -> Vec<(Kind, String)>) -> Vec<(Kind, String)> {
    let mut wanted = Vec::new();
    for target in HOOKS.iter().flat_map(|hook| hook.rungs.iter().chain(&hook.net)).flat_map(targets_of) {
        if !wanted.contains(&target) {
            wanted.push(target);
        }
    }
    wanted
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

    fn targets(found: &[(u32, Kind, &str)]) -> Targets {
        Targets(found.iter().map(|&(id, kind, name)| (id, kind, name.to_owned())).collect())
    }

    fn id(btf: &Btf, name: &str, kind: BtfKind) -> Option<u32> {
        btf.id_by_type_name_kind(name, kind).ok()
    }

    #[test]
    fn each_target_keeps_its_kernel_id() {
        let tracepoints = targets(&[(5, Kind::Typedef, "btf_trace_y"), (3, Kind::Typedef, "btf_trace_x")]);
        let functions = targets(&[(12, Kind::Function, "bpf_iter_task_file"), (7, Kind::Function, "tcp_connect")]);
        let btf = functions.add_to(tracepoints.parse().expect("parse"), &tracepoints).expect("add");
        assert_eq!(id(&btf, "btf_trace_x", BtfKind::Typedef), Some(3));
        assert_eq!(id(&btf, "btf_trace_y", BtfKind::Typedef), Some(5));
        assert_eq!(id(&btf, "tcp_connect", BtfKind::Func), Some(7));
        assert_eq!(id(&btf, "bpf_iter_task_file", BtfKind::Func), Some(12));
        assert_eq!(id(&btf, "tcp_connect", BtfKind::Typedef), None);
        assert_eq!(id(&btf, "btf_trace_z", BtfKind::Typedef), None);
    }

    #[test]
    fn a_function_before_the_last_typedef_is_parsed_with_them() {
        let tracepoints = targets(&[(5, Kind::Typedef, "btf_trace_y")]);
        let functions = targets(&[(2, Kind::Function, "inet_csk_accept"), (9, Kind::Function, "tcp_connect")]);
        let btf = functions.add_to(tracepoints.parse().expect("parse"), &tracepoints).expect("add");
        assert_eq!(id(&btf, "inet_csk_accept", BtfKind::Func), Some(2));
        assert_eq!(id(&btf, "btf_trace_y", BtfKind::Typedef), Some(5));
        assert_eq!(id(&btf, "tcp_connect", BtfKind::Func), Some(9));
    }

    #[test]
    fn no_tracepoints_leaves_only_functions() {
        let none = targets(&[]);
        let btf = targets(&[(4, Kind::Function, "f")]).add_to(none.parse().expect("parse"), &none).expect("add");
        assert_eq!(id(&btf, "f", BtfKind::Func), Some(4));
    }
}
