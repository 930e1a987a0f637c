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
}

/// Kernel TCP state numbers (include/net/tcp_states.h), as in `Event::new_state`.
pub mod tcp_state {
    pub const ESTABLISHED: u8 = 1;
    pub const SYN_SENT: u8 = 2;
    pub const SYN_RECV: u8 = 3;
    pub const CLOSE: u8 = 7;
    pub const LISTEN: u8 = 10;
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

/// Indexes of the kernel's per-CPU `COUNTERS` array.
pub mod counter {
    /// Events dropped because the ring buffer was full.
    pub const LOST_EVENTS: u32 = 0;
    /// Connections not tracked because the connection map was full.
    pub const CONN_MAP_FULL: u32 = 1;
    /// Number of counters.
    pub const COUNT: u32 = 2;
}

/// `Event::flags` bits.
pub mod flags {
    /// `tgid`, `uid` and `comm` name the owning process.
    pub const OWNER_KNOWN: u8 = 1;
    /// `start_ns` is the connection's first transition (seen while tracing).
    pub const START_KNOWN: u8 = 2;
}

/// One record in the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// When it happened, kernel CLOCK_MONOTONIC.
    pub ts_ns: u64,
    /// When the connection's first transition happened, CLOCK_MONOTONIC.
    pub start_ns: u64,
    /// The kernel's `struct sock` address. Userspace hashes it into a
    /// connection id and never prints it: printing it would leak KASLR.
    pub sock_addr: u64,
    /// Local address: 4 bytes for IPv4, then zeros; 16 bytes for IPv6.
    pub saddr: [u8; 16],
    /// Remote address, laid out as `saddr`.
    pub daddr: [u8; 16],
    /// Owning process (thread group id).
    pub tgid: u32,
    /// Owning process's real uid.
    pub uid: u32,
    /// Inode number of the socket's network namespace.
    pub netns: u32,
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
    pub _pad: [u8; 2],
}

/// The byte size userspace checks every record against.
pub const EVENT_SIZE: usize = core::mem::size_of::<Event>();

// A change of layout must be deliberate: these fail the build otherwise.
const _: () = assert!(EVENT_SIZE == 96);
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
}

/// Settings fixed at load time (the `CONFIG` global, read-only in the kernel).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadConfig {
    pub offsets: KernelOffsets,
    /// Non-zero: emit only connections owned by a pid in `FILTER_PIDS`.
    pub filter_pids: u8,
    /// Non-zero: emit only connections with a port in `FILTER_PORTS`.
    pub filter_ports: u8,
    /// Non-zero: emit a `kind::STATE` event for every transition.
    pub emit_states: u8,
    pub _pad: [u8; 5],
}

const _: () = assert!(core::mem::size_of::<LoadConfig>() == 40);

#[cfg(feature = "user")]
// SAFETY: plain old data, repr(C), every bit pattern valid, padding explicit.
unsafe impl aya::Pod for LoadConfig {}

/// The process a socket belongs to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Owner {
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

/// Key of the kernel's port filter map.
pub type PortKey = u16;
/// Key of the kernel's pid filter map.
pub type PidKey = u32;

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn event_has_no_implicit_padding() {
        // Sum of field sizes equals the struct size: no hidden holes for garbage.
        let fields = 8 * 3 + 16 * 2 + 4 * 3 + 2 * 2 + COMM_LEN + 6 + 2;
        assert_eq!(fields, EVENT_SIZE);
        assert_eq!(offset_of!(Event, saddr), 24);
        assert_eq!(offset_of!(Event, tgid), 56);
        assert_eq!(offset_of!(Event, comm), 72);
        assert_eq!(offset_of!(Event, family), 88);
        assert_eq!(offset_of!(Event, _pad), 94);
    }
}
