//! What the kernel side keeps per socket, `CONNS`' value: the template every
//! event of the connection is copied from, and bookkeeping of its own that
//! never crosses the ring.
use aya_ebpf::helpers::bpf_ktime_get_ns;
use tcptrace_common::{Event, side};

use crate::{
    kernel::netns_of,
    maps::{CONNS, PENDING_CONNECT, config, counted, scratch},
    record::Tuple,
};

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Conn {
    /// What every event of the connection repeats: tuple, owner, start, flags.
    pub event: Event,
    /// Bits of [`internal`].
    pub internal: u8,
    pub _pad: [u8; 7],
    /// Non-zero from an active open's SYN_SENT until its `connect` event is
    /// out; claimed with [`claim_connect`], because hooks on two CPUs may race for it.
    pub connect_unsent: u64,
}

const _: () = assert!(core::mem::size_of::<Conn>() == tcptrace_common::CONN_SIZE);

/// `Conn::internal` bits.
pub mod internal {
    /// A listening socket's: its transitions are not a connection's.
    pub const LISTENER: u8 = 1;
    /// The `accept` event went out (two hooks may see the same accept).
    pub const ACCEPTED: u8 = 2;
    /// The LISTEN -> SYN_RECV `state` event waits for the child's remote
    /// address, which some kernels fill in only after that transition.
    pub const SYN_RECV_PENDING: u8 = 4;
}

/// The connection socket `sk` is tracked as, if it is.
#[inline(always)]
pub fn tracked(sk: u64) -> Option<&'static mut Conn> {
    if sk == 0 {
        return None;
    }
    // SAFETY: a map value stays valid for the program's run; it races only
    // with other updates of the same connection, which are idempotent.
    CONNS.get_ptr_mut(&sk).map(|conn| unsafe { &mut *conn })
}

/// An event of socket `sk`, which nobody tracks (it predates tracing, or the
/// map was full), built in the program's scratch `slot` from the socket itself.
#[inline(always)]
pub fn untracked<T: Tuple>(slot: u32, tuple: &T, sk: u64) -> Option<&'static mut Event> {
    let Conn { event, .. } = scratch(slot)?;
    event.sock_addr = sk;
    event.netns = netns_of(sk);
    tuple.fill(event);
    Some(event)
}

/// Marks socket `sk`, an active open, as owing its `connect` event.
#[inline(always)]
pub fn mark_connect_unsent(entry: &mut Conn, sk: u64) {
    entry.connect_unsent = 1;
    if config!(atomic_xchg) == 0 {
        counted(PENDING_CONNECT.insert(&sk, &0, 0));
    }
}

/// Whether this hook sends socket `sk`'s `connect` event: true for exactly
/// one of the hooks that race for it, whatever CPUs they run on. Old
/// kernels' verifiers never see the exchange: the load-time constant prunes it.
#[inline(always)]
pub fn claim_connect(connect_unsent: &mut u64, sk: u64) -> bool {
    if config!(atomic_xchg) != 0 { take(connect_unsent) } else { PENDING_CONNECT.remove(&sk).is_ok() }
}

/// Socket `sk` is done: a claim nobody took is dropped with it.
#[inline(always)]
pub fn forget_connect(sk: u64) {
    if config!(atomic_xchg) == 0 {
        let _ = PENDING_CONNECT.remove(&sk);
    }
}

/// Clears `flag` and says whether it was set, as one atomic exchange: of
/// several CPUs taking it at once, exactly one sees it set.
#[inline(always)]
fn take(flag: &mut u64) -> bool {
    use core::intrinsics::{AtomicOrdering, atomic_xchg};
    // SAFETY: `flag` is a live, aligned u64 (a map value's field).
    unsafe { atomic_xchg::<u64, { AtomicOrdering::SeqCst }>(flag, 0) != 0 }
}

/// The events' clock: CLOCK_MONOTONIC, nanoseconds (userspace maps it to wall time).
#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: helper without preconditions.
    unsafe { bpf_ktime_get_ns() }
}

/// Records which end started the teardown: the first to, only.
#[inline(always)]
pub fn closed_by(conn: &mut Event, who: u8) {
    if conn.closed_by == side::UNKNOWN {
        conn.closed_by = who;
    }
}
