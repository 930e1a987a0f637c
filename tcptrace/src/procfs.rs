//! Owners of sockets that were open before tracing started, as `ss -p`
//! finds them: listeners (their sockets from sock_diag, one query per
//! network namespace), without which a passive connection to a long-running
//! server (sshd, nginx) would have no owner until the server accepts it, and
//! the snapshot's connections. Which process holds which socket comes from
//! the kernel's socket-files iterator (attach/socket_files.rs) where it
//! runs, else from every /proc/PID/fd link.
use std::{
    collections::{HashMap, HashSet},
    fs,
    os::unix::fs::MetadataExt,
    path::Path,
};

use tcptrace_common::{COMM_LEN, ListenerKey, Owner, SocketFile};

use crate::{cgroups, sockdiag};

/// Every listening TCP socket some process holds open: (namespace, port) -> owner.
#[cfg(test)]
pub fn listeners(proc: &Path) -> HashMap<ListenerKey, Owner> {
    let mut found = HashMap::new();
    for_each_owner(
        proc,
        |key, owner| {
            found.entry(key).or_insert(owner);
        },
        |_, _| {},
        None,
    );
    found
}

/// In one pass over every process's sockets: calls `listener` for every
/// listening socket and `holder` for every other socket (by inode: the
/// snapshot's dumps may not be done yet), as soon as an owner is known (more
/// than once for a socket that several processes share, as after a fork).
/// `walked`: each process's socket inodes as the kernel's iterator found
/// them; None reads every process's /proc/PID/fd.
pub fn for_each_owner(
    proc: &Path,
    mut listener: impl FnMut(ListenerKey, Owner),
    mut holder: impl FnMut(u64, Owner),
    walked: Option<&HashMap<u32, HashSet<u64>>>,
) {
    // Per namespace: listening socket inode -> port. Read once per namespace.
    let own_netns = fs::metadata(proc.join("self/ns/net")).map(|m| m.ino()).ok();
    let cgroup_mount = cgroups::mount_point();
    let mut by_netns: HashMap<u64, HashMap<u64, u16>> = HashMap::new();
    let mut visit = |pid: u32, sockets: &HashSet<u64>| {
        let dir = proc.join(pid.to_string());
        // Processes come and go while we look: skip any that vanish.
        let Ok(netns) = fs::metadata(dir.join("ns/net")).map(|m| m.ino()) else { return };
        let listening = by_netns.entry(netns).or_insert_with(|| {
            let elsewhere = (Some(netns) != own_netns).then(|| dir.join("ns/net"));
            sockdiag::listeners(elsewhere.as_deref()).unwrap_or_else(|error| {
                log::debug!("listeners in network namespace {netns}: {error}");
                HashMap::new()
            })
        });
        // Read once per process, not per socket: a proxy holds tens of thousands.
        let mut process = None;
        let mut owner = || *process.get_or_insert_with(|| owner(&dir, pid, cgroup_mount.as_deref()));
        for &inode in sockets {
            if let Some(&port) = listening.get(&inode) {
                let key = ListenerKey { netns: netns as u32, port, _pad: 0 };
                listener(key, owner());
            } else {
                holder(inode, owner());
            }
        }
    };
    if let Some(walked) = walked {
        walked.iter().for_each(|(&pid, sockets)| visit(pid, sockets));
        return;
    }
    let Ok(entries) = fs::read_dir(proc) else { return };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        let sockets = socket_inodes(&entry.path().join("fd"));
        if !sockets.is_empty() {
            visit(pid, &sockets);
        }
    }
}

/// As `for_each_owner`, from the socket-files iterator's records (each with
/// its namespace) and each namespace's listeners (inode -> port) from the
/// snapshot's dumps: nothing to enter or to read that needs a capability,
/// so it runs once they are dropped.
pub fn for_each_walked_owner(
    proc: &Path,
    records: &[SocketFile],
    listening: &HashMap<u32, HashMap<u64, u16>>,
    mut listener: impl FnMut(ListenerKey, Owner),
    mut holder: impl FnMut(u64, Owner),
) {
    let cgroup_mount = cgroups::mount_point();
    // Read once per process, not per socket: a proxy holds tens of thousands.
    let mut processes: HashMap<u32, Option<Owner>> = HashMap::new();
    for record in records {
        let pid = record.tgid;
        let known = processes.entry(pid).or_insert_with(|| {
            let dir = proc.join(pid.to_string());
            // Processes come and go while we look: skip any that vanished.
            dir.exists().then(|| owner(&dir, pid, cgroup_mount.as_deref()))
        });
        let Some(owner) = *known else { continue };
        match listening.get(&record.netns).and_then(|ports| ports.get(&record.inode)) {
            Some(&port) => listener(ListenerKey { netns: record.netns, port, _pad: 0 }, owner),
            None => holder(record.inode, owner),
        }
    }
}

fn socket_inodes(fd_dir: &Path) -> HashSet<u64> {
    let Ok(fds) = fs::read_dir(fd_dir) else { return HashSet::new() };
    fds.flatten()
        .filter_map(|fd| fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            let target = target.to_str()?;
            target.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

fn owner(dir: &Path, pid: u32, cgroup_mount: Option<&Path>) -> Owner {
    let uid = fs::metadata(dir).map(|m| m.uid()).unwrap_or(0);
    let mut comm = [0; COMM_LEN];
    if let Ok(name) = fs::read_to_string(dir.join("comm")) {
        let name = name.trim_end_matches('\n').as_bytes();
        let len = name.len().min(COMM_LEN - 1);
        comm[..len].copy_from_slice(&name[..len]);
    }
    let cgroup_id = cgroup_mount.map_or(0, |mount| cgroups::of_process(mount, dir));
    Owner { cgroup_id, tgid: pid, uid, comm }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This test process opens a listener; the scan must find it with our pid.
    #[test]
    fn finds_our_own_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let found = listeners(Path::new("/proc"));
        let ours = found.iter().find(|(key, _)| key.port == port).expect("listener found");
        assert_eq!(ours.1.tgid, std::process::id());
    }
}
