//! Attaching the kernel programs through a ladder of methods: fentry/fexit,
//! then kprobe/kretprobe, then classic tracepoints. Locked-down kernels refuse
//! fentry and some have no kprobes; the tracepoint rung works everywhere and
//! delivers every event by itself.
use aya::{
    Btf, Ebpf,
    programs::{FEntry, FExit, KProbe, ProgramError, TracePoint},
};

use crate::{
    config::{Attach, Method},
    error::LoadError,
};

/// One way to attach one hook.
enum Rung {
    Fentry { program: &'static str, function: &'static str },
    Fexit { program: &'static str, function: &'static str },
    Kprobe { program: &'static str, function: &'static str },
    Kretprobe { program: &'static str, function: &'static str },
    Tracepoints { program: &'static str, points: &'static [(&'static str, &'static str)] },
}

/// A purpose served by one of several programs, best first.
struct Hook {
    purpose: &'static str,
    /// Without it tcptrace cannot do its job.
    required: bool,
    rungs: &'static [Rung],
    /// Attached too when a function probe won: it catches calls that were
    /// already inside the function when the probe attached.
    net: Option<Rung>,
}

const HOOKS: &[Hook] = &[
    Hook {
        purpose: "state changes",
        required: true,
        rungs: &[Rung::Tracepoints { program: "tcptrace_state", points: &[("sock", "inet_sock_set_state")] }],
        net: None,
    },
    Hook {
        purpose: "connect owner and local port",
        required: true,
        rungs: &[
            Rung::Fentry { program: "tcptrace_connect_fentry", function: "tcp_connect" },
            Rung::Kprobe { program: "tcptrace_connect_kprobe", function: "tcp_connect" },
            Rung::Tracepoints { program: "tcptrace_connect", points: &[("syscalls", "sys_exit_connect")] },
        ],
        net: None,
    },
    Hook {
        purpose: "accept owner",
        required: true,
        rungs: &[
            Rung::Fexit { program: "tcptrace_accept_fexit", function: "inet_csk_accept" },
            Rung::Kretprobe { program: "tcptrace_accept_kretprobe", function: "inet_csk_accept" },
            ACCEPT_TRACEPOINTS,
        ],
        net: Some(ACCEPT_TRACEPOINTS),
    },
    Hook {
        purpose: "socket teardown",
        required: true,
        rungs: &[Rung::Tracepoints { program: "tcptrace_destroy", points: &[("tcp", "tcp_destroy_sock")] }],
        net: None,
    },
    Hook {
        purpose: "resets sent",
        required: false,
        rungs: &[Rung::Tracepoints { program: "tcptrace_send_reset", points: &[("tcp", "tcp_send_reset")] }],
        net: None,
    },
    Hook {
        purpose: "resets received",
        required: false,
        rungs: &[Rung::Tracepoints { program: "tcptrace_receive_reset", points: &[("tcp", "tcp_receive_reset")] }],
        net: None,
    },
    Hook {
        purpose: "retransmits",
        required: false,
        rungs: &[Rung::Tracepoints { program: "tcptrace_retransmit", points: &[("tcp", "tcp_retransmit_skb")] }],
        net: None,
    },
    Hook {
        purpose: "SYN-ACK retransmits",
        required: false,
        rungs: &[Rung::Tracepoints {
            program: "tcptrace_retransmit_synack",
            points: &[("tcp", "tcp_retransmit_synack")],
        }],
        net: None,
    },
    Hook {
        purpose: "owner after a handover",
        required: false,
        rungs: &[Rung::Tracepoints {
            program: "tcptrace_holder",
            points: &[("sock", "sock_send_length"), ("sock", "sock_recv_length")],
        }],
        net: None,
    },
    Hook {
        purpose: "close owner",
        required: false,
        rungs: &[
            Rung::Fentry { program: "tcptrace_close_fentry", function: "tcp_close" },
            Rung::Kprobe { program: "tcptrace_close_kprobe", function: "tcp_close" },
        ],
        net: None,
    },
];

const ACCEPT_TRACEPOINTS: Rung = Rung::Tracepoints {
    program: "tcptrace_accept",
    points: &[("syscalls", "sys_exit_accept4"), ("syscalls", "sys_exit_accept")],
};

impl Rung {
    fn method(&self) -> Method {
        match self {
            Self::Fentry { .. } | Self::Fexit { .. } => Method::Fentry,
            Self::Kprobe { .. } | Self::Kretprobe { .. } => Method::Kprobe,
            Self::Tracepoints { .. } => Method::Tracepoint,
        }
    }

