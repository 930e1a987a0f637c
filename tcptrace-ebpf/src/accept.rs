//! The owner's accept(): the accepting process becomes the owner of a passive
//! connection. Three ways in, best first (the loader picks one): fexit or
//! kretprobe on `inet_csk_accept` (returns the new socket, TCP only), or the
//! `syscalls:sys_exit_accept{,4}` tracepoints, which see only a file
//! descriptor, for every socket family: a socket not in `CONNS` (AF_UNIX, or
//! not seen opening) is ignored. fexit and kretprobe miss an accept() that
//! was already waiting when they attached, so the tracepoints come along as a
//! net; the ACCEPTED mark keeps the event to one.
use aya_ebpf::{
    EbpfContext,
    macros::{fexit, kretprobe, tracepoint},
    programs::{FExitContext, RetProbeContext, TracePointContext},
};
use tcptrace_common::{counter, kind, tracepoint::sys_exit::RET};

use crate::{
    conn::{internal, now, tracked},
    emit::{emit, hand_to_current_process},
    kernel::sock_of_fd,
    maps::count,
};

#[fexit(function = "inet_csk_accept")]
pub fn tcptrace_accept_fexit(ctx: FExitContext) -> u32 {
    if let Ok(sk) = ctx.ret::<u64>() {
        on_accept(sk);
    }
    0
}

#[kretprobe]
pub fn tcptrace_accept_kretprobe(ctx: RetProbeContext) -> u32 {
    on_accept(ctx.ret::<u64>());
    0
}

#[tracepoint]
pub fn tcptrace_accept(ctx: TracePointContext) -> u32 {
    // SAFETY: inside the record; the verifier checks ctx bounds.
    let fd = unsafe { (ctx.as_ptr() as *const u8).add(RET).cast::<i64>().read() };
    if fd < 0 {
        return 0;
    }
    let Ok(sk) = sock_of_fd(fd as u64) else {
        // Counted, not logged: aya-log's record building was nine tenths of
        // this program for the verifier (~2,700 of ~3,000 instructions
        // walked at every start).
        count(counter::ACCEPT_UNRESOLVED);
        return 0;
    };
    on_accept(sk);
    0
}

fn on_accept(sk: u64) {
    if sk == 0 {
        return;
    }
    let Some(entry) = tracked(sk) else {
        return;
    };
    if entry.internal & internal::ACCEPTED != 0 {
        return;
    }
    entry.internal |= internal::ACCEPTED;
    let conn = &mut entry.event;
    hand_to_current_process(conn);
    emit(conn, kind::ACCEPT, now(), conn.new_state);
}
