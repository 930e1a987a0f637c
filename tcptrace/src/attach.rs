//! Attaching the kernel programs through a ladder of methods: fentry/fexit,
//! then kprobe/kretprobe, then tracepoints: BTF tracepoints (tp_btf) where
//! a hook has them, then classic ones. Locked-down kernels refuse fentry and
//! some have no kprobes; the classic tracepoint rung works everywhere and
//! delivers every event by itself. The hooks and their rungs: attach/hooks.rs.
use std::{collections::HashMap, path::Path};

use aya::{
    Btf, BtfError, Ebpf,
    programs::{BtfTracePoint, FEntry, FExit, KProbe, Program, ProgramError, TracePoint},
};

use crate::{
    config::{Attach, Method},
    error::LoadError,
    snapshot::Pending,
};

mod hooks;
pub mod socket_files;
pub mod targets;
use hooks::{HOOKS, Hook};

/// One way to attach one hook.
enum Rung {
    Fentry {
        program: &'static str,
        function: &'static str,
    },
    Fexit {
        program: &'static str,
        function: &'static str,
    },
    Kprobe {
        program: &'static str,
        function: &'static str,
    },
    Kretprobe {
        program: &'static str,
        function: &'static str,
    },
    Tracepoints {
        program: &'static str,
        points: &'static [(&'static str, &'static str)],
    },
    /// Raw tracepoints with BTF arguments, one program per tracepoint.
    /// Unlike classic ones they format no record, and the kernel skips them
    /// only when one would run inside itself, not whenever another eBPF
    /// program is running on the CPU (a softirq interrupting one).
    BtfTracepoints {
        points: &'static [(&'static str, &'static str)],
    },
}

impl Rung {
    fn method(&self) -> Method {
        match self {
            Self::Fentry { .. } | Self::Fexit { .. } => Method::Fentry,
            Self::Kprobe { .. } | Self::Kretprobe { .. } => Method::Kprobe,
            Self::Tracepoints { .. } => Method::Tracepoint,
            Self::BtfTracepoints { .. } => Method::TpBtf,
        }
    }

    fn programs(&self) -> Vec<&'static str> {
        match self {
            Self::Fentry { program, .. }
            | Self::Fexit { program, .. }
            | Self::Kprobe { program, .. }
            | Self::Kretprobe { program, .. }
            | Self::Tracepoints { program, .. } => vec![program],
            Self::BtfTracepoints { points } => points.iter().map(|(program, _)| *program).collect(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Fentry { function, .. } => format!("fentry {function}"),
            Self::Fexit { function, .. } => format!("fexit {function}"),
            Self::Kprobe { function, .. } => format!("kprobe {function}"),
            Self::Kretprobe { function, .. } => format!("kretprobe {function}"),
            Self::Tracepoints { points, .. } => {
                let names: Vec<String> = points.iter().map(|(category, name)| format!("{category}:{name}")).collect();
                format!("tracepoint {}", names.join(", "))
            }
            Self::BtfTracepoints { points } => {
                let names: Vec<&str> = points.iter().map(|(_, name)| *name).collect();
                format!("tp_btf {}", names.join(", "))
            }
        }
    }

    fn attach(&self, programs: &mut Programs, btf: Option<&Result<Btf, BtfError>>) -> Result<(), ProgramError> {
        if let Self::BtfTracepoints { points } = self {
            for (name, tracepoint) in *points {
                let program: &mut BtfTracePoint = programs.get(name)?.try_into()?;
                program.load(tracepoint, kernel_btf(btf)?)?;
                program.attach()?;
            }
            return Ok(());
        }
        let program = programs.get(self.programs()[0])?;
        match self {
            Self::Fentry { function, .. } => {
                let program: &mut FEntry = program.try_into()?;
                program.load(function, kernel_btf(btf)?)?;
                program.attach().map(drop)
            }
            Self::Fexit { function, .. } => {
                let program: &mut FExit = program.try_into()?;
                program.load(function, kernel_btf(btf)?)?;
                program.attach().map(drop)
            }
            Self::Kprobe { function, .. } | Self::Kretprobe { function, .. } => {
                let program: &mut KProbe = program.try_into()?;
                program.load()?;
                program.attach(function, 0).map(drop)
            }
            Self::Tracepoints { points, .. } => {
                let program: &mut TracePoint = program.try_into()?;
                program.load()?;
                points.iter().try_for_each(|(category, name)| program.attach(category, name).map(drop))
            }
            Self::BtfTracepoints { .. } => Ok(()),
        }
    }
}

