//! Aligned columns for people, one line per event, like tcplife but per step.
//!
//! The default view fits [`LINE_WIDTH`] columns with any IPv4 address: the
//! columns have fixed widths (a longer user or command name, or an IPv6
//! address, is cut short with a `+`, as `ps` does), and the detail gets the
//! rest of the line, its facts in order of use, those that do not fit left
//! out. `-w` shows everything, unshortened.
use std::{
    borrow::Cow,
    fmt::Write as _,
    io::{self, Write},
    net::SocketAddr,
    time::{Duration, SystemTime},
};

use super::{EventWriter, LossReason, RunInfo, View};
use crate::{
    config::TimeFormat,
    events::{ConnEvent, Detail, Direction, EventKind, TcpState},
    lifecycle::{CloseFacts, CloseKind},
    session::Summary,
};

/// The default view's lines never pass this many characters with IPv4 addresses.
pub const LINE_WIDTH: usize = 120;

/// The columns between the time and the detail.
#[derive(Clone, Copy)]
struct Widths {
    event: usize,
    user: usize,
    comm: usize,
    /// Each of LOCAL and REMOTE.
    addr: usize,
}

/// `255.255.255.255:65535` is 21; the kernel keeps 15 bytes of a command
/// name, of which the default view shows 11 and a `+`.
const NARROW: Widths = Widths { event: 7, user: 8, comm: 12, addr: 21 };
const WIDE: Widths = Widths { event: 11, user: 8, comm: 15, addr: 23 };
/// Up to pid_max's ceiling, 4194304.
const PID: usize = 7;

pub struct HumanWriter<W: Write> {
    out: W,
    view: View,
    /// When tracing started, for `-t`.
    origin: SystemTime,
    line: String,
}

impl<W: Write> HumanWriter<W> {
    pub fn new(out: W, view: View) -> Self {
        Self { out, view, origin: SystemTime::UNIX_EPOCH, line: String::with_capacity(256) }
    }

    fn widths(&self) -> &'static Widths {
        if self.view.wide { &WIDE } else { &NARROW }
    }

    /// Milliseconds in the default view, microseconds in the wide one.
    fn time_width(&self) -> usize {
        let micros = if self.view.wide { 3 } else { 0 };
        micros
            + match self.view.time {
                TimeFormat::TimeOfDay => 12,
                TimeFormat::DateTime => 23,
                TimeFormat::SinceStart => 10,
            }
    }

    /// One line, without its newline.
    fn format(&mut self, event: &ConnEvent) {
        let widths = self.widths();
        let wide = self.view.wide;
        let time_width = self.time_width();
        let stamp = Stamp { time: event.time, format: self.view.time, origin: self.origin, micros: wide };
        let line = &mut self.line;
        line.clear();
        let kind = if wide { event.kind.name() } else { short_kind(event.kind) };
        let _ = write!(line, "{stamp:<time_width$} {kind:<0$} ", widths.event);
        let user = match (&event.owner, &event.identity.user) {
            (None, _) => Cow::Borrowed("-"),
            (Some(_), Some(name)) => Cow::Borrowed(&**name),
            (Some(owner), None) => Cow::Owned(owner.uid.to_string()),
        };
        let comm = event.owner.as_ref().map_or(Cow::Borrowed("-"), |owner| owner.comm.as_str());
        let pid = event.owner.map_or_else(|| "-".to_owned(), |owner| owner.pid.to_string());
        let (user, comm) = if wide { (user, comm) } else { (clip(&user, widths.user), clip(&comm, widths.comm)) };
        let _ = write!(line, "{pid:>0$} {user:<1$} {comm:<2$} ", PID, widths.user, widths.comm);
        let (local, remote) = endpoints(event);
        let (local, remote) =
            if wide { (local, remote) } else { (shorten_addr(local, widths.addr), shorten_addr(remote, widths.addr)) };
        let _ = write!(line, "{local:<0$} {remote:<0$}", widths.addr);
        let foreign_netns = event.netns.filter(|&netns| netns != self.view.own_netns);
        if wide {
            let mut detail = String::new();
            write_detail(&mut detail, event);
            if let Some(netns) = foreign_netns {
                let _ = write!(detail, " netns:{netns}");
            }
            write_identity(&mut detail, event);
            line.push(' ');
            line.push_str(detail.trim_start());
        } else {
            let room = LINE_WIDTH.saturating_sub(line.chars().count() + 1);
            let mut tellings = short_details(event);
            // Another namespace is said where it fits beside a telling.
            if let Some(netns) = foreign_netns {
                tellings = tellings
                    .into_iter()
                    .flat_map(|telling| [format!("{telling} netns:{netns}").trim_start().to_owned(), telling])
                    .collect();
            }
            let detail = fit(&tellings, room);
            if !detail.is_empty() {
                line.push(' ');
                line.push_str(&detail);
            }
        }
        let end = line.trim_end().len();
        line.truncate(end);
    }
}

