//! `tcp:tcp_send_reset` and `tcp:tcp_receive_reset`: RSTs in either direction.
//! They mark the connection's template (how it ended, who ended it) and, when
//! asked for, become `reset` events. A RST sent with no socket (a reply to a
//! segment nobody owns, like the SYN-ACK for a raw SYN) is reported from the
//! record's own addresses.
use aya_ebpf::{
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use tcptrace_common::{
    Event, flags, kind, reset, side, tcp_state,
    tracepoint::{send_reset, sk, sk_skb},
};

use crate::{
    conn::{Conn, closed_by, now, tracked, untracked},
    emit::{emit, emit_connect_once},
    kernel::{SockTuple, netns_of, netns_of_skb, state_of},
    maps::{config, scratch, scratch_slot},
    record::{RecordTuple, Tuple, at, bytes, fill_tuple, ipv4_field},
    state::catch_up,
};

#[tracepoint]
pub fn tcptrace_send_reset(ctx: TracePointContext) -> u32 {
    let sk: u64 = at(&ctx, send_reset::SKADDR);
    let reason = if config!(send_reset_has_reason) != 0 { at::<u32>(&ctx, send_reset::REASON) } else { 0 };
    let state = at::<i32>(&ctx, send_reset::STATE) as u8;
    if let Some(Conn { event: conn, .. }) = tracked(sk) {
        catch_up(conn, state);
        conn.flags |= flags::RST_SENT;
        closed_by(conn, side::LOCAL);
        conn.reset_reason = reason;
        report(conn, reset::SENT);
        return 0;
    }
    let Some(Conn { event, .. }) = scratch(scratch_slot::SEND_RESET) else { return 0 };
    event.sock_addr = sk;
    event.new_state = state;
    event.netns = if sk != 0 { netns_of(sk) } else { netns_of_skb(at(&ctx, send_reset::SKBADDR)) };
    event.reset_reason = reason;
    if config!(send_reset_has_reason) != 0 {
        read_sockaddr(&ctx, send_reset::SADDR, &mut event.saddr, &mut event.sport, &mut event.family);
        read_sockaddr(&ctx, send_reset::DADDR, &mut event.daddr, &mut event.dport, &mut event.family);
    } else {
        fill_tuple(&ctx, &sk_skb::TUPLE, event);
    }
    report(event, reset::SENT);
    0
}

#[tracepoint]
pub fn tcptrace_receive_reset(ctx: TracePointContext) -> u32 {
    on_receive_reset(&RecordTuple { ctx: &ctx, layout: &sk::TUPLE }, at(&ctx, sk::SKADDR));
    0
}

/// `(struct sock *sk)`.
#[btf_tracepoint(function = "tcp_receive_reset")]
pub fn tcptrace_receive_reset_btf(ctx: BtfTracePointContext) -> u32 {
    let sk: u64 = ctx.arg(0);
    on_receive_reset(&SockTuple(sk), sk);
    0
}

#[inline(always)]
fn on_receive_reset<T: Tuple>(tuple: &T, sk: u64) {
    if let Some(Conn { event: conn, connect_unsent, .. }) = tracked(sk) {
        catch_up(conn, state_of(sk, T::TYPED));
        if conn.new_state == tcp_state::SYN_SENT {
            // A refused connect: the RST beats connect()'s return, and the
            // connect event (with the local port, known here) goes first.
            tuple.fill(conn);
            emit_connect_once(conn, connect_unsent, sk);
        }
        conn.flags |= flags::RST_RECEIVED;
        closed_by(conn, side::REMOTE);
        report(conn, reset::RECEIVED);
        return;
    }
    if let Some(event) = untracked(scratch_slot::RECEIVE_RESET, tuple, sk) {
        report(event, reset::RECEIVED);
    }
}

fn report(conn: &mut Event, way: u8) {
    conn.reset = way;
    emit(conn, kind::RESET, now(), conn.new_state);
}

/// A sockaddr_in/sockaddr_in6 image in the record: address and port.
fn read_sockaddr(ctx: &TracePointContext, offset: usize, addr: &mut [u8; 16], port: &mut u16, family: &mut u8) {
    let af = at::<u16>(ctx, offset) as u8;
    *family = af;
    *port = u16::from_be(at::<u16>(ctx, offset + 2));
    if af == tcptrace_common::family::INET6 {
        *addr = bytes(ctx, offset + 8);
    } else {
        *addr = ipv4_field(bytes(ctx, offset + 4));
    }
}
