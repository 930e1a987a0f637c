//! The event ABI shared by tcptrace's kernel programs and its userspace.
//!
//! Everything here crosses the ring buffer or a map as raw bytes, so every type is
//! `#[repr(C)]`, `Copy`, ordered largest field first with explicit padding, and
//! carries no `bool`, `Option` or data-carrying enum.
#![no_std]

/// Length of a task's `comm`, NUL included (the kernel's TASK_COMM_LEN).
pub const COMM_LEN: usize = 16;

/// `Event::kind`: which step of a connection's life the event reports.
pub mod kind {
    /// An active open: the owning process and the local port the kernel chose.
    pub const CONNECT: u8 = 1;
    /// A passive open handed to a process by accept().
    pub const ACCEPT: u8 = 2;
    /// The handshake completed.
    pub const ESTABLISHED: u8 = 3;
    /// The connection reached CLOSE.
    pub const CLOSE: u8 = 4;
    /// Any state transition (opt-in).
    pub const STATE: u8 = 5;
    /// A connection that never reached ESTABLISHED reached CLOSE.
    pub const FAILED: u8 = 6;
    /// A segment was retransmitted (opt-in).
    pub const RETRANSMIT: u8 = 7;
    /// A RST was sent or received (opt-in).
    pub const RESET: u8 = 8;
    /// A connection already open when tracing started, listed by userspace
    /// from sock_diag; the kernel never sends it.
    pub const SNAPSHOT: u8 = 9;
    /// Highest kind number, for masks.
    pub const MAX: u8 = 9;
}

/// `Event::closed_by`: which end sent the first FIN or RST.
pub mod side {
    pub const UNKNOWN: u8 = 0;
    pub const LOCAL: u8 = 1;
    pub const REMOTE: u8 = 2;
}

/// `Event::reset`: which way a RST went, for `kind::RESET`.
pub mod reset {
    pub const SENT: u8 = 1;
    pub const RECEIVED: u8 = 2;
}

/// Kernel TCP state numbers (include/net/tcp_states.h), as in `Event::new_state`.
pub mod tcp_state {
    pub const ESTABLISHED: u8 = 1;
    pub const SYN_SENT: u8 = 2;
    pub const SYN_RECV: u8 = 3;
    pub const FIN_WAIT1: u8 = 4;
    pub const FIN_WAIT2: u8 = 5;
    pub const TIME_WAIT: u8 = 6;
    pub const CLOSE: u8 = 7;
    pub const CLOSE_WAIT: u8 = 8;
    pub const LAST_ACK: u8 = 9;
    pub const LISTEN: u8 = 10;
    pub const CLOSING: u8 = 11;
}

/// `Event::direction`: who opened the connection.
pub mod direction {
    /// Not seen opening (it existed before tracing started).
    pub const UNKNOWN: u8 = 0;
    /// This host sent the first SYN.
    pub const OUTBOUND: u8 = 1;
    /// This host answered a SYN on a listening socket.
    pub const INBOUND: u8 = 2;
}

/// `Event::family` values (the kernel's AF_INET and AF_INET6).
pub mod family {
    pub const INET: u8 = 2;
    pub const INET6: u8 = 10;
}

/// `Event::internal` bits, kernel side only.
pub mod internal {
    /// The template is a listening socket's: its transitions are not a connection's.
    pub const LISTENER: u8 = 1;
    /// The `accept` event went out (two hooks may see the same accept).
    pub const ACCEPTED: u8 = 2;
    /// The LISTEN -> SYN_RECV `state` event waits for the child's remote
    /// address, which some kernels fill in only after that transition.
    pub const SYN_RECV_PENDING: u8 = 4;
}

/// Indexes of the kernel's per-CPU `COUNTERS` array.
pub mod counter {
    /// Events dropped because the ring buffer was full.
    pub const LOST_EVENTS: u32 = 0;
    /// Connections not tracked because the connection map was full.
    pub const CONN_MAP_FULL: u32 = 1;
    /// Events the user's filters kept out of the ring buffer.
    pub const FILTERED: u32 = 2;
    /// Kernel map updates that failed (a full map, no memory).
    pub const MAP_UPDATE_FAILED: u32 = 3;
    /// Closes sent when the socket was freed: the state hook's run for the
    /// way into CLOSE was skipped by the kernel.
    pub const CLOSE_AT_DESTROY: u32 = 4;
    /// Number of counters.
    pub const COUNT: u32 = 5;
}

