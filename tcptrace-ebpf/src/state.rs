//! `sock:inet_sock_set_state`: the spine. Every TCP state change in every
//! network namespace passes here; the current task is often not the owner.
//! Two ways in: a BTF tracepoint (preferred) or the classic one.
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use tcptrace_common::{
    Event, ListenerKey, counter, direction, flags, kind, side, tcp_state as tcp,
    tracepoint::set_state::{NEWSTATE, OLDSTATE, PROTOCOL, SKADDR, TUPLE},
};

use crate::{
    conn::{Conn, closed_by, forget_connect, internal, mark_connect_unsent, now, tracked},
    emit::{current_owner, emit, emit_connect_once, hand_to_current_process, kind_wanted, set_owner, zero_words},
    kernel::{SockTuple, cookie_of, fill_close_stats, netns_of, protocol_of, synack_rtt_us},
    maps::{
        BORN_DURING_SNAPSHOT, CONNECT_AT_SYSCALL_EXIT, CONNECTING, CONNS, LISTENERS, SNAPSHOT_PENDING, count, counted,
        scratch, scratch_slot,
    },
    record::{RecordTuple, Tuple, at},
};

pub const IPPROTO_TCP: u16 = 6;

/// The classic tracepoint: the kernel formats its record before the program
/// runs, and skips the program (counted as a recursion miss) whenever any
/// tracepoint or kprobe eBPF program is already running on the CPU, as when
/// a packet's softirq interrupts one.
#[tracepoint]
pub fn tcptrace_state(ctx: TracePointContext) -> u32 {
    if at::<u16>(&ctx, PROTOCOL) == IPPROTO_TCP {
        let tuple = RecordTuple { ctx: &ctx, layout: &TUPLE };
        let _ = on_state(&tuple, at(&ctx, SKADDR), at::<i32>(&ctx, OLDSTATE) as u8, at::<i32>(&ctx, NEWSTATE) as u8);
    }
    0
}

/// The same hook on the raw tracepoint with its BTF arguments
/// `(struct sock *sk, int oldstate, int newstate)`: no record to format,
/// and skipped only if it would run inside itself.
#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn tcptrace_state_btf(ctx: BtfTracePointContext) -> u32 {
    let sk: u64 = ctx.arg(0);
    if protocol_of(sk) == IPPROTO_TCP {
        let _ = on_state(&SockTuple(sk), sk, ctx.arg::<i32>(1) as u8, ctx.arg::<i32>(2) as u8);
    }
    0
}

#[inline(always)]
fn on_state<T: Tuple>(tuple: &T, sk: u64, old: u8, new: u8) -> Result<(), i64> {
    // Between FIN_WAIT1 and CLOSE nothing happens that only a `state` event
    // would tell: without those, the connection's lookup is spared.
    if passed_by(new) && !kind_wanted(kind::STATE) {
        return Ok(());
    }
    let now = now();

    let entry = match tracked(sk) {
        Some(entry) if old == tcp::CLOSE && new != tcp::CLOSE && entry.internal & internal::LISTENER == 0 => {
            // A closed socket used again (connect() after a failure): a new connection.
            zero_words(entry);
            first_sight(tuple, entry, sk, old, new, now);
            entry
        }
        Some(entry) => entry,
        // A listener that was listening before tracing started is closing.
        None if old == tcp::LISTEN && new == tcp::CLOSE => {
            let mut listener = ListenerKey { netns: netns_of(sk), port: 0, _pad: 0 };
            let fresh = &mut scratch(scratch_slot::STATE).ok_or(0)?.event;
            tuple.fill(fresh);
            listener.port = fresh.sport;
            let _ = LISTENERS.remove(&listener);
            return Ok(());
        }
        None => {
            let fresh = scratch(scratch_slot::STATE).ok_or(0)?;
            first_sight(tuple, fresh, sk, old, new, now);
            // The key in a stack slot of its own: Linux 6.1's verifier turns
            // a slot that a helper reads into plain bytes, and a typed `sk`
            // reloaded from it could no longer be read (tp_btf refused).
            let key = core::hint::black_box(sk);
            if CONNS.insert(&key, fresh, 0).is_err() {
                count(counter::CONN_MAP_FULL);
                return Ok(());
            }
            tracked(sk).ok_or(0)?
        }
    };
    let conn = &mut entry.event;
    // Ports still unknown at first sight (an active open's local port, a
    // passive child's remote end) arrive with later transitions.
    if conn.sport == 0 || conn.dport == 0 {
        tuple.fill(conn);
    }
    conn.new_state = new;

    if entry.internal & internal::LISTENER != 0 {
        if new == tcp::CLOSE {
            let _ = LISTENERS.remove(&listener_key(conn));
        }
        return Ok(());
    }
    // Leaving SYN_SENT, the local port is known: the connect event goes
    // first unless connect() already returned and sent it.
    if old == tcp::SYN_SENT {
        emit_connect_once(conn, &mut entry.connect_unsent, sk);
    }
    if entry.internal & internal::SYN_RECV_PENDING != 0 && conn.dport != 0 {
        // The child's first transition, now that its remote end is known.
        entry.internal &= !internal::SYN_RECV_PENDING;
        let new_state = conn.new_state;
        conn.new_state = tcp::SYN_RECV;
        emit(conn, kind::STATE, conn.start_ns, tcp::LISTEN);
        conn.new_state = new_state;
    }
    if matches!((old, new), (tcp::ESTABLISHED, tcp::FIN_WAIT1) | (tcp::CLOSE_WAIT, tcp::LAST_ACK)) {
        // Only close() or shutdown() by whoever holds the socket now moves it
        // here: after a fork or an fd handover that is the worker, not the
        // task that connected or accepted, and the rest of its story is theirs.
        hand_to_current_process(conn);
    }
    // The kernel sometimes re-sets the state it is in; that is no transition.
    if old != new && entry.internal & internal::SYN_RECV_PENDING == 0 {
        emit(conn, kind::STATE, now, old);
    }
    match (old, new) {
        (tcp::SYN_SENT, tcp::ESTABLISHED) => {
            conn.flags |= flags::ESTABLISHED;
            conn.handshake_us = ((now - conn.start_ns) / 1000) as u32;
            emit(conn, kind::ESTABLISHED, now, old);
        }
        (tcp::SYN_RECV, tcp::ESTABLISHED) => {
            // Not at SYN_RECV: the kernel sets a child's cookie (from its
            // request's) only after that step, and lists it from this one.
            if conn.flags & flags::START_KNOWN != 0 {
                note_birth(sk, T::TYPED);
            }
            conn.flags |= flags::ESTABLISHED;
            conn.handshake_us = synack_rtt_us(sk, T::TYPED);
            emit(conn, kind::ESTABLISHED, now, old);
        }
        (tcp::ESTABLISHED, tcp::FIN_WAIT1) => closed_by(conn, side::LOCAL),
        (tcp::ESTABLISHED, tcp::CLOSE_WAIT) => closed_by(conn, side::REMOTE),
        (_, tcp::CLOSE) if old != tcp::CLOSE => closed(conn, sk, now, old, T::TYPED),
        _ => {}
    }
    Ok(())
}

