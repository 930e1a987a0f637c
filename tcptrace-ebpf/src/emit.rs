//! Building events from a connection's template and sending them to userspace.
use aya_ebpf::helpers::{
    bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
    generated::{self, bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id},
};
use aya_ebpf::maps::lpm_trie::Key;
use tcptrace_common::{COMM_LEN, Event, Owner, counter, family, filter, flags, tcp_state};

use crate::conn::claim_connect;
use crate::maps::{
    EVENTS, FILTER_ADDRS, FILTER_CGROUPS, FILTER_COMMS, FILTER_LPORTS, FILTER_NETNS, FILTER_PIDS, FILTER_PORTS,
    FILTER_RPORTS, FILTER_UIDS, SNAPSHOT_PENDING, config, count, counted,
};

/// The task running now. Only meaningful in process context (a syscall).
pub fn current_owner() -> Owner {
    // SAFETY: no arguments; returns 0 without cgroup v2.
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    if config!(filters) & filter::CGROUP != 0 {
        admit_new_cgroup(cgroup_id);
    }
    // The raw helper into a buffer zeroed as one 16-byte value: aya's
    // wrapper, like any zeroed [u8; 16] here, costs a byte-at-a-time memset
    // on BPF, and copies its Result out byte by byte. Zeroed because older
    // kernels' helper (Debian's 6.1: strscpy, no padding) leaves the bytes
    // past the name as they were, and the comm filter looks all 16 bytes up:
    // left uninitialized, `-c` matched nothing there once the stack's layout
    // changed.
    let mut name: u128 = 0;
    // SAFETY: `name` is COMM_LEN writable bytes.
    unsafe { generated::bpf_get_current_comm(core::ptr::from_mut(&mut name).cast(), COMM_LEN as u32) };
    let comm = name.to_ne_bytes();
    Owner { cgroup_id, tgid: (bpf_get_current_pid_tgid() >> 32) as u32, uid: bpf_get_current_uid_gid() as u32, comm }
}

/// Deepest cgroup level looked at for --cgroup: systemd and Kubernetes
/// hierarchies stay well below it.
const MAX_CGROUP_DEPTH: i32 = 16;

/// --cgroup names cgroups with their descendants as they were at start; a
/// cgroup created since (a new container) joins the filter here, the first
/// time one of its processes owns a socket, if an ancestor is in it.
fn admit_new_cgroup(cgroup_id: u64) {
    // SAFETY: presence only.
    if cgroup_id == 0 || unsafe { FILTER_CGROUPS.get(&cgroup_id) }.is_some() {
        return;
    }
    for level in 0..MAX_CGROUP_DEPTH {
        // SAFETY: no pointers; 0 past the current task's own level.
        let ancestor = unsafe { bpf_get_current_ancestor_cgroup_id(level) };
        if ancestor == 0 || ancestor == cgroup_id {
            return;
        }
        // SAFETY: presence only.
        if unsafe { FILTER_CGROUPS.get(&ancestor) }.is_some() {
            counted(FILTER_CGROUPS.insert(&cgroup_id, &1, 0));
            return;
        }
    }
}

pub fn set_owner(conn: &mut Event, owner: &Owner) {
    conn.cgroup_id = owner.cgroup_id;
    conn.tgid = owner.tgid;
    conn.uid = owner.uid;
    conn.comm = owner.comm;
    conn.flags |= flags::OWNER_KNOWN;
}

/// The running task's process becomes the connection's owner, unless it is
/// already (the usual case: then the owner helpers are spared, and the
/// connection keeps the command name of the thread first seen for its
/// process). For hooks that run in the task holding the socket: the acceptor,
/// the closer, whoever sends or receives; 0 is no process (softirq on idle).
#[inline(always)]
pub fn hand_to_current_process(conn: &mut Event) {
    let current = (bpf_get_current_pid_tgid() >> 32) as u32;
    if current != 0 && current != conn.tgid {
        set_owner(conn, &current_owner());
    }
}

