//! Reading classic tracepoint records. The verifier accepts only naturally
//! aligned loads from the context, so wide fields at odd offsets are read in
//! 2-byte pieces.
use aya_ebpf::{EbpfContext, programs::TracePointContext};
use tcptrace_common::{Event, family, tracepoint::TupleLayout};

/// Reads a naturally aligned field of the record.
#[inline(always)]
pub fn at<T: Copy>(ctx: &TracePointContext, offset: usize) -> T {
    // SAFETY: offsets lie inside the record, aligned for T; the verifier checks ctx bounds.
    unsafe { (ctx.as_ptr() as *const u8).add(offset).cast::<T>().read() }
}

/// `N` bytes at an even offset, as 2-byte loads.
#[inline(always)]
pub fn bytes<const N: usize>(ctx: &TracePointContext, offset: usize) -> [u8; N] {
    let mut out = [0; N];
    let mut i = 0;
    while i + 1 < N {
        let pair: u16 = at(ctx, offset + i);
        out[i..i + 2].copy_from_slice(&pair.to_ne_bytes());
        i += 2;
    }
    out
}

/// An IPv4 address as an event's 16-byte address field holds it: its 4
/// bytes, then zeros. Built as one 16-byte value: an array zeroed around a
/// copied slice compiles to a call of a byte-at-a-time memset on BPF (12
/// rounds per address, walked by the verifier at every call site too).
#[inline(always)]
pub fn ipv4_field(addr: [u8; 4]) -> [u8; 16] {
    u128::from(u32::from_le_bytes(addr)).to_le_bytes()
}

/// Where a hook finds the connection's ports and addresses: a classic
/// tracepoint's record, or the socket itself (kernel::SockTuple).
pub trait Tuple {
    /// The socket the hook got is a BTF-typed pointer the verifier lets us
    /// load from (kernel::SockTuple), not a bare address.
    const TYPED: bool;

    fn fill(&self, conn: &mut Event);
}

/// The tuple fields of a classic tracepoint record, laid out as `layout` says.
pub struct RecordTuple<'a> {
    pub ctx: &'a TracePointContext,
    pub layout: &'a TupleLayout,
}

impl Tuple for RecordTuple<'_> {
    const TYPED: bool = false;

    #[inline(always)]
    fn fill(&self, conn: &mut Event) {
        fill_tuple(self.ctx, self.layout, conn);
    }
}

/// Copies ports and addresses from the record into `conn`.
#[inline(always)]
pub fn fill_tuple(ctx: &TracePointContext, layout: &TupleLayout, conn: &mut Event) {
    conn.sport = at(ctx, layout.sport);
    conn.dport = at(ctx, layout.dport);
    let af = at::<u16>(ctx, layout.family) as u8;
    conn.family = af;
    if af == family::INET6 {
        conn.saddr = bytes(ctx, layout.saddr_v6);
        conn.daddr = bytes(ctx, layout.daddr_v6);
    } else {
        conn.saddr = ipv4_field(bytes(ctx, layout.saddr));
        conn.daddr = ipv4_field(bytes(ctx, layout.daddr));
    }
}
