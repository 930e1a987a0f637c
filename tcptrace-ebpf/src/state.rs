//! `sock:inet_sock_set_state`: the spine. Every TCP state change in every
//! network namespace passes here; the current task is often not the owner.
use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::tracepoint,
    programs::TracePointContext,
};
use tcptrace_common::{Event, ListenerKey, counter, direction, flags, kind, tcp_state as tcp};

use crate::{
    emit::{current_owner, emit, emit_connect_once, set_owner},
    kernel::netns_of,
    maps::{CONNECTING, CONNS, LISTENERS, PENDING_CONNECT, SCRATCH, config, count},
};

const IPPROTO_TCP: u16 = 6;
/// Marks a listening socket's template: its transitions are not a connection's.
const LISTENER: u8 = 0x80;

/// The tracepoint's record (see its `format` file; stable since 4.16).
mod field {
    pub const SKADDR: usize = 8;
    pub const OLDSTATE: usize = 16;
    pub const NEWSTATE: usize = 20;
    pub const SPORT: usize = 24;
    pub const DPORT: usize = 26;
    pub const FAMILY: usize = 28;
    pub const PROTOCOL: usize = 30;
    pub const SADDR: usize = 32;
    pub const DADDR: usize = 36;
    pub const SADDR_V6: usize = 40;
    pub const DADDR_V6: usize = 56;
}

/// Reads a naturally aligned field of the record. The verifier accepts only
/// plain loads from the context pointer, so no byte copies here.
#[inline(always)]
fn at<T: Copy>(ctx: &TracePointContext, offset: usize) -> T {
    // SAFETY: offsets lie inside the record, aligned for T; the verifier checks ctx bounds.
    unsafe { (ctx.as_ptr() as *const u8).add(offset).cast::<T>().read() }
}

/// An IPv6 address field, read as two 8-byte loads.
#[inline(always)]
fn at_v6(ctx: &TracePointContext, offset: usize) -> [u8; 16] {
    let hi: u64 = at(ctx, offset);
    let lo: u64 = at(ctx, offset + 8);
    let mut out = [0; 16];
    out[..8].copy_from_slice(&hi.to_ne_bytes());
    out[8..].copy_from_slice(&lo.to_ne_bytes());
    out
}

#[tracepoint]
pub fn tcptrace_state(ctx: TracePointContext) -> u32 {
    let _ = try_state(&ctx);
    0
}

fn try_state(ctx: &TracePointContext) -> Result<(), i64> {
    if at::<u16>(ctx, field::PROTOCOL) != IPPROTO_TCP {
        return Ok(());
    }
    let sk: u64 = at(ctx, field::SKADDR);
    let old = at::<i32>(ctx, field::OLDSTATE) as u8;
    let new = at::<i32>(ctx, field::NEWSTATE) as u8;
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };

    let conn = match CONNS.get_ptr_mut(&sk) {
        Some(conn) => conn,
        // A listener that was listening before tracing started is closing.
        None if old == tcp::LISTEN && new == tcp::CLOSE => {
            let _ = LISTENERS.remove(&ListenerKey { netns: netns_of(sk), port: at(ctx, field::SPORT), _pad: 0 });
            return Ok(());
        }
        None => {
            let scratch = SCRATCH.get_ptr_mut(0).ok_or(0)?;
            // SAFETY: this CPU's scratch slot, used only within this run.
            let fresh = unsafe {
                core::ptr::write_bytes(scratch, 0, 1);
                &mut *scratch
            };
            first_sight(ctx, fresh, sk, old, new, now);
            if CONNS.insert(&sk, fresh, 0).is_err() {
                count(counter::CONN_MAP_FULL);
                return Ok(());
            }
            CONNS.get_ptr_mut(&sk).ok_or(0)?
        }
    };
    // SAFETY: a map value stays valid for the program's run; races only with
    // other field updates of the same connection, which are idempotent.
    let conn = unsafe { &mut *conn };
    fill_tuple(ctx, conn);
    conn.new_state = new;

    if conn.flags & LISTENER != 0 {
        if new == tcp::CLOSE {
            let _ = LISTENERS.remove(&listener_key(conn));
            let _ = CONNS.remove(&sk);
        }
        return Ok(());
    }
    // Leaving SYN_SENT, the local port is known: the connect event goes
    // first unless connect() already returned and sent it.
    if old == tcp::SYN_SENT {
        emit_connect_once(conn, sk);
    }
    // The kernel sometimes re-sets the state it is in; that is no transition.
    if config!(emit_states) != 0 && old != new {
        emit(conn, kind::STATE, now, old);
    }
    match (old, new) {
        (tcp::SYN_SENT | tcp::SYN_RECV, tcp::ESTABLISHED) => emit(conn, kind::ESTABLISHED, now, old),
        (_, tcp::CLOSE) => {
            emit(conn, kind::CLOSE, now, old);
            let _ = PENDING_CONNECT.remove(&sk);
            let _ = CONNS.remove(&sk);
        }
        _ => {}
    }
    Ok(())
}

