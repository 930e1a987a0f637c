//! Raw ring-buffer records -> typed connection events.
use std::{
    hash::BuildHasher,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
    time::{Duration, SystemTime},
};

use tcptrace_common::{EVENT_SIZE, Event, direction, family, flags, reset};

pub use crate::model::{Comm, Direction, EventKind, Owner, TcpState};
use crate::{
    error::DecodeError,
    identity::Identity,
    lifecycle::{CloseFacts, CloseKind, Errno, FailReason, Side},
};

/// What an event says beyond the connection it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detail {
    /// connect, accept.
    None,
    Established {
        /// How long the handshake took (None: too fast to measure).
        handshake: Option<Duration>,
    },
    Close(CloseFacts),
    Failed {
        reason: FailReason,
        error: Option<Errno>,
    },
    State {
        old: TcpState,
    },
    Retransmit,
    Reset {
        /// Sent by this host, else received.
        sent: bool,
        /// The kernel's name for why it sent it.
        reason: Option<Arc<str>>,
    },
}

/// One step of one connection, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnEvent {
    /// Wall-clock time it happened.
    pub time: SystemTime,
    pub kind: EventKind,
    /// `None` for a connection that was open before tracing started.
    pub owner: Option<Owner>,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// Network namespace inode; None when the kernel could not tell.
    pub netns: Option<u32>,
    /// The same for every event of one connection; never a kernel address.
    pub conn_id: u64,
    /// The TCP state after the event.
    pub state: TcpState,
    pub direction: Direction,
    /// Since the connection's first transition, when tracing saw it.
    pub age: Option<Duration>,
    pub detail: Detail,
    /// The owner as the host knows it; filled by the session (identity.rs).
    pub identity: std::sync::Arc<Identity>,
    /// The server side's port and its service name, when it has one
    /// (services.rs); filled by the session.
    pub service: Option<(u16, std::sync::Arc<str>)>,
}

impl ConnEvent {
    pub fn is_ipv6(&self) -> bool {
        self.local.is_ipv6()
    }
}

/// Turns records into events: maps kernel monotonic time onto the wall clock,
/// kernel socket addresses onto opaque connection ids, and raw facts onto the
/// story of how a connection ended.
pub struct Decoder {
    boot_to_wall: Duration,
    ids: std::hash::RandomState,
    /// The kernel's `enum sk_rst_reason` names, by value.
    reset_reasons: Vec<Arc<str>>,
}

impl Decoder {
    /// `boot_to_wall`: wall-clock time at CLOCK_MONOTONIC zero.
    pub fn new(boot_to_wall: Duration, reset_reasons: Vec<Arc<str>>) -> Self {
        Self { boot_to_wall, ids: std::hash::RandomState::new(), reset_reasons }
    }

    /// A decoder whose clock offset is read from the system now.
    pub fn from_clocks(reset_reasons: Vec<Arc<str>>) -> Self {
        Self::new(monotonic_epoch(), reset_reasons)
    }

    /// The connection id of a socket that predates tracing, from its cookie:
    /// the snapshot's line and the kernel's later events agree on it.
    pub fn conn_id_of_cookie(&self, cookie: u64) -> u64 {
        self.ids.hash_one(("cookie", cookie))
    }

