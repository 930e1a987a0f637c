//! The owner's close(): `tcp_close` runs in the task that drops the last file
//! reference, so a connection that predates tracing learns its owner before its
//! teardown events. fentry or kprobe only: no tracepoint carries the socket in
//! that task's context.
use aya_ebpf::{
    macros::{fentry, kprobe},
    programs::{FEntryContext, ProbeContext},
};
use tcptrace_common::flags;

use crate::{
    conn::{Conn, tracked},
    emit::{current_owner, set_owner},
};

#[fentry(function = "tcp_close")]
pub fn tcptrace_close_fentry(ctx: FEntryContext) -> u32 {
    on_close(ctx.arg(0));
    0
}

#[kprobe]
pub fn tcptrace_close_kprobe(ctx: ProbeContext) -> u32 {
    if let Some(sk) = ctx.arg(0) {
        on_close(sk);
    }
    0
}

fn on_close(sk: u64) {
    let Some(Conn { event: conn, .. }) = tracked(sk) else {
        return;
    };
    if conn.flags & flags::OWNER_KNOWN == 0 {
        set_owner(conn, &current_owner());
    }
}
