//! The records of the machine formats (JSON Lines, logfmt): one struct per
//! record kind with stable snake_case keys, in the order they print. The
//! schema is `schema/tcptrace.schema.json`; bump `SCHEMA_VERSION` when a key
//! changes meaning or goes away (new keys do not need it).
use std::{
    io::{self, Write},
    marker::PhantomData,
    net::IpAddr,
    time::SystemTime,
};

use serde::{Serialize, Serializer};

use super::{EventWriter, LossReason, RunInfo, calendar};
use crate::{
    events::{ConnEvent, Detail, EventKind},
    session::Summary,
};

/// The `v` of every record.
pub const SCHEMA_VERSION: u32 = 1;

/// How one machine format prints one record as one line.
pub trait LineFormat {
    fn write_line(out: &mut impl Write, record: &impl Serialize) -> io::Result<()>;
}

/// Every record of a run, one line each, in format `F` (json.rs, logfmt.rs).
pub struct RecordWriter<W, F> {
    out: W,
    format: PhantomData<F>,
}

impl<W: Write, F: LineFormat> RecordWriter<W, F> {
    pub fn new(out: W) -> Self {
        Self { out, format: PhantomData }
    }
}

impl<W: Write, F: LineFormat> EventWriter for RecordWriter<W, F> {
    fn start(&mut self, run: &RunInfo) -> io::Result<()> {
        F::write_line(&mut self.out, &Start::new(run))
    }

    fn event(&mut self, event: &ConnEvent) -> io::Result<()> {
        F::write_line(&mut self.out, &Record::new(event))
    }

    fn lost(&mut self, time: SystemTime, reason: LossReason, count: u64, total: u64) -> io::Result<()> {
        F::write_line(&mut self.out, &Lost::new(time, reason, count, total))
    }

    fn stop(&mut self, time: SystemTime, totals: &Summary) -> io::Result<()> {
        F::write_line(&mut self.out, &Stop::new(time, totals))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// RFC 3339 UTC with nanoseconds.
pub struct Rfc3339(pub SystemTime);

impl Serialize for Rfc3339 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match calendar::rfc3339_nanos(self.0) {
            Some(text) => serializer.serialize_str(ascii(&text)),
            None => serializer.collect_str(&humantime::format_rfc3339_nanos(self.0)),
        }
    }
}

/// Connection ids print as 16 hex digits: u64 is past what JSON numbers keep exactly.
pub struct Hex(pub u64);

impl Serialize for Hex {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0u8; 16];
        for (index, digit) in text.iter_mut().enumerate() {
            *digit = DIGITS[(self.0 >> (60 - 4 * index) & 0xf) as usize];
        }
        serializer.serialize_str(ascii(&text))
    }
}

/// Text these writers built from ASCII digits and punctuation only.
fn ascii(text: &[u8]) -> &str {
    std::str::from_utf8(text).expect("ASCII")
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

/// One event. `v` and `severity` lead every record of every kind.
#[derive(Serialize)]
pub struct Record<'a> {
    v: u32,
    ts: Rfc3339,
    event: &'static str,
    severity: Severity,
    pid: Option<u32>,
    uid: Option<u32>,
    comm: Option<std::borrow::Cow<'a, str>>,
    user: Option<&'a str>,
    cgroup: Option<&'a str>,
    container_id: Option<&'a str>,
    exe: Option<&'a str>,
    family: &'static str,
    laddr: IpAddr,
    lport: u16,
    raddr: IpAddr,
    rport: u16,
    netns: Option<u32>,
    service: Option<&'a str>,
    conn_id: Hex,
    direction: &'static str,
    state: &'static str,
    #[serde(flatten)]
    kind: KindKeys<'a>,
}

impl<'a> Record<'a> {
    pub fn new(event: &'a ConnEvent) -> Self {
        Record {
            v: SCHEMA_VERSION,
            ts: Rfc3339(event.time),
            event: event.kind.name(),
            severity: Severity::of(event.kind),
            pid: event.owner.map(|o| o.pid),
            uid: event.owner.map(|o| o.uid),
            comm: event.owner.as_ref().map(|o| o.comm.as_str()),
            user: event.identity.user.as_deref(),
            cgroup: event.identity.cgroup.as_deref(),
            container_id: event.identity.container_id.as_deref(),
            exe: event.identity.exe.as_deref(),
            family: if event.is_ipv6() { "ipv6" } else { "ipv4" },
            laddr: event.local.ip(),
            lport: event.local.port(),
            raddr: event.remote.ip(),
            rport: event.remote.port(),
            netns: event.netns,
            service: event.service.as_ref().map(|(_, name)| &**name),
            conn_id: Hex(event.conn_id),
            direction: event.direction.name(),
            state: event.state.name(),
            kind: kind_keys(event),
        }
    }
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

/// Events that never reached the stream, and why.
#[derive(Serialize)]
pub struct Lost {
    v: u32,
    ts: Rfc3339,
    event: &'static str,
    severity: Severity,
    reason: &'static str,
    count: u64,
    total: u64,
}

impl Lost {
    pub fn new(time: SystemTime, reason: LossReason, count: u64, total: u64) -> Self {
        Self {
            v: SCHEMA_VERSION,
            ts: Rfc3339(time),
            event: "lost",
            severity: Severity::Warning,
            reason: reason.name(),
            count,
            total,
        }
    }
}

/// The first record of a run: what wrote the stream, where, and how it hooked
/// the kernel, so a collector can tell runs apart in an appended log.
#[derive(Serialize)]
pub struct Start<'a> {
    v: u32,
    ts: Rfc3339,
    event: &'static str,
    severity: Severity,
    host: &'a str,
    boot_id: &'a str,
    version: &'a str,
    kernel: &'a str,
    hooks: Vec<Hook<'a>>,
}

#[derive(Serialize)]
pub struct Hook<'a> {
    purpose: &'a str,
    /// null: not attached on this kernel.
    method: Option<&'a str>,
}

impl<'a> Start<'a> {
    pub fn new(run: &'a RunInfo) -> Self {
        Self {
            v: SCHEMA_VERSION,
            ts: Rfc3339(run.started),
            event: "start",
            severity: Severity::Info,
            host: &run.host,
            boot_id: &run.boot_id,
            version: run.version,
            kernel: &run.kernel,
            hooks: run.hooks.iter().map(|(purpose, method)| Hook { purpose, method: method.as_deref() }).collect(),
        }
    }
}

/// The last record of a run: its totals.
#[derive(Serialize)]
pub struct Stop {
    v: u32,
    ts: Rfc3339,
    event: &'static str,
    severity: Severity,
    events: u64,
    lost: u64,
    untracked: u64,
    missed: u64,
    late_closes: u64,
    malformed: u64,
    filtered: u64,
    map_update_failures: u64,
}

impl Stop {
    pub fn new(time: SystemTime, totals: &Summary) -> Self {
        Self {
            v: SCHEMA_VERSION,
            ts: Rfc3339(time),
            event: "stop",
            severity: Severity::Info,
            events: totals.events,
            lost: totals.lost + totals.stalled,
            untracked: totals.untracked,
            missed: totals.missed,
            late_closes: totals.late_closes,
            malformed: totals.malformed,
            filtered: totals.filtered,
            map_update_failures: totals.map_update_failures,
        }
    }
}

/// For collectors: failures, resets and losses are warnings, the rest
/// informational (syslog severities 4 and 6).
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
}

impl Severity {
    pub fn of(kind: EventKind) -> Self {
        match kind {
            EventKind::Failed | EventKind::Reset => Self::Warning,
            _ => Self::Info,
        }
    }
}
