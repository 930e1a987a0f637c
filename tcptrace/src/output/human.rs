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
    time::SystemTime,
};

use super::{EventWriter, LossReason, RunInfo, View};
use crate::{
    config::TimeFormat,
    events::{ConnEvent, Direction, EventKind, TcpState},
    session::Summary,
};

mod detail;
mod units;

use self::detail::{short_details, write_detail};

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

#[cfg(test)]
mod tests;