/// `Event::flags` bits.
pub mod flags {
    /// `tgid`, `uid` and `comm` name the owning process.
    pub const OWNER_KNOWN: u8 = 1;
    /// `start_ns` is the connection's first transition (seen while tracing).
    pub const START_KNOWN: u8 = 2;
    /// The connection reached ESTABLISHED: its end is a close, not a failure.
    pub const ESTABLISHED: u8 = 4;
    /// This host sent a RST on the connection.
    pub const RST_SENT: u8 = 8;
    /// The peer's RST arrived.
    pub const RST_RECEIVED: u8 = 16;
    /// Close: this socket sent a FIN and the peer acknowledged it, so the
    /// FIN's sequence number counts in tcp_sock.bytes_acked.
    pub const FIN_ACKED: u8 = 32;
    /// Close: the peer's FIN reached this socket in order (tcp_fin ran and set
    /// SOCK_DONE), so its sequence number counts in tcp_sock.bytes_received.
    /// Not so for a FIN that a TIME_WAIT mini-socket took over.
    pub const FIN_RECEIVED: u8 = 64;
}

/// One record in the ring buffer. Fields marked with an event kind are
/// meaningful only for that kind.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// When it happened, kernel CLOCK_MONOTONIC.
    pub ts_ns: u64,
    /// When the connection's first transition happened, CLOCK_MONOTONIC.
    pub start_ns: u64,
    /// The kernel's `struct sock` (or request sock) address. Userspace hashes
    /// it into a connection id and never prints it: that would leak KASLR.
    pub sock_addr: u64,
    /// Close: sequence space the peer acknowledged (tcp_sock.bytes_acked:
    /// data, plus one for an active open's SYN and one if `flags::FIN_ACKED`).
    pub bytes_acked: u64,
    /// Close: sequence space received in order (tcp_sock.bytes_received:
    /// data, plus one if `flags::FIN_RECEIVED`).
    pub bytes_received: u64,
    /// Owning process's cgroup (v2) id: the inode number of its directory
    /// under /sys/fs/cgroup; 0 if unknown.
    pub cgroup_id: u64,
    /// The socket's cookie (`sk_cookie`, as sock_diag reports it) for a
    /// connection that predates tracing; 0 otherwise. Userspace's snapshot
    /// made the kernel assign it, so both sides name the connection alike.
    pub cookie: u64,
    /// Local address: 4 bytes for IPv4, then zeros; 16 bytes for IPv6.
    pub saddr: [u8; 16],
    /// Remote address, laid out as `saddr`.
    pub daddr: [u8; 16],
    /// Owning process (thread group id).
    pub tgid: u32,
    /// Owning process's real uid.
    pub uid: u32,
    /// Inode number of the socket's network namespace; 0 if unknown.
    pub netns: u32,
    /// Established: how long the handshake took, microseconds.
    pub handshake_us: u32,
    /// Close: segments sent (tcp_sock.segs_out).
    pub segs_out: u32,
    /// Close: segments received (tcp_sock.segs_in).
    pub segs_in: u32,
    /// Close: segments retransmitted (tcp_sock.total_retrans).
    pub retransmits: u32,
    /// Close: smoothed round-trip time, microseconds.
    pub srtt_us: u32,
    /// Close and failed: the socket's error (sk_err), a positive errno; 0 if none.
    pub error: u32,
    /// Reset sent: the kernel's `enum sk_rst_reason`.
    pub reset_reason: u32,
    /// Local port, host byte order.
    pub sport: u16,
    /// Remote port, host byte order.
    pub dport: u16,
    /// Owning process's command name, NUL padded.
    pub comm: [u8; COMM_LEN],
    /// `family::INET` or `family::INET6`.
    pub family: u8,
    /// One of `kind`.
    pub kind: u8,
    /// TCP state before the transition (kernel numbering), for `kind::STATE`.
    pub old_state: u8,
    /// TCP state after the transition, or the current state for other kinds.
    pub new_state: u8,
    /// One of `direction`.
    pub direction: u8,
    /// Bits of `flags`.
    pub flags: u8,
    /// Close: one of `side`.
    pub closed_by: u8,
    /// Reset: one of `reset`.
    pub reset: u8,
    /// Bits of `internal`: the kernel side's own bookkeeping in its
    /// per-connection template. Userspace ignores them.
    pub internal: u8,
    pub _pad: [u8; 3],
}

