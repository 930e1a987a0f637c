//! `LoadConfig::filters` bits, each naming the kernel map that holds its values,
//! and the key types of those maps.

use crate::COMM_LEN;

/// Owner's pid in `FILTER_PIDS`.
pub const PID: u32 = 1;
/// Either port in `FILTER_PORTS`.
pub const PORT: u32 = 1 << 1;
/// Local port in `FILTER_LPORTS`.
pub const LPORT: u32 = 1 << 2;
/// Remote port in `FILTER_RPORTS`.
pub const RPORT: u32 = 1 << 3;
/// Owner's uid in `FILTER_UIDS`.
pub const UID: u32 = 1 << 4;
/// Owner's command name in `FILTER_COMMS`.
pub const COMM: u32 = 1 << 5;
/// Either address inside a prefix of `FILTER_ADDRS`.
pub const ADDR: u32 = 1 << 6;
/// Network namespace inode in `FILTER_NETNS`.
pub const NETNS: u32 = 1 << 7;
/// Owner's cgroup id in `FILTER_CGROUPS` (the given cgroups and their
/// descendants; the kernel adds cgroups created later under them).
pub const CGROUP: u32 = 1 << 10;
/// IPv4 connections (AF_INET, or AF_INET6 with IPv4-mapped addresses).
pub const IPV4: u32 = 1 << 8;
/// IPv6 connections (not IPv4-mapped).
pub const IPV6: u32 = 1 << 9;

/// Key of the kernel's port filter maps.
pub type PortKey = u16;
/// Key of the kernel's pid, uid and netns filter maps.
pub type PidKey = u32;
/// Key of the kernel's cgroup filter map.
pub type CgroupKey = u64;
/// Key of the kernel's command name filter map: NUL padded, as `Event::comm`.
pub type CommKey = [u8; COMM_LEN];
/// Data of the kernel's address filter (an LPM trie keyed by prefix length):
/// IPv6 bytes, IPv4 as `::ffff:a.b.c.d` so one trie serves both.
pub type AddrKey = [u8; 16];
