//! Listening sockets that were open before tracing started, and their owners,
//! from /proc. Without them a passive connection to a long-running server
//! (sshd, nginx) would have no owner until the server accepts it.
use std::{
    collections::{HashMap, HashSet},
    fs,
    os::unix::fs::MetadataExt,
    path::Path,
};

use tcptrace_common::{COMM_LEN, ListenerKey, Owner};

/// TCP_LISTEN as /proc/net/tcp prints it.
const LISTEN: &str = "0A";

/// Every listening TCP socket some process holds open: (namespace, port) -> owner.
pub fn listeners(proc: &Path) -> HashMap<ListenerKey, Owner> {
    // Per namespace: listening socket inode -> port. Read once per namespace.
    let mut by_netns: HashMap<u64, HashMap<u64, u16>> = HashMap::new();
    let mut found = HashMap::new();
    let Ok(entries) = fs::read_dir(proc) else { return found };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        let dir = entry.path();
        // Processes come and go while we look: skip any that vanish.
        let Ok(netns) = fs::metadata(dir.join("ns/net")).map(|m| m.ino()) else { continue };
        let sockets = socket_inodes(&dir.join("fd"));
        if sockets.is_empty() {
            continue;
        }
        let listening = by_netns.entry(netns).or_insert_with(|| listening_sockets(&dir.join("net")));
        for inode in sockets {
            if let Some(&port) = listening.get(&inode) {
                let key = ListenerKey { netns: netns as u32, port, _pad: 0 };
                found.entry(key).or_insert_with(|| owner(&dir, pid));
            }
        }
    }
    found
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

/// Listening sockets in /proc/PID/net/tcp{,6}: inode -> local port.
fn listening_sockets(net_dir: &Path) -> HashMap<u64, u16> {
    let mut sockets = HashMap::new();
    for file in ["tcp", "tcp6"] {
        let Ok(table) = fs::read_to_string(net_dir.join(file)) else { continue };
        sockets.extend(table.lines().skip(1).filter_map(parse_listen_line));
    }
    sockets
}

/// One row: `sl local_address rem_address st ... uid timeout inode ...`.
fn parse_listen_line(line: &str) -> Option<(u64, u16)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.get(3) != Some(&LISTEN) {
        return None;
    }
    let port = u16::from_str_radix(fields.get(1)?.rsplit(':').next()?, 16).ok()?;
    let inode = fields.get(9)?.parse().ok()?;
    Some((inode, port))
}

fn owner(dir: &Path, pid: u32) -> Owner {
    let uid = fs::metadata(dir).map(|m| m.uid()).unwrap_or(0);
    let mut comm = [0; COMM_LEN];
    if let Ok(name) = fs::read_to_string(dir.join("comm")) {
        let name = name.trim_end_matches('\n').as_bytes();
        let len = name.len().min(COMM_LEN - 1);
        comm[..len].copy_from_slice(&name[..len]);
    }
    Owner { tgid: pid, uid, comm }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listen_rows_only() {
        let listen = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 123456 1 0000000000000000 100 0 0 10 0";
        let established = "   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 123457 1 0000000000000000 100 0 0 10 0";
        assert_eq!(parse_listen_line(listen), Some((123456, 8080)));
        assert_eq!(parse_listen_line(established), None);
        assert_eq!(parse_listen_line("garbage"), None);
    }

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
