//! Validated settings, free of clap types.
use std::{net::SocketAddr, num::NonZeroU64};

use crate::{
    cli::{AttachArg, Cli, EventArg, OutputArg},
    events::EventKind,
    filters::{Filters, MAX_FILTER_ENTRIES},
    privileges::RunAs,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub format: OutputFormat,
    pub events: EventSet,
    pub filters: Filters,
    /// Human output shows everything, unshortened, with identity and connection ids.
    pub wide: bool,
    /// How human output times events.
    pub time: TimeFormat,
    /// No start-up report or closing summary on stderr.
    pub quiet: bool,
    /// The kernel's event buffer, bytes.
    pub ring_buffer_bytes: u32,
    /// The nice value to raise the process to (priority.rs).
    pub nice: i32,
    /// Ceiling of the kernel's per-socket map (`--max-sockets`).
    pub max_sockets: u32,
    pub count: Option<NonZeroU64>,
    pub attach: Attach,
    /// Whom to become after attaching (--user).
    pub user: Option<RunAs>,
    /// Where to serve Prometheus metrics.
    pub metrics: Option<SocketAddr>,
}

impl Config {
    /// The kinds the kernel sends: those printed, and with --metrics every
    /// kind the metrics count (all but `state`, which stays opt-in).
    pub fn traced_events(&self) -> EventSet {
        match self.metrics {
            Some(_) => EventKind::ALL
                .iter()
                .filter(|&&kind| kind != EventKind::State)
                .fold(self.events, |set, &kind| set.with(kind)),
            None => self.events,
        }
    }
}

/// The event kinds the user wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventSet(u32);

impl EventSet {
    pub const DEFAULT: &[EventKind] = &[
        EventKind::Snapshot,
        EventKind::Connect,
        EventKind::Accept,
        EventKind::Established,
        EventKind::Close,
        EventKind::Failed,
    ];

    pub fn of(kinds: &[EventKind]) -> Self {
        Self(kinds.iter().fold(0, |mask, kind| mask | 1 << kind.code()))
    }

    pub fn contains(self, kind: EventKind) -> bool {
        self.0 & 1 << kind.code() != 0
    }

    pub fn with(self, kind: EventKind) -> Self {
        Self(self.0 | 1 << kind.code())
    }

    pub fn without(self, kind: EventKind) -> Self {
        Self(self.0 & !(1 << kind.code()))
    }

    /// Bit `1 << kind` per wanted kind, as the kernel side reads it.
    pub fn mask(self) -> u32 {
        self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Human,
    Json,
    Logfmt,
}

/// The human output's time column, to the millisecond (microsecond with
/// --wide); JSON and logfmt always carry RFC 3339 UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeFormat {
    /// `10:22:18.123`, UTC.
    TimeOfDay,
    /// `2026-12-01 10:22:18.123`, UTC (-T).
    DateTime,
    /// `12.345`, seconds since tracing started (-t).
    SinceStart,
}

