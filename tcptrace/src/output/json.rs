//! JSON Lines: one object per event with stable snake_case keys (schema in
//! README.md, checked by a contract test). Keys of one kind appear on every
//! event of that kind, null when unknown.
use std::{
    io::{self, Write},
    net::IpAddr,
    time::SystemTime,
};

use serde::{Serialize, Serializer};

use super::EventWriter;
use crate::{
    events::{ConnEvent, Detail},
    model::LossReason,
};

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

/// `Some(None)` prints `null`; `None` leaves the key out.
type Nullable<T> = Option<Option<T>>;

#[derive(Serialize, Default)]
struct KindKeys<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    handshake_us: Nullable<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_us: Nullable<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    closed_by: Nullable<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    close_kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Nullable<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errno: Nullable<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes_sent: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes_received: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    segs_out: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    segs_in: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retransmits: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    srtt_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    old_state: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    new_state: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reset: Option<&'static str>,
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
    netns: Option<u32>,
    conn_id: Hex,
    direction: &'static str,
    state: &'static str,
    #[serde(flatten)]
    kind: KindKeys<'a>,
}

fn kind_keys(event: &ConnEvent) -> KindKeys<'_> {
    let duration_us = Some(event.age.map(|age| age.as_micros() as u64));
    match &event.detail {
        Detail::None | Detail::Retransmit => KindKeys::default(),
        Detail::Established { handshake } => {
            KindKeys { handshake_us: Some(handshake.map(|h| h.as_micros() as u64)), ..KindKeys::default() }
        }
        Detail::Close(facts) => KindKeys {
            duration_us,
            closed_by: Some(facts.closed_by.map(|side| side.name())),
            close_kind: Some(facts.kind.name()),
            errno: Some(facts.error.map(|e| e.to_string())),
            bytes_sent: Some(facts.bytes_sent),
            bytes_received: Some(facts.bytes_received),
            segs_out: Some(facts.segs_out),
            segs_in: Some(facts.segs_in),
            retransmits: Some(facts.retransmits),
            srtt_us: Some(facts.srtt.as_micros() as u64),
            ..KindKeys::default()
        },
        Detail::Failed { reason, error } => KindKeys {
            duration_us,
            reason: Some(Some(reason.name())),
            errno: Some(error.map(|e| e.to_string())),
            ..KindKeys::default()
        },
        Detail::State { old } => {
            KindKeys { old_state: Some(old.name()), new_state: Some(event.state.name()), ..KindKeys::default() }
        }
        Detail::Reset { sent, reason } => KindKeys {
            reset: Some(if *sent { "sent" } else { "received" }),
            reason: Some(reason.as_deref()),
            ..KindKeys::default()
        },
    }
}

#[derive(Serialize)]
struct Lost {
    ts: Rfc3339,
    event: &'static str,
    reason: &'static str,
    count: u64,
    total: u64,
}

impl<W: Write> EventWriter for JsonWriter<W> {
    fn header(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn event(&mut self, event: &ConnEvent) -> io::Result<()> {
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
            kind: kind_keys(event),
        };
        self.line(&record)
    }

    fn lost(&mut self, time: SystemTime, reason: LossReason, count: u64, total: u64) -> io::Result<()> {
        self.line(&Lost { ts: Rfc3339(time), event: "lost", reason: reason.name(), count, total })
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;
    use serde_json::Value;

    use super::*;
    use crate::{events::EventKind, output::samples::story};

    fn render(events: &[ConnEvent]) -> String {
        let mut buf = Vec::new();
        let mut writer = JsonWriter::new(&mut buf);
        for event in events {
            writer.event(event).expect("event");
        }
        writer.lost(SystemTime::UNIX_EPOCH, LossReason::RingBufferFull, 3, 5).expect("lost");
        writer.lost(SystemTime::UNIX_EPOCH, LossReason::OutputStalled, 7, 9).expect("lost");
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
        netns: Option<u32>,
        conn_id: String,
        direction: String,
        state: String,
        handshake_us: Option<u64>,
        duration_us: Option<u64>,
        closed_by: Option<String>,
        close_kind: Option<String>,
        reason: Option<String>,
        errno: Option<String>,
        bytes_sent: Option<u64>,
        bytes_received: Option<u64>,
        segs_out: Option<u32>,
        segs_in: Option<u32>,
        retransmits: Option<u32>,
        srtt_us: Option<u64>,
        old_state: Option<String>,
        new_state: Option<String>,
        reset: Option<String>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct LostSchema {
        ts: String,
        event: String,
        reason: String,
        count: u64,
        total: u64,
    }

    /// Keys each kind carries beyond the common ones, present even when null.
    fn kind_keys_of(kind: EventKind) -> &'static [&'static str] {
        match kind {
            EventKind::Connect | EventKind::Accept | EventKind::Retransmit => &[],
            EventKind::Established => &["handshake_us"],
            EventKind::Close => &[
                "duration_us",
                "closed_by",
                "close_kind",
                "errno",
                "bytes_sent",
                "bytes_received",
                "segs_out",
                "segs_in",
                "retransmits",
                "srtt_us",
            ],
            EventKind::Failed => &["duration_us", "reason", "errno"],
            EventKind::State => &["old_state", "new_state"],
            EventKind::Reset => &["reset", "reason"],
        }
    }

    #[test]
    fn every_line_matches_the_documented_schema() {
        let text = render(&story());
        let mut lines = text.lines().collect::<Vec<_>>();
        let stalled: LostSchema = serde_json::from_str(lines.pop().expect("lost line")).expect("lost schema");
        let ring: LostSchema = serde_json::from_str(lines.pop().expect("lost line")).expect("lost schema");
        let fields = |l: &LostSchema| (l.event.clone(), l.reason.clone(), l.count, l.total);
        assert_eq!(fields(&ring), ("lost".into(), "ring_buffer_full".into(), 3, 5));
        assert_eq!(fields(&stalled), ("lost".into(), "output_stalled".into(), 7, 9));
        assert!(ring.ts.starts_with("1970-01-01T00:00:00"));
        let kinds: Vec<EventKind> = story().iter().map(|e| e.kind).collect();
        assert!(EventKind::ALL.iter().all(|k| kinds.contains(k)), "the story shows every kind");
        for (line, event) in lines.iter().zip(story()) {
            let _: Schema = serde_json::from_str(line).expect("schema");
            let object: BTreeMap<String, Value> = serde_json::from_str(line).expect("object");
            assert_eq!(object["event"], event.kind.name());
            assert_eq!(object["conn_id"].as_str().map(str::len), Some(16));
            let ts = object["ts"].as_str().expect("ts");
            assert!(ts.ends_with('Z') && ts.contains('.'), "{ts}");
            let common = 14;
            assert_eq!(object.len(), common + kind_keys_of(event.kind).len(), "{line}");
            for key in kind_keys_of(event.kind) {
                assert!(object.contains_key(*key), "{} lacks {key}: {line}", event.kind.name());
            }
            assert!(object.keys().all(|k| k.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
        }
    }
}
