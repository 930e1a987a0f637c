//! Command-line syntax. Doc comments here are the `--help` text; validation
//! lives in config.rs.
use std::net::{Ipv4Addr, SocketAddr};

use clap::{Parser, ValueEnum};

/// Watch every TCP connection on this host, step by step, with eBPF.
///
/// Every network namespace, every step: connect, accept, established (with
/// handshake time), close (who closed it, how, bytes each way) or failed
/// (refused, timeout, unreachable), and on request every state transition,
/// retransmission and reset. Needs root.
#[derive(Debug, Parser)]
#[command(name = "tcptrace", version, max_term_width = 100)]
pub struct Cli {
    /// Output format: aligned columns for people; JSON Lines or logfmt for
    /// machines (the same keys, schema/tcptrace.schema.json).
    #[arg(short = 'o', long, value_enum, default_value_t = OutputArg::Human)]
    pub output: OutputArg,

    /// Event kinds to print, comma-separated. Default: snapshot (connections
    /// already open at start), connect, accept, established, close, failed. Opt-in: state (every transition),
    /// retransmit, reset. `all` for every kind.
    #[arg(short = 'e', long, value_enum, value_delimiter = ',', value_name = "LIST")]
    pub events: Vec<EventArg>,

    /// Do not list the connections already open at start (`snapshot` events,
    /// on by default).
    #[arg(long)]
    pub no_snapshot: bool,

    /// Also print every TCP state transition (SYN_SENT, FIN_WAIT1, CLOSE_WAIT, ...): adds `state` to --events.
    #[arg(long)]
    pub states: bool,

    /// Only connections owned by this process id (repeatable).
    #[arg(short = 'p', long = "pid", value_name = "PID", help_heading = FILTERS)]
    pub pids: Vec<u32>,

    /// Only connections owned by this user, a name or a uid (repeatable).
    #[arg(short = 'u', long = "uid", value_name = "USER", help_heading = FILTERS)]
    pub users: Vec<String>,

    /// Only connections owned by a process of this command name, as the
    /// kernel keeps it: its first 15 bytes (repeatable).
    #[arg(short = 'c', long = "comm", value_name = "NAME", help_heading = FILTERS)]
    pub comms: Vec<String>,

    /// Only connections with this port on either side (repeatable).
    #[arg(short = 'P', long = "port", value_name = "PORT", help_heading = FILTERS)]
    pub ports: Vec<u16>,

    /// Only connections with this local port (repeatable).
    #[arg(short = 'L', long = "lport", value_name = "PORT", help_heading = FILTERS)]
    pub lports: Vec<u16>,

    /// Only connections with this remote port (repeatable).
    #[arg(short = 'D', long = "rport", value_name = "PORT", help_heading = FILTERS)]
    pub rports: Vec<u16>,

    /// Only connections with either address inside this network, IPv4 or
    /// IPv6, e.g. 10.0.0.0/8 or 2001:db8::/32; a bare address is itself
    /// (repeatable).
    #[arg(long = "addr", value_name = "CIDR", value_parser = parse_network, help_heading = FILTERS)]
    pub addrs: Vec<ipnet::IpNet>,

    /// Only IPv4 connections (including IPv4 peers of dual-stack sockets).
    #[arg(short = '4', long = "ipv4", help_heading = FILTERS)]
    pub ipv4: bool,

    /// Only IPv6 connections.
    #[arg(short = '6', long = "ipv6", help_heading = FILTERS)]
    pub ipv6: bool,

    /// Only connections owned by a process in this cgroup (v2) or below it: a
    /// path relative to the cgroup2 mount, as /proc/PID/cgroup shows it
    /// (/system.slice/docker-ID.scope), or absolute (repeatable).
    #[arg(long = "cgroup", value_name = "PATH", help_heading = FILTERS)]
    pub cgroups: Vec<String>,

    /// Only connections in this network namespace: an inode number (as
    /// `ls -Li /proc/PID/ns/net` shows), a name under /run/netns (`ip netns`),
    /// or a path to a namespace file (repeatable).
    #[arg(long = "netns", value_name = "INODE|NAME|PATH", help_heading = FILTERS)]
    pub netns: Vec<String>,

    /// Show everything, unshortened: full event, state and command names,
    /// user names and IPv6 addresses, times to the microsecond, every fact
    /// of a close, and the owner's container or cgroup, executable and a
    /// short connection id. Without it, lines fit 120 characters with any
    /// IPv4 address.
    #[arg(short = 'w', long)]
    pub wide: bool,

    /// Time each event with the date and time, in UTC
    /// (2026-12-01 10:22:18.123), instead of the time of day alone.
    #[arg(short = 'T', long, conflicts_with = "time_since_start", help_heading = TIME)]
    pub timestamp: bool,

    /// Time each event in seconds since tracing started (12.345).
    #[arg(short = 't', long, help_heading = TIME)]
    pub time_since_start: bool,

    /// Say nothing on stderr at start (hooks, privileges, ready) or at exit
    /// (the summary). Losses, warnings and errors still go to stderr.
    #[arg(short = 'q', long)]
    pub quiet: bool,

