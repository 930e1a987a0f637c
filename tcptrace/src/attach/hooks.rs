//! The ladder itself: each hook's purpose and its rungs, best first.
use super::Rung;

/// A purpose served by one of several programs, best first.
pub(super) struct Hook {
    pub(super) purpose: &'static str,
    /// Without it tcptrace cannot do its job.
    pub(super) required: bool,
    /// It first sees sockets already open at start and names them by their
    /// cookies, and notes those born while the snapshot is taken: only a rung
    /// with a typed socket can make a cookie, so on any other it attaches
    /// once the snapshot's dumps have made them (snapshot.rs).
    pub(super) names_sockets: bool,
    pub(super) rungs: &'static [Rung],
    /// Attached too when a function probe won: it catches calls that were
    /// already inside the function when the probe attached.
    pub(super) net: Option<Rung>,
}

pub(super) const HOOKS: &[Hook] = &[
    Hook {
        purpose: "state changes",
        required: true,
        names_sockets: true,
        rungs: &[
            Rung::BtfTracepoints { points: &[("tcptrace_state_btf", "inet_sock_set_state")] },
            Rung::Tracepoints { program: "tcptrace_state", points: &[("sock", "inet_sock_set_state")] },
        ],
        net: None,
    },
    Hook {
        purpose: "connect owner and local port",
        required: true,
        names_sockets: false,
        rungs: &[
            Rung::Fentry { program: "tcptrace_connect_fentry", function: "tcp_connect" },
            Rung::Kprobe { program: "tcptrace_connect_kprobe", function: "tcp_connect" },
            Rung::Tracepoints { program: super::CONNECT_AT_SYSCALL_EXIT, points: &[("syscalls", "sys_exit_connect")] },
        ],
        net: None,
    },
    Hook {
        purpose: "accept owner",
        required: true,
        names_sockets: false,
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
        names_sockets: false,
        rungs: &[
            Rung::BtfTracepoints { points: &[("tcptrace_destroy_btf", "tcp_destroy_sock")] },
            Rung::Tracepoints { program: "tcptrace_destroy", points: &[("tcp", "tcp_destroy_sock")] },
        ],
        net: None,
    },
    Hook {
        purpose: "resets sent",
        required: false,
        names_sockets: false,
        rungs: &[Rung::Tracepoints { program: "tcptrace_send_reset", points: &[("tcp", "tcp_send_reset")] }],
        net: None,
    },
    Hook {
        purpose: "resets received",
        required: false,
        names_sockets: false,
        rungs: &[
            Rung::BtfTracepoints { points: &[("tcptrace_receive_reset_btf", "tcp_receive_reset")] },
            Rung::Tracepoints { program: "tcptrace_receive_reset", points: &[("tcp", "tcp_receive_reset")] },
        ],
        net: None,
    },
    Hook {
        purpose: "retransmits",
        required: false,
        names_sockets: false,
        rungs: &[
            Rung::BtfTracepoints { points: &[("tcptrace_retransmit_btf", "tcp_retransmit_skb")] },
            Rung::Tracepoints { program: "tcptrace_retransmit", points: &[("tcp", "tcp_retransmit_skb")] },
        ],
        net: None,
    },
    Hook {
        purpose: "SYN-ACK retransmits",
        required: false,
        names_sockets: false,
        rungs: &[Rung::Tracepoints {
            program: "tcptrace_retransmit_synack",
            points: &[("tcp", "tcp_retransmit_synack")],
        }],
        net: None,
    },
    Hook {
        purpose: "owner after a handover",
        required: false,
        names_sockets: false,
        rungs: &[
            Rung::BtfTracepoints {
                points: &[
                    ("tcptrace_holder_send_btf", "sock_send_length"),
                    ("tcptrace_holder_recv_btf", "sock_recv_length"),
                ],
            },
            Rung::Tracepoints {
                program: "tcptrace_holder",
                points: &[("sock", "sock_send_length"), ("sock", "sock_recv_length")],
            },
        ],
        net: None,
    },
    Hook {
        purpose: "close owner",
        required: false,
        names_sockets: false,
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
