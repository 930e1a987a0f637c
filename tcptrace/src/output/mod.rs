//! Event writers, one file per format, behind one trait so tests pass a Vec<u8>.
use std::{io, time::SystemTime};

use crate::{config::OutputFormat, events::ConnEvent};

mod human;
mod json;

pub use human::HumanWriter;
pub use json::JsonWriter;

/// Writes events in one format. Callers flush once per drained batch.
pub trait EventWriter {
    /// Anything printed once before the first event.
    fn header(&mut self) -> io::Result<()>;
    fn event(&mut self, event: &ConnEvent) -> io::Result<()>;
    /// `count` events were lost since the last report, `total` since start.
    fn lost(&mut self, time: SystemTime, count: u64, total: u64) -> io::Result<()>;
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

    use crate::events::{Comm, ConnEvent, Direction, EventKind, Owner, TcpState};

    /// The story of one loopback connection as the kernel side reports it.
    pub fn story() -> Vec<ConnEvent> {
        let base = SystemTime::UNIX_EPOCH + Duration::new(1_764_000_000, 123_456_789);
        let client = Owner { pid: 4242, uid: 1000, comm: Comm::new("curl") };
        let server = Owner { pid: 777, uid: 0, comm: Comm::new("python3") };
        let event =
            |ms: u64, kind, owner, local: &str, remote: &str, old, new, direction, age_us: Option<u64>| ConnEvent {
                time: base + Duration::from_millis(ms),
                kind,
                owner,
                local: local.parse().expect("addr"),
                remote: remote.parse().expect("addr"),
                netns: 4026531840,
                conn_id: if local.ends_with(":8000") { 0x1111 } else { 0x2222 },
                old_state: TcpState(old),
                state: TcpState(new),
                direction,
                age: age_us.map(Duration::from_micros),
            };
        let (c, s) = ("127.0.0.1:45678", "127.0.0.1:8000");
        vec![
            event(0, EventKind::Connect, Some(client), c, s, 0, 2, Direction::Outbound, Some(0)),
            event(0, EventKind::Established, Some(server), s, c, 3, 1, Direction::Inbound, Some(40)),
            event(0, EventKind::Established, Some(client), c, s, 2, 1, Direction::Outbound, Some(61)),
            event(1, EventKind::Accept, Some(server), s, c, 0, 1, Direction::Inbound, Some(700)),
            event(3, EventKind::State, Some(client), c, s, 1, 4, Direction::Outbound, Some(3000)),
            event(3, EventKind::Close, Some(client), c, s, 5, 7, Direction::Outbound, Some(3120)),
            event(4, EventKind::Close, None, "[::1]:22", "[::1]:51000", 9, 7, Direction::Unknown, None),
        ]
    }
}
