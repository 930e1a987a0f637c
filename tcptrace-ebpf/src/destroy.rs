//! `tcp:tcp_destroy_sock`: the socket's memory is about to be freed, so its
//! template goes too (its address may soon belong to another socket).
use aya_ebpf::{
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use tcptrace_common::{counter, kind, tcp_state as tcp, tracepoint::sk::SKADDR};

use crate::{
    conn::{forget_connect, internal, now, tracked},
    emit::emit,
    kernel::state_before_close,
    maps::{CONNS, count},
    record::at,
    state::closed,
};

#[tracepoint]
pub fn tcptrace_destroy(ctx: TracePointContext) -> u32 {
    forget(at(&ctx, SKADDR), false);
    0
}

/// `(struct sock *sk)`.
#[btf_tracepoint(function = "tcp_destroy_sock")]
pub fn tcptrace_destroy_btf(ctx: BtfTracePointContext) -> u32 {
    forget(ctx.arg(0), true);
    0
}

/// `typed`: `sk` is BTF-typed (see kernel.rs).
#[inline(always)]
fn forget(sk: u64, typed: bool) {
    if let Some(entry) = tracked(sk) {
        let conn = &mut entry.event;
        // A socket is destroyed only in CLOSE. If our state hook never saw
        // it get there, the kernel skipped that run (a softirq finishing the
        // connection while the hook ran in the closing task, on the same
        // CPU): the socket still tells how it ended, so its close goes out now.
        if conn.new_state != tcp::CLOSE && entry.internal & internal::LISTENER == 0 {
            count(counter::CLOSE_AT_DESTROY);
            let now = now();
            let last_seen = state_before_close(sk, conn.new_state, typed);
            conn.new_state = tcp::CLOSE;
            emit(conn, kind::STATE, now, last_seen);
            closed(conn, sk, now, last_seen, typed);
        }
    }
    let _ = CONNS.remove(&sk);
    forget_connect(sk);
}