    pub fn decode(&self, bytes: &[u8]) -> Result<ConnEvent, DecodeError> {
        if bytes.len() != EVENT_SIZE {
            return Err(DecodeError::Size(bytes.len()));
        }
        // SAFETY: length checked; Event is plain old data valid for any bytes;
        // read_unaligned makes no alignment assumption about the ring buffer.
        let raw: Event = unsafe { bytes.as_ptr().cast::<Event>().read_unaligned() };
        // Snapshots are listed by userspace; the kernel never sends one.
        let kind = EventKind::from_code(raw.kind)
            .filter(|&kind| kind != EventKind::Snapshot)
            .ok_or(DecodeError::Kind(raw.kind))?;
        let (local_ip, remote_ip) = match raw.family {
            family::INET => (ipv4(&raw.saddr), ipv4(&raw.daddr)),
            family::INET6 => (IpAddr::V6(Ipv6Addr::from(raw.saddr)), IpAddr::V6(Ipv6Addr::from(raw.daddr))),
            other => return Err(DecodeError::Family(other)),
        };
        let owner = (raw.flags & flags::OWNER_KNOWN != 0).then_some(Owner {
            cgroup_id: raw.cgroup_id,
            pid: raw.tgid,
            uid: raw.uid,
            comm: Comm(raw.comm),
        });
        let age =
            (raw.flags & flags::START_KNOWN != 0).then(|| Duration::from_nanos(raw.ts_ns.saturating_sub(raw.start_ns)));
        let direction = match raw.direction {
            direction::OUTBOUND => Direction::Outbound,
            direction::INBOUND => Direction::Inbound,
            _ => Direction::Unknown,
        };
        Ok(ConnEvent {
            time: SystemTime::UNIX_EPOCH + self.boot_to_wall + Duration::from_nanos(raw.ts_ns),
            kind,
            owner,
            local: SocketAddr::new(local_ip, raw.sport),
            remote: SocketAddr::new(remote_ip, raw.dport),
            netns: (raw.netns != 0).then_some(raw.netns),
            conn_id: match raw.cookie {
                0 => self.ids.hash_one((raw.sock_addr, raw.start_ns)),
                cookie => self.conn_id_of_cookie(cookie),
            },
            state: TcpState(raw.new_state),
            direction,
            age,
            detail: self.detail(kind, &raw, direction),
            identity: Identity::unknown(),
            service: None,
        })
    }

    fn detail(&self, kind: EventKind, raw: &Event, direction: Direction) -> Detail {
        match kind {
            EventKind::Connect | EventKind::Accept | EventKind::Snapshot => Detail::None,
            EventKind::Established => Detail::Established {
                handshake: (raw.handshake_us != 0).then(|| Duration::from_micros(raw.handshake_us.into())),
            },
            EventKind::Close => Detail::Close(CloseFacts {
                closed_by: Side::from_code(raw.closed_by),
                kind: CloseKind::from_facts(raw.flags, raw.error, raw.old_state),
                error: Errno::new(raw.error),
                bytes_sent: data_sent(raw),
                bytes_received: data_received(raw),
                segs_out: raw.segs_out,
                segs_in: raw.segs_in,
                retransmits: raw.retransmits,
                srtt: Duration::from_micros(raw.srtt_us.into()),
            }),
            EventKind::Failed => Detail::Failed {
                reason: FailReason::from_facts(direction == Direction::Inbound, raw.error),
                error: Errno::new(raw.error),
            },
            EventKind::State => Detail::State { old: TcpState(raw.old_state) },
            EventKind::Retransmit => Detail::Retransmit,
            EventKind::Reset => Detail::Reset {
                sent: raw.reset == reset::SENT,
                reason: (raw.reset == reset::SENT)
                    .then(|| self.reset_reasons.get(raw.reset_reason as usize).cloned())
                    .flatten(),
            },
        }
    }
}

/// Data bytes the peer acknowledged: bytes_acked counts sequence space, where
/// an active open's SYN and our FIN, once acknowledged, take one each (the
/// kernel side tells whether ours was). A connection that predates tracing
/// may be an active open nobody saw: one too many then.
fn data_sent(raw: &Event) -> u64 {
    let syn = u64::from(raw.direction == direction::OUTBOUND);
    let fin = u64::from(raw.flags & flags::FIN_ACKED != 0);
    raw.bytes_acked.saturating_sub(syn + fin)
}

/// Data bytes received in order: bytes_received counts the peer's FIN too when
/// it reached this socket (the kernel side tells).
fn data_received(raw: &Event) -> u64 {
    raw.bytes_received.saturating_sub(u64::from(raw.flags & flags::FIN_RECEIVED != 0))
}

fn ipv4(addr: &[u8; 16]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]))
}

/// Wall-clock time at CLOCK_MONOTONIC zero (bpf_ktime_get_ns counts from there).
fn monotonic_epoch() -> Duration {
    let now = |clock| {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: valid clock id and out pointer.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    };
    now(libc::CLOCK_REALTIME).saturating_sub(now(libc::CLOCK_MONOTONIC))
}

#[cfg(test)]
pub(crate) mod tests {
    use tcptrace_common::{COMM_LEN, kind};