/// The time column: time of day, date and time, or seconds since the start,
/// to the millisecond or the microsecond.
struct Stamp {
    time: SystemTime,
    format: TimeFormat,
    origin: SystemTime,
    micros: bool,
}

impl std::fmt::Display for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let since = match self.format {
            TimeFormat::SinceStart => self.time.duration_since(self.origin),
            _ => self.time.duration_since(SystemTime::UNIX_EPOCH),
        };
        // Events that raced the start (hooks attach one by one) count from 0.
        let since = since.unwrap_or_default();
        let fraction = match self.micros {
            true => format!("{:06}", since.subsec_micros()),
            false => format!("{:03}", since.subsec_millis()),
        };
        let secs = since.as_secs();
        let (day, time) = (secs / 86_400, secs % 86_400);
        let clock = format!("{:02}:{:02}:{:02}.{fraction}", time / 3600, time / 60 % 60, time % 60);
        let text = match self.format {
            TimeFormat::TimeOfDay => clock,
            TimeFormat::DateTime => {
                let (year, month, day) = civil_date(day);
                format!("{year:04}-{month:02}-{day:02} {clock}")
            }
            TimeFormat::SinceStart => format!("{secs}.{fraction}"),
        };
        f.pad(&text)
    }
}

/// Year, month and day of the `days`th day since 1970-01-01 (proleptic
/// Gregorian; Howard Hinnant's `civil_from_days`).
fn civil_date(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + u64::from(month <= 2), month, day)
}

/// The event names of the default view: `ss`'s ESTAB, and short enough for a 7-wide column.
fn short_kind(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Established => "estab",
        EventKind::Retransmit => "retrans",
        EventKind::Snapshot => "snap",
        other => other.name(),
    }
}

/// The state names of the default view: ESTABLISHED as `ss` shortens it.
fn short_state(state: TcpState) -> &'static str {
    match state.name() {
        "ESTABLISHED" => "ESTAB",
        name => name,
    }
}

/// `text` in at most `width` characters: cut short with a `+`, as `ps` does.
fn clip(text: &str, width: usize) -> Cow<'_, str> {
    if text.chars().count() <= width {
        return Cow::Borrowed(text);
    }
    let mut clipped: String = text.chars().take(width.saturating_sub(1)).collect();
    clipped.push('+');
    Cow::Owned(clipped)
}

/// An address in at most `width` characters: IPv4 always fits; an IPv6
/// address loses its tail, marked `+`, and keeps its port.
fn shorten_addr(addr: String, width: usize) -> String {
    if addr.chars().count() <= width {
        return addr;
    }
    match addr.rfind("]:") {
        Some(close) if addr.len() - close + 3 <= width => {
            let port = &addr[close..];
            let keep = width - port.len() - 1;
            format!("{}+{port}", &addr[..keep])
        }
        _ => clip(&addr, width).into_owned(),
    }
}