/// The user's filters, applied here so unwanted events never cross the ring:
/// every filter in force must match (AND); within one, any value (OR).
pub fn passes_filters(conn: &Event) -> bool {
    let filters = config!(filters);
    if filters == 0 {
        return true;
    }
    let on = |bit: u32| filters & bit != 0;
    // While the snapshot's dumps run, the owners of the listeners open at
    // start are still being found: a connection one of them got meanwhile
    // has no owner yet. Userspace holds its events until then, adds the
    // owner and applies the owner filters itself.
    let owner_on = |bit: u32| {
        on(bit)
            && (conn.flags & flags::OWNER_KNOWN != 0 || !SNAPSHOT_PENDING.get(0).is_some_and(|&pending| pending != 0))
    };
    // SAFETY (every map lookup below): the values are not used, only their presence.
    let pass = (!owner_on(filter::PID) || unsafe { FILTER_PIDS.get(&conn.tgid) }.is_some())
        && (!owner_on(filter::UID) || unsafe { FILTER_UIDS.get(&conn.uid) }.is_some())
        && (!owner_on(filter::COMM) || unsafe { FILTER_COMMS.get(&conn.comm) }.is_some())
        && (!on(filter::PORT)
            || unsafe { FILTER_PORTS.get(&conn.sport).is_some() || FILTER_PORTS.get(&conn.dport).is_some() })
        && (!on(filter::LPORT) || unsafe { FILTER_LPORTS.get(&conn.sport) }.is_some())
        && (!on(filter::RPORT) || unsafe { FILTER_RPORTS.get(&conn.dport) }.is_some())
        && (!on(filter::NETNS) || unsafe { FILTER_NETNS.get(&conn.netns) }.is_some())
        && (!owner_on(filter::CGROUP) || unsafe { FILTER_CGROUPS.get(&conn.cgroup_id) }.is_some())
        && (!on(filter::IPV4 | filter::IPV6) || family_passes(conn, on(filter::IPV4), on(filter::IPV6)))
        && (!on(filter::ADDR) || address_passes(conn));
    // Owner filters on a connection whose owner is unknown (it predates
    // tracing) cannot match: its tgid, uid and comm are zeros.
    if !pass {
        count(counter::FILTERED);
    }
    pass
}

fn family_passes(conn: &Event, ipv4: bool, ipv6: bool) -> bool {
    let is_ipv4 = conn.family == family::INET || is_v4_mapped(&conn.daddr);
    if is_ipv4 { ipv4 } else { ipv6 }
}

fn is_v4_mapped(addr: &[u8; 16]) -> bool {
    addr[..10] == [0; 10] && addr[10] == 0xff && addr[11] == 0xff
}

fn address_passes(conn: &Event) -> bool {
    address_in_filter(conn.family, &conn.saddr) || address_in_filter(conn.family, &conn.daddr)
}

/// Looks `addr` up in the LPM trie, IPv4 as `::ffff:a.b.c.d`.
fn address_in_filter(family: u8, addr: &[u8; 16]) -> bool {
    let data = if family == family::INET {
        // As one 16-byte value: see record::ipv4_field.
        let v4 = u32::from_le_bytes([addr[0], addr[1], addr[2], addr[3]]);
        ((u128::from(v4) << 96) | (0xffff << 80)).to_le_bytes()
    } else {
        *addr
    };
    FILTER_ADDRS.get(&Key::new(128, data)).is_some()
}

/// The user asked for events of this kind.
pub fn kind_wanted(kind: u8) -> bool {
    config!(events) & (1 << kind) != 0
}

/// Sends `conn` as an event of `kind` at `ts_ns`.
pub fn emit(conn: &Event, kind: u8, ts_ns: u64, old_state: u8) {
    if !kind_wanted(kind) || !passes_filters(conn) {
        return;
    }
    match EVENTS.reserve::<Event>(0) {
        Some(mut slot) => {
            fill(slot.as_mut_ptr(), conn, kind, ts_ns, old_state, conn.new_state);
            slot.submit(ADAPTIVE_WAKEUP);
        }
        None => count(counter::LOST_EVENTS),
    }
}