/// The object's programs by name, borrowed apart so that two threads can
/// load disjoint sets of them.
struct Programs<'a>(HashMap<&'a str, &'a mut Program>);

impl Programs<'_> {
    fn get(&mut self, name: &str) -> Result<&mut Program, ProgramError> {
        self.0.get_mut(name).map(|program| &mut **program).ok_or(ProgramError::InvalidName { name: name.to_owned() })
    }
}

/// The BTF the fentry and tp_btf rungs are loaded with (targets.rs).
fn kernel_btf(btf: Option<&Result<Btf, BtfError>>) -> Result<&Btf, ProgramError> {
    match btf {
        Some(Ok(btf)) => Ok(btf),
        // BtfError is not Clone: each rung that needed it reports it in words.
        Some(Err(error)) => Err(ProgramError::Btf(BtfError::FileError {
            path: "/sys/kernel/btf/vmlinux".into(),
            error: std::io::Error::other(error.to_string()),
        })),
        // Only an --attach tracepoint run parses none, and it tries no such rung.
        None => Err(ProgramError::NotLoaded),
    }
}

/// How one hook got attached, for the start-up report on stderr.
#[derive(Debug, Clone)]
pub struct HookReport {
    pub purpose: &'static str,
    /// The method that worked, or None.
    pub method: Option<String>,
    /// The methods tried before it, and why each failed.
    pub refused: Vec<String>,
    /// A tracepoint attached beside a function probe for calls already in flight.
    pub net: Option<String>,
    /// The kernel programs that serve it, attached (none when not attached).
    pub programs: Vec<&'static str>,
}

impl std::fmt::Display for HookReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.purpose, self.method.as_deref().unwrap_or("not attached"))?;
        if let Some(net) = &self.net {
            write!(f, ", with {net} for calls in flight at start")?;
        }
        if self.method.is_none() && self.refused.is_empty() {
            write!(f, " (only fentry or kprobe offer it)")?;
        } else if !self.refused.is_empty() {
            write!(f, " ({})", self.refused.join("; "))?;
        }
        Ok(())
    }
}

/// What every hook's ladder consults.
struct Ladder<'a> {
    attach: Attach,
    /// What a probe load found (probe.rs); when refused, fentry rungs are not tried.
    fentry: Option<Result<(), String>>,
    /// Their targets' BTF ids, for aya (targets.rs; None when no rung needs them).
    btf: Option<&'a Result<Btf, BtfError>>,
    /// Without them a kprobe rung fails only after its program went through
    /// the verifier, which is start-up time wasted on a program never run.
    kprobes: bool,
    /// The snapshot being taken, which an untyped rung of the hook that
    /// names sockets waits for (hooks.rs).
    snapshot: Option<&'a Pending>,
}

/// Attaches every hook with the best rung `attach` allows.
///
/// The state program takes the verifier as long as all the others together
/// (~11 ms of ~25 on this machine), so it loads on a thread of its own.
pub fn attach_all(
    ebpf: &mut Ebpf,
    attach: Attach,
    fentry: Option<Result<(), String>>,
    btf: Option<&Result<Btf, BtfError>>,
    snapshot: Option<&Pending>,
) -> Result<Vec<HookReport>, LoadError> {
    let kprobes = Path::new(KPROBE_PMU).exists();
    let ladder = Ladder { attach, fentry, btf, kprobes, snapshot };
    let (first, rest) = HOOKS.split_first().expect("hooks");
    let first_programs: Vec<&str> = first.rungs.iter().chain(&first.net).flat_map(Rung::programs).collect();
    let (alone, shared): (HashMap<_, _>, HashMap<_, _>) =
        ebpf.programs_mut().partition(|(name, _)| first_programs.contains(name));
    let (mut alone, mut shared) = (Programs(alone), Programs(shared));
    std::thread::scope(|scope| {
        let first = scope.spawn(|| attach_hook(first, &mut alone, &ladder));
        let rest: Result<Vec<_>, _> = rest.iter().map(|hook| attach_hook(hook, &mut shared, &ladder)).collect();
        let first = first.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        Ok(std::iter::once(first).chain(rest?).collect())
    })
}

/// connect()'s syscall-exit program (attach/hooks.rs), which needs the state
/// program to note which socket each thread is connecting.
pub const CONNECT_AT_SYSCALL_EXIT: &str = "tcptrace_connect";

/// Where aya finds the kprobe PMU; absent when the kernel has no kprobes.
const KPROBE_PMU: &str = "/sys/bus/event_source/devices/kprobe/type";

