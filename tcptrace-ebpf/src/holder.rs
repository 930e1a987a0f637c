//! `sock:sock_send_length` and `sock:sock_recv_length` (Linux 6.3+): they
//! run in the task that sends or receives, so a connection handed to another
//! process (a fork, an fd passed over a Unix socket) is theirs from its first
//! send or receive on. Every socket call on the host passes here: the check
//! is a protocol compare, then one lookup, and a write only on a change.
use aya_ebpf::{
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use tcptrace_common::tracepoint::sock_length::{PROTOCOL, SK};

use crate::{
    conn::{Conn, tracked},
    emit::hand_to_current_process,
    kernel::protocol_of,
    record::at,
    state::IPPROTO_TCP,
};

#[tracepoint]
pub fn tcptrace_holder(ctx: TracePointContext) -> u32 {
    if at::<u16>(&ctx, PROTOCOL) == IPPROTO_TCP {
        on_io(at(&ctx, SK));
    }
    0
}

// The BTF tracepoints, `(struct sock *sk, int ret, int flags)`: one program
// per tracepoint, as a BTF program is loaded for one.
#[btf_tracepoint(function = "sock_send_length")]
pub fn tcptrace_holder_send_btf(ctx: BtfTracePointContext) -> u32 {
    on_btf_io(ctx.arg(0));
    0
}

#[btf_tracepoint(function = "sock_recv_length")]
pub fn tcptrace_holder_recv_btf(ctx: BtfTracePointContext) -> u32 {
    on_btf_io(ctx.arg(0));
    0
}

#[inline(always)]
fn on_btf_io(sk: u64) {
    if protocol_of(sk) == IPPROTO_TCP {
        on_io(sk);
    }
}

#[inline(always)]
fn on_io(sk: u64) {
    if let Some(Conn { event: conn, .. }) = tracked(sk) {
        hand_to_current_process(conn);
    }
}
