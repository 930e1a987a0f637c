//! Aligned columns for people, one line per event, like tcplife but per step.
//!
//! The default view fits [`LINE_WIDTH`] columns with any IPv4 address: the
//! columns have fixed widths (a longer user or command name, or an IPv6
//! address, is cut short with a `+`, as `ps` does), and the detail gets the
//! rest of the line, its facts in order of use, those that do not fit left
//! out. `-w` shows everything, unshortened.
use std::{
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
mod stamp;
mod telling;
mod units;

use self::{
    detail::{write_detail, write_short_detail},
    stamp::Stamp,
    telling::Facts,
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
    /// Scratch for the default view's detail, kept to spare an allocation a line.
    facts: Facts,
    /// `netns:N` for an event from another namespace, likewise reused.
    netns: String,
}

impl<W: Write> HumanWriter<W> {
    pub fn new(out: W, view: View) -> Self {
        Self {
            out,
            view,
            origin: SystemTime::UNIX_EPOCH,
            line: String::with_capacity(256),
            facts: Facts::default(),
            netns: String::new(),
        }
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
        let line = &mut self.line;
        line.clear();
        let stamp = Stamp { time: event.time, format: self.view.time, origin: self.origin, micros: wide };
        stamp.write(line);
        pad_column(line, 0, time_width);
        let kind = if wide { event.kind.name() } else { short_kind(event.kind) };
        line.push(' ');
        let start = line.len();
        line.push_str(kind);
        pad_column(line, start, widths.event);
        line.push(' ');
        let mut digits = itoa::Buffer::new();
        let pid = event.owner.map_or("-", |owner| digits.format(owner.pid));
        push_spaces(line, PID.saturating_sub(pid.len()));
        line.push_str(pid);
        line.push(' ');
        let cut = |shorten| if wide { Cut::Never } else { shorten };
        let start = line.len();
        match (&event.owner, &event.identity.user) {
            (None, _) => line.push('-'),
            (Some(_), Some(name)) => line.push_str(name),
            (Some(owner), None) => line.push_str(digits.format(owner.uid)),
        }
        end_column(line, start, widths.user, cut(Cut::Clip));
        line.push(' ');
        let start = line.len();
        match &event.owner {
            Some(owner) => line.push_str(&owner.comm.as_str()),
            None => line.push('-'),
        }
        end_column(line, start, widths.comm, cut(Cut::Clip));
        let (local_service, remote_service) = services(event);
        for (addr, service) in [(event.local, local_service), (event.remote, remote_service)] {
            line.push(' ');
            let start = line.len();
            write_endpoint(line, addr, service);
            end_column(line, start, widths.addr, cut(Cut::Address));
        }
        let foreign_netns = event.netns.filter(|&netns| netns != self.view.own_netns);
        if wide {
            line.push(' ');
            let start = line.len();
            write_detail(line, event);
            if let Some(netns) = foreign_netns {
                let _ = write!(line, " netns:{netns}");
            }
            write_identity(line, event);
            let blank = line[start..].len() - line[start..].trim_start().len();
            line.replace_range(start..start + blank, "");
        } else {
            let room = LINE_WIDTH.saturating_sub(width_of(line) + 1);
            // Another namespace is said where it fits beside a telling.
            let netns = &mut self.netns;
            netns.clear();
            if let Some(foreign) = foreign_netns {
                netns.push_str("netns:");
                netns.push_str(digits.format(foreign));
            }
            let suffix = (!netns.is_empty()).then_some(netns.as_str());
            write_short_detail(line, event, room, suffix, &mut self.facts);
        }
        let end = line.trim_end().len();
        line.truncate(end);
    }
}

/// How a column's text too long for it is cut short.
#[derive(Clone, Copy)]
enum Cut {
    /// The wide view: columns grow.
    Never,
    /// A `+` for the tail, as `ps` does.
    Clip,
    /// [`shorten_addr`]: an IPv6 address keeps its port.
    Address,
}

/// Ends the column whose text began at `start`: cut to `width` as `cut`
/// says, then padded to it.
fn end_column(line: &mut String, start: usize, width: usize, cut: Cut) {
    // Cut in place: a long service name (`127.0.0.1:afs3-fileserver`) or
    // command is cut on every line it is on.
    if !matches!(cut, Cut::Never) && width_of(&line[start..]) > width {
        match cut {
            Cut::Address => shorten_addr(line, start, width),
            _ => clip(line, start, width),
        }
    }
    pad_column(line, start, width);
}

/// Spaces after the column's text that began at `start`, up to `width` characters.
fn pad_column(line: &mut String, start: usize, width: usize) {
    let used = width_of(&line[start..]);
    push_spaces(line, width.saturating_sub(used));
}

/// `count` spaces, pushed as whole slices rather than char by char.
fn push_spaces(line: &mut String, mut count: usize) {
    const SPACES: &str = "                                ";
    while count > 0 {
        let now = count.min(SPACES.len());
        line.push_str(&SPACES[..now]);
        count -= now;
    }
}

/// Characters in `text`; lines are mostly ASCII, which needs no decoding.
fn width_of(text: &str) -> usize {
    if text.is_ascii() { text.len() } else { text.chars().count() }
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

/// The column that began at `start`, longer than `width` characters, cut to
/// `width` with a `+` for its tail, as `ps` does.
fn clip(line: &mut String, start: usize, width: usize) {
    let keep = line[start..].char_indices().nth(width.saturating_sub(1)).map_or(line.len(), |(at, _)| start + at);
    line.truncate(keep);
    line.push('+');
}

/// An address column longer than `width` characters, cut to it: an IPv6
/// address loses its tail, marked `+`, and keeps its port; an IPv4 one fits
/// unless its port is a long service name, which is clipped.
fn shorten_addr(line: &mut String, start: usize, width: usize) {
    let column = &line[start..];
    match column.rfind("]:") {
        Some(close) if column.len() - close + 3 <= width => {
            // IPv6 only: the copy is fine here.
            let port = column[close..].to_owned();
            line.truncate(start + width - port.len() - 1);
            line.push('+');
            line.push_str(&port);
        }
        _ => clip(line, start, width),
    }
}

/// The service name of each side's port, for the server side only, as `ss`
/// prints it (`127.0.0.1:http`); JSON keeps the number.
fn services(event: &ConnEvent) -> (Option<&str>, Option<&str>) {
    let Some((port, name)) = &event.service else { return (None, None) };
    let local_is_server = match event.direction {
        Direction::Inbound => true,
        Direction::Outbound => false,
        Direction::Unknown => event.local.port() == *port,
    };
    if local_is_server { (Some(name), None) } else { (None, Some(name)) }
}

/// An address and its port, or the port's service name. IPv4, most lines,
/// is written digit by digit: std's Display is a tenth of a line's cost.
fn write_endpoint(out: &mut String, addr: SocketAddr, service: Option<&str>) {
    let mut digits = itoa::Buffer::new();
    match addr {
        SocketAddr::V4(v4) => {
            for (index, octet) in v4.ip().octets().into_iter().enumerate() {
                if index > 0 {
                    out.push('.');
                }
                out.push_str(digits.format(octet));
            }
        }
        SocketAddr::V6(v6) if service.is_none() => {
            let _ = write!(out, "{v6}");
            return;
        }
        SocketAddr::V6(v6) => {
            let _ = write!(out, "[{}]", v6.ip());
        }
    }
    out.push(':');
    out.push_str(service.unwrap_or_else(|| digits.format(addr.port())));
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