/// Attaches one hook with the first rung that works.
fn attach_hook(hook: &Hook, programs: &mut Programs, ladder: &Ladder) -> Result<HookReport, LoadError> {
    let mut report =
        HookReport { purpose: hook.purpose, method: None, refused: Vec::new(), net: None, programs: Vec::new() };
    for rung in candidates(hook, ladder.attach) {
        let skip = match (rung.method(), &ladder.fentry) {
            (Method::Fentry, Some(Err(why))) => Some(why.as_str()),
            (Method::Kprobe, _) if !ladder.kprobes => Some(NO_KPROBES),
            _ => None,
        };
        if let Some(why) = skip {
            report.refused.push(format!("{}: {why}", rung.describe()));
            continue;
        }
        if let Some(snapshot) = ladder.snapshot.filter(|_| hook.names_sockets && !rung.method().is_typed()) {
            snapshot.take();
        }
        match rung.attach(programs, ladder.btf) {
            Ok(()) => {
                report.method = Some(rung.describe());
                report.programs.extend(rung.programs());
                if let Some(net) = hook.net.as_ref().filter(|_| rung.method().is_function_probe()) {
                    match net.attach(programs, ladder.btf) {
                        Ok(()) => {
                            report.net = Some(net.describe());
                            report.programs.extend(net.programs());
                        }
                        Err(error) => report.refused.push(format!("{}: {}", net.describe(), brief(&error))),
                    }
                }
                break;
            }
            Err(error) => {
                log::debug!("{}: {error:?}", rung.describe());
                report.refused.push(format!("{}: {}", rung.describe(), brief(&error)));
            }
        }
    }
    // A function probe asked for must serve every hook that offers it;
    // tracepoints are the floor, not a choice, so an optional one the
    // kernel lacks (sock:sock_send_length before 6.3) stays optional.
    let forced = matches!(ladder.attach, Attach::Only(method)
        if method.is_function_probe() && hook.rungs.iter().any(|r| r.method() == method));
    if report.method.is_none() && (hook.required || forced) {
        return Err(LoadError::Attach { purpose: hook.purpose, tried: report.refused.join("; ") });
    }
    Ok(report)
}

/// The rungs to try: all of them, or those of the one method asked for;
/// where a hook has no rung of that method, its tracepoint rungs (tp_btf
/// before classic).
fn candidates(hook: &Hook, attach: Attach) -> impl Iterator<Item = &Rung> {
    let offers = |method| hook.rungs.iter().any(|r| r.method() == method);
    hook.rungs.iter().filter(move |rung| match attach {
        Attach::Auto => true,
        Attach::Only(method) if offers(method) => rung.method() == method,
        Attach::Only(_) => !rung.method().is_function_probe(),
    })
}

const NO_KPROBES: &str = "kernel has no kprobes";

/// Why a rung failed, in a few words: the usual causes by name, else the
/// error's first line without the verifier's log.
fn brief(error: &ProgramError) -> String {
    let mut text = error.to_string();
    if let Some(source) = std::error::Error::source(error) {
        text = format!("{text}: {source}");
    }
    if text.contains("devices/kprobe/type") {
        return NO_KPROBES.to_owned();
    }
    if text.contains("Operation not permitted") {
        return "refused by the kernel (EPERM)".to_owned();
    }
    let cut = text.find(". Verifier output").or_else(|| text.find('\n')).unwrap_or(text.len());
    text.truncate(cut);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn methods(purpose: &str, attach: Attach) -> Vec<Method> {
        let hook = HOOKS.iter().find(|h| h.purpose == purpose).expect("hook");
        candidates(hook, attach).map(Rung::method).collect()
    }

    #[test]
    fn ladder_order_and_forced_methods() {
        use Method::*;
        assert_eq!(methods("connect owner and local port", Attach::Auto), [Fentry, Kprobe, Tracepoint]);
        assert_eq!(methods("accept owner", Attach::Only(Kprobe)), [Kprobe]);
        assert_eq!(methods("state changes", Attach::Auto), [TpBtf, Tracepoint]);
        assert_eq!(methods("state changes", Attach::Only(Fentry)), [TpBtf, Tracepoint]);
        assert_eq!(methods("state changes", Attach::Only(Tracepoint)), [Tracepoint]);
        assert_eq!(methods("connect owner and local port", Attach::Only(TpBtf)), [Tracepoint]);
        assert_eq!(methods("close owner", Attach::Only(Tracepoint)), Vec::<Method>::new());
    }

    #[test]
    fn every_required_hook_ends_in_a_tracepoint() {
        for hook in HOOKS.iter().filter(|h| h.required) {
            assert_eq!(hook.rungs.last().map(Rung::method), Some(Method::Tracepoint), "{}", hook.purpose);
        }
    }
}