/// The byte size userspace checks every record against.
pub const EVENT_SIZE: usize = core::mem::size_of::<Event>();

// A change of layout must be deliberate: these fail the build otherwise.
const _: () = assert!(EVENT_SIZE == 160);
const _: () = assert!(core::mem::align_of::<Event>() == 8);

/// Byte offsets of the kernel struct members the programs read, taken from the
/// running kernel's BTF at start: Rust eBPF gets no CO-RE relocations, so no
/// offset of one kernel build may be compiled into the object.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `sock_common.skc_net` (a `struct net *`).
    pub sock_net: u32,
    /// `net.ns.inum`: the namespace's inode number.
    pub net_ns_inum: u32,
    /// `sock_common.skc_num`: the local port, host byte order.
    pub sock_num: u32,
    /// `task_struct.files`.
    pub task_files: u32,
    /// `files_struct.fdt`.
    pub files_fdt: u32,
    /// `fdtable.fd`.
    pub fdtable_fd: u32,
    /// `file.private_data`: the `struct socket *` of a socket file.
    pub file_private_data: u32,
    /// `socket.sk`.
    pub socket_sk: u32,
    /// `sock_common.skc_cookie`: the socket's cookie, 0 until something asks for one.
    pub sock_cookie: u32,
    /// `sock.sk_err`: the error a process would see.
    pub sock_err: u32,
    /// `sock.__sk_common.skc_flags` (`sk_flags`), a bit set of `enum sock_flags`.
    pub sock_flags: u32,
    /// Not an offset: the bit of `sk_flags` that tcp_fin sets when the peer's
    /// FIN arrives (`enum sock_flags` SOCK_DONE).
    pub sock_flag_done: u32,
    /// `tcp_sock.bytes_acked`.
    pub tcp_bytes_acked: u32,
    /// `tcp_sock.bytes_received`.
    pub tcp_bytes_received: u32,
    /// `tcp_sock.snd_una`: the first sequence number the peer has not acknowledged.
    pub tcp_snd_una: u32,
    /// `tcp_sock.write_seq`: one past the last sequence number queued to
    /// send (our FIN included, once queued).
    pub tcp_write_seq: u32,
    /// `tcp_sock.segs_out`.
    pub tcp_segs_out: u32,
    /// `tcp_sock.segs_in`.
    pub tcp_segs_in: u32,
    /// `tcp_sock.total_retrans`.
    pub tcp_total_retrans: u32,
    /// `tcp_sock.srtt_us` (8 times the smoothed RTT).
    pub tcp_srtt_us: u32,
    /// `sk_buff.dev`.
    pub skb_dev: u32,
    /// `net_device.nd_net`: the device's namespace.
    pub dev_net: u32,
    // The connection's tuple, read from the socket where no tracepoint
    // record carries it (tp_btf hooks get the raw `struct sock *`).
    /// `sock_common.skc_family`.
    pub sock_family: u32,
    /// `sock_common.skc_daddr`: the remote IPv4 address.
    pub sock_daddr: u32,
    /// `inet_sock.inet_saddr`: the local IPv4 address.
    pub inet_saddr: u32,
    /// `inet_sock.inet_sport`: the local port, network byte order. Unlike
    /// skc_num, it survives the port's release as the socket enters CLOSE.
    pub inet_sport: u32,
    /// `sock_common.skc_dport`: the remote port, network byte order.
    pub sock_dport: u32,
    /// `sock_common.skc_v6_daddr`.
    pub sock_v6_daddr: u32,
    /// `sock_common.skc_v6_rcv_saddr`.
    pub sock_v6_rcv_saddr: u32,
    /// `sock.sk_protocol`.
    pub sock_protocol: u32,
    /// `sock_common.skc_state`: the TCP state.
    pub sock_state: u32,
}

/// Settings fixed at load time (the `CONFIG` global, read-only in the kernel).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadConfig {
    pub offsets: KernelOffsets,
    /// Bit `1 << kind` set: events of that kind are wanted.
    pub events: u32,
    /// Bits of `filter`: the filters in force. An event passes when it
    /// matches every filter in force (AND across kinds), and a filter when
    /// any of its values matches (OR within a kind).
    pub filters: u32,
    /// Non-zero: tcp:tcp_send_reset has the 6.10+ layout (reason, sockaddrs).
    pub send_reset_has_reason: u8,
    pub _pad: [u8; 3],
}

