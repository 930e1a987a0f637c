//! Raw ring-buffer records -> typed connection events.
use std::{
    fmt,
    hash::BuildHasher,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::{Duration, SystemTime},
};

use tcptrace_common::{COMM_LEN, EVENT_SIZE, Event, direction, family, flags, kind};

use crate::error::DecodeError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Connect,
    Accept,
    Established,
    Close,
    State,
}

impl EventKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Accept => "accept",
            Self::Established => "established",
            Self::Close => "close",
            Self::State => "state",
        }
    }
}

/// A kernel TCP state (include/net/tcp_states.h), named as the kernel names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpState(pub u8);

impl TcpState {
    pub fn name(self) -> &'static str {
        match self.0 {
            1 => "ESTABLISHED",
            2 => "SYN_SENT",
            3 => "SYN_RECV",
            4 => "FIN_WAIT1",
            5 => "FIN_WAIT2",
            6 => "TIME_WAIT",
            7 => "CLOSE",
            8 => "CLOSE_WAIT",
            9 => "LAST_ACK",
            10 => "LISTEN",
            11 => "CLOSING",
            12 => "NEW_SYN_RECV",
            13 => "BOUND_INACTIVE",
            _ => "UNKNOWN",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Unknown,
    Outbound,
    Inbound,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Outbound => "outbound",
            Self::Inbound => "inbound",
        }
    }
}

/// A task's command name, kept inline: no allocation per event.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Comm([u8; COMM_LEN]);

impl Comm {
    pub fn new(name: &str) -> Self {
        let mut bytes = [0; COMM_LEN];
        let len = name.len().min(COMM_LEN - 1);
        bytes[..len].copy_from_slice(&name.as_bytes()[..len]);
        Self(bytes)
    }

    pub fn as_str(&self) -> std::borrow::Cow<'_, str> {
        let len = self.0.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
        String::from_utf8_lossy(&self.0[..len])
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// The process that owns a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    pub uid: u32,
    pub comm: Comm,
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
    pub netns: u32,
    /// The same for every event of one connection; never a kernel address.
    pub conn_id: u64,
    pub old_state: TcpState,
    pub state: TcpState,
    pub direction: Direction,
    /// Since the connection's first transition, when tracing saw it.
    pub age: Option<Duration>,
}

impl ConnEvent {
    pub fn is_ipv6(&self) -> bool {
        self.local.is_ipv6()
    }
}

/// Turns records into events: maps kernel monotonic time onto the wall clock
/// and kernel socket addresses onto opaque connection ids.
pub struct Decoder {
    boot_to_wall: Duration,
    ids: std::hash::RandomState,
}

impl Decoder {
    /// `boot_to_wall`: wall-clock time at CLOCK_MONOTONIC zero.
    pub fn new(boot_to_wall: Duration) -> Self {
        Self { boot_to_wall, ids: std::hash::RandomState::new() }
    }

    /// A decoder whose clock offset is read from the system now.
    pub fn from_clocks() -> Self {
        Self::new(monotonic_epoch())
    }