/// The first of `tellings` that fits in `room` characters, or the last cut short.
fn fit(tellings: &[String], room: usize) -> Cow<'_, str> {
    match tellings.iter().find(|telling| telling.chars().count() <= room) {
        Some(telling) => Cow::Borrowed(telling),
        None => tellings.last().map_or(Cow::Borrowed(""), |telling| clip(telling, room)),
    }
}

/// Both addresses, the server side's port by its service name, as `ss`
/// prints it (`127.0.0.1:http`); JSON keeps the number.
fn endpoints(event: &ConnEvent) -> (String, String) {
    let plain = |addr: SocketAddr| addr.to_string();
    let named = |addr: SocketAddr, name: &str| match addr {
        SocketAddr::V4(v4) => format!("{}:{name}", v4.ip()),
        SocketAddr::V6(v6) => format!("[{}]:{name}", v6.ip()),
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

/// Wide mode's tail: where the owner runs, what it runs, and the connection id.
fn write_identity(out: &mut String, event: &ConnEvent) {
    let identity = &event.identity;
    match (&identity.container_id, &identity.cgroup) {
        (Some(id), _) => {
            let _ = write!(out, " container:{}", &id[..id.len().min(SHORT_CONTAINER_ID)]);
        }
        (None, Some(cgroup)) if &**cgroup != "/" => {
            let _ = write!(out, " cgroup:{cgroup}");
        }
        _ => {}
    }
    if let Some(exe) = &identity.exe {
        let _ = write!(out, " exe:{exe}");
    }
    // The low 32 bits: enough to tie one connection's interleaved lines together.
    let _ = write!(out, " id:{:08x}", event.conn_id as u32);
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

/// Durations in at most 5 characters, two or three digits kept (never
/// rounded up): 61us, 3.1ms, 250ms, 2.5s, 42s, 12m, 5h, 3d.
struct Brief(Duration);

impl std::fmt::Display for Brief {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let us = self.0.as_micros();
        let secs = self.0.as_secs();
        match us {
            0..1_000 => write!(f, "{us}us"),
            1_000..10_000 => write!(f, "{}.{}ms", us / 1_000, us / 100 % 10),
            10_000..1_000_000 => write!(f, "{}ms", us / 1_000),
            1_000_000..10_000_000 => write!(f, "{}.{}s", secs, us / 100_000 % 10),
            _ if secs < 100 => write!(f, "{secs}s"),
            _ if secs < 100 * 60 => write!(f, "{}m", secs / 60),
            _ if secs < 100 * 3600 => write!(f, "{}h", secs / 3600),
            _ => write!(f, "{}d", secs / 86_400),
        }
    }
}

/// Byte counts in at most 5 characters, binary units, never rounded up:
/// 999, 1023, 3.6K, 512K, 1.2M, 40G.
struct Bytes(u64);

impl std::fmt::Display for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0 < 1024 {
            return write!(f, "{}", self.0);
        }
        let mut tenths = u128::from(self.0) * 10 / 1024;
        for unit in ["K", "M", "G", "T", "P"] {
            if tenths < 100 {
                return write!(f, "{}.{}{unit}", tenths / 10, tenths % 10);
            }
            if tenths < 10_240 {
                return write!(f, "{}{unit}", tenths / 10);
            }
            tenths /= 1024;
        }
        write!(f, "{}E", tenths / 10)
    }
}

impl<W: Write> EventWriter for HumanWriter<W> {
    fn start(&mut self, run: &RunInfo) -> io::Result<()> {
        self.origin = run.started;
        let widths = self.widths();
        let time = match self.view.time {
            TimeFormat::TimeOfDay => "TIME(UTC)",
            TimeFormat::DateTime => "DATE TIME(UTC)",
            TimeFormat::SinceStart => "TIME(s)",
        };
        let (time_width, pid) = (self.time_width(), "PID");
        let Widths { event, user, comm, addr } = *widths;
        writeln!(
            self.out,
            "{time:<time_width$} {:<event$} {pid:>PID$} {:<user$} {:<comm$} {:<addr$} {:<addr$} DETAIL",
            "EVENT", "USER", "COMM", "LOCAL", "REMOTE",
        )
    }

