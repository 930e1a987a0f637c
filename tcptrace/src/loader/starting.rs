//! What tracing starts with besides its hooks: the snapshot to take, and
//! who holds the sockets and listeners open at start, found before `ready`
//! or walked with the snapshot's dumps after it.
use std::{
    collections::{HashMap as StdHashMap, HashSet},
    path::Path,
};

use aya::{
    Ebpf,
    maps::{HashMap, MapData},
};
use tcptrace_common::{ListenerKey, Owner};

use super::set_flag;
use crate::{
    attach::socket_files::{self, Walk},
    error::LoadError,
    procfs,
    snapshot::{self, Snapshot},
};

/// Who holds the sockets open at start, or the walk that will tell, with
/// the snapshot (None with `--no-snapshot`: then only the listeners, now).
pub(super) fn owners(
    ebpf: &mut Ebpf,
    snapshot: Option<snapshot::Pending>,
    walk: Option<Walk>,
) -> Result<Option<Starting>, LoadError> {
    Ok(match (snapshot, walk) {
        // Events wait for the snapshot anyway, and the walk costs a moment
        // per open file (~27 ms for 60,000 sockets): it goes with the dumps.
        (Some(pending), Some(walk)) => Some(Starting { pending, owners: Owners::ToWalk(walk) }),
        (snapshot, walk) => {
            let walked = walk.and_then(|walk| {
                walk.read().inspect_err(|error| log::debug!("socket files: {error}; reading /proc instead")).ok()
            });
            let by_process = walked.as_deref().map(socket_files::by_process);
            let sockets = find_owners(ebpf, by_process.as_ref())?;
            snapshot.map(|pending| Starting { pending, owners: Owners::Found { sockets } })
        }
    })
}

/// The snapshot to take, and who holds which socket.
pub struct Starting {
    pending: snapshot::Pending,
    owners: Owners,
}

enum Owners {
    /// Found before `ready`; listeners went into the kernel's map then.
    Found { sockets: StdHashMap<u64, Owner> },
    /// The socket-files iterator, to read with the dumps.
    ToWalk(Walk),
    /// Walked with the dumps; listeners still to go into the kernel's map.
    Walked { sockets: StdHashMap<u64, Owner>, listeners: StdHashMap<ListenerKey, Owner> },
}

impl Starting {
    /// Its dumps (snapshot.rs), and the walk for its owners: run them off
    /// the event loop.
    pub fn take(self) -> Self {
        #[cfg(feature = "kernel-tests")]
        snapshot::wait_for_test_gate();
        self.complete()
    }

    fn complete(mut self) -> Self {
        let walk = match std::mem::replace(&mut self.owners, Owners::Found { sockets: Default::default() }) {
            Owners::ToWalk(walk) => walk,
            done => {
                self.owners = done;
                self.pending.take();
                return self;
            }
        };
        // Dumps taken before attaching (no typed sockets) may miss a listener
        // opened since, which the state program did not see either: asked again.
        let listed_before = self.pending.is_taken();
        // The walk first: a socket born after it is left out of the dumps'
        // list by its cookie (the kernel side noted it), so none lacks an owner.
        let records = walk.read().unwrap_or_else(|error| {
            log::warn!("socket files: {error}: the connections open at start are listed without owners");
            Vec::new()
        });
        let listening_now = listed_before.then(|| self.pending.listening_now());
        let listening = listening_now.as_ref().unwrap_or_else(|| self.pending.take().listening());
        let (mut sockets, mut listeners) = (StdHashMap::new(), StdHashMap::new());
        procfs::for_each_walked_owner(
            Path::new("/proc"),
            &records,
            listening,
            |key, owner| {
                listeners.entry(key).or_insert(owner);
            },
            |inode, owner| {
                sockets.entry(inode).or_insert(owner);
            },
        );
        self.owners = Owners::Walked { sockets, listeners };
        self
    }
}

/// The snapshot, once its dumps are done: the state program stops noting
/// births, and the sockets it noted (born after attaching) are left out.
/// Also the listeners' owners walked with the dumps (empty if found before
/// `ready`), now in the kernel's map too: the events held meanwhile of
/// connections to them lack their owner until the pipeline adds it.
pub fn finish_snapshot(
    ebpf: &mut Ebpf,
    starting: Starting,
) -> Result<(Snapshot, StdHashMap<ListenerKey, Owner>), LoadError> {
    let starting = starting.complete();
    let (sockets, listeners) = match starting.owners {
        Owners::Found { sockets } => (sockets, StdHashMap::new()),
        Owners::Walked { sockets, listeners } => (sockets, listeners),
        Owners::ToWalk(_) => unreachable!("completed just now"),
    };
    let mut map = listeners_map(ebpf)?;
    for (key, owner) in &listeners {
        put_listener(&mut map, *key, *owner).map_err(|source| LoadError::Map { name: LISTENERS, source })?;
    }
    let mut snapshot = starting.pending.into_snapshot();
    // Only now: a socket the dumps listed was born, and noted, before this.
    set_flag(ebpf, SNAPSHOT_PENDING, false)?;
    let map = ebpf.map(BORN).ok_or(LoadError::MissingMap(BORN))?;
    let born: HashMap<_, u64, u8> = HashMap::try_from(map).map_err(|source| LoadError::Map { name: BORN, source })?;
    snapshot.without(&born.keys().filter_map(Result::ok).collect());
    snapshot.held_by(sockets);
    Ok((snapshot, listeners))
}

pub(super) const SNAPSHOT_PENDING: &str = "SNAPSHOT_PENDING";
const BORN: &str = "BORN_DURING_SNAPSHOT";

/// Tells the kernel who owns the listeners that were open before we attached,
/// and returns who holds every other socket (by inode), for the snapshot.
/// Which process holds which socket comes from `walked` (the kernel's
/// iterator), else from every open file of every process in /proc (as `ss
/// -p` does: on a host holding tens of thousands of sockets, most of
/// start-up). It finishes before the capabilities it needs are dropped
/// (privileges.rs): reading another user's /proc/PID takes them.
fn find_owners(
    ebpf: &mut Ebpf,
    walked: Option<&StdHashMap<u32, HashSet<u64>>>,
) -> Result<StdHashMap<u64, Owner>, LoadError> {
    let mut listeners = listeners_map(ebpf)?;
    let mut failed = None;
    let mut socket_owners = StdHashMap::new();
    let listener = |key, owner| {
        if let Err(source) = put_listener(&mut listeners, key, owner) {
            failed = Some(source);
        }
    };
    let holder = |inode, owner| {
        socket_owners.entry(inode).or_insert(owner);
    };
    procfs::for_each_owner(Path::new("/proc"), listener, holder, walked);
    failed.map_or(Ok(socket_owners), |source| Err(LoadError::Map { name: LISTENERS, source }))
}

const LISTENERS: &str = "LISTENERS";

fn listeners_map(ebpf: &mut Ebpf) -> Result<HashMap<&mut MapData, ListenerKey, Owner>, LoadError> {
    let map = ebpf.map_mut(LISTENERS).ok_or(LoadError::MissingMap(LISTENERS))?;
    HashMap::try_from(map).map_err(|source| LoadError::Map { name: LISTENERS, source })
}

/// A listener's owner, unless the kernel side wrote one already (fresher than our look).
fn put_listener(
    map: &mut HashMap<&mut MapData, ListenerKey, Owner>,
    key: ListenerKey,
    owner: Owner,
) -> Result<(), aya::maps::MapError> {
    const NO_OVERWRITE: u64 = 1;
    match map.insert(&key, &owner, NO_OVERWRITE) {
        Err(aya::maps::MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        done => done,
    }
}
