//! `sock:sock_send_length` and `sock:sock_recv_length` (Linux 6.3+): they
//! run in the task that sends or receives, so a connection handed to another
//! process (a fork, an fd passed over a Unix socket) is theirs from its first
//! send or receive on. Every socket call on the host passes here: the check
//! is a protocol compare, then one lookup, and a write only on a change.
use aya_ebpf::{helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext};
use tcptrace_common::tracepoint::sock_length::{PROTOCOL, SK};

use crate::{
    emit::{current_owner, set_owner},
    maps::CONNS,
    record::at,
};

const IPPROTO_TCP: u16 = 6;

#[tracepoint]
pub fn tcptrace_holder(ctx: TracePointContext) -> u32 {
    if at::<u16>(&ctx, PROTOCOL) != IPPROTO_TCP {
        return 0;
    }
    let sk: u64 = at(&ctx, SK);
    let Some(conn) = CONNS.get_ptr_mut(&sk) else {
        return 0;
    };
    // SAFETY: a map value stays valid for the program's run.
    let conn = unsafe { &mut *conn };
    if conn.tgid != (bpf_get_current_pid_tgid() >> 32) as u32 {
        set_owner(conn, &current_owner());
    }
    0
}