    use super::*;

    pub fn raw_event() -> Event {
        let mut comm = [0; COMM_LEN];
        comm[..4].copy_from_slice(b"curl");
        let mut saddr = [0; 16];
        saddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        Event {
            ts_ns: 2_000_500_000,
            start_ns: 2_000_000_000,
            sock_addr: 0xffff_8880_1234_5678,
            bytes_acked: 102,
            bytes_received: 1001,
            cgroup_id: 7,
            cookie: 0,
            saddr,
            daddr: saddr,
            tgid: 4242,
            uid: 1000,
            netns: 4026531840,
            handshake_us: 61,
            segs_out: 6,
            segs_in: 5,
            retransmits: 0,
            srtt_us: 30,
            error: 0,
            reset_reason: 0,
            sport: 45678,
            dport: 8000,
            comm,
            family: family::INET,
            kind: kind::CLOSE,
            old_state: tcptrace_common::tcp_state::FIN_WAIT2,
            new_state: tcptrace_common::tcp_state::CLOSE,
            direction: direction::OUTBOUND,
            flags: flags::OWNER_KNOWN
                | flags::START_KNOWN
                | flags::ESTABLISHED
                | flags::FIN_ACKED
                | flags::FIN_RECEIVED,
            closed_by: tcptrace_common::side::LOCAL,
            reset: 0,
            _pad: [0; 4],
        }
    }

    pub fn bytes_of(event: &Event) -> Vec<u8> {
        // SAFETY: Event is repr(C) plain old data without implicit padding.
        unsafe { std::slice::from_raw_parts((event as *const Event).cast::<u8>(), EVENT_SIZE) }.to_vec()
    }

    fn decoder() -> Decoder {
        Decoder::new(Duration::ZERO, vec!["NOT_SPECIFIED".into(), "NO_SOCKET".into()])
    }

    #[test]
    fn decodes_a_close() {
        let decoder = Decoder::new(Duration::from_secs(1_700_000_000), Vec::new());
        let event = decoder.decode(&bytes_of(&raw_event())).expect("decodes");
        assert_eq!(event.kind, EventKind::Close);
        assert_eq!(event.local, "127.0.0.1:45678".parse().expect("addr"));
        assert_eq!(event.remote, "127.0.0.1:8000".parse().expect("addr"));
        assert_eq!(event.owner.map(|o| (o.pid, o.uid)), Some((4242, 1000)));
        assert_eq!(event.owner.map(|o| o.comm.as_str().into_owned()).as_deref(), Some("curl"));
        assert_eq!(event.age, Some(Duration::from_micros(500)));
        assert_eq!(event.state.name(), "CLOSE");
        assert_eq!(event.time, SystemTime::UNIX_EPOCH + Duration::new(1_700_000_002, 500_000));
        let Detail::Close(facts) = event.detail else { panic!("close facts") };
        assert_eq!(facts.closed_by, Some(Side::Local));
        assert_eq!(facts.kind, CloseKind::Fin);
        assert_eq!((facts.bytes_sent, facts.bytes_received, facts.segs_out, facts.segs_in), (100, 1000, 6, 5));
        assert_eq!(facts.srtt, Duration::from_micros(30));
    }

    /// The counters less exactly what the kernel side says they hold besides data.
    #[test]
    fn data_bytes_are_the_counters_less_syn_and_fins_counted() {
        let data = |direction, event_flags, acked, received| {
            let raw =
                Event { direction, flags: event_flags, bytes_acked: acked, bytes_received: received, ..raw_event() };
            let event = decoder().decode(&bytes_of(&raw)).expect("decodes");
            let Detail::Close(facts) = event.detail else { panic!("close facts") };
            (facts.bytes_sent, facts.bytes_received)
        };
        // A server that answered and closed first, its socket handed over to
        // TIME_WAIT before the client's FIN came: our FIN counted, theirs not.
        assert_eq!(data(direction::INBOUND, flags::FIN_ACKED, 1001, 18), (1000, 18));
        // A client whose FIN a RST answered in LAST_ACK: only the SYN and
        // the server's FIN are in the counters.
        assert_eq!(data(direction::OUTBOUND, flags::FIN_RECEIVED, 101, 2001), (100, 2000));
        // An abort before any FIN: only the SYN.
        assert_eq!(data(direction::OUTBOUND, 0, 1, 0), (0, 0));
    }

