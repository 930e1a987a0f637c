//! Event writers, one file per format, behind one trait so tests pass a Vec<u8>.
use std::{io, time::SystemTime};

use crate::{config::OutputFormat, events::ConnEvent, model::LossReason};

mod human;
mod json;
pub mod sink;

pub use human::HumanWriter;
pub use json::JsonWriter;

/// Writes events in one format. Callers flush once per drained batch.
pub trait EventWriter {
    /// Anything printed once before the first event.
    fn header(&mut self) -> io::Result<()>;
    fn event(&mut self, event: &ConnEvent) -> io::Result<()>;
    /// `count` events were lost for `reason` since the last report of that
    /// reason, `total` since start.
    fn lost(&mut self, time: SystemTime, reason: LossReason, count: u64, total: u64) -> io::Result<()>;
    fn flush(&mut self) -> io::Result<()>;
}

/// `own_netns`: tcptrace's own network namespace, which human output leaves unsaid.
pub fn writer<'w, W: io::Write + 'w>(format: OutputFormat, out: W, own_netns: u32) -> Box<dyn EventWriter + 'w> {
    match format {
        OutputFormat::Human => Box::new(HumanWriter::new(out, own_netns)),
        OutputFormat::Json => Box::new(JsonWriter::new(out)),
    }
}

#[cfg(test)]
pub(crate) mod samples {
    use std::time::{Duration, SystemTime};

    use crate::{
        events::{Comm, ConnEvent, Detail, Direction, EventKind, Owner, TcpState},
        lifecycle::{CloseFacts, CloseKind, Errno, FailReason, Side},
    };

    /// The story of a loopback connection as the kernel side reports it, plus
    /// one of every other kind.
    pub fn story() -> Vec<ConnEvent> {
        let base = SystemTime::UNIX_EPOCH + Duration::new(1_764_000_000, 123_456_789);
        let client = Some(Owner { pid: 4242, uid: 1000, comm: Comm::new("curl") });
        let server = Some(Owner { pid: 777, uid: 0, comm: Comm::new("python3") });
        let (c, s) = ("127.0.0.1:45678", "127.0.0.1:8000");
        let event = |ms: u64, kind, owner, local: &str, remote: &str, state, direction, age_us: Option<u64>, detail| {
            ConnEvent {
                time: base + Duration::from_millis(ms),
                kind,
                owner,
                local: local.parse().expect("addr"),
                remote: remote.parse().expect("addr"),
                netns: Some(4026531840),
                conn_id: if local == s { 0x1111 } else { 0x2222 },
                state: TcpState(state),
                direction,
                age: age_us.map(Duration::from_micros),
                detail,
            }
        };
        let close = |closed_by, kind, bytes_sent, bytes_received| {
            Detail::Close(CloseFacts {
                closed_by: Some(closed_by),
                kind,
                error: None,
                bytes_sent,
                bytes_received,
                segs_out: 6,
                segs_in: 5,
                retransmits: 0,
                srtt: Duration::from_micros(30),
            })
        };
        let out = Direction::Outbound;
        let inb = Direction::Inbound;
        let handshake = |us| Detail::Established { handshake: Some(Duration::from_micros(us)) };
        vec![
            event(0, EventKind::Connect, client, c, s, 2, out, Some(0), Detail::None),
            event(0, EventKind::Established, server, s, c, 1, inb, Some(40), handshake(22)),
            event(0, EventKind::Established, client, c, s, 1, out, Some(61), handshake(61)),
            event(1, EventKind::Accept, server, s, c, 1, inb, Some(700), Detail::None),
            event(3, EventKind::State, client, c, s, 4, out, Some(3000), Detail::State { old: TcpState(1) }),
            event(
                3,
                EventKind::Close,
                server,
                s,
                c,
                7,
                inb,
                Some(3050),
                close(Side::Remote, CloseKind::Fin, 1000, 100),
            ),
            event(3, EventKind::Close, client, c, s, 7, out, Some(3120), close(Side::Local, CloseKind::Fin, 100, 1000)),
            event(
                5,
                EventKind::Failed,
                client,
                "127.0.0.1:45680",
                "127.0.0.1:9",
                7,
                out,
                Some(80),
                Detail::Failed { reason: FailReason::Refused, error: Errno::new(111) },
            ),
            event(6, EventKind::Retransmit, client, c, s, 1, out, Some(9000), Detail::Retransmit),
            event(7, EventKind::Reset, None, "127.0.0.1:40000", s, 0, Direction::Unknown, None, {
                Detail::Reset { sent: true, reason: Some("NO_SOCKET".into()) }
            }),
            event(8, EventKind::Close, None, "[::1]:22", "[::1]:51000", 7, Direction::Unknown, None, {
                close(Side::Remote, CloseKind::RstReceived, 5000, 300)
            }),
        ]
    }
}
