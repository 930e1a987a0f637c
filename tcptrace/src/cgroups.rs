//! cgroup v2, as the kernel side sees it: a cgroup id is the inode number of
//! its directory in the cgroup2 mount (/sys/fs/cgroup, or
//! /sys/fs/cgroup/unified on hybrid hosts). Paths are printed relative to that
//! mount, as /proc/PID/cgroup shows them ("/system.slice/ssh.service").
use std::{
    collections::HashMap,
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

/// Where cgroup2 is mounted, from /proc/self/mountinfo; None without cgroup v2.
pub fn mount_point() -> Option<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mountinfo").ok()?;
    mounts.lines().find_map(|line| {
        // ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS... - FSTYPE SOURCE SUPER_OPTIONS
        let (before, after) = line.split_once(" - ")?;
        if after.split_whitespace().next() != Some("cgroup2") {
            return None;
        }
        before.split(' ').nth(4).map(PathBuf::from)
    })
}

/// Every cgroup under `mount`: id -> path relative to it ("/a/b").
pub fn scan(mount: &Path) -> HashMap<u64, String> {
    let mut found = HashMap::new();
    let mut pending = vec![(mount.to_owned(), String::new())];
    while let Some((dir, relative)) = pending.pop() {
        let Ok(meta) = fs::metadata(&dir) else { continue };
        found.insert(meta.ino(), if relative.is_empty() { "/".to_owned() } else { relative.clone() });
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                let name = entry.file_name().to_string_lossy().into_owned();
                pending.push((entry.path(), format!("{relative}/{name}")));
            }
        }
    }
    found
}

/// The ids of cgroup `path` (absolute, or relative to the mount) and of every
/// cgroup below it.
pub fn subtree_ids(mount: &Path, path: &str) -> std::io::Result<Vec<u64>> {
    let dir =
        if Path::new(path).starts_with(mount) { PathBuf::from(path) } else { mount.join(path.trim_start_matches('/')) };
    if !fs::metadata(&dir)?.is_dir() {
        return Err(std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a cgroup directory"));
    }
    Ok(scan(&dir).into_keys().collect())
}

/// The cgroup v2 id of process `pid` (its "0::PATH" line), or 0.
pub fn of_process(mount: &Path, proc_dir: &Path) -> u64 {
    let Ok(text) = fs::read_to_string(proc_dir.join("cgroup")) else { return 0 };
    text.lines()
        .find_map(|line| line.strip_prefix("0::"))
        .and_then(|path| fs::metadata(mount.join(path.trim_start_matches('/'))).ok())
        .map_or(0, |meta| meta.ino())
}

/// A container runtime's id in a cgroup path: the last component that is 64
/// hex digits, bare (cgroupfs driver: /docker/ID, /kubepods/.../ID) or wrapped
/// by the systemd driver (docker-ID.scope, cri-containerd-ID.scope,
/// crio-ID.scope, libpod-ID.scope). Conmon's own scopes are not containers.
pub fn container_id(path: &str) -> Option<&str> {
    const PREFIXES: &[&str] = &["docker-", "cri-containerd-", "crio-", "libpod-", ""];
    path.rsplit('/').find_map(|component| {
        let stem = component.strip_suffix(".scope").unwrap_or(component);
        PREFIXES.iter().find_map(|prefix| {
            let id = stem.strip_prefix(prefix)?;
            (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4b1c9e8d7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c";

    #[test]
    fn container_ids_of_each_runtime() {
        for path in [
            format!("/system.slice/docker-{ID}.scope"),
            format!("/docker/{ID}"),
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice/cri-containerd-{ID}.scope"
            ),
            format!("/kubepods/burstable/pod5678/{ID}"),
            format!("/machine.slice/libpod-{ID}.scope/container"),
            format!("/kubepods.slice/crio-{ID}.scope"),
        ] {
            assert_eq!(container_id(&path), Some(ID), "{path}");
        }
        assert_eq!(container_id("/system.slice/ssh.service"), None);
        assert_eq!(container_id(&format!("/machine.slice/libpod-conmon-{ID}.scope")), None);
        assert_eq!(container_id("/user.slice/user-1000.slice/session-2.scope"), None);
    }

    #[test]
    fn finds_the_mount_and_our_own_cgroup() {
        let Some(mount) = mount_point() else { return };
        let ours = of_process(&mount, Path::new("/proc/self"));
        assert_ne!(ours, 0);
        assert!(scan(&mount).contains_key(&ours));
        assert!(subtree_ids(&mount, "/").expect("root").contains(&ours));
        assert!(subtree_ids(&mount, "/no/such/cgroup").is_err());
    }
}