    fn program(&self) -> &'static str {
        let (Self::Fentry { program, .. }
        | Self::Fexit { program, .. }
        | Self::Kprobe { program, .. }
        | Self::Kretprobe { program, .. }
        | Self::Tracepoints { program, .. }) = self;
        program
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
        }
    }

    fn attach(&self, ebpf: &mut Ebpf, btf: &mut Option<Btf>) -> Result<(), ProgramError> {
        let name = self.program();
        let program = ebpf.program_mut(name).ok_or(ProgramError::InvalidName { name: name.to_owned() })?;
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
        }
    }
}

/// aya's parse of the kernel BTF, needed only when an fentry rung is tried.
fn kernel_btf(btf: &mut Option<Btf>) -> Result<&Btf, ProgramError> {
    if btf.is_none() {
        *btf = Some(Btf::from_sys_fs().map_err(ProgramError::Btf)?);
    }
    btf.as_ref().ok_or(ProgramError::NotLoaded)
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

/// Attaches every hook with the best rung `attach` allows. `fentry`: what a
/// probe load found (probe.rs); when refused, fentry rungs are not tried.
pub fn attach_all(
    ebpf: &mut Ebpf,
    attach: Attach,
    fentry: Option<Result<(), String>>,
) -> Result<Vec<HookReport>, LoadError> {
    let mut btf = None;
    let mut reports = Vec::new();
    for hook in HOOKS {
        let mut report =
            HookReport { purpose: hook.purpose, method: None, refused: Vec::new(), net: None, programs: Vec::new() };
        for rung in candidates(hook, attach) {
            if let (Method::Fentry, Some(Err(why))) = (rung.method(), &fentry) {
                report.refused.push(format!("{}: {why}", rung.describe()));
                continue;
            }
            match rung.attach(ebpf, &mut btf) {
                Ok(()) => {
                    report.method = Some(rung.describe());
                    report.programs.push(rung.program());
                    if let Some(net) = hook.net.as_ref().filter(|_| rung.method() != Method::Tracepoint) {
                        match net.attach(ebpf, &mut btf) {
                            Ok(()) => {
                                report.net = Some(net.describe());
                                report.programs.push(net.program());
                            }
                            Err(error) => report.refused.push(format!("{}: {}", net.describe(), brief(&error))),
                        }
                    }
                    break;
                }
                Err(error) => report.refused.push(format!("{}: {}", rung.describe(), brief(&error))),
            }
        }
        // A method asked for must serve every hook that offers it; tracepoints
        // are the floor, not a choice, so an optional one the kernel lacks
        // (sock:sock_send_length before 6.3) stays optional.
        let forced = matches!(attach, Attach::Only(method)
            if method != Method::Tracepoint && hook.rungs.iter().any(|r| r.method() == method));
        if report.method.is_none() && (hook.required || forced) {
            return Err(LoadError::Attach { purpose: hook.purpose, tried: report.refused.join("; ") });
        }
        reports.push(report);
    }
    Ok(reports)
}

/// The rungs to try: all of them, or those of the one method asked for (the
/// tracepoint rung where a hook has no rung of that method).
fn candidates(hook: &Hook, attach: Attach) -> impl Iterator<Item = &Rung> {
    let wanted = match attach {
        Attach::Auto => None,
        Attach::Only(method) if hook.rungs.iter().any(|r| r.method() == method) => Some(method),
        Attach::Only(_) => Some(Method::Tracepoint),
    };
    hook.rungs.iter().filter(move |rung| wanted.is_none_or(|method| rung.method() == method))
}

/// Why a rung failed, in a few words: the usual causes by name, else the
/// error's first line without the verifier's log.
fn brief(error: &ProgramError) -> String {
    let mut text = error.to_string();
    if let Some(source) = std::error::Error::source(error) {
        text = format!("{text}: {source}");
    }
    if text.contains("devices/kprobe/type") {
        return "kernel has no kprobes".to_owned();
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
        assert_eq!(methods("state changes", Attach::Only(Fentry)), [Tracepoint]);
        assert_eq!(methods("close owner", Attach::Only(Tracepoint)), Vec::<Method>::new());
    }

    #[test]
    fn every_required_hook_ends_in_a_tracepoint() {
        for hook in HOOKS.iter().filter(|h| h.required) {
            assert_eq!(hook.rungs.last().map(Rung::method), Some(Method::Tracepoint), "{}", hook.purpose);
        }
    }
}