/// Submit flags 0: the kernel wakes the reader only when this record is the
/// first it has not consumed, i.e. once after each time the reader emptied
/// the ring. An idle host costs no wake-ups; a busy one one per batch, since
/// the reader, once woken, drains on a timer until the ring stays empty
/// (session.rs).
pub const ADAPTIVE_WAKEUP: u64 = 0;

/// Copies the template straight into the ring slot: no Event-sized temporary on
/// the BPF stack.
#[inline(always)]
fn fill(slot: *mut Event, conn: &Event, kind: u8, ts_ns: u64, old_state: u8, new_state: u8) {
    copy_words(slot, conn);
    // SAFETY: `slot` is a reserved ring record of exactly one Event.
    unsafe {
        (*slot).ts_ns = ts_ns;
        (*slot).kind = kind;
        (*slot).old_state = old_state;
        (*slot).new_state = new_state;
    }
}

/// Emits the `connect` event of an active open if no other hook has yet.
///
/// The ring slot is reserved before the claim: a hook that loses the claim
/// reserves its own later events after the winner's slot, so the ring keeps
/// connect ahead of established and close even across CPUs.
pub fn emit_connect_once(conn: &Event, connect_unsent: &mut u64, sk: u64) {
    // Already sent (the mark only ever goes from unsent to sent): spare the
    // reservation a lost claim would discard. Usual for connect()'s own hook,
    // which runs after the handshake's end has sent it. A stale read only
    // means a claim that fails, as before.
    if *connect_unsent == 0 {
        return;
    }
    let want = kind_wanted(tcptrace_common::kind::CONNECT) && passes_filters(conn);
    let slot = if want { EVENTS.reserve::<Event>(0) } else { None };
    let claimed = claim_connect(connect_unsent, sk);
    match (slot, claimed) {
        (Some(mut slot), true) => {
            // As of the moment connect() sent the SYN.
            fill(
                slot.as_mut_ptr(),
                conn,
                tcptrace_common::kind::CONNECT,
                conn.start_ns,
                tcp_state::CLOSE,
                tcp_state::SYN_SENT,
            );
            slot.submit(ADAPTIVE_WAKEUP);
        }
        (Some(slot), false) => slot.discard(ADAPTIVE_WAKEUP),
        (None, true) if want => count(counter::LOST_EVENTS),
        (None, _) => {}
    }
}

/// Copies a `T` (an Event, a Conn: 8-aligned, a multiple of 8 bytes) 8 bytes
/// at a time. core's memcpy is a byte loop on BPF (one load and one store per
/// byte); volatile keeps LLVM from turning this back into a memcpy call.
#[inline(always)]
pub fn copy_words<T>(dst: *mut T, src: *const T) {
    const { assert!(size_of::<T>() % 8 == 0 && align_of::<T>() == 8) };
    let (dst, src) = (dst.cast::<u64>(), src.cast::<u64>());
    let mut i = 0;
    while i < size_of::<T>() / 8 {
        // SAFETY: both point at a whole T, 8-aligned (asserted above).
        unsafe { dst.add(i).write_volatile(src.add(i).read_volatile()) };
        i += 1;
    }
}

/// Zeroes a `T` 8 bytes at a time (see `copy_words`).
#[inline(always)]
pub fn zero_words<T>(dst: *mut T) {
    const { assert!(size_of::<T>() % 8 == 0 && align_of::<T>() == 8) };
    let dst = dst.cast::<u64>();
    let mut i = 0;
    while i < size_of::<T>() / 8 {
        // SAFETY: `dst` points at a whole T, 8-aligned (asserted above).
        unsafe { dst.add(i).write_volatile(0) };
        i += 1;
    }
}
