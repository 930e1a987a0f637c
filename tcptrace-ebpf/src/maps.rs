//! Maps and load-time globals shared by every hook.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, PerCpuArray, RingBuf},
};
use tcptrace_common::{AddrKey, CgroupKey, CommKey, ListenerKey, LoadConfig, Owner, PidKey, PortKey, counter};

use crate::conn::Conn;

/// Settings and kernel struct offsets, written by userspace before load.
#[unsafe(no_mangle)]
pub static CONFIG: LoadConfig = LoadConfig {
    offsets: tcptrace_common::KernelOffsets {
        sock_net: 0,
        net_ns_inum: 0,
        sock_num: 0,
        task_files: 0,
        files_fdt: 0,
        fdtable_fd: 0,
        file_private_data: 0,
        socket_sk: 0,
        sock_cookie: 0,
        sock_err: 0,
        sock_flags: 0,
        sock_flag_done: 0,
        tcp_bytes_acked: 0,
        tcp_bytes_received: 0,
        tcp_snd_una: 0,
        tcp_write_seq: 0,
        tcp_segs_out: 0,
        tcp_segs_in: 0,
        tcp_total_retrans: 0,
        tcp_srtt_us: 0,
        skb_dev: 0,
        dev_net: 0,
        sock_family: 0,
        sock_daddr: 0,
        inet_saddr: 0,
        inet_sport: 0,
        sock_dport: 0,
        sock_v6_daddr: 0,
        sock_v6_rcv_saddr: 0,
        sock_protocol: 0,
        sock_state: 0,
        task_tgid: 0,
        file_inode: 0,
        inode_mode: 0,
        inode_ino: 0,
    },
    events: 0,
    filters: 0,
    send_reset_has_reason: 0,
    atomic_xchg: 0,
    _pad: [0; 2],
};

/// Reads one field of `CONFIG`; volatile so the compiler cannot fold the
/// compile-time zeros that userspace overrides at load.
macro_rules! config {
    ($($field:ident).+) => {
        // SAFETY: CONFIG is a static, always readable.
        unsafe { core::ptr::read_volatile(&raw const crate::maps::CONFIG.$($field).+) }
    };
}
pub(crate) use config;

/// Events to userspace. 16 MiB (the default; --ring-buffer sets it at load)
/// holds ~100k events: about half a second of the default events at 30k
/// connections/s on two CPUs, room for the reader to be kept off the CPU by
/// the very load it traces.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(16 << 20, 0);

/// BPF_F_NO_PREALLOC: an entry's memory is taken when it is inserted and
/// given back when it is deleted, so a map costs what it holds (the bucket
/// array aside), not its ceiling. LPM tries require it.
const NO_PREALLOC: u32 = 1;

/// Every TCP socket seen in a transition, keyed by `struct sock` address; the
/// value is its `Conn` (conn.rs): the event template (tuple, owner, start, how
/// it is ending) and the kernel side's bookkeeping. Kept
/// past CLOSE until the socket is destroyed, so a RST the kernel sends just
/// after CLOSE still finds its owner. Its ceiling is `--max-sockets`: the
/// object's one entry is a placeholder, which userspace replaces before any
/// program loads with a map of that size created on a thread of its own
/// (tcptrace's loader.rs); not preallocated, so a million sockets cost
/// ~250 MB only on a host that holds a million.
#[map]
pub static CONNS: HashMap<u64, Conn> = HashMap::with_max_entries(1, NO_PREALLOC);

/// Before Linux 5.12, which has no atomic exchange for `conn::take`: active
/// opens whose `connect` event is not out yet, and whoever deletes the entry
/// emits it. Sized like CONNS there at load (a proxy restart reconnects
/// everything at once), to one entry elsewhere.
#[map]
pub static PENDING_CONNECT: HashMap<u64, u8> = HashMap::with_max_entries(1 << 20, NO_PREALLOC);

/// The socket each thread is connecting, from SYN_SENT until connect()
/// returns, for connect()'s syscall hook (connect.rs); kept only when that
/// hook is the one attached (`CONNECT_AT_SYSCALL_EXIT`), as nothing else
/// removes the entries. Not an LRU map: its shared lists are costly (README,
/// Performance); a thread leaves at most one stale entry (a connect() whose
/// exit was never seen, e.g. through io_uring), which its next connect()
/// overwrites.
#[map]
pub static CONNECTING: HashMap<u64, u64> = HashMap::with_max_entries(1 << 16, NO_PREALLOC);

