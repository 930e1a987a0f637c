//! The user's filters, validated and resolved against the host (user names,
//! network namespace names), ready for the kernel's filter maps.
use std::{os::unix::fs::MetadataExt, path::Path};

use ipnet::IpNet;
use tcptrace_common::{COMM_LEN, CommKey, filter};

use crate::{cgroups, cli::Cli, config::ConfigError, events::ConnEvent};

/// Most values one filter takes (the kernel maps' size).
pub const MAX_FILTER_ENTRIES: usize = 1024;
/// Most cgroups --cgroup covers, descendants included (FILTER_CGROUPS' size).
pub const MAX_CGROUP_ENTRIES: usize = 65536;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    pub pids: Vec<u32>,
    pub uids: Vec<u32>,
    pub comms: Vec<CommKey>,
    pub ports: Vec<u16>,
    pub lports: Vec<u16>,
    pub rports: Vec<u16>,
    pub addrs: Vec<IpNet>,
    pub netns: Vec<u32>,
    /// The given cgroups' ids and their descendants'.
    pub cgroups: Vec<u64>,
    pub ipv4: bool,
    pub ipv6: bool,
}

impl Filters {
    pub fn from_cli(cli: &Cli) -> Result<Self, ConfigError> {
        if cli.pids.contains(&0) {
            return Err(ConfigError::ZeroPid);
        }
        for (ports, flag) in [(&cli.ports, "--port"), (&cli.lports, "--lport"), (&cli.rports, "--rport")] {
            if ports.contains(&0) {
                return Err(ConfigError::ZeroPort { flag });
            }
        }
        let filters = Self {
            pids: cli.pids.clone(),
            uids: cli.users.iter().map(|user| uid(user)).collect::<Result<_, _>>()?,
            comms: cli.comms.iter().map(|name| comm_key(name)).collect::<Result<_, _>>()?,
            ports: cli.ports.clone(),
            lports: cli.lports.clone(),
            rports: cli.rports.clone(),
            addrs: cli.addrs.iter().map(IpNet::trunc).collect(),
            netns: cli.netns.iter().map(|spec| netns_inode(spec)).collect::<Result<_, _>>()?,
            cgroups: cgroup_ids(&cli.cgroups)?,
            ipv4: cli.ipv4,
            ipv6: cli.ipv6,
        };
        for (len, flag) in [
            (filters.pids.len(), "--pid"),
            (filters.uids.len(), "--uid"),
            (filters.comms.len(), "--comm"),
            (filters.ports.len(), "--port"),
            (filters.lports.len(), "--lport"),
            (filters.rports.len(), "--rport"),
            (filters.addrs.len(), "--addr"),
            (filters.netns.len(), "--netns"),
        ] {
            if len > MAX_FILTER_ENTRIES {
                return Err(ConfigError::TooMany { what: flag });
            }
        }
        Ok(filters)
    }

    /// `LoadConfig::filters`: which kernel filters are in force.
    pub fn bits(&self) -> u32 {
        [
            (!self.pids.is_empty(), filter::PID),
            (!self.uids.is_empty(), filter::UID),
            (!self.comms.is_empty(), filter::COMM),
            (!self.ports.is_empty(), filter::PORT),
            (!self.lports.is_empty(), filter::LPORT),
            (!self.rports.is_empty(), filter::RPORT),
            (!self.addrs.is_empty(), filter::ADDR),
            (!self.netns.is_empty(), filter::NETNS),
            (!self.cgroups.is_empty(), filter::CGROUP),
            (self.ipv4, filter::IPV4),
            (self.ipv6, filter::IPV6),
        ]
        .into_iter()
        .filter(|&(on, _)| on)
        .fold(0, |bits, (_, bit)| bits | bit)
    }
}

impl Filters {
    /// The kernel's filter (tcptrace-ebpf emit.rs) over an event userspace
    /// made itself (a snapshot): every filter in force must match.
    pub fn admits(&self, event: &ConnEvent) -> bool {
        let owner = event.owner.as_ref();
        let any = |values: &[u16], port: u16| values.is_empty() || values.contains(&port);
        let (local, remote) = (event.local.port(), event.remote.port());
        let is_ipv4 = event.remote.ip().to_canonical().is_ipv4();
        (self.pids.is_empty() || owner.is_some_and(|o| self.pids.contains(&o.pid)))
            && (self.uids.is_empty() || owner.is_some_and(|o| self.uids.contains(&o.uid)))
            && (self.comms.is_empty() || owner.is_some_and(|o| self.comms.contains(&o.comm.0)))
            && (self.ports.is_empty() || self.ports.contains(&local) || self.ports.contains(&remote))
            && any(&self.lports, local)
            && any(&self.rports, remote)
            && (self.netns.is_empty() || event.netns.is_some_and(|netns| self.netns.contains(&netns)))
            && (self.cgroups.is_empty() || owner.is_some_and(|o| self.cgroups.contains(&o.cgroup_id)))
            && (!(self.ipv4 || self.ipv6) || if is_ipv4 { self.ipv4 } else { self.ipv6 })
            && (self.addrs.is_empty()
                || [event.local.ip(), event.remote.ip()]
                    .iter()
                    .any(|ip| self.addrs.iter().any(|net| net.contains(&ip.to_canonical()))))
    }
}

