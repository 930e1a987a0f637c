//! Event writers, one file per format, behind one trait so tests pass a Vec<u8>.
use std::{io, time::SystemTime};

pub use crate::model::LossReason;
use crate::{
    config::{OutputFormat, TimeFormat},
    events::ConnEvent,
    session::Summary,
};

mod calendar;
mod human;
mod json;
mod logfmt;
pub mod records;
pub mod sink;

pub use human::{HumanWriter, LINE_WIDTH};
pub use json::JsonWriter;
pub use logfmt::LogfmtWriter;

/// Writes a run's records in one format. Callers flush once per drained batch.
pub trait EventWriter {
    /// Before the first event: the column header, or a `start` record.
    fn start(&mut self, run: &RunInfo) -> io::Result<()>;
    fn event(&mut self, event: &ConnEvent) -> io::Result<()>;
    /// `count` events were lost for `reason` since the last report of that
    /// reason, `total` since start.
    fn lost(&mut self, time: SystemTime, reason: LossReason, count: u64, total: u64) -> io::Result<()>;
    /// After the last event: a `stop` record with the run's totals.
    fn stop(&mut self, time: SystemTime, totals: &Summary) -> io::Result<()>;
    fn flush(&mut self) -> io::Result<()>;
}

/// What a run is, for the `start` record.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// When tracing began: once the hooks were attached (`-t` counts from it).
    pub started: SystemTime,
    pub host: String,
    /// /proc/sys/kernel/random/boot_id: tells reboots of one host apart.
    pub boot_id: String,
    pub version: &'static str,
    /// The running kernel's release (uname -r).
    pub kernel: String,
    /// Each hook's purpose and the method that serves it (None: not attached).
    pub hooks: Vec<(String, Option<String>)>,
}

impl RunInfo {
    /// This host; tracing began at `started` (once attached).
    pub fn here(started: SystemTime, hooks: Vec<(String, Option<String>)>) -> Self {
        let read = |path: &str| std::fs::read_to_string(path).map(|s| s.trim().to_owned()).unwrap_or_default();
        Self {
            started,
            host: read("/proc/sys/kernel/hostname"),
            boot_id: read("/proc/sys/kernel/random/boot_id"),
            version: env!("CARGO_PKG_VERSION"),
            kernel: read("/proc/sys/kernel/osrelease"),
            hooks,
        }
    }
}

/// How the human columns look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    /// tcptrace's own network namespace, which human output leaves unsaid.
    pub own_netns: u32,
    /// Everything, unshortened, with the owner's identity and connection ids.
    pub wide: bool,
    pub time: TimeFormat,
}

/// A writer of `format`; `view` matters to human output only.
pub fn writer<'w, W: io::Write + 'w>(format: OutputFormat, out: W, view: View) -> Box<dyn EventWriter + 'w> {
    match format {
        OutputFormat::Human => Box::new(HumanWriter::new(out, view)),
        OutputFormat::Json => Box::new(JsonWriter::new(out)),
        OutputFormat::Logfmt => Box::new(LogfmtWriter::new(out)),
    }
}

#[cfg(test)]
pub(crate) mod samples {
    use std::time::{Duration, SystemTime};

    use tcptrace_common::tcp_state;

    use super::RunInfo;
    use crate::{
        events::{Comm, ConnEvent, Detail, Direction, EventKind, Owner, TcpState},
        identity::Identity,
        lifecycle::{CloseFacts, CloseKind, Errno, FailReason, Side},
    };