    fn event(&mut self, event: &ConnEvent) -> io::Result<()> {
        self.format(event);
        self.line.push('\n');
        self.out.write_all(self.line.as_bytes())
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

/// The default view's detail of each kind, as it may be told: the fullest
/// first, then shorter ones that keep the most useful facts.
fn short_details(event: &ConnEvent) -> Vec<String> {
    let age = event.age.map(|age| Brief(age).to_string());
    let join = |facts: &[Option<&str>]| facts.iter().flatten().copied().collect::<Vec<_>>().join(" ");
    match &event.detail {
        Detail::None if event.kind == EventKind::Snapshot => {
            let state = short_state(event.state);
            let direction = (event.direction != Direction::Unknown).then(|| event.direction.name());
            vec![join(&[direction, Some(state), Some("at start")]), join(&[Some(state), Some("at start")])]
        }
        Detail::None => vec![String::new()],
        Detail::Established { handshake } => {
            let handshake = handshake.map(|handshake| Brief(handshake).to_string());
            let direction = Some(event.direction.name());
            vec![join(&[direction, handshake.as_deref()]), join(&[direction])]
        }
        Detail::Close(facts) => close_details(facts, age.as_deref()),
        Detail::Failed { reason, error } => {
            // The errno mostly repeats the reason: it goes first.
            let (reason, error) = (Some(reason.name()), error.map(|error| error.to_string()));
            vec![join(&[reason, age.as_deref(), error.as_deref()]), join(&[reason, age.as_deref()]), join(&[reason])]
        }
        Detail::State { old } => {
            let new = short_state(event.state);
            vec![format!("{} -> {new}", short_state(*old)), format!("-> {new}")]
        }
        Detail::Retransmit => vec![format!("in {}", short_state(event.state)), short_state(event.state).to_owned()],
        Detail::Reset { sent: true, reason } => vec![join(&[Some("sent"), reason.as_deref()])],
        Detail::Reset { sent: false, .. } => vec!["received".to_owned()],
    }
}

/// A close, from the fullest telling to the shortest: who ended it and how,
/// its lifetime, bytes out/in, then the error, retransmissions and smoothed
/// RTT. Who ended it goes before the bytes do (an RST's direction tells).
fn close_details(facts: &CloseFacts, age: Option<&str>) -> Vec<String> {
    let how = match facts.kind {
        CloseKind::Fin => "fin",
        CloseKind::RstSent => "rst_sent",
        CloseKind::RstReceived => "rst_rcvd",
        CloseKind::Timeout => "timeout",
    };
    let who_how = match facts.closed_by {
        Some(side) => format!("{} {how}", side.name()),
        None => how.to_owned(),
    };
    let bytes = format!("{}/{}", Bytes(facts.bytes_sent), Bytes(facts.bytes_received));
    let error = facts.error.map(|error| error.to_string());
    let retransmits = (facts.retransmits > 0).then(|| format!("{}retx", facts.retransmits));
    let rtt = format!("rtt {}", Brief(facts.srtt));
    let join = |facts: &[Option<&str>]| facts.iter().flatten().copied().collect::<Vec<_>>().join(" ");
    let (who_how, how, bytes) = (Some(who_how.as_str()), Some(how), Some(bytes.as_str()));
    vec![
        join(&[who_how, age, bytes, error.as_deref(), retransmits.as_deref(), Some(&rtt)]),
        join(&[who_how, age, bytes, error.as_deref(), retransmits.as_deref()]),
        join(&[who_how, age, bytes, error.as_deref()]),
        join(&[who_how, age, bytes]),
        join(&[how, age, bytes]),
        join(&[who_how, age]),
        join(&[who_how]),
        join(&[how]),
    ]
}

/// Wide mode's detail: the kind's story in full.
fn write_detail(out: &mut String, event: &ConnEvent) {
    let _ = match &event.detail {
        Detail::None if event.kind == EventKind::Snapshot => match event.direction {
            Direction::Unknown => write!(out, "{}, open at start", event.state.name()),
            direction => write!(out, "{} {}, open at start", direction.name(), event.state.name()),
        },
        Detail::None => Ok(()),
        Detail::Established { handshake } => {
            let _ = write!(out, "{}", event.direction.name());
            match handshake {
                Some(handshake) => write!(out, ", handshake {}", Short(*handshake)),
                None => Ok(()),
            }
        }
        Detail::Close(facts) => {
            let _ = match event.age {
                Some(age) => write!(out, "after {}", Short(age)),
                None => write!(out, "(opened before tracing)"),
            };
            let who = facts.closed_by.map_or("?", |side| side.name());
            let _ = write!(
                out,
                ", {who} closed ({}), {} B out, {} B in, {} segs out, {} in, rtt {}",
                facts.kind.name(),
                facts.bytes_sent,
                facts.bytes_received,
                facts.segs_out,
                facts.segs_in,
                Short(facts.srtt)
            );
            if facts.retransmits > 0 {
                let _ = write!(out, ", {} retransmits", facts.retransmits);
            }
            match facts.error {
                Some(error) => write!(out, ", {error}"),
                None => Ok(()),
            }
        }
        Detail::Failed { reason, error } => {
            let _ = write!(out, "{}", reason.name());
            if let Some(error) = error {
                let _ = write!(out, " ({error})");
            }
            match event.age {
                Some(age) => write!(out, " after {}", Short(age)),
                None => Ok(()),
            }
        }
        Detail::State { old } => write!(out, "{} -> {}", old.name(), event.state.name()),
        Detail::Retransmit => write!(out, "in {}", event.state.name()),
        Detail::Reset { sent: true, reason } => match reason {
            Some(reason) => write!(out, "sent ({reason})"),
            None => write!(out, "sent"),
        },
        Detail::Reset { sent: false, .. } => write!(out, "received"),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::samples;

    /// The sample story and the hard cases, as `view` prints them.
    fn render(wide: bool, time: TimeFormat) -> String {
        let mut buf = Vec::new();
        let mut writer = HumanWriter::new(&mut buf, View { own_netns: samples::OWN_NETNS, wide, time });
        writer.start(&samples::run_at(samples::started())).expect("header");
        for event in samples::story().iter().chain(&samples::hard_cases()) {
            writer.event(event).expect("event");
        }
        String::from_utf8(buf).expect("utf8")
    }

    #[test]
    fn story_snapshot() {
        insta::assert_snapshot!(render(false, TimeFormat::TimeOfDay));
    }

    #[test]
    fn story_with_dates_snapshot() {
        insta::assert_snapshot!(render(false, TimeFormat::DateTime));
    }

    #[test]
    fn story_since_start_snapshot() {
        insta::assert_snapshot!(render(false, TimeFormat::SinceStart));
    }

    #[test]
    fn wide_story_snapshot() {
        insta::assert_snapshot!(render(true, TimeFormat::TimeOfDay));
    }

    #[test]
    fn wide_story_with_dates_snapshot() {
        insta::assert_snapshot!(render(true, TimeFormat::DateTime));
    }

    #[test]
    fn wide_story_since_start_snapshot() {
        insta::assert_snapshot!(render(true, TimeFormat::SinceStart));
    }

    /// Every default line fits, whatever the time column, and every column
    /// starts where the header says.
    #[test]
    fn default_lines_fit_and_align() {
        for time in [TimeFormat::TimeOfDay, TimeFormat::DateTime, TimeFormat::SinceStart] {
            let text = render(false, time);
            let mut lines = text.lines();
            let header = lines.next().expect("header");
            // PID is right-aligned: its column starts where EVENT's padding ends.
            let columns: Vec<usize> = ["EVENT", "USER", "COMM", "LOCAL", "REMOTE", "DETAIL"]
                .iter()
                .map(|name| header.find(&format!(" {name}")).expect("column") + 1)
                .collect();
            for line in lines {
                let chars: Vec<char> = line.chars().collect();
                assert!(chars.len() <= LINE_WIDTH, "{time:?}: {} characters:\n{line}", chars.len());
                for &at in &columns {
                    if at < chars.len() {
                        assert!(
                            chars[at - 1] == ' ' && chars[at] != ' ',
                            "{time:?}: a column does not start at {at}:\n{header}\n{line}"
                        );
                    }
                }
            }
        }
    }

    /// The worst IPv4 case fills every column and still tells the close's
    /// main facts: how it ended (a received RST: the remote end), its
    /// lifetime and the bytes each way.
    #[test]
    fn the_widest_ipv4_close_keeps_its_main_facts() {
        let text = render(false, TimeFormat::TimeOfDay);
        let worst = " close   4194304 postgre+ kube-contro+ 255.255.255.255:65535 255.255.255.254:65535 ";
        let line = text.lines().find(|line| line.contains(worst)).expect("the widest close");
        assert!(line.ends_with(" rst_rcvd 4.2s 114G/941M"), "{line}");
    }

    #[test]
    fn clipping() {
        assert_eq!(clip("kube-controller", 12), "kube-contro+");
        assert_eq!(clip("curl", 12), "curl");
        assert_eq!(shorten_addr("[2001:db8:85a3::8a2e:370:7334]:443".into(), 21), "[2001:db8:85a3:+]:443");
        assert_eq!(shorten_addr("255.255.255.255:65535".into(), 21), "255.255.255.255:65535");
        let tellings = ["local fin 4.2s 1.2M/3.4K".to_owned(), "local fin 4.2s".to_owned(), "fin".to_owned()];
        assert_eq!(fit(&tellings, 24), "local fin 4.2s 1.2M/3.4K");
        assert_eq!(fit(&tellings, 23), "local fin 4.2s");
        assert_eq!(fit(&tellings, 3), "fin");
        assert_eq!(fit(&tellings, 2), "f+");
    }

    #[test]
    fn dates() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(20_416), (2025, 11, 24));
        assert_eq!(civil_date(11_016), (2000, 2, 29));
        let day = |text: &str| humantime::parse_rfc3339(text).expect("date");
        for text in ["2024-02-29T23:59:59.999Z", "2026-12-01T10:22:18.123Z", "2100-03-01T00:00:00.000Z"] {
            let stamp = Stamp { time: day(text), format: TimeFormat::DateTime, origin: day(text), micros: false };
            assert_eq!(stamp.to_string(), text.replace('T', " ").replace('Z', ""));
        }
    }

    #[test]
    fn short_durations() {
        assert_eq!(Short(Duration::from_micros(61)).to_string(), "61us");
        assert_eq!(Short(Duration::from_micros(3120)).to_string(), "3.120ms");
        assert_eq!(Short(Duration::from_millis(2500)).to_string(), "2.500s");
    }

    #[test]
    fn brief_durations_and_bytes() {
        let brief = |us| Brief(Duration::from_micros(us)).to_string();
        let cases = [
            (61, "61us"),
            (999, "999us"),
            (3_199, "3.1ms"),
            (250_000, "250ms"),
            (2_590_000, "2.5s"),
            (42_000_000, "42s"),
            (750_000_000, "12m"),
            (18_000_000_000, "5h"),
            (400_000_000_000, "4d"),
        ];
        for (us, text) in cases {
            assert_eq!(brief(us), text);
        }
        let bytes = |n| Bytes(n).to_string();
        let cases = [
            (0, "0"),
            (1023, "1023"),
            (1024, "1.0K"),
            (3_700, "3.6K"),
            (524_288, "512K"),
            (1_048_575, "1023K"),
            (1_300_000, "1.2M"),
            (40 << 30, "40G"),
        ];
        for (n, text) in cases {
            assert_eq!(bytes(n), text);
        }
        assert!((0..64).all(|shift| Bytes((1u64 << shift) - 1).to_string().len() <= 5));
    }
}
