//! Connections already open when tracing starts, listed once as `snapshot`
//! events: the sockets from sock_diag in every network namespace, their
//! owners from /proc/PID/fd as `ss -p` finds them.
//!
//! Asking sock_diag about a socket makes the kernel give it a cookie; the
//! kernel programs read it when they first see the socket, so the snapshot's
//! line and the connection's later events carry one `conn_id`. That is why
//! the snapshot is taken before attaching.
use std::{
    collections::{HashMap, HashSet},
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::SystemTime,
};

use tcptrace_common::Owner as KernelOwner;

use crate::{
    events::{ConnEvent, Decoder, Detail, Direction},
    identity::Identity,
    model::{Comm, EventKind, Owner, TcpState},
    sockdiag::{self, OpenSocket},
};

pub struct Snapshot {
    taken: SystemTime,
    sockets: Vec<Listed>,
    /// Socket inode -> the first process found holding it.
    owners: HashMap<u64, KernelOwner>,
}

struct Listed {
    netns: u32,
    socket: OpenSocket,
    /// Its local port is a listener's: this end is the server's.
    inbound: bool,
}

impl Snapshot {
    /// Every network namespace's open TCP connections, owners still unknown.
    pub fn take(proc: &Path) -> Self {
        let taken = SystemTime::now();
        let mut sockets = Vec::new();
        for (netns, path) in namespaces(proc) {
            match sockdiag::connections(path.as_deref()) {
                Ok((open, listening)) => sockets.extend(open.into_iter().map(|socket| Listed {
                    netns,
                    inbound: listening.contains(&socket.local.port()),
                    socket,
                })),
                Err(error) => log::debug!("connections in network namespace {netns}: {error}"),
            }
        }
        Self { taken, sockets, owners: HashMap::new() }
    }

    /// The sockets' inodes, for the scan of /proc that finds their owners.
    pub fn inodes(&self) -> HashSet<u64> {
        self.sockets.iter().map(|listed| listed.socket.inode).collect()
    }

    /// Takes note of a process holding `inode`; the first one found names it.
    pub fn held_by(&mut self, inode: u64, owner: KernelOwner) {
        self.owners.entry(inode).or_insert(owner);
    }

    pub fn len(&self) -> usize {
        self.sockets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    /// One `snapshot` event per connection, its id as `decoder` will give
    /// the connection's later events.
    pub fn events(&self, decoder: &Decoder) -> Vec<ConnEvent> {
        self.sockets
            .iter()
            .map(|listed| ConnEvent {
                time: self.taken,
                kind: EventKind::Snapshot,
                owner: self.owners.get(&listed.socket.inode).map(|owner| Owner {
                    cgroup_id: owner.cgroup_id,
                    pid: owner.tgid,
                    uid: owner.uid,
                    comm: Comm(owner.comm),
                }),
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
            .collect()
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
        let mut snapshot = Snapshot::take(Path::new("/proc"));
        let ours = snapshot.inodes();
        crate::procfs::for_each_owner(
            Path::new("/proc"),
            &ours,
            |_, _| {},
            |inode, owner| snapshot.held_by(inode, owner),
        );
        let events = snapshot.events(&Decoder::new(Duration::ZERO, Vec::new()));
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