/// The template for a socket not seen before: who owns it depends on how it
/// was born.
fn first_sight(ctx: &TracePointContext, conn: &mut Event, sk: u64, old: u8, new: u8, now: u64) {
    conn.sock_addr = sk;
    conn.start_ns = now;
    conn.netns = netns_of(sk);
    fill_tuple(ctx, conn);
    match new {
        // connect(): we are in the connecting task's syscall.
        tcp::SYN_SENT if old == tcp::CLOSE => {
            set_owner(conn, &current_owner());
            conn.direction = direction::OUTBOUND;
            conn.flags |= flags::START_KNOWN;
            let _ = PENDING_CONNECT.insert(&sk, &0, 0);
            let _ = CONNECTING.insert(&bpf_get_current_pid_tgid(), &sk, 0);
        }
        // listen(): we are in the listening task's syscall.
        tcp::LISTEN => {
            let owner = current_owner();
            set_owner(conn, &owner);
            conn.flags |= LISTENER;
            let _ = LISTENERS.insert(&listener_key(conn), &owner, 0);
        }
        // A child of a listener, cloned in softirq when the handshake's last ACK arrives.
        tcp::SYN_RECV => {
            conn.direction = direction::INBOUND;
            conn.flags |= flags::START_KNOWN;
            // SAFETY: the value is copied out at once.
            if let Some(owner) = unsafe { LISTENERS.get(&listener_key(conn)) } {
                let owner = *owner;
                set_owner(conn, &owner);
            }
        }
        // Already alive when tracing started: owner and start unknown.
        _ => {}
    }
}

fn listener_key(conn: &Event) -> ListenerKey {
    ListenerKey { netns: conn.netns, port: conn.sport, _pad: 0 }
}

/// Copies ports and addresses from the record: they become known along the way
/// (the local port only after SYN_SENT), and on `*->CLOSE` the tracepoint's
/// values are still right where the socket's own are already cleared.
fn fill_tuple(ctx: &TracePointContext, conn: &mut Event) {
    conn.sport = at(ctx, field::SPORT);
    conn.dport = at(ctx, field::DPORT);
    let family = at::<u16>(ctx, field::FAMILY) as u8;
    conn.family = family;
    if family == tcptrace_common::family::INET6 {
        conn.saddr = at_v6(ctx, field::SADDR_V6);
        conn.daddr = at_v6(ctx, field::DADDR_V6);
    } else {
        let mut saddr = [0; 16];
        let mut daddr = [0; 16];
        saddr[..4].copy_from_slice(&at::<u32>(ctx, field::SADDR).to_ne_bytes());
        daddr[..4].copy_from_slice(&at::<u32>(ctx, field::DADDR).to_ne_bytes());
        conn.saddr = saddr;
        conn.daddr = daddr;
    }
}
