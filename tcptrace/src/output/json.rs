//! JSON Lines: one object per event with stable snake_case keys (schema in
//! README.md, checked by a contract test).
use std::{
    io::{self, Write},
    net::IpAddr,
    time::SystemTime,
};

use serde::{Serialize, Serializer};

use super::EventWriter;
use crate::events::{ConnEvent, EventKind};

pub struct JsonWriter<W: Write> {
    out: W,
}

impl<W: Write> JsonWriter<W> {
    pub fn new(out: W) -> Self {
        Self { out }
    }

    fn line(&mut self, value: &impl Serialize) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, value).map_err(io::Error::from)?;
        self.out.write_all(b"\n")
    }
}

/// RFC 3339 UTC with nanoseconds.
struct Rfc3339(SystemTime);

impl Serialize for Rfc3339 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_rfc3339_nanos(self.0))
    }
}

/// Connection ids print as 16 hex digits: u64 is past what JSON numbers keep exactly.
struct Hex(u64);

impl Serialize for Hex {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("{:016x}", self.0))
    }
}

#[derive(Serialize)]
struct Record<'a> {
    ts: Rfc3339,
    event: &'static str,
    pid: Option<u32>,
    uid: Option<u32>,
    comm: Option<std::borrow::Cow<'a, str>>,
    family: &'static str,
    laddr: IpAddr,
    lport: u16,
    raddr: IpAddr,
    rport: u16,
    netns: u32,
    conn_id: Hex,
    direction: &'static str,
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    old_state: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    new_state: Option<&'static str>,
    /// Only on close; null there when the connection opened before tracing.
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_us: Option<Option<u64>>,
}

#[derive(Serialize)]
struct Lost {
    ts: Rfc3339,
    event: &'static str,
    count: u64,
    total: u64,
}

impl<W: Write> EventWriter for JsonWriter<W> {
    fn header(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn event(&mut self, event: &ConnEvent) -> io::Result<()> {
        let is_state = event.kind == EventKind::State;
        let record = Record {
            ts: Rfc3339(event.time),
            event: event.kind.name(),
            pid: event.owner.map(|o| o.pid),
            uid: event.owner.map(|o| o.uid),
            comm: event.owner.as_ref().map(|o| o.comm.as_str()),
            family: if event.is_ipv6() { "ipv6" } else { "ipv4" },
            laddr: event.local.ip(),
            lport: event.local.port(),
            raddr: event.remote.ip(),
            rport: event.remote.port(),
            netns: event.netns,
            conn_id: Hex(event.conn_id),
            direction: event.direction.name(),
            state: event.state.name(),
            old_state: is_state.then(|| event.old_state.name()),
            new_state: is_state.then(|| event.state.name()),
            duration_us: (event.kind == EventKind::Close).then(|| event.age.map(|age| age.as_micros() as u64)),
        };
        self.line(&record)
    }

    fn lost(&mut self, time: SystemTime, count: u64, total: u64) -> io::Result<()> {
        self.line(&Lost { ts: Rfc3339(time), event: "lost", count, total })
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;
    use crate::output::samples::story;

    fn render(events: &[ConnEvent]) -> String {
        let mut buf = Vec::new();
        let mut writer = JsonWriter::new(&mut buf);
        for event in events {
            writer.event(event).expect("event");
        }
        writer.lost(SystemTime::UNIX_EPOCH, 3, 5).expect("lost");
        String::from_utf8(buf).expect("utf8")
    }

    #[test]
    fn story_snapshot() {
        insta::assert_snapshot!(render(&story()));
    }

    /// The documented schema: unknown keys fail the test, so the README and
    /// the output cannot drift apart silently.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "fields exist to be checked by deserialization")]
    struct Schema {
        ts: String,
        event: String,
        pid: Option<u32>,
        uid: Option<u32>,
        comm: Option<String>,
        family: String,
        laddr: std::net::IpAddr,
        lport: u16,
        raddr: std::net::IpAddr,
        rport: u16,
        netns: u32,
        conn_id: String,
        direction: String,
        state: String,
        old_state: Option<String>,
        new_state: Option<String>,
        #[serde(default, deserialize_with = "present")]
        duration_us: Option<Option<u64>>,
    }

    fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u64>>, D::Error> {
        Option::<u64>::deserialize(d).map(Some)
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct LostSchema {
        ts: String,
        event: String,
        count: u64,
        total: u64,
    }

    #[test]
    fn every_line_matches_the_documented_schema() {
        let text = render(&story());
        let mut lines = text.lines().collect::<Vec<_>>();
        let lost: LostSchema = serde_json::from_str(lines.pop().expect("lost line")).expect("lost schema");
        assert_eq!((lost.event.as_str(), lost.count, lost.total), ("lost", 3, 5));
        assert!(lost.ts.starts_with("1970-01-01T00:00:00"));
        for (line, event) in lines.iter().zip(story()) {
            let record: Schema = serde_json::from_str(line).expect("schema");
            assert_eq!(record.event, event.kind.name());
            assert_eq!(record.conn_id.len(), 16);
            assert!(record.ts.ends_with('Z') && record.ts.contains('.'), "{}", record.ts);
            assert_eq!(record.duration_us.is_some(), event.kind == EventKind::Close, "{line}");
            assert_eq!(record.old_state.is_some(), event.kind == EventKind::State, "{line}");
            assert!(["ipv4", "ipv6"].contains(&record.family.as_str()));
        }
        // Keys are stable snake_case.
        let keys: BTreeMap<String, serde_json::Value> = serde_json::from_str(lines[0]).expect("object");
        assert!(keys.keys().all(|k| k.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
    }
}
