//! How a connection ended, told from the facts the kernel side records: which
//! end started the teardown, whether RSTs went either way, the socket's error
//! and the state it left for CLOSE.
use std::{fmt, time::Duration};

use tcptrace_common::{flags, side, tcp_state};

/// One end of the connection, from this host's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Local,
    Remote,
}

impl Side {
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            side::LOCAL => Some(Self::Local),
            side::REMOTE => Some(Self::Remote),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Remote => "remote",
        }
    }
}

/// How an established connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseKind {
    /// The FIN/ACK exchange.
    Fin,
    /// This host aborted it with a RST (SO_LINGER 0, unread data, a process killed).
    RstSent,
    /// The peer's RST.
    RstReceived,
    /// Retransmissions went unanswered until the kernel gave up.
    Timeout,
}

impl CloseKind {
    /// `old_state`: the state the connection left for CLOSE.
    pub fn from_facts(event_flags: u8, error: u32, old_state: u8) -> Self {
        // A direct jump to CLOSE from these states is an abort: the kernel
        // changes the state first and sends its RST right after.
        let aborted_from = matches!(
            old_state,
            tcp_state::ESTABLISHED | tcp_state::CLOSE_WAIT | tcp_state::FIN_WAIT1 | tcp_state::SYN_RECV
        );
        if event_flags & flags::RST_RECEIVED != 0 {
            Self::RstReceived
        } else if error == libc::ETIMEDOUT as u32 {
            Self::Timeout
        } else if event_flags & flags::RST_SENT != 0 || aborted_from {
            Self::RstSent
        } else {
            Self::Fin
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Fin => "fin",
            Self::RstSent => "rst_sent",
            Self::RstReceived => "rst_received",
            Self::Timeout => "timeout",
        }
    }
}

/// Why a connection never reached ESTABLISHED.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// A RST answered our SYN.
    Refused,
    /// Our SYNs went unanswered until the retries ran out.
    Timeout,
    /// An ICMP error: no route, host or network unreachable.
    Unreachable,
    /// Given up without a network error: a passive handshake that never
    /// completed, or the process closed the socket while connecting.
    Aborted,
    /// Any other socket error (see `errno`).
    Error,
}

impl FailReason {
    pub fn from_facts(inbound: bool, error: u32) -> Self {
        if inbound {
            return Self::Aborted;
        }
        match error as i32 {
            libc::ECONNREFUSED => Self::Refused,
            libc::ETIMEDOUT => Self::Timeout,
            libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EHOSTDOWN | libc::ENONET | libc::ENETDOWN => {
                Self::Unreachable
            }
            0 | libc::ECONNRESET | libc::ECONNABORTED => Self::Aborted,
            _ => Self::Error,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Refused => "refused",
            Self::Timeout => "timeout",
            Self::Unreachable => "unreachable",
            Self::Aborted => "aborted",
            Self::Error => "error",
        }
    }
}

/// A positive errno value, printed by its symbolic name when it has a usual one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub u32);

impl Errno {
    /// None for 0: no error.
    pub fn new(value: u32) -> Option<Self> {
        (value != 0).then_some(Self(value))
    }

    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 as i32 {
            libc::EPERM => "EPERM",
            libc::EPIPE => "EPIPE",
            libc::ENOMEM => "ENOMEM",
            libc::EINVAL => "EINVAL",
            libc::ENONET => "ENONET",
            libc::EPROTO => "EPROTO",
            libc::EADDRINUSE => "EADDRINUSE",
            libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
            libc::ENETDOWN => "ENETDOWN",
            libc::ENETUNREACH => "ENETUNREACH",
            libc::ENETRESET => "ENETRESET",
            libc::ECONNABORTED => "ECONNABORTED",
            libc::ECONNRESET => "ECONNRESET",
            libc::ENOBUFS => "ENOBUFS",
            libc::ETIMEDOUT => "ETIMEDOUT",
            libc::ECONNREFUSED => "ECONNREFUSED",
            libc::EHOSTDOWN => "EHOSTDOWN",
            libc::EHOSTUNREACH => "EHOSTUNREACH",
            _ => return None,
        })
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "errno {}", self.0),
        }
    }
}

/// What a `close` event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseFacts {
    /// Which end sent the first FIN or RST (None: not seen).
    pub closed_by: Option<Side>,
    pub kind: CloseKind,
    pub error: Option<Errno>,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub segs_out: u32,
    pub segs_in: u32,
    pub retransmits: u32,
    pub srtt: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_kinds() {
        use tcp_state::*;
        let etimedout = libc::ETIMEDOUT as u32;
        assert_eq!(CloseKind::from_facts(0, 0, LAST_ACK), CloseKind::Fin);
        assert_eq!(CloseKind::from_facts(0, 0, FIN_WAIT2), CloseKind::Fin);
        assert_eq!(CloseKind::from_facts(0, 0, ESTABLISHED), CloseKind::RstSent);
        assert_eq!(CloseKind::from_facts(flags::RST_SENT, 0, LAST_ACK), CloseKind::RstSent);
        assert_eq!(CloseKind::from_facts(flags::RST_RECEIVED, 104, ESTABLISHED), CloseKind::RstReceived);
        assert_eq!(CloseKind::from_facts(0, etimedout, ESTABLISHED), CloseKind::Timeout);
    }

    #[test]
    fn fail_reasons() {
        assert_eq!(FailReason::from_facts(false, libc::ECONNREFUSED as u32), FailReason::Refused);
        assert_eq!(FailReason::from_facts(false, libc::ETIMEDOUT as u32), FailReason::Timeout);
        assert_eq!(FailReason::from_facts(false, libc::EHOSTUNREACH as u32), FailReason::Unreachable);
        assert_eq!(FailReason::from_facts(false, 0), FailReason::Aborted);
        assert_eq!(FailReason::from_facts(false, libc::EACCES as u32), FailReason::Error);
        assert_eq!(FailReason::from_facts(true, libc::ECONNRESET as u32), FailReason::Aborted);
    }

    #[test]
    fn errno_names() {
        assert_eq!(Errno::new(0), None);
        assert_eq!(Errno::new(111).map(|e| e.to_string()).as_deref(), Some("ECONNREFUSED"));
        assert_eq!(Errno(4095).to_string(), "errno 4095");
    }
}
