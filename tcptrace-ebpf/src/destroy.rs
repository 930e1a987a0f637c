//! `tcp:tcp_destroy_sock`: the socket's memory is about to be freed, so its
//! template goes too (its address may soon belong to another socket).
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};

use tcptrace_common::tracepoint::sk::SKADDR;

use crate::{
    maps::{CONNS, PENDING_CONNECT},
    record::at,
};

#[tracepoint]
pub fn tcptrace_destroy(ctx: TracePointContext) -> u32 {
    let sk: u64 = at(&ctx, SKADDR);
    let _ = CONNS.remove(&sk);
    let _ = PENDING_CONNECT.remove(&sk);
    0
}