    pub fn decode(&self, bytes: &[u8]) -> Result<ConnEvent, DecodeError> {
        if bytes.len() != EVENT_SIZE {
            return Err(DecodeError::Size(bytes.len()));
        }
        // SAFETY: length checked; Event is plain old data valid for any bytes;
        // read_unaligned makes no alignment assumption about the ring buffer.
        let raw: Event = unsafe { bytes.as_ptr().cast::<Event>().read_unaligned() };
        let kind = match raw.kind {
            kind::CONNECT => EventKind::Connect,
            kind::ACCEPT => EventKind::Accept,
            kind::ESTABLISHED => EventKind::Established,
            kind::CLOSE => EventKind::Close,
            kind::STATE => EventKind::State,
            other => return Err(DecodeError::Kind(other)),
        };
        let (local_ip, remote_ip) = match raw.family {
            family::INET => (ipv4(&raw.saddr), ipv4(&raw.daddr)),
            family::INET6 => (IpAddr::V6(Ipv6Addr::from(raw.saddr)), IpAddr::V6(Ipv6Addr::from(raw.daddr))),
            other => return Err(DecodeError::Family(other)),
        };
        let owner = (raw.flags & flags::OWNER_KNOWN != 0).then_some(Owner {
            pid: raw.tgid,
            uid: raw.uid,
            comm: Comm(raw.comm),
        });
        let age =
            (raw.flags & flags::START_KNOWN != 0).then(|| Duration::from_nanos(raw.ts_ns.saturating_sub(raw.start_ns)));
        Ok(ConnEvent {
            time: SystemTime::UNIX_EPOCH + self.boot_to_wall + Duration::from_nanos(raw.ts_ns),
            kind,
            owner,
            local: SocketAddr::new(local_ip, raw.sport),
            remote: SocketAddr::new(remote_ip, raw.dport),
            netns: raw.netns,
            conn_id: self.ids.hash_one((raw.sock_addr, raw.start_ns)),
            old_state: TcpState(raw.old_state),
            state: TcpState(raw.new_state),
            direction: match raw.direction {
                direction::OUTBOUND => Direction::Outbound,
                direction::INBOUND => Direction::Inbound,
                _ => Direction::Unknown,
            },
            age,
        })
    }
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
            saddr,
            daddr: saddr,
            tgid: 4242,
            uid: 1000,
            netns: 4026531840,
            sport: 45678,
            dport: 8000,
            comm,
            family: family::INET,
            kind: kind::CLOSE,
            old_state: 4,
            new_state: 7,
            direction: direction::OUTBOUND,
            flags: flags::OWNER_KNOWN | flags::START_KNOWN,
            _pad: [0; 2],
        }
    }

    pub fn bytes_of(event: &Event) -> Vec<u8> {
        // SAFETY: Event is repr(C) plain old data without implicit padding.
        unsafe { std::slice::from_raw_parts((event as *const Event).cast::<u8>(), EVENT_SIZE) }.to_vec()
    }

    #[test]
    fn decodes_a_close() {
        let decoder = Decoder::new(Duration::from_secs(1_700_000_000));
        let event = decoder.decode(&bytes_of(&raw_event())).expect("decodes");
        assert_eq!(event.kind, EventKind::Close);
        assert_eq!(event.local, "127.0.0.1:45678".parse().expect("addr"));
        assert_eq!(event.remote, "127.0.0.1:8000".parse().expect("addr"));
        assert_eq!(event.owner.map(|o| (o.pid, o.uid)), Some((4242, 1000)));
        assert_eq!(event.owner.map(|o| o.comm.as_str().into_owned()).as_deref(), Some("curl"));
        assert_eq!(event.age, Some(Duration::from_micros(500)));
        assert_eq!(event.state.name(), "CLOSE");
        assert_eq!(event.time, SystemTime::UNIX_EPOCH + Duration::new(1_700_000_002, 500_000));
    }

    #[test]
    fn conn_id_is_stable_per_connection_and_hides_the_address() {
        let decoder = Decoder::new(Duration::ZERO);
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

    #[test]
    fn unknown_owner_and_ipv6() {
        let mut raw = raw_event();
        raw.flags = 0;
        raw.family = family::INET6;
        raw.saddr = Ipv6Addr::LOCALHOST.octets();
        raw.daddr = Ipv6Addr::LOCALHOST.octets();
        let event = Decoder::new(Duration::ZERO).decode(&bytes_of(&raw)).expect("decodes");
        assert!(event.owner.is_none() && event.age.is_none());
        assert_eq!(event.local, "[::1]:45678".parse().expect("addr"));
    }

    #[test]
    fn rejects_short_long_and_garbled_records() {
        let decoder = Decoder::new(Duration::ZERO);
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
        // Arbitrary bytes never panic.
        for seed in 0..=255u8 {
            let noise: Vec<u8> = (0..EVENT_SIZE).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
            let _ = decoder.decode(&noise);
        }
    }
}
