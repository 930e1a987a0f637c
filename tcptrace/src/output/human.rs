//! Aligned columns for people, one line per event, like tcplife but per step.
use std::{
    io::{self, Write},
    time::{Duration, SystemTime},
};

use super::EventWriter;
use crate::events::{ConnEvent, EventKind};

pub struct HumanWriter<W: Write> {
    out: W,
    own_netns: u32,
}

impl<W: Write> HumanWriter<W> {
    pub fn new(out: W, own_netns: u32) -> Self {
        Self { out, own_netns }
    }
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
    fn header(&mut self) -> io::Result<()> {
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
        let has_detail = !matches!(event.kind, EventKind::Connect | EventKind::Accept) || event.netns != self.own_netns;
        if has_detail {
            write!(out, "{:<23} {:<23}", event.local, event.remote)?;
        } else {
            write!(out, "{:<23} {}", event.local, event.remote)?;
        }
        match event.kind {
            EventKind::Connect | EventKind::Accept => {}
            EventKind::Established => write!(out, " {}", event.direction.name())?,
            EventKind::Close => match event.age {
                Some(age) => write!(out, " after {}", Short(age))?,
                None => write!(out, " (opened before tracing)")?,
            },
            EventKind::State => write!(out, " {} -> {}", event.old_state.name(), event.state.name())?,
        }
        if event.netns != self.own_netns {
            write!(out, " netns:{}", event.netns)?;
        }
        writeln!(out)
    }

    fn lost(&mut self, _time: SystemTime, _count: u64, _total: u64) -> io::Result<()> {
        // People read the stderr report; the columns stay clean.
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::samples::story;

    #[test]
    fn story_snapshot() {
        let mut buf = Vec::new();
        let mut writer = HumanWriter::new(&mut buf, 4026531840);
        writer.header().expect("header");
        let mut events = story();
        events[6].netns = 4026532999;
        for event in &events {
            writer.event(event).expect("event");
        }
        insta::assert_snapshot!(String::from_utf8(buf).expect("utf8"));
    }

    #[test]
    fn short_durations() {
        assert_eq!(Short(Duration::from_micros(61)).to_string(), "61us");
        assert_eq!(Short(Duration::from_micros(3120)).to_string(), "3.120ms");
        assert_eq!(Short(Duration::from_millis(2500)).to_string(), "2.500s");
    }
}
