//! Command-line syntax. Doc comments here are the `--help` text; validation
//! lives in config.rs.
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
    /// Output format: aligned columns for people, or JSON Lines for machines.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputArg::Human)]
    pub output: OutputArg,

    /// Event kinds to print, comma-separated. Default: connect, accept,
    /// established, close, failed. Opt-in: state (every transition),
    /// retransmit, reset. `all` for every kind.
    #[arg(short = 'e', long, value_enum, value_delimiter = ',', value_name = "LIST")]
    pub events: Vec<EventArg>,

    /// Also print every TCP state transition (SYN_SENT, FIN_WAIT1, CLOSE_WAIT, ...): adds `state` to --events.
    #[arg(long)]
    pub states: bool,

    /// Only connections owned by this process id (repeatable).
    #[arg(short = 'p', long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,

    /// Only connections with this port on either side (repeatable).
    #[arg(short = 'P', long = "port", value_name = "PORT")]
    pub ports: Vec<u16>,

    /// Exit after printing N events.
    #[arg(short = 'n', long = "count", value_name = "N")]
    pub count: Option<u64>,

    /// How to hook the kernel functions that tie sockets to processes. auto
    /// tries fentry, then kprobe, then tracepoints only; the others use that
    /// method wherever a hook offers it, and fail if it cannot attach.
    #[arg(long, value_enum, default_value_t = AttachArg::Auto)]
    pub attach: AttachArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputArg {
    Human,
    Json,
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
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AttachArg {
    Auto,
    Fentry,
    Kprobe,
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
}