/// Index 0 non-zero: connect() is seen at its syscall's exit, so the state
/// program keeps `CONNECTING`. Written by userspace once attached (CONFIG is
/// fixed before the attach ladder has run).
#[map]
pub static CONNECT_AT_SYSCALL_EXIT: Array<u32> = Array::with_max_entries(1, 0);

/// Index 0 non-zero while the snapshot's dumps run after attaching (userspace
/// sets it before attaching, clears it when they are done): sockets born
/// meanwhile go into `BORN_DURING_SNAPSHOT`, so the snapshot leaves them out.
#[map]
pub static SNAPSHOT_PENDING: Array<u32> = Array::with_max_entries(1, 0);

/// Cookies of the sockets born while `SNAPSHOT_PENDING` was set. Sized for
/// a fast churn over a slow dump (~50k connections/s for over half a second);
/// a full map is counted, and its sockets get a `snapshot` line too many.
#[map]
pub static BORN_DURING_SNAPSHOT: HashMap<u64, u8> = HashMap::with_max_entries(1 << 16, NO_PREALLOC);

/// Owners of listening sockets by (netns, port): a passive connection belongs
/// to its listener's owner until some process accepts it. Userspace seeds it
/// with the listeners that were open before tracing started.
#[map]
pub static LISTENERS: HashMap<ListenerKey, Owner> = HashMap::with_max_entries(8192, 0);

// The user's filters, read when `CONFIG.filters` says they are in force
// (tcptrace_common::filter); userspace fills them before attaching. Empty
// unless the user filters, so not preallocated.
#[map]
pub static FILTER_PIDS: HashMap<PidKey, u8> = HashMap::with_max_entries(1024, NO_PREALLOC);
#[map]
pub static FILTER_PORTS: HashMap<PortKey, u8> = HashMap::with_max_entries(1024, NO_PREALLOC);
#[map]
pub static FILTER_LPORTS: HashMap<PortKey, u8> = HashMap::with_max_entries(1024, NO_PREALLOC);
#[map]
pub static FILTER_RPORTS: HashMap<PortKey, u8> = HashMap::with_max_entries(1024, NO_PREALLOC);
#[map]
pub static FILTER_UIDS: HashMap<PidKey, u8> = HashMap::with_max_entries(1024, NO_PREALLOC);
#[map]
pub static FILTER_COMMS: HashMap<CommKey, u8> = HashMap::with_max_entries(1024, NO_PREALLOC);
#[map]
pub static FILTER_NETNS: HashMap<PidKey, u8> = HashMap::with_max_entries(1024, NO_PREALLOC);
/// The given cgroups and their descendants; the kernel adds new ones (emit.rs).
#[map]
pub static FILTER_CGROUPS: HashMap<CgroupKey, u8> = HashMap::with_max_entries(65536, NO_PREALLOC);
#[map]
pub static FILTER_ADDRS: LpmTrie<AddrKey, u8> = LpmTrie::with_max_entries(1024, NO_PREALLOC);

/// Room to build a template for a new connection, or an event for a socket
/// nobody tracks: the BPF stack (512 B) is too small to hold one beside
/// everything else. One slot per program that uses it: a BTF tracepoint's
/// program may interrupt another of ours on the same CPU (a softirq during a
/// syscall), and must not overwrite what that one is building.
#[map]
pub static SCRATCH: PerCpuArray<Conn> = PerCpuArray::with_max_entries(scratch_slot::COUNT, 0);

/// `SCRATCH` slots, by user.
pub mod scratch_slot {
    pub const STATE: u32 = 0;
    pub const SEND_RESET: u32 = 1;
    pub const RECEIVE_RESET: u32 = 2;
    pub const RETRANSMIT: u32 = 3;
    pub const RETRANSMIT_SYNACK: u32 = 4;
    pub const COUNT: u32 = 5;
}

/// Per-CPU counters indexed by `tcptrace_common::counter`.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

pub fn count(index: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: this CPU's slot. Not atomic (core has no atomic add for
        // BPF): a BTF tracepoint's program interrupting another of ours
        // mid-increment on this CPU can lose one count.
        unsafe { *slot += 1 };
    }
}

/// A map update whose failure loses nothing but must not go unnoticed.
pub fn counted<E>(update: Result<(), E>) {
    if update.is_err() {
        count(counter::MAP_UPDATE_FAILED);
    }
}

/// This CPU's scratch template for one program (`scratch_slot`), zeroed.
pub fn scratch(user: u32) -> Option<&'static mut Conn> {
    let slot = SCRATCH.get_ptr_mut(user)?;
    crate::emit::zero_words(slot);
    // SAFETY: this CPU's slot, used only within one program run.
    Some(unsafe { &mut *slot })
}
