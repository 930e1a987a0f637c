//! Connections already open when tracing starts, listed once as `snapshot`
//! events: the sockets from sock_diag in every network namespace, their
//! owners from /proc/PID/fd as `ss -p` finds them.
//!
//! The dumps walk the kernel's whole connection hash, TIME_WAIT included,
//! once per namespace and family: ~100 ms on a host holding 110,000 sockets.
//! So they run once tracing is ready, and events wait for them (pipeline.rs).
//! The snapshot's line and the connection's later events share one `conn_id`
//! through the socket's cookie, which sock_diag and the kernel programs give
//! alike; sockets born after attaching that the dumps list too are left out
//! by their cookies, which the state program notes meanwhile (loader.rs,
//! `finish_snapshot`). A state program without a typed socket can do neither,
//! so it attaches only once the dumps are done (attach.rs).
use std::{
    collections::{HashMap, HashSet},
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::OnceLock,
    time::SystemTime,
};

use tcptrace_common::Owner as KernelOwner;

use crate::{
    events::{ConnEvent, Decoder, Detail, Direction},
    identity::Identity,
    model::{EventKind, Owner, TcpState},
    sockdiag::{self, OpenSocket},
};

pub struct Snapshot {
    taken: SystemTime,
    sockets: Vec<Listed>,
    /// Each network namespace's listeners: socket inode -> port.
    listening: HashMap<u32, HashMap<u64, u16>>,
    /// Socket inode -> the first process found holding it.
    owners: HashMap<u64, KernelOwner>,
}

struct Listed {
    netns: u32,
    socket: OpenSocket,
    /// Its local port is a listener's: this end is the server's.
    inbound: bool,
}

/// The snapshot before its dumps: each network namespace's sock_diag
/// socket, opened while we may still enter namespaces; the dumps need no
/// capability, so they can run after tracing is ready.
pub struct Pending {
    since: SystemTime,
    sources: Vec<(u32, netlink_sys::Socket)>,
    taken: OnceLock<Snapshot>,
}

impl Pending {
    /// Opens the sockets; the lines will be stamped `since` (tracing's start).
    pub fn open(proc: &Path, since: SystemTime) -> Self {
        let sources = namespaces(proc)
            .into_iter()
            .filter_map(|(netns, path)| match sockdiag::open(path.as_deref()) {
                Ok(socket) => Some((netns, socket)),
                Err(error) => {
                    log::debug!("connections in network namespace {netns}: {error}");
                    None
                }
            })
            .collect();
        Self { since, sources, taken: OnceLock::new() }
    }

    /// The dumps, the first time only.
    pub fn take(&self) -> &Snapshot {
        self.taken.get_or_init(|| Snapshot::take(&self.sources, self.since))
    }

    /// Whether the dumps ran already (before attaching, on a rung without typed sockets).
    pub fn is_taken(&self) -> bool {
        self.taken.get().is_some()
    }

    /// Each network namespace's listeners as they are now: inode -> port.
    pub fn listening_now(&self) -> HashMap<u32, HashMap<u64, u16>> {
        let listening = |&(netns, ref socket): &(u32, netlink_sys::Socket)| match sockdiag::listening(socket) {
            Ok(listeners) => Some((netns, listeners)),
            Err(error) => {
                log::debug!("listeners in network namespace {netns}: {error}");
                None
            }
        };
        self.sources.iter().filter_map(listening).collect()
    }

    pub fn into_snapshot(self) -> Snapshot {
        self.take();
        self.taken.into_inner().unwrap_or_else(|| unreachable!("taken just now"))
    }
}

impl Snapshot {
    /// The open TCP connections of each namespace's socket, owners still unknown.
    pub fn take(sources: &[(u32, netlink_sys::Socket)], taken: SystemTime) -> Self {
        let (mut sockets, mut listening_in) = (Vec::new(), HashMap::new());
        for &(netns, ref socket) in sources {
            match sockdiag::connections(socket) {
                Ok((open, listening)) => {
                    let ports: HashSet<u16> = listening.values().copied().collect();
                    sockets.extend(open.into_iter().map(|socket| Listed {
                        netns,
                        inbound: ports.contains(&socket.local.port()),
                        socket,
                    }));
                    listening_in.insert(netns, listening);
                }
                Err(error) => log::debug!("connections in network namespace {netns}: {error}"),
            }
        }
        Self { taken, sockets, listening: listening_in, owners: HashMap::new() }
    }

    /// Each network namespace's listeners: socket inode -> port.
    pub fn listening(&self) -> &HashMap<u32, HashMap<u64, u16>> {
        &self.listening
    }