/// States the state program may pass by without the connection's lookup
/// (see `on_state`): a template's state can be behind while its socket is in one.
#[inline(always)]
fn passed_by(state: u8) -> bool {
    matches!(state, tcp::FIN_WAIT2 | tcp::CLOSING | tcp::TIME_WAIT)
}

/// Brings a template's state up to its socket's own `state`, read by another
/// hook, where the state program may have passed it by: so a `reset` or
/// `retransmit` event tells the state the socket is in.
#[inline(always)]
pub fn catch_up(conn: &mut Event, state: u8) {
    if passed_by(state) {
        conn.new_state = state;
    }
}

/// The connection reached CLOSE from `old`: its `close` (or `failed`) event.
#[inline(always)]
pub fn closed(conn: &mut Event, sk: u64, now: u64, old: u8, typed: bool) {
    // Without a FIN exchange first, this end is aborting (its RST
    // follows), unless the peer's RST or a timeout got here first.
    closed_by(conn, if conn.flags & flags::RST_RECEIVED != 0 { side::REMOTE } else { side::LOCAL });
    fill_close_stats(sk, conn, old, typed);
    let ending = if conn.flags & flags::ESTABLISHED != 0 { kind::CLOSE } else { kind::FAILED };
    emit(conn, ending, now, old);
    forget_connect(sk);
}

/// The template for a socket not seen before: who owns it depends on how it
/// was born.
#[inline(always)]
fn first_sight<T: Tuple>(tuple: &T, entry: &mut Conn, sk: u64, old: u8, new: u8, now: u64) {
    let conn = &mut entry.event;
    conn.sock_addr = sk;
    conn.start_ns = now;
    conn.netns = netns_of(sk);
    tuple.fill(conn);
    match new {
        // connect(): we are in the connecting task's syscall.
        tcp::SYN_SENT if old == tcp::CLOSE => {
            set_owner(conn, &current_owner());
            conn.direction = direction::OUTBOUND;
            conn.flags |= flags::START_KNOWN;
            mark_connect_unsent(entry, sk);
            note_birth(sk, T::TYPED);
            if CONNECT_AT_SYSCALL_EXIT.get(0).is_some_and(|&on| on != 0) {
                counted(CONNECTING.insert(&bpf_get_current_pid_tgid(), &sk, 0));
            }
        }
        // listen(): we are in the listening task's syscall.
        tcp::LISTEN => {
            let owner = current_owner();
            set_owner(conn, &owner);
            entry.internal |= internal::LISTENER;
            counted(LISTENERS.insert(&listener_key(conn), &owner, 0));
        }
        // A child of a listener, cloned in softirq when the handshake's last ACK arrives.
        tcp::SYN_RECV => {
            conn.direction = direction::INBOUND;
            conn.flags |= flags::START_KNOWN;
            if conn.dport == 0 {
                entry.internal |= internal::SYN_RECV_PENDING;
            }
            // SAFETY: the value is copied out at once.
            if let Some(owner) = unsafe { LISTENERS.get(&listener_key(conn)) } {
                let owner = *owner;
                set_owner(conn, &owner);
            }
        }
        // Already alive when tracing started: owner and start unknown, and
        // past its handshake unless it is still in one. Its cookie ties it
        // to the snapshot's line for it.
        _ => {
            conn.cookie = cookie_of(sk, T::TYPED);
            if old != tcp::SYN_SENT && old != tcp::SYN_RECV {
                conn.flags |= flags::ESTABLISHED;
            }
        }
    }
}

/// A socket born while the snapshot is still being taken (only on the typed
/// rung, whose helper gives the cookie sock_diag will report), noted before
/// it reaches a state the snapshot lists, so that userspace leaves it out.
#[inline(always)]
fn note_birth(sk: u64, typed: bool) {
    if typed && SNAPSHOT_PENDING.get(0).is_some_and(|&on| on != 0) {
        counted(BORN_DURING_SNAPSHOT.insert(&cookie_of(sk, true), &1, 0));
    }
}

fn listener_key(conn: &Event) -> ListenerKey {
    ListenerKey { netns: conn.netns, port: conn.sport, _pad: 0 }
}