/// Which attach method the kernel-function hooks use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// The best that works: fentry, then kprobe, then tracepoints.
    Auto,
    /// Only this method where a hook offers it (tracepoints elsewhere).
    Only(Method),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Fentry,
    Kprobe,
    /// Raw tracepoints with BTF arguments.
    TpBtf,
    /// Classic tracepoints.
    Tracepoint,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Self::Fentry => "fentry",
            Self::Kprobe => "kprobe",
            Self::TpBtf => "tp_btf",
            Self::Tracepoint => "tracepoint",
        }
    }

    /// fentry/fexit or kprobe/kretprobe: a probe on a kernel function.
    pub fn is_function_probe(self) -> bool {
        matches!(self, Self::Fentry | Self::Kprobe)
    }

    /// Its programs get typed kernel pointers (BTF), which helpers such as
    /// the socket cookie's accept.
    pub fn is_typed(self) -> bool {
        matches!(self, Self::Fentry | Self::TpBtf)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("--pid 0 matches no process: pids start at 1")]
    ZeroPid,
    #[error("{flag} 0 matches no connection: ports start at 1")]
    ZeroPort { flag: &'static str },
    #[error("--count 0 would print nothing: give a count of at least 1")]
    ZeroCount,
    #[error("too many {what} filters: at most {MAX_FILTER_ENTRIES}")]
    TooMany { what: &'static str },
    #[error("--uid {0}: no such user")]
    UnknownUser(String),
    #[error("--user {0}: no such user")]
    UnknownRunAs(String),
    #[error("--comm {0:?}: a command name is 1 to 15 bytes, without NUL")]
    BadComm(String),
    #[error("--cgroup: this host has no cgroup v2 hierarchy mounted")]
    NoCgroup2,
    #[error("--cgroup {path}: no such cgroup ({reason})")]
    UnknownCgroup { path: String, reason: String },
    #[error("--netns {spec}: no such network namespace ({}: {reason})", path.display())]
    UnknownNetns { spec: String, path: std::path::PathBuf, reason: String },
    #[error("{flag} sets the human output's time column: JSON and logfmt always carry `ts` in RFC 3339 UTC")]
    TimeNeedsHuman { flag: &'static str },
}

impl TryFrom<Cli> for Config {
    type Error = ConfigError;

    fn try_from(cli: Cli) -> Result<Self, Self::Error> {
        let user = cli.user.as_deref().map(run_as).transpose()?;
        let filters = Filters::from_cli(&cli)?;
        let count = match cli.count {
            Some(n) => Some(NonZeroU64::new(n).ok_or(ConfigError::ZeroCount)?),
            None => None,
        };
        let format = match cli.output {
            OutputArg::Human => OutputFormat::Human,
            OutputArg::Json => OutputFormat::Json,
            OutputArg::Logfmt => OutputFormat::Logfmt,
        };
        let time = match (cli.timestamp, cli.time_since_start) {
            (true, _) => TimeFormat::DateTime,
            (false, true) => TimeFormat::SinceStart,
            (false, false) => TimeFormat::TimeOfDay,
        };
        if format != OutputFormat::Human && time != TimeFormat::TimeOfDay {
            let flag = if cli.timestamp { "--timestamp" } else { "--time-since-start" };
            return Err(ConfigError::TimeNeedsHuman { flag });
        }
        let attach = match cli.attach {
            AttachArg::Auto => Attach::Auto,
            AttachArg::Fentry => Attach::Only(Method::Fentry),
            AttachArg::Kprobe => Attach::Only(Method::Kprobe),
            AttachArg::TpBtf => Attach::Only(Method::TpBtf),
            AttachArg::Tracepoint => Attach::Only(Method::Tracepoint),
        };
        let mut events = if cli.events.is_empty() { EventSet::of(EventSet::DEFAULT) } else { EventSet::of(&[]) };
        for arg in cli.events {
            events = match arg {
                EventArg::All => EventSet::of(EventKind::ALL),
                EventArg::Connect => events.with(EventKind::Connect),
                EventArg::Accept => events.with(EventKind::Accept),
                EventArg::Established => events.with(EventKind::Established),
                EventArg::Close => events.with(EventKind::Close),
                EventArg::Failed => events.with(EventKind::Failed),
                EventArg::State => events.with(EventKind::State),
                EventArg::Retransmit => events.with(EventKind::Retransmit),
                EventArg::Reset => events.with(EventKind::Reset),
                EventArg::Snapshot => events.with(EventKind::Snapshot),
            };
        }
        if cli.states {
            events = events.with(EventKind::State);
        }
        if cli.no_snapshot {
            events = events.without(EventKind::Snapshot);
        }
        Ok(Self {
            format,
            events,
            filters,
            wide: cli.wide,
            time,
            quiet: cli.quiet,
            ring_buffer_bytes: cli.ring_buffer << 20,
            nice: cli.nice,
            max_sockets: cli.max_sockets,
            count,
            attach,
            user,
            metrics: cli.metrics,
        })
    }
}

/// A user from the user database, by name or uid.
fn run_as(user: &str) -> Result<RunAs, ConfigError> {
    let found = uzers::get_user_by_name(user).or_else(|| user.parse().ok().and_then(uzers::get_user_by_uid));
    let found = found.ok_or_else(|| ConfigError::UnknownRunAs(user.to_owned()))?;
    Ok(RunAs { name: found.name().to_string_lossy().into_owned(), uid: found.uid(), gid: found.primary_group_id() })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        let cli = Cli::try_parse_from(std::iter::once("tcptrace").chain(args.iter().copied())).expect("clap accepts");
        Config::try_from(cli)
    }

    #[test]
    fn accepts_repeated_filters() {
        let config =
            parse(&["-p", "10", "--pid", "11", "-P", "80", "-o", "json", "--states", "-n", "5"]).expect("valid");
        assert_eq!(config.filters.pids, [10, 11]);
        assert_eq!(config.filters.ports, [80]);
        assert_eq!(config.format, OutputFormat::Json);
        assert!(config.events.contains(EventKind::State) && config.events.contains(EventKind::Close));
        assert_eq!(config.count.map(NonZeroU64::get), Some(5));
    }

    #[test]
    fn event_lists() {
        let default = parse(&[]).expect("valid").events;
        assert!(EventSet::DEFAULT.iter().all(|&kind| default.contains(kind)));
        assert!(!default.contains(EventKind::State) && !default.contains(EventKind::Reset));
        let chosen = parse(&["--events", "reset,retransmit"]).expect("valid").events;
        assert_eq!(chosen, EventSet::of(&[EventKind::Reset, EventKind::Retransmit]));
        let all = parse(&["-e", "all"]).expect("valid").events;
        assert!(EventKind::ALL.iter().all(|&kind| all.contains(kind)));
        assert!(Cli::try_parse_from(["tcptrace", "--events", "connect,bogus"]).is_err());
    }

    #[test]
    fn user_by_name_or_uid() {
        let root = RunAs { name: "root".into(), uid: 0, gid: 0 };
        assert_eq!(parse(&["--user", "root"]).expect("valid").user, Some(root.clone()));
        assert_eq!(parse(&["--user", "0"]).expect("valid").user, Some(root));
        assert_eq!(parse(&[]).expect("valid").user, None);
        assert_eq!(parse(&["--user", "no-such-user-x"]), Err(ConfigError::UnknownRunAs("no-such-user-x".into())));
    }

    #[test]
    fn metrics_trace_every_kind_but_states() {
        let plain = parse(&["-e", "close"]).expect("valid");
        assert_eq!(plain.traced_events(), EventSet::of(&[EventKind::Close]));
        let metered = parse(&["-e", "close", "--metrics", "9100"]).expect("valid");
        assert_eq!(metered.events, EventSet::of(&[EventKind::Close]), "printing stays as asked");
        let traced = metered.traced_events();
        assert!(EventKind::ALL.iter().all(|&kind| traced.contains(kind) == (kind != EventKind::State)));
        assert!(
            parse(&["-e", "state", "--metrics", "9100"]).expect("valid").traced_events().contains(EventKind::State)
        );
    }

    #[test]
    fn time_columns_are_for_people() {
        assert_eq!(parse(&[]).expect("valid").time, TimeFormat::TimeOfDay);
        assert_eq!(parse(&["-T"]).expect("valid").time, TimeFormat::DateTime);
        assert_eq!(parse(&["--time-since-start"]).expect("valid").time, TimeFormat::SinceStart);
        assert_eq!(parse(&["-o", "json", "-T"]), Err(ConfigError::TimeNeedsHuman { flag: "--timestamp" }));
        assert_eq!(parse(&["-o", "logfmt", "-t"]), Err(ConfigError::TimeNeedsHuman { flag: "--time-since-start" }));
        assert!(Cli::try_parse_from(["tcptrace", "-t", "-T"]).is_err(), "one time column at a time");
        assert!(parse(&["-q", "-o", "json"]).expect("valid").quiet);
    }

    #[test]
    fn rejects_zeroes() {
        assert_eq!(parse(&["-p", "0"]), Err(ConfigError::ZeroPid));
        assert_eq!(parse(&["-P", "0"]), Err(ConfigError::ZeroPort { flag: "--port" }));
        assert_eq!(parse(&["-n", "0"]), Err(ConfigError::ZeroCount));
    }
}