    #[test]
    fn decodes_failures_resets_and_handshakes() {
        let decoder = decoder();
        let mut raw = raw_event();
        raw.kind = kind::FAILED;
        raw.error = libc::ECONNREFUSED as u32;
        let event = decoder.decode(&bytes_of(&raw)).expect("decodes");
        assert_eq!(event.detail, Detail::Failed { reason: FailReason::Refused, error: Errno::new(111) });

        raw.kind = kind::RESET;
        raw.reset = reset::SENT;
        raw.reset_reason = 1;
        let event = decoder.decode(&bytes_of(&raw)).expect("decodes");
        assert_eq!(event.detail, Detail::Reset { sent: true, reason: Some("NO_SOCKET".into()) });

        raw.kind = kind::ESTABLISHED;
        let event = decoder.decode(&bytes_of(&raw)).expect("decodes");
        assert_eq!(event.detail, Detail::Established { handshake: Some(Duration::from_micros(61)) });
    }

    #[test]
    fn conn_id_is_stable_per_connection_and_hides_the_address() {
        let decoder = decoder();
        let mut raw = raw_event();
        let first = decoder.decode(&bytes_of(&raw)).expect("decodes").conn_id;
        raw.kind = kind::CONNECT;
        raw.ts_ns += 1;
        assert_eq!(decoder.decode(&bytes_of(&raw)).expect("decodes").conn_id, first);
        assert_ne!(first, raw.sock_addr);
        // Same socket memory reused by a later connection: a new id.
        raw.start_ns += 10;
        assert_ne!(decoder.decode(&bytes_of(&raw)).expect("decodes").conn_id, first);
    }

    /// A connection that predates tracing is named by its cookie, as the
    /// snapshot names it; the kernel never sends a snapshot itself.
    #[test]
    fn a_cookie_names_the_connection_as_the_snapshot_does() {
        let decoder = decoder();
        let mut raw = raw_event();
        raw.cookie = 77;
        assert_eq!(decoder.decode(&bytes_of(&raw)).expect("decodes").conn_id, decoder.conn_id_of_cookie(77));
        raw.kind = kind::SNAPSHOT;
        assert_eq!(decoder.decode(&bytes_of(&raw)), Err(DecodeError::Kind(kind::SNAPSHOT)));
    }

    #[test]
    fn unknown_owner_and_ipv6() {
        let mut raw = raw_event();
        raw.flags = 0;
        raw.netns = 0;
        raw.family = family::INET6;
        raw.saddr = Ipv6Addr::LOCALHOST.octets();
        raw.daddr = Ipv6Addr::LOCALHOST.octets();
        let event = decoder().decode(&bytes_of(&raw)).expect("decodes");
        assert!(event.owner.is_none() && event.age.is_none() && event.netns.is_none());
        assert_eq!(event.local, "[::1]:45678".parse().expect("addr"));
    }

    #[test]
    fn rejects_short_long_and_garbled_records() {
        let decoder = decoder();
        let good = bytes_of(&raw_event());
        assert_eq!(decoder.decode(&good[..10]), Err(DecodeError::Size(10)));
        assert_eq!(decoder.decode(&[]), Err(DecodeError::Size(0)));
        let mut long = good.clone();
        long.push(0);
        assert_eq!(decoder.decode(&long), Err(DecodeError::Size(EVENT_SIZE + 1)));
        let mut bad_kind = raw_event();
        bad_kind.kind = 99;
        assert_eq!(decoder.decode(&bytes_of(&bad_kind)), Err(DecodeError::Kind(99)));
        let mut bad_family = raw_event();
        bad_family.family = 1;
        assert_eq!(decoder.decode(&bytes_of(&bad_family)), Err(DecodeError::Family(1)));
        // Arbitrary bytes never panic, whatever kind, flags or reason index they carry.
        for seed in 0..=255u8 {
            let noise: Vec<u8> = (0..EVENT_SIZE).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
            let _ = decoder.decode(&noise);
        }
    }
}
