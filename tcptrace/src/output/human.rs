//! Aligned columns for people, one line per event, like tcplife but per step.
use std::{
    io::{self, Write},
    time::{Duration, SystemTime},
};

use super::{EventWriter, LossReason, RunInfo};
use crate::{
    events::{ConnEvent, Detail, Direction, EventKind},
    session::Summary,
};

pub struct HumanWriter<W: Write> {
    out: W,
    own_netns: u32,
    wide: bool,
}

impl<W: Write> HumanWriter<W> {
    pub fn new(out: W, own_netns: u32, wide: bool) -> Self {
        Self { out, own_netns, wide }
    }
}

/// Both addresses, the server side's port by its service name, as `ss`
/// prints it (`127.0.0.1:http`); JSON keeps the number.
fn endpoints(event: &ConnEvent) -> (String, String) {
    let plain = |addr: std::net::SocketAddr| addr.to_string();
    let named = |addr: std::net::SocketAddr, name: &str| match addr {
        std::net::SocketAddr::V4(v4) => format!("{}:{name}", v4.ip()),
        std::net::SocketAddr::V6(v6) => format!("[{}]:{name}", v6.ip()),
    };
    let Some((port, name)) = &event.service else { return (plain(event.local), plain(event.remote)) };
    let local_is_server = match event.direction {
        Direction::Inbound => true,
        Direction::Outbound => false,
        Direction::Unknown => event.local.port() == *port,
    };
    if local_is_server {
        (named(event.local, name), plain(event.remote))
    } else {
        (plain(event.local), named(event.remote, name))
    }
}

/// Enough of a container id to tell containers apart, as `docker ps` shows it.
const SHORT_CONTAINER_ID: usize = 12;

/// Wide mode's tail: the owner as the host knows it, and the connection id.
fn write_wide(out: &mut impl Write, event: &ConnEvent) -> io::Result<()> {
    let identity = &event.identity;
    if let Some(user) = &identity.user {
        write!(out, " user:{user}")?;
    }
    match (&identity.container_id, &identity.cgroup) {
        (Some(id), _) => write!(out, " container:{}", &id[..id.len().min(SHORT_CONTAINER_ID)])?,
        (None, Some(cgroup)) if &**cgroup != "/" => write!(out, " cgroup:{cgroup}")?,
        _ => {}
    }
    if let Some(exe) = &identity.exe {
        write!(out, " exe:{exe}")?;
    }
    // The low 32 bits: enough to tie one connection's interleaved lines together.
    write!(out, " id:{:08x}", event.conn_id as u32)
}

/// `HH:MM:SS.micros` in UTC.
struct Clock(SystemTime);

impl std::fmt::Display for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let since = self.0.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        let day = since.as_secs() % 86_400;
        write!(f, "{:02}:{:02}:{:02}.{:06}", day / 3600, day / 60 % 60, day % 60, since.subsec_micros())
    }
}

/// Short, unit-bearing durations: 61us, 3.120ms, 2.500s.
pub struct Short(pub Duration);

impl std::fmt::Display for Short {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let us = self.0.as_micros();
        if us < 1_000 {
            write!(f, "{us}us")
        } else if us < 1_000_000 {
            write!(f, "{}.{:03}ms", us / 1_000, us % 1_000)
        } else {
            write!(f, "{}.{:03}s", us / 1_000_000, us / 1_000 % 1_000)
        }
    }
}

impl<W: Write> EventWriter for HumanWriter<W> {
    fn start(&mut self, _run: &RunInfo) -> io::Result<()> {
        writeln!(
            self.out,
            "{:<15} {:<11} {:>7} {:<15} {:<23} {:<23} DETAIL",
            "TIME(UTC)", "EVENT", "PID", "COMM", "LOCAL", "REMOTE"
        )
    }