    /// Who holds its sockets: socket inode -> the first process found
    /// holding it (procfs.rs, before the dumps may be done).
    pub fn held_by(&mut self, owners: HashMap<u64, KernelOwner>) {
        self.owners = owners;
    }

    /// Leaves out the sockets whose cookies are in `born` (born after attaching).
    pub fn without(&mut self, born: &HashSet<u64>) {
        self.sockets.retain(|listed| !born.contains(&listed.socket.cookie));
    }

    pub fn len(&self) -> usize {
        self.sockets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    /// One `snapshot` event per connection, its id as `decoder` will give
    /// the connection's later events.
    pub fn events<'a>(&'a self, decoder: &'a Decoder) -> impl Iterator<Item = ConnEvent> + 'a {
        self.sockets.iter().map(|listed| ConnEvent {
            time: self.taken,
            kind: EventKind::Snapshot,
            owner: self.owners.get(&listed.socket.inode).map(Owner::from),
            local: listed.socket.local,
            remote: listed.socket.remote,
            netns: Some(listed.netns),
            conn_id: decoder.conn_id_of_cookie(listed.socket.cookie),
            state: TcpState(listed.socket.state),
            direction: if listed.inbound { Direction::Inbound } else { Direction::Unknown },
            age: None,
            detail: Detail::None,
            identity: Identity::unknown(),
            service: None,
        })
    }
}

/// The real-kernel tests hold the dumps until a file exists, to open on
/// purpose the window between attaching and the dumps that a host with
/// 100,000 sockets opens by itself (at most a minute).
#[cfg(feature = "kernel-tests")]
pub fn wait_for_test_gate() {
    let Some(gate) = std::env::var_os("TCPTRACE_TEST_SNAPSHOT_GATE") else { return };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !Path::new(&gate).exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Every network namespace a process is in or a name in /run/netns holds:
/// its inode and a path to enter it (None: our own).
fn namespaces(proc: &Path) -> Vec<(u32, Option<PathBuf>)> {
    let own = fs::metadata(proc.join("self/ns/net")).map(|m| m.ino()).ok();
    let mut seen: HashSet<u64> = own.into_iter().collect();
    let mut found: Vec<(u32, Option<PathBuf>)> = own.map(|ino| (ino as u32, None)).into_iter().collect();
    let processes = fs::read_dir(proc)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.file_name().to_str().is_some_and(|name| name.bytes().all(|b| b.is_ascii_digit())));
    let named = fs::read_dir("/run/netns").into_iter().flatten().flatten();
    let paths = processes.map(|entry| entry.path().join("ns/net")).chain(named.map(|entry| entry.path()));
    for path in paths {
        // Processes come and go while we look: skip any that vanish.
        let Ok(ino) = fs::metadata(&path).map(|m| m.ino()) else { continue };
        if seen.insert(ino) {
            found.push((ino as u32, Some(path)));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use std::{net::TcpListener, time::Duration};

    use super::*;

    /// Real kernel, no privileges needed: a connection we hold is listed with
    /// our pid, the accepted end as inbound, and ids that differ per end.
    #[test]
    fn lists_a_connection_we_hold() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let server = listener.local_addr().expect("addr");
        let client = std::net::TcpStream::connect(server).expect("connect");
        let (_accepted, _) = listener.accept().expect("accept");
        let mut snapshot = Pending::open(Path::new("/proc"), SystemTime::now()).into_snapshot();
        let mut owners = HashMap::new();
        crate::procfs::for_each_owner(
            Path::new("/proc"),
            |_, _| {},
            |inode, owner| {
                owners.entry(inode).or_insert(owner);
            },
            None,
        );
        snapshot.held_by(owners);
        let events: Vec<ConnEvent> = snapshot.events(&Decoder::new(Duration::ZERO, Vec::new())).collect();
        let client_port = client.local_addr().expect("addr").port();
        let inbound = events.iter().find(|e| e.local == server).expect("the accepted end");
        let outbound = events.iter().find(|e| e.local.port() == client_port).expect("the client end");
        assert_eq!(inbound.direction, Direction::Inbound);
        assert_eq!(outbound.direction, Direction::Unknown);
        for event in [inbound, outbound] {
            assert_eq!(event.owner.as_ref().map(|o| o.pid), Some(std::process::id()), "{event:?}");
            assert_eq!(event.kind, EventKind::Snapshot);
        }
        assert_ne!(inbound.conn_id, outbound.conn_id);
    }
}