    /// The namespace tcptrace runs in; the samples' other one is 4026532999.
    pub const OWN_NETNS: u32 = 4026531840;
    /// When the sample story's tracing started: 2.5 s before its first event.
    pub fn started() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::new(1_763_999_997, 623_456_789)
    }

    /// A run as the `start` record tells it.
    pub fn run() -> RunInfo {
        run_at(SystemTime::UNIX_EPOCH)
    }

    pub fn run_at(started: SystemTime) -> RunInfo {
        RunInfo {
            started,
            host: "web-1".into(),
            boot_id: "0f6b3c2e-1d2a-4b5c-8d9e-0a1b2c3d4e5f".into(),
            version: "0.1.0",
            kernel: "6.18.0".into(),
            hooks: vec![
                ("state changes".into(), Some("tracepoint sock:inet_sock_set_state".into())),
                ("close owner".into(), None),
            ],
        }
    }

    const CONTAINER: &str = "3f4b1c9e8d7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c";

    /// The story of a loopback connection as the kernel side reports it, plus
    /// one of every other kind.
    pub fn story() -> Vec<ConnEvent> {
        // As on Debian, whose /etc/services names port 8000.
        let services = crate::services::Services::parse("irdmi 8000/tcp");
        let mut events = story_without_services();
        for event in &mut events {
            event.service = services.of(event);
        }
        events
    }

    fn story_without_services() -> Vec<ConnEvent> {
        let base = SystemTime::UNIX_EPOCH + Duration::new(1_764_000_000, 123_456_789);
        let client = Some(Owner { cgroup_id: 7, pid: 4242, uid: 1000, comm: Comm::new("curl") });
        let server = Some(Owner { cgroup_id: 9, pid: 777, uid: 0, comm: Comm::new("python3") });
        let identity = |owner: Option<Owner>| match owner.map(|o| o.pid) {
            Some(4242) => Identity {
                user: Some("alice".into()),
                cgroup: Some("/user.slice/user-1000.slice/session-2.scope".into()),
                container_id: None,
                exe: Some("/usr/bin/curl".into()),
            },
            Some(_) => Identity {
                user: Some("root".into()),
                cgroup: Some(format!("/system.slice/docker-{CONTAINER}.scope").into()),
                container_id: Some(CONTAINER.into()),
                exe: Some("/usr/bin/python3.11".into()),
            },
            None => Identity::default(),
        };
        let (c, s) = ("127.0.0.1:45678", "127.0.0.1:8000");
        let event = |ms: u64, kind, owner, local: &str, remote: &str, state, direction, age_us: Option<u64>, detail| {
            ConnEvent {
                time: base + Duration::from_millis(ms),
                kind,
                owner,
                local: local.parse().expect("addr"),
                remote: remote.parse().expect("addr"),
                netns: Some(4026531840),
                conn_id: if local == s { 0x1111 } else { 0x2222 },
                state: TcpState(state),
                direction,
                age: age_us.map(Duration::from_micros),
                detail,
                identity: identity(owner).into(),
                service: None,
            }
        };
        let close = |closed_by, kind, bytes_sent, bytes_received| {
            Detail::Close(CloseFacts {
                closed_by: Some(closed_by),
                kind,
                error: None,
                bytes_sent,
                bytes_received,
                segs_out: 6,
                segs_in: 5,
                retransmits: 0,
                srtt: Duration::from_micros(30),
            })
        };
        let out = Direction::Outbound;
        let inb = Direction::Inbound;
        let handshake = |us| Detail::Established { handshake: Some(Duration::from_micros(us)) };
        vec![
            event(0, EventKind::Connect, client, c, s, 2, out, Some(0), Detail::None),
            event(0, EventKind::Established, server, s, c, 1, inb, Some(40), handshake(22)),
            event(0, EventKind::Established, client, c, s, 1, out, Some(61), handshake(61)),
            event(1, EventKind::Accept, server, s, c, 1, inb, Some(700), Detail::None),
            event(3, EventKind::State, client, c, s, 4, out, Some(3000), Detail::State { old: TcpState(1) }),
            event(
                3,
                EventKind::Close,
                server,
                s,
                c,
                7,
                inb,
                Some(3050),
                close(Side::Remote, CloseKind::Fin, 1000, 100),
            ),
            event(3, EventKind::Close, client, c, s, 7, out, Some(3120), close(Side::Local, CloseKind::Fin, 100, 1000)),
            event(
                5,
                EventKind::Failed,
                client,
                "127.0.0.1:45680",
                "127.0.0.1:9",
                7,
                out,
                Some(80),
                Detail::Failed { reason: FailReason::Refused, error: Errno::new(111) },
            ),
            event(6, EventKind::Retransmit, client, c, s, 1, out, Some(9000), Detail::Retransmit),
            event(7, EventKind::Reset, None, "127.0.0.1:40000", s, 0, Direction::Unknown, None, {
                Detail::Reset { sent: true, reason: Some("NO_SOCKET".into()) }
            }),
            event(8, EventKind::Close, None, "[::1]:22", "[::1]:51000", 7, Direction::Unknown, None, {
                close(Side::Remote, CloseKind::RstReceived, 5000, 300)
            }),
            // Open before tracing started (listed at start): its age is unknown.
            event(9, EventKind::Snapshot, server, s, "127.0.0.1:45600", 1, inb, None, Detail::None),
        ]
    }

    const POD: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// The story, then the hard cases: what every snapshot prints.
    pub fn all() -> Vec<ConnEvent> {
        story().into_iter().chain(hard_cases()).collect()
    }

    /// Every kind at its widest with IPv4 (the longest addresses, pid, user
    /// and command name, and details), then long IPv6 addresses in another
    /// namespace, and an owner whose uid has no name, in that namespace too.
    pub fn hard_cases() -> Vec<ConnEvent> {
        let base = SystemTime::UNIX_EPOCH + Duration::new(1_764_000_001, 0);
        let owner = Some(Owner { cgroup_id: 11, pid: 4_194_304, uid: 70_000, comm: Comm::new("kube-controller") });
        let identity = std::sync::Arc::new(Identity {
            user: Some("postgresql-admin".into()),
            cgroup: Some(format!("/kubepods.slice/kubepods-burstable.slice/cri-containerd-{POD}.scope").into()),
            container_id: Some(POD.into()),
            exe: Some("/usr/local/bin/kube-controller-manager".into()),
        });
        let event = |ms: u64, kind, state, local: &str, remote: &str, detail| ConnEvent {
            time: base + Duration::from_millis(ms),
            kind,
            owner,
            local: local.parse().expect("addr"),
            remote: remote.parse().expect("addr"),
            netns: Some(OWN_NETNS),
            conn_id: 0xfedc_ba98_7654_3210,
            state: TcpState(state),
            direction: Direction::Outbound,
            age: Some(Duration::from_millis(4_250)),
            detail,
            identity: identity.clone(),
            service: None,
        };
        let (l, r) = ("255.255.255.255:65535", "255.255.255.254:65535");
        let worst_close = Detail::Close(CloseFacts {
            closed_by: Some(Side::Remote),
            kind: CloseKind::RstReceived,
            error: Errno::new(libc::ECONNRESET as u32),
            bytes_sent: 123_456_789_012,
            bytes_received: 987_654_321,
            segs_out: 4_000_000,
            segs_in: 3_000_000,
            retransmits: 12_345,
            srtt: Duration::from_micros(123_456),
        });
        let unreachable =
            Detail::Failed { reason: FailReason::Unreachable, error: Errno::new(libc::EHOSTUNREACH as u32) };
        let linger = Detail::Reset { sent: true, reason: Some("TCP_ABORT_ON_LINGER".into()) };
        let (l6, r6) = ("[2001:db8:85a3::8a2e:370:7334]:443", "[2001:db8:ffff:ffff:ffff:ffff:ffff:fffe]:65535");
        let mut ipv6 = event(9, EventKind::Established, tcp_state::ESTABLISHED, l6, r6, {
            Detail::Established { handshake: Some(Duration::from_micros(1_234_567)) }
        });
        ipv6.netns = Some(4026532999);
        ipv6.direction = Direction::Inbound;
        ipv6.service = Some((443, "https".into()));
        let mut nameless =
            event(10, EventKind::Connect, tcp_state::SYN_SENT, "10.0.0.1:40000", "10.0.0.2:5432", Detail::None);
        nameless.identity = Identity::unknown();
        nameless.netns = Some(4026532999);
        vec![
            event(0, EventKind::Connect, tcp_state::SYN_SENT, l, r, Detail::None),
            event(1, EventKind::Accept, tcp_state::ESTABLISHED, l, r, Detail::None),
            event(2, EventKind::Established, tcp_state::ESTABLISHED, l, r, {
                Detail::Established { handshake: Some(Duration::from_micros(999_999)) }
            }),
            event(
                3,
                EventKind::State,
                tcp_state::CLOSE_WAIT,
                l,
                r,
                Detail::State { old: TcpState(tcp_state::ESTABLISHED) },
            ),
            event(4, EventKind::Retransmit, tcp_state::FIN_WAIT1, l, r, Detail::Retransmit),
            event(5, EventKind::Reset, tcp_state::FIN_WAIT1, l, r, linger),
            event(6, EventKind::Close, tcp_state::CLOSE, l, r, worst_close),
            event(7, EventKind::Failed, tcp_state::CLOSE, l, r, unreachable),
            event(8, EventKind::State, tcp_state::ESTABLISHED, l, r, {
                // NEW_SYN_RECV, the longest name.
                Detail::State { old: TcpState(12) }
            }),
            ipv6,
            nameless,
        ]
    }
}