/// The kernel address filter's (prefix length, data): IPv4 as `::ffff:a.b.c.d`.
pub fn addr_key(network: &IpNet) -> (u32, [u8; 16]) {
    match network {
        IpNet::V4(v4) => (96 + u32::from(v4.prefix_len()), v4.addr().to_ipv6_mapped().octets()),
        IpNet::V6(v6) => (u32::from(v6.prefix_len()), v6.addr().octets()),
    }
}

fn uid(user: &str) -> Result<u32, ConfigError> {
    if let Ok(uid) = user.parse() {
        return Ok(uid);
    }
    uzers::get_user_by_name(user).map(|u| u.uid()).ok_or_else(|| ConfigError::UnknownUser(user.to_owned()))
}

/// The kernel keeps a command name's first 15 bytes, NUL padded.
fn comm_key(name: &str) -> Result<CommKey, ConfigError> {
    if name.is_empty() || name.contains('\0') {
        return Err(ConfigError::BadComm(name.to_owned()));
    }
    let mut key = [0; COMM_LEN];
    let len = name.len().min(COMM_LEN - 1);
    key[..len].copy_from_slice(&name.as_bytes()[..len]);
    Ok(key)
}

fn cgroup_ids(paths: &[String]) -> Result<Vec<u64>, ConfigError> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let mount = cgroups::mount_point().ok_or(ConfigError::NoCgroup2)?;
    let mut ids = Vec::new();
    for path in paths {
        let subtree = cgroups::subtree_ids(&mount, path)
            .map_err(|error| ConfigError::UnknownCgroup { path: path.clone(), reason: error.to_string() })?;
        ids.extend(subtree);
    }
    if ids.len() > MAX_CGROUP_ENTRIES {
        return Err(ConfigError::TooMany { what: "--cgroup (with descendants)" });
    }
    Ok(ids)
}

/// An inode number, a path to a namespace file, or a name under /run/netns.
fn netns_inode(spec: &str) -> Result<u32, ConfigError> {
    if let Ok(inode) = spec.parse::<u32>() {
        return Ok(inode);
    }
    let path = if spec.contains('/') { Path::new(spec).to_owned() } else { Path::new("/run/netns").join(spec) };
    std::fs::metadata(&path).map(|m| m.ino() as u32).map_err(|error| ConfigError::UnknownNetns {
        spec: spec.to_owned(),
        path,
        reason: error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn filters(args: &[&str]) -> Result<Filters, ConfigError> {
        let cli = Cli::try_parse_from(std::iter::once("tcptrace").chain(args.iter().copied())).expect("clap accepts");
        Filters::from_cli(&cli)
    }

    #[test]
    fn resolves_each_kind() {
        let f = filters(&[
            "-u",
            "root",
            "-u",
            "1000",
            "-c",
            "a-very-long-command-name",
            "-L",
            "80",
            "-D",
            "443",
            "--addr",
            "10.1.2.3/8",
            "--addr",
            "::1",
            "-4",
            "--netns",
            "4026531840",
            "--netns",
            "/proc/self/ns/net",
        ])
        .expect("valid");
        assert_eq!(f.uids, [0, 1000]);
        assert_eq!(&f.comms[0][..16], b"a-very-long-com\0");
        assert_eq!(f.addrs[0].to_string(), "10.0.0.0/8", "host bits cleared");
        assert_eq!(addr_key(&f.addrs[0]), (104, std::net::Ipv4Addr::new(10, 0, 0, 0).to_ipv6_mapped().octets()));
        assert_eq!(addr_key(&f.addrs[1]).0, 128);
        let own = std::fs::metadata("/proc/self/ns/net").expect("netns").ino() as u32;
        assert_eq!(f.netns, [4026531840, own]);
        let expected = filter::UID | filter::COMM | filter::LPORT | filter::RPORT | filter::ADDR | filter::NETNS;
        assert_eq!(f.bits(), expected | filter::IPV4);
        assert_eq!(filters(&[]).expect("valid").bits(), 0);
    }

    #[test]
    fn rejects_what_cannot_match() {
        assert_eq!(filters(&["-L", "0"]), Err(ConfigError::ZeroPort { flag: "--lport" }));
        assert!(matches!(filters(&["-u", "no-such-user-here"]), Err(ConfigError::UnknownUser(_))));
        assert!(matches!(filters(&["--netns", "no-such-netns"]), Err(ConfigError::UnknownNetns { .. })));
        assert!(Cli::try_parse_from(["tcptrace", "--addr", "10.0.0.0/33"]).is_err());
        assert!(Cli::try_parse_from(["tcptrace", "--addr", "nonsense"]).is_err());
    }
}
