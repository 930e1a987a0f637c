//! `syscalls:sys_exit_connect`: a non-blocking connect() returns while the
//! handshake is in flight; this is the first moment the chosen local port can
//! be read in the owner's context, so the `connect` event goes out here.
use aya_ebpf::{helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext};

use crate::{
    emit::emit_connect_once,
    kernel::local_port_of,
    maps::{CONNECTING, CONNS},
};

#[tracepoint]
pub fn tcptrace_connect(_ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out at once.
    let Some(&sk) = (unsafe { CONNECTING.get(&pid_tgid) }) else {
        return 0;
    };
    let _ = CONNECTING.remove(&pid_tgid);
    let Some(conn) = CONNS.get_ptr_mut(&sk) else {
        return 0;
    };
    // SAFETY: map value valid for this run.
    let conn = unsafe { &mut *conn };
    let port = local_port_of(sk);
    if port != 0 {
        conn.sport = port;
    }
    emit_connect_once(conn, sk);
    0
}
