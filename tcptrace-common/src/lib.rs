//! The event ABI shared by tcptrace's kernel programs and its userspace.
//!
//! Everything here crosses the ring buffer or a map as raw bytes, so every type is
//! `#[repr(C)]`, `Copy`, ordered largest field first with explicit padding, and
//! carries no `bool`, `Option` or data-carrying enum.
#![no_std]

pub mod counter;
pub mod filter;
mod load_config;
mod offsets;
pub mod tracepoint;

// At the crate root, where both sides have always named them.
pub use filter::{AddrKey, CgroupKey, CommKey, PidKey, PortKey};
pub use load_config::LoadConfig;
pub use offsets::KernelOffsets;

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
    pub _pad: [u8; 4],
}

/// The byte size userspace checks every record against.
pub const EVENT_SIZE: usize = core::mem::size_of::<Event>();

/// The byte size of the kernel side's per-socket value (tcptrace-ebpf's
/// `Conn`: the event template and 16 bytes of bookkeeping), for userspace,
/// which creates the map that holds it.
pub const CONN_SIZE: usize = EVENT_SIZE + 16;

// A change of layout must be deliberate: these fail the build otherwise.
const _: () = assert!(EVENT_SIZE == 160);
const _: () = assert!(core::mem::align_of::<Event>() == 8);

// The LISTENERS map's value and key stay at the root, as Event does: the BTF
// name of a map's type spells its key's and value's module paths.
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

/// One record of the socket-files iterator (`iter/task_file`): a socket
/// open in a process, by the inode `ss -p` and sock_diag name it by, and
/// the network namespace it lives in (its inode number).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketFile {
    pub inode: u64,
    pub tgid: u32,
    pub netns: u32,
}

#[cfg(feature = "user")]
// SAFETY: as LoadConfig.
unsafe impl aya::Pod for Owner {}
#[cfg(feature = "user")]
// SAFETY: as LoadConfig.
unsafe impl aya::Pod for ListenerKey {}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn event_has_no_implicit_padding() {
        // Sum of field sizes equals the struct size: no hidden holes for garbage.
        let fields = 8 * 7 + 16 * 2 + 4 * 10 + 2 * 2 + COMM_LEN + 8 + 4;
        assert_eq!(fields, EVENT_SIZE);
        assert_eq!(offset_of!(Event, saddr), 56);
        assert_eq!(offset_of!(Event, tgid), 88);
        assert_eq!(offset_of!(Event, sport), 128);
        assert_eq!(offset_of!(Event, comm), 132);
        assert_eq!(offset_of!(Event, family), 148);
        assert_eq!(offset_of!(Event, _pad), 156);
    }
}
