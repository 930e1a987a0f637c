//! Where the kernel programs find fields in the classic tracepoint records
//! they read (byte offsets, from each event's `format` file). Userspace checks
//! the running kernel's formats against these before loading, so a kernel
//! with another layout gets a clear error instead of garbage.

/// Ports and addresses of a record; addresses may sit at odd offsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TupleLayout {
    pub sport: usize,
    pub dport: usize,
    pub family: usize,
    pub saddr: usize,
    pub daddr: usize,
    pub saddr_v6: usize,
    pub daddr_v6: usize,
}

impl TupleLayout {
    /// (field name, offset) pairs, for checking against a format file.
    pub const fn fields(&self) -> [(&'static str, usize); 7] {
        [
            ("sport", self.sport),
            ("dport", self.dport),
            ("family", self.family),
            ("saddr", self.saddr),
            ("daddr", self.daddr),
            ("saddr_v6", self.saddr_v6),
            ("daddr_v6", self.daddr_v6),
        ]
    }
}

/// sock:inet_sock_set_state (stable since 4.16).
pub mod set_state {
    use super::TupleLayout;
    pub const SKADDR: usize = 8;
    pub const OLDSTATE: usize = 16;
    pub const NEWSTATE: usize = 20;
    pub const PROTOCOL: usize = 30;
    pub const TUPLE: TupleLayout =
        TupleLayout { sport: 24, dport: 26, family: 28, saddr: 32, daddr: 36, saddr_v6: 40, daddr_v6: 56 };
}

/// The tcp_event_sk_skb class: tcp:tcp_retransmit_skb, and tcp:tcp_send_reset before 6.10.
pub mod sk_skb {
    use super::TupleLayout;
    pub const SKBADDR: usize = 8;
    pub const SKADDR: usize = 16;
    pub const STATE: usize = 24;
    pub const TUPLE: TupleLayout =
        TupleLayout { sport: 28, dport: 30, family: 32, saddr: 34, daddr: 38, saddr_v6: 42, daddr_v6: 58 };
}

/// tcp:tcp_send_reset since 6.10: a reason, then source and destination
/// as sockaddr_in6-sized images (family, port in network order, IPv4 at +4
/// or IPv6 at +8).
pub mod send_reset {
    pub const SKBADDR: usize = 8;
    pub const SKADDR: usize = 16;
    pub const STATE: usize = 24;
    pub const REASON: usize = 28;
    pub const SADDR: usize = 32;
    pub const DADDR: usize = 60;
}

/// The sock_msg_length class: sock:sock_send_length and
/// sock:sock_recv_length (Linux 6.3+), in the sending or receiving task.
pub mod sock_length {
    pub const SK: usize = 8;
    pub const PROTOCOL: usize = 18;
}

/// The tcp_event_sk class: tcp:tcp_receive_reset, tcp:tcp_destroy_sock.
pub mod sk {
    use super::TupleLayout;
    pub const SKADDR: usize = 8;
    pub const TUPLE: TupleLayout =
        TupleLayout { sport: 16, dport: 18, family: 20, saddr: 22, daddr: 26, saddr_v6: 30, daddr_v6: 46 };
}

/// tcp:tcp_retransmit_synack.
pub mod synack {
    use super::TupleLayout;
    pub const SKADDR: usize = 8;
    pub const REQ: usize = 16;
    pub const TUPLE: TupleLayout =
        TupleLayout { sport: 24, dport: 26, family: 28, saddr: 30, daddr: 34, saddr_v6: 38, daddr_v6: 54 };
}

/// syscalls:sys_exit_*.
pub mod sys_exit {
    pub const RET: usize = 16;
}