const _: () = assert!(core::mem::size_of::<LoadConfig>() == 31 * 4 + 12);

/// `LoadConfig::filters` bits, each naming the kernel map that holds its values.
pub mod filter {
    /// Owner's pid in `FILTER_PIDS`.
    pub const PID: u32 = 1;
    /// Either port in `FILTER_PORTS`.
    pub const PORT: u32 = 1 << 1;
    /// Local port in `FILTER_LPORTS`.
    pub const LPORT: u32 = 1 << 2;
    /// Remote port in `FILTER_RPORTS`.
    pub const RPORT: u32 = 1 << 3;
    /// Owner's uid in `FILTER_UIDS`.
    pub const UID: u32 = 1 << 4;
    /// Owner's command name in `FILTER_COMMS`.
    pub const COMM: u32 = 1 << 5;
    /// Either address inside a prefix of `FILTER_ADDRS`.
    pub const ADDR: u32 = 1 << 6;
    /// Network namespace inode in `FILTER_NETNS`.
    pub const NETNS: u32 = 1 << 7;
    /// Owner's cgroup id in `FILTER_CGROUPS` (the given cgroups and their
    /// descendants; the kernel adds cgroups created later under them).
    pub const CGROUP: u32 = 1 << 10;
    /// IPv4 connections (AF_INET, or AF_INET6 with IPv4-mapped addresses).
    pub const IPV4: u32 = 1 << 8;
    /// IPv6 connections (not IPv4-mapped).
    pub const IPV6: u32 = 1 << 9;
}

#[cfg(feature = "user")]
// SAFETY: plain old data, repr(C), every bit pattern valid, padding explicit.
unsafe impl aya::Pod for LoadConfig {}

/// The process a socket belongs to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Owner {
    /// cgroup v2 id (see `Event::cgroup_id`).
    pub cgroup_id: u64,
    pub tgid: u32,
    pub uid: u32,
    pub comm: [u8; COMM_LEN],
}

/// Key of the kernel's `LISTENERS` map: a listening socket's namespace and port.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ListenerKey {
    pub netns: u32,
    pub port: u16,
    pub _pad: u16,
}

#[cfg(feature = "user")]
// SAFETY: as LoadConfig.
unsafe impl aya::Pod for Owner {}
#[cfg(feature = "user")]
// SAFETY: as LoadConfig.
unsafe impl aya::Pod for ListenerKey {}

/// Key of the kernel's port filter maps.
pub type PortKey = u16;
/// Key of the kernel's pid, uid and netns filter maps.
pub type PidKey = u32;
/// Key of the kernel's cgroup filter map.
pub type CgroupKey = u64;
/// Key of the kernel's command name filter map: NUL padded, as `Event::comm`.
pub type CommKey = [u8; COMM_LEN];
/// Data of the kernel's address filter (an LPM trie keyed by prefix length):
/// IPv6 bytes, IPv4 as `::ffff:a.b.c.d` so one trie serves both.
pub type AddrKey = [u8; 16];

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn event_has_no_implicit_padding() {
        // Sum of field sizes equals the struct size: no hidden holes for garbage.
        let fields = 8 * 7 + 16 * 2 + 4 * 10 + 2 * 2 + COMM_LEN + 9 + 3;
        assert_eq!(fields, EVENT_SIZE);
        assert_eq!(offset_of!(Event, saddr), 56);
        assert_eq!(offset_of!(Event, tgid), 88);
        assert_eq!(offset_of!(Event, sport), 128);
        assert_eq!(offset_of!(Event, comm), 132);
        assert_eq!(offset_of!(Event, family), 148);
        assert_eq!(offset_of!(Event, _pad), 157);
    }

    #[test]
    fn load_config_has_no_implicit_padding() {
        assert_eq!(core::mem::size_of::<KernelOffsets>(), 31 * 4);
        assert_eq!(offset_of!(LoadConfig, events), 31 * 4);
        assert_eq!(offset_of!(LoadConfig, filters), 31 * 4 + 4);
        assert_eq!(offset_of!(LoadConfig, _pad), 31 * 4 + 9);
    }
}

/// Where the kernel programs find fields in the classic tracepoint records
/// they read (byte offsets, from each event's `format` file). Userspace checks
/// the running kernel's formats against these before loading, so a kernel
/// with another layout gets a clear error instead of garbage.
pub mod tracepoint {
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
}
