//! The words events are told in: kinds, TCP states, directions, owners.
use std::fmt;

use tcptrace_common::{COMM_LEN, kind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Connect,
    Accept,
    Established,
    Close,
    Failed,
    State,
    Retransmit,
    Reset,
    /// Already open when tracing started (listed at start, not by the kernel).
    Snapshot,
}

impl EventKind {
    pub const ALL: &[EventKind] = &[
        Self::Connect,
        Self::Accept,
        Self::Established,
        Self::Close,
        Self::Failed,
        Self::State,
        Self::Retransmit,
        Self::Reset,
        Self::Snapshot,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Accept => "accept",
            Self::Established => "established",
            Self::Close => "close",
            Self::Failed => "failed",
            Self::State => "state",
            Self::Retransmit => "retransmit",
            Self::Reset => "reset",
            Self::Snapshot => "snapshot",
        }
    }

    /// The kernel side's number for this kind (`tcptrace_common::kind`).
    pub fn code(self) -> u8 {
        match self {
            Self::Connect => kind::CONNECT,
            Self::Accept => kind::ACCEPT,
            Self::Established => kind::ESTABLISHED,
            Self::Close => kind::CLOSE,
            Self::Failed => kind::FAILED,
            Self::State => kind::STATE,
            Self::Retransmit => kind::RETRANSMIT,
            Self::Reset => kind::RESET,
            Self::Snapshot => kind::SNAPSHOT,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.iter().copied().find(|kind| kind.code() == code)
    }
}

/// Why events never reached the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossReason {
    /// The kernel's ring buffer was full: the kernel side dropped them.
    RingBufferFull,
    /// Stdout's reader did not keep up and tcptrace's output backlog was full.
    OutputStalled,
}

impl LossReason {
    pub const ALL: [Self; 2] = [Self::RingBufferFull, Self::OutputStalled];

    /// The JSON `reason` of a `lost` record.
    pub fn name(self) -> &'static str {
        match self {
            Self::RingBufferFull => "ring_buffer_full",
            Self::OutputStalled => "output_stalled",
        }
    }

    /// In words, for stderr.
    pub fn words(self) -> &'static str {
        match self {
            Self::RingBufferFull => "ring buffer full",
            Self::OutputStalled => "output stalled",
        }
    }
}

/// A kernel TCP state (include/net/tcp_states.h), named as the kernel names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpState(pub u8);

impl TcpState {
    pub fn name(self) -> &'static str {
        match self.0 {
            1 => "ESTABLISHED",
            2 => "SYN_SENT",
            3 => "SYN_RECV",
            4 => "FIN_WAIT1",
            5 => "FIN_WAIT2",
            6 => "TIME_WAIT",
            7 => "CLOSE",
            8 => "CLOSE_WAIT",
            9 => "LAST_ACK",
            10 => "LISTEN",
            11 => "CLOSING",
            12 => "NEW_SYN_RECV",
            13 => "BOUND_INACTIVE",
            _ => "UNKNOWN",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Unknown,
    Outbound,
    Inbound,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Outbound => "outbound",
            Self::Inbound => "inbound",
        }
    }
}

/// A task's command name, kept inline: no allocation per event.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Comm(pub [u8; COMM_LEN]);

impl Comm {
    pub fn new(name: &str) -> Self {
        let mut bytes = [0; COMM_LEN];
        let len = name.len().min(COMM_LEN - 1);
        bytes[..len].copy_from_slice(&name.as_bytes()[..len]);
        Self(bytes)
    }

    pub fn as_str(&self) -> std::borrow::Cow<'_, str> {
        let len = self.0.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
        let bytes = &self.0[..len];
        // The common case, valid UTF-8, without from_utf8_lossy's chunking.
        std::str::from_utf8(bytes).map_or_else(|_| String::from_utf8_lossy(bytes), std::borrow::Cow::Borrowed)
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// The process that owns a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// cgroup v2 id (0: unknown); the session resolves it into `Identity`.
    pub cgroup_id: u64,
    pub pid: u32,
    pub uid: u32,
    pub comm: Comm,
}

/// As the kernel side and the start-up walks record an owner.
impl From<&tcptrace_common::Owner> for Owner {
    fn from(owner: &tcptrace_common::Owner) -> Self {
        Self { cgroup_id: owner.cgroup_id, pid: owner.tgid, uid: owner.uid, comm: Comm(owner.comm) }
    }
}
