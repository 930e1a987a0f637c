//! The owner's connect(): emits the `connect` event with the local port the
//! kernel chose. Three ways in, best first (the loader picks one):
//! fentry or kprobe on `tcp_connect` (called once the port is chosen, in the
//! connecting task), or the `syscalls:sys_exit_connect` tracepoint (a
//! non-blocking connect() returns while the handshake is in flight).
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{fentry, kprobe, tracepoint},
    programs::{FEntryContext, ProbeContext, TracePointContext},
};

use crate::{
    conn::{Conn, tracked},
    emit::emit_connect_once,
    kernel::local_port_of,
    maps::CONNECTING,
};

#[fentry(function = "tcp_connect")]
pub fn tcptrace_connect_fentry(ctx: FEntryContext) -> u32 {
    on_connect(ctx.arg(0));
    0
}

#[kprobe]
pub fn tcptrace_connect_kprobe(ctx: ProbeContext) -> u32 {
    if let Some(sk) = ctx.arg(0) {
        on_connect(sk);
    }
    0
}

#[tracepoint]
pub fn tcptrace_connect(_ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out at once.
    let Some(&sk) = (unsafe { CONNECTING.get(&pid_tgid) }) else {
        return 0;
    };
    let _ = CONNECTING.remove(&pid_tgid);
    on_connect(sk);
    0
}

fn on_connect(sk: u64) {
    let Some(Conn { event: conn, connect_unsent, .. }) = tracked(sk) else {
        return;
    };
    let port = local_port_of(sk);
    if port != 0 {
        conn.sport = port;
    }
    emit_connect_once(conn, connect_unsent, sk);
}
