//! What the kernel side keeps per socket, `CONNS`' value: the template every
//! event of the connection is copied from, and bookkeeping of its own that
//! never crosses the ring.
use aya_ebpf::helpers::bpf_ktime_get_ns;
use tcptrace_common::{Event, side};

use crate::{
    kernel::netns_of,
    maps::{CONNS, scratch},
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
}

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