    fn event(&mut self, event: &ConnEvent) -> io::Result<()> {
        let out = &mut self.out;
        write!(out, "{:<15} {:<11} ", Clock(event.time), event.kind.name())?;
        match &event.owner {
            Some(owner) => write!(out, "{:>7} {:<15} ", owner.pid, owner.comm.as_str())?,
            None => write!(out, "{:>7} {:<15} ", "-", "-")?,
        }
        let foreign_netns = event.netns.filter(|&netns| netns != self.own_netns);
        let (local, remote) = endpoints(event);
        let no_detail = matches!(event.detail, Detail::None) && event.kind != EventKind::Snapshot;
        if no_detail && foreign_netns.is_none() && !self.wide {
            write!(out, "{local:<23} {remote}")?;
        } else {
            write!(out, "{local:<23} {remote:<23}")?;
        }
        write_detail(out, event)?;
        if let Some(netns) = foreign_netns {
            write!(out, " netns:{netns}")?;
        }
        if self.wide {
            write_wide(out, event)?;
        }
        writeln!(out)
    }

    fn lost(&mut self, _time: SystemTime, _reason: LossReason, _count: u64, _total: u64) -> io::Result<()> {
        // People read the stderr report; the columns stay clean.
        Ok(())
    }

    fn stop(&mut self, _time: SystemTime, _totals: &Summary) -> io::Result<()> {
        // The closing summary goes to stderr.
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// The kind's story in a few words.
fn write_detail(out: &mut impl Write, event: &ConnEvent) -> io::Result<()> {
    match &event.detail {
        Detail::None if event.kind == EventKind::Snapshot => match event.direction {
            Direction::Unknown => write!(out, " {}, open at start", event.state.name()),
            direction => write!(out, " {} {}, open at start", direction.name(), event.state.name()),
        },
        Detail::None => Ok(()),
        Detail::Established { handshake } => {
            write!(out, " {}", event.direction.name())?;
            match handshake {
                Some(handshake) => write!(out, ", handshake {}", Short(*handshake)),
                None => Ok(()),
            }
        }
        Detail::Close(facts) => {
            match event.age {
                Some(age) => write!(out, " after {}", Short(age))?,
                None => write!(out, " (opened before tracing)")?,
            }
            let who = facts.closed_by.map_or("?", |side| side.name());
            write!(
                out,
                ", {who} closed ({}), {} B out, {} B in",
                facts.kind.name(),
                facts.bytes_sent,
                facts.bytes_received
            )?;
            write!(out, ", rtt {}", Short(facts.srtt))?;
            if facts.retransmits > 0 {
                write!(out, ", {} retransmits", facts.retransmits)?;
            }
            match facts.error {
                Some(error) => write!(out, ", {error}"),
                None => Ok(()),
            }
        }
        Detail::Failed { reason, error } => {
            write!(out, " {}", reason.name())?;
            if let Some(error) = error {
                write!(out, " ({error})")?;
            }
            match event.age {
                Some(age) => write!(out, " after {}", Short(age)),
                None => Ok(()),
            }
        }
        Detail::State { old } => write!(out, " {} -> {}", old.name(), event.state.name()),
        Detail::Retransmit => write!(out, " in {}", event.state.name()),
        Detail::Reset { sent: true, reason } => match reason {
            Some(reason) => write!(out, " sent ({reason})"),
            None => write!(out, " sent"),
        },
        Detail::Reset { sent: false, .. } => write!(out, " received"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::samples::story;

    fn render(wide: bool) -> String {
        let mut buf = Vec::new();
        let mut writer = HumanWriter::new(&mut buf, 4026531840, wide);
        writer.start(&RunInfo::here(Vec::new())).expect("header");
        let mut events = story();
        let last = events.len() - 1;
        events[last].netns = Some(4026532999);
        for event in &events {
            writer.event(event).expect("event");
        }
        String::from_utf8(buf).expect("utf8")
    }

    #[test]
    fn story_snapshot() {
        insta::assert_snapshot!(render(false));
    }

    #[test]
    fn wide_story_snapshot() {
        insta::assert_snapshot!(render(true));
    }

    #[test]
    fn short_durations() {
        assert_eq!(Short(Duration::from_micros(61)).to_string(), "61us");
        assert_eq!(Short(Duration::from_micros(3120)).to_string(), "3.120ms");
        assert_eq!(Short(Duration::from_millis(2500)).to_string(), "2.500s");
    }
}
