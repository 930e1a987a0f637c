//! `tcp:tcp_retransmit_skb` and `tcp:tcp_retransmit_synack`: segments sent
//! again. A SYN retransmitted also means the local port is known, so a
//! blocking connect() to a silent host shows its `connect` event then.
use aya_ebpf::{
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use tcptrace_common::{
    Event, direction, flags, kind, tcp_state,
    tracepoint::{sk_skb, synack},
};

use crate::{
    conn::{Conn, now, tracked, untracked},
    emit::{emit, emit_connect_once, set_owner},
    kernel::{SockTuple, netns_of, state_of},
    maps::{CONNS, LISTENERS, scratch, scratch_slot},
    record::{RecordTuple, Tuple, at, fill_tuple},
    state::catch_up,
};

#[tracepoint]
pub fn tcptrace_retransmit(ctx: TracePointContext) -> u32 {
    let tuple = RecordTuple { ctx: &ctx, layout: &sk_skb::TUPLE };
    on_retransmit(&tuple, at(&ctx, sk_skb::SKADDR), at::<i32>(&ctx, sk_skb::STATE) as u8);
    0
}

/// `(const struct sock *sk, const struct sk_buff *skb[, int err])`.
#[btf_tracepoint(function = "tcp_retransmit_skb")]
pub fn tcptrace_retransmit_btf(ctx: BtfTracePointContext) -> u32 {
    let sk: u64 = ctx.arg(0);
    on_retransmit(&SockTuple(sk), sk, state_of(sk, true));
    0
}

#[inline(always)]
fn on_retransmit<T: Tuple>(tuple: &T, sk: u64, state: u8) {
    if let Some(Conn { event: conn, connect_unsent, .. }) = tracked(sk) {
        if state == tcp_state::SYN_SENT {
            tuple.fill(conn);
            emit_connect_once(conn, connect_unsent, sk);
        }
        catch_up(conn, state);
        emit(conn, kind::RETRANSMIT, now(), conn.new_state);
        return;
    }
    if let Some(event) = untracked(scratch_slot::RETRANSMIT, tuple, sk) {
        event.new_state = state;
        emit(event, kind::RETRANSMIT, now(), state);
    }
}

/// A half-open passive connection (a request socket, no full socket yet):
/// it belongs to its listener's owner.
#[tracepoint]
pub fn tcptrace_retransmit_synack(ctx: TracePointContext) -> u32 {
    let listener: u64 = at(&ctx, synack::SKADDR);
    let Some(Conn { event, .. }) = scratch(scratch_slot::RETRANSMIT_SYNACK) else { return 0 };
    // The request socket's address: the same for every retransmit of it.
    event.sock_addr = at(&ctx, synack::REQ);
    event.new_state = tcp_state::SYN_RECV;
    event.direction = direction::INBOUND;
    event.netns = netns_of(listener);
    fill_tuple(&ctx, &synack::TUPLE, event);
    owner_from_listener(listener, event);
    emit(event, kind::RETRANSMIT, now(), tcp_state::SYN_RECV);
    0
}

fn owner_from_listener(listener: u64, event: &mut Event) {
    // SAFETY: values copied out at once.
    unsafe {
        if let Some(Conn { event: template, .. }) = CONNS.get(&listener)
            && template.flags & flags::OWNER_KNOWN != 0
        {
            event.cgroup_id = template.cgroup_id;
            event.tgid = template.tgid;
            event.uid = template.uid;
            event.comm = template.comm;
            event.flags |= flags::OWNER_KNOWN;
            return;
        }
        let key = tcptrace_common::ListenerKey { netns: event.netns, port: event.sport, _pad: 0 };
        if let Some(owner) = LISTENERS.get(&key) {
            let owner = *owner;
            set_owner(event, &owner);
        }
    }
}
