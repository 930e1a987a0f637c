//! Who owns a connection beyond pid and comm: user name, cgroup v2 path,
//! container id and executable, read from the host and cached, so an event
//! costs one hash lookup once its owner has been seen.
use std::{
    path::PathBuf,
    sync::{Arc, LazyLock},
    time::{Duration, Instant},
};

use foldhash::{HashMap, HashMapExt as _};

use crate::{
    cgroups,
    events::{Comm, Owner},
};

/// What the host says about an owner; None where it cannot tell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub user: Option<Arc<str>>,
    pub cgroup: Option<Arc<str>>,
    pub container_id: Option<Arc<str>>,
    pub exe: Option<Arc<str>>,
}

impl Identity {
    /// Nothing known: shared, so an event without an owner allocates nothing.
    pub fn unknown() -> Arc<Self> {
        static UNKNOWN: LazyLock<Arc<Identity>> = LazyLock::new(Arc::default);
        Arc::clone(&UNKNOWN)
    }
}

/// A cgroup the cache has not seen sends us to rescan the hierarchy, at most
/// this often (a host creating cgroups fast would otherwise rescan per event).
const RESCAN_EVERY: Duration = Duration::from_secs(1);

pub struct Resolver {
    users: HashMap<u32, Option<Arc<str>>>,
    cgroup_mount: Option<PathBuf>,
    cgroups: HashMap<u64, (Arc<str>, Option<Arc<str>>)>,
    scanned_at: Option<Instant>,
    /// By pid; a different comm means the pid was reused or exec'd.
    exes: HashMap<u32, (Comm, Option<Arc<str>>)>,
    /// Each owner's whole identity, by pid, while the owner stays the same:
    /// one lookup and one reference count an event instead of four of each.
    owners: HashMap<u32, (Owner, Arc<Identity>)>,
}

impl Default for Resolver {
    fn default() -> Self {
        Self::new()
    }
}

impl Resolver {
    pub fn new() -> Self {
        Self {
            users: HashMap::new(),
            cgroup_mount: cgroups::mount_point(),
            cgroups: HashMap::new(),
            scanned_at: None,
            exes: HashMap::new(),
            owners: HashMap::new(),
        }
    }

    pub fn identify(&mut self, owner: &Owner) -> Arc<Identity> {
        if let Some((seen, identity)) = self.owners.get(&owner.pid)
            && seen == owner
        {
            return Arc::clone(identity);
        }
        let (cgroup, container_id) = self.cgroup(owner.cgroup_id).unzip();
        let identity = Arc::new(Identity {
            user: self.user(owner.uid),
            cgroup,
            container_id: container_id.flatten(),
            exe: self.exe(owner),
        });
        // A cgroup not found yet is looked for again next time (a rescan may find it).
        if owner.cgroup_id == 0 || identity.cgroup.is_some() {
            self.owners.insert(owner.pid, (*owner, Arc::clone(&identity)));
        }
        identity
    }

    fn user(&mut self, uid: u32) -> Option<Arc<str>> {
        self.users
            .entry(uid)
            .or_insert_with(|| uzers::get_user_by_uid(uid).map(|user| Arc::from(user.name().to_string_lossy())))
            .clone()
    }

    fn cgroup(&mut self, id: u64) -> Option<(Arc<str>, Option<Arc<str>>)> {
        if id == 0 {
            return None;
        }
        if !self.cgroups.contains_key(&id) && self.scanned_at.is_none_or(|at| at.elapsed() >= RESCAN_EVERY) {
            self.scanned_at = Some(Instant::now());
            let mount = self.cgroup_mount.as_deref()?;
            self.cgroups = cgroups::scan(mount)
                .into_iter()
                .map(|(id, path)| {
                    let container = cgroups::container_id(&path).map(Arc::from);
                    (id, (Arc::from(path), container))
                })
                .collect();
        }
        self.cgroups.get(&id).cloned()
    }

    fn exe(&mut self, owner: &Owner) -> Option<Arc<str>> {
        if let Some((comm, exe)) = self.exes.get(&owner.pid)
            && *comm == owner.comm
        {
            return exe.clone();
        }
        // Gone already, or another user's process without the right to look.
        let exe = std::fs::read_link(format!("/proc/{}/exe", owner.pid))
            .ok()
            .map(|path| Arc::from(path.to_string_lossy().trim_end_matches(" (deleted)")));
        self.exes.insert(owner.pid, (owner.comm, exe.clone()));
        exe
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifies_this_process() {
        let mut resolver = Resolver::new();
        let comm = std::fs::read_to_string("/proc/self/comm").expect("comm");
        let cgroup_id =
            resolver.cgroup_mount.clone().map_or(0, |m| cgroups::of_process(&m, std::path::Path::new("/proc/self")));
        let owner = Owner { pid: std::process::id(), uid: 0, comm: Comm::new(comm.trim_end()), cgroup_id };
        let identity = resolver.identify(&owner);
        assert_eq!(identity.user.as_deref(), Some("root"));
        let exe = std::env::current_exe().expect("exe");
        assert_eq!(identity.exe.as_deref(), exe.to_str());
        if cgroup_id != 0 {
            assert!(identity.cgroup.as_deref().is_some_and(|path| path.starts_with('/')));
        }
    }
}