    /// Size of the kernel's event buffer in MiB, a power of two. A bigger one
    /// rides out longer bursts without losses; it is mapped into tcptrace
    /// twice, so resident memory grows by twice its size.
    #[arg(long, value_name = "MIB", default_value_t = 4, value_parser = parse_ring_mib)]
    pub ring_buffer: u32,

    /// Scheduling priority to raise tcptrace to, as a nice value (-20 to 19),
    /// so that it drains the kernel's buffer in time when many busy processes
    /// share the CPUs. It never lowers the priority it was started with;
    /// without CAP_SYS_NICE it says so and keeps it.
    #[arg(long, value_name = "N", default_value_t = -10, allow_negative_numbers = true, value_parser = parse_nice)]
    pub nice: i32,

    /// Most TCP sockets tracked at once (both ends of a loopback connection
    /// are two). The kernel takes ~250 bytes per socket as it is seen and
    /// gives it back when the socket is freed; past this many, new
    /// connections go untracked and the count is reported.
    #[arg(long, value_name = "N", default_value_t = 1 << 20, value_parser = parse_max_sockets)]
    pub max_sockets: u32,

    /// Exit after printing N events.
    #[arg(short = 'n', long = "count", value_name = "N")]
    pub count: Option<u64>,

    /// How to hook the kernel. auto tries fentry, then kprobe, then
    /// tracepoints (BTF tracepoints before classic ones); the others use that
    /// method wherever a hook offers it (tracepoints elsewhere), and fentry
    /// and kprobe fail if they cannot attach.
    #[arg(long, value_enum, default_value_t = AttachArg::Auto)]
    pub attach: AttachArg,

    /// After attaching, run as this user (a name or uid), with its group and
    /// no supplementary groups. Every capability is dropped after attaching
    /// either way; this also gives up uid 0.
    #[arg(long = "user", value_name = "NAME")]
    pub user: Option<String>,

    /// Serve Prometheus metrics at http://ADDR/metrics: events by kind,
    /// connections, failures, resets, retransmits, losses, handshake and
    /// lifetime histograms. ADDR is IP:PORT, or a bare PORT for
    /// 127.0.0.1:PORT; name another address (0.0.0.0:9100, [::]:9100) to be
    /// reachable beyond this host.
    #[arg(long, value_name = "ADDR", value_parser = parse_metrics_addr)]
    pub metrics: Option<SocketAddr>,
}

const FILTERS: &str = "Filters (in the kernel; AND across kinds, OR within one)";
const TIME: &str = "Time column (human output; default: time of day in UTC, 10:22:18.123)";

/// 1 to 1024 MiB, a power of two (the kernel's rule for ring buffers).
fn parse_ring_mib(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(mib) if (1..=1024).contains(&mib) && mib.is_power_of_two() => Ok(mib),
        _ => Err("a power of two from 1 to 1024".to_owned()),
    }
}

fn parse_nice(text: &str) -> Result<i32, String> {
    match text.parse::<i32>() {
        Ok(nice) if (-20..=19).contains(&nice) => Ok(nice),
        _ => Err("a nice value from -20 to 19".to_owned()),
    }
}

fn parse_max_sockets(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(count) if (1024..=1 << 26).contains(&count) => Ok(count),
        _ => Err("a number of sockets from 1024 to 67108864".to_owned()),
    }
}

/// IP:PORT, or a bare port on loopback.
fn parse_metrics_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse::<u16>()
        .map(|port| SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .or_else(|_| text.parse::<SocketAddr>())
        .map_err(|_| "not IP:PORT or a port (e.g. 9100, 127.0.0.1:9100, [::1]:9100, 0.0.0.0:9100)".to_owned())
}

/// A CIDR network, or a bare address as a network of one.
fn parse_network(text: &str) -> Result<ipnet::IpNet, String> {
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| "not an address or CIDR network (e.g. 10.0.0.0/8, 2001:db8::/32, 127.0.0.1)".to_owned())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputArg {
    Human,
    Json,
    Logfmt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EventArg {
    Connect,
    Accept,
    Established,
    Close,
    Failed,
    State,
    Retransmit,
    Reset,
    Snapshot,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AttachArg {
    Auto,
    Fentry,
    Kprobe,
    /// BTF tracepoints where a hook has them, classic tracepoints elsewhere.
    #[value(name = "tp_btf")]
    TpBtf,
    /// Classic tracepoints only: what every kernel has.
    Tracepoint,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn metrics_addresses() {
        let addr = |text| parse_metrics_addr(text).map(|addr| addr.to_string());
        assert_eq!(addr("9100").as_deref(), Ok("127.0.0.1:9100"));
        assert_eq!(addr("0.0.0.0:9100").as_deref(), Ok("0.0.0.0:9100"));
        assert_eq!(addr("[::1]:9100").as_deref(), Ok("[::1]:9100"));
        for bad in ["", ":9100", "localhost:9100", "70000", "127.0.0.1", "::1:9100"] {
            assert!(parse_metrics_addr(bad).is_err(), "{bad:?}");
        }
    }
}
