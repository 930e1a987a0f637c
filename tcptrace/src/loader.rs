//! Load the kernel object, set its load-time globals and filter maps, attach.
//!
//! Which method each hook gets is attach.rs's business.
use std::{
    os::fd::{AsFd, AsRawFd},
    path::Path,
    sync::Arc,
    time::{Instant, SystemTime},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{
        Array, HashMap, Map, MapData,
        lpm_trie::{Key, LpmTrie},
    },
};
use tcptrace_common::{AddrKey, CONN_SIZE, KernelOffsets, LoadConfig};

use crate::{
    attach::{
        self, HookReport,
        targets::{self, Targets},
    },
    btf::Btf,
    config::{Attach, Config, Method},
    error::LoadError,
    events::EventKind,
    filters::{self, Filters},
    probe, snapshot,
    tracefs::{self, SendResetLayout},
};

mod starting;

use starting::SNAPSHOT_PENDING;
pub use starting::{Starting, finish_snapshot};

/// The kernel programs, built by build.rs.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tcptrace"));

const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";

/// The loaded programs. Dropping it detaches every link and unloads everything.
pub struct Tracer {
    pub ebpf: Ebpf,
    pub hooks: Vec<HookReport>,
    /// The kernel's names for why it sends a RST, by value.
    pub reset_reasons: Vec<Arc<str>>,
    /// Connections open before we attached, still being listed (unless --no-snapshot).
    pub snapshot: Option<Starting>,
}

pub fn load(config: &Config) -> Result<Tracer, LoadError> {
    let started = Instant::now();
    let phase = |name: &str| log::debug!("start-up: {name} done at {:?}", started.elapsed());
    ensure_privileged()?;
    // The connection map's bucket array (16 MB for a million sockets) takes
    // ~12 ms to create: from the first millisecond, on a thread of its own.
    let max_sockets = config.max_sockets;
    let conns = std::thread::spawn(move || create_conns(max_sockets));
    let tracefs = tracefs::root()?;
    let send_reset = tracefs::check_layouts(&tracefs)?;
    phase("tracepoint layouts");
    // The snapshot's sockets, one per network namespace, on the other core.
    let since = SystemTime::now();
    let snapshot = config
        .events
        .contains(EventKind::Snapshot)
        .then(|| std::thread::spawn(move || snapshot::Pending::open(Path::new("/proc"), since)));
    let attach = config.attach;
    let btf = Btf::from_file(Path::new(BTF_PATH))?;
    // The ids aya needs for the tp_btf and fentry rungs and the iterator,
    // found in the same lean index instead of aya's full parse of the kernel
    // BTF; aya's BTF of them is made on the other core (targets.rs).
    let targets = (attach != Attach::Only(Method::Tracepoint)).then(|| targets::Pending::start(&btf));
    phase("BTF ids of the tracepoints");
    let (offsets, fentry) = (kernel_offsets(&btf)?, fentry_allowed(&btf, attach));
    let functions = targets.as_ref().map(|_| Targets::functions(&btf, matches!(fentry, Some(Ok(())))));
    drop(btf);
    phase("BTF offsets and functions");
    let atomic_xchg = probe::atomic_xchg();
    log::debug!("BPF atomic exchange: {}", if atomic_xchg { "yes" } else { "no (before Linux 5.12)" });
    let load_config = LoadConfig {
        offsets,
        events: config.traced_events().mask(),
        filters: config.filters.bits(),
        send_reset_has_reason: u8::from(send_reset == SendResetLayout::WithReason),
        atomic_xchg: u8::from(atomic_xchg),
        _pad: [0; 2],
    };
    let mut loader = EbpfLoader::new();
    loader
        .override_global("CONFIG", &load_config, true)
        .map_max_entries("EVENTS", config.ring_buffer_bytes)
        .map_max_entries("PENDING_CONNECT", if atomic_xchg { 1 } else { config.max_sockets });
    // Maps left unused at one entry: a 65,536-entry hash costs ~0.75 ms to create.
    if config.filters.cgroups.is_empty() {
        loader.map_max_entries("FILTER_CGROUPS", 1);
    }
    if snapshot.is_none() {
        loader.map_max_entries("BORN_DURING_SNAPSHOT", 1);
    }
    let mut ebpf = loader.load(OBJECT)?;
    fill_filters(&mut ebpf, &config.filters)?;
    phase("object and maps");

    let targets = targets.zip(functions).map(|(targets, functions)| targets.finish(functions)).transpose()?;
    phase("aya's BTF of the attach targets");
    swap_in_conns(&ebpf, conns.join().map_err(|_| LoadError::ConnsThread)??)?;
    phase("connection map");
    let snapshot = snapshot.map(|thread| thread.join().map_err(|_| LoadError::SnapshotThread)).transpose()?;
    if snapshot.is_some() {
        set_flag(&mut ebpf, SNAPSHOT_PENDING, true)?;
    }
    let mut hooks = attach::attach_all(&mut ebpf, config.attach, fentry, targets.as_ref(), snapshot.as_ref())?;
    let connect_at_syscall_exit = hooks.iter().any(|hook| hook.programs.contains(&attach::CONNECT_AT_SYSCALL_EXIT));
    set_flag(&mut ebpf, CONNECT_FLAG, connect_at_syscall_exit)?;
    phase("attach");
    // After attaching, so a listener opened meanwhile is seen by one or the other.
    let (walk, report) = attach::socket_files::prepare(&mut ebpf, targets.as_ref());
    hooks.push(report);
    let snapshot = starting::owners(&mut ebpf, snapshot, walk)?;
    phase("owners of listeners (before ready unless the snapshot's dumps walk them)");
    Ok(Tracer { ebpf, hooks, reset_reasons: tracefs::reset_reasons(&tracefs), snapshot })
}

const CONNECT_FLAG: &str = "CONNECT_AT_SYSCALL_EXIT";

/// The hash the programs keep every tracked socket in (`CONNS`), created
/// apart from the object so that its size costs no start-up.
fn create_conns(max_sockets: u32) -> Result<MapData, LoadError> {
    const NO_PREALLOC: u32 = 1;
    let shape = aya_obj::Map::new_from_params(
        aya_obj::generated::bpf_map_type::BPF_MAP_TYPE_HASH as u32,
        size_of::<u64>() as u32,
        CONN_SIZE as u32,
        max_sockets,
        NO_PREALLOC,
    );
    MapData::create(shape, CONNS, None).map_err(|source| LoadError::Map { name: CONNS, source })
}

const CONNS: &str = "CONNS";

/// Puts `hash` under the file descriptor of the object's one-entry `CONNS`.
/// aya wrote that number into the programs' instructions when it loaded the
/// object, and the kernel resolves it only as each program is loaded
/// (attach.rs), so every program gets the full-size hash. aya keeps owning
/// the descriptor and closes it with the others.
fn swap_in_conns(ebpf: &Ebpf, hash: MapData) -> Result<(), LoadError> {
    let Some(Map::HashMap(placeholder)) = ebpf.map(CONNS) else {
        return Err(LoadError::MissingMap(CONNS));
    };
    // SAFETY: both descriptors are open and stay so; dup2 replaces what the
    // placeholder's number refers to in one step, and `hash` closes only its own.
    if unsafe { libc::dup2(hash.fd().as_fd().as_raw_fd(), placeholder.fd().as_fd().as_raw_fd()) } < 0 {
        return Err(LoadError::ConnsSwap(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Index 0 of a one-entry array the programs read as a flag: `CONNECT_FLAG`
/// (connect() is seen at its syscall's exit, so the state program notes
/// which socket each thread is connecting, maps.rs) or `SNAPSHOT_PENDING`.
fn set_flag(ebpf: &mut Ebpf, name: &'static str, on: bool) -> Result<(), LoadError> {
    let map = ebpf.map_mut(name).ok_or(LoadError::MissingMap(name))?;
    let mut flag: Array<_, u32> = Array::try_from(map).map_err(|source| LoadError::Map { name, source })?;
    flag.set(0, &u32::from(on), 0).map_err(|source| LoadError::Map { name, source })
}

/// Whether fentry programs load here (None: nobody will try them).
fn fentry_allowed(btf: &Btf, attach: Attach) -> Option<Result<(), String>> {
    if matches!(attach, Attach::Only(method) if method != Method::Fentry) {
        return None;
    }
    let Some(function) = btf.function_id("tcp_connect") else {
        return Some(Err("kernel BTF has no tcp_connect".to_owned()));
    };
    Some(probe::fentry(function).map_err(|error| match error.raw_os_error() {
        Some(libc::EPERM) => "refused by the kernel (EPERM)".to_owned(),
        _ => error.to_string(),
    }))
}

/// Member offsets (and one enum value) of the running kernel, for the programs' pointer walks.
pub fn kernel_offsets(btf: &Btf) -> Result<KernelOffsets, LoadError> {
    Ok(KernelOffsets {
        sock_net: btf.offset_of("sock", "__sk_common.skc_net")?,
        net_ns_inum: btf.offset_of("net", "ns.inum")?,
        sock_num: btf.offset_of("sock", "__sk_common.skc_num")?,
        task_files: btf.offset_of("task_struct", "files")?,
        files_fdt: btf.offset_of("files_struct", "fdt")?,
        fdtable_fd: btf.offset_of("fdtable", "fd")?,
        file_private_data: btf.offset_of("file", "private_data")?,
        socket_sk: btf.offset_of("socket", "sk")?,
        sock_cookie: btf.offset_of("sock", "__sk_common.skc_cookie")?,
        sock_err: btf.offset_of("sock", "sk_err")?,
        sock_flags: btf.offset_of("sock", "__sk_common.skc_flags")?,
        sock_flag_done: btf.enum_value("sock_flags", "SOCK_DONE")? as u32,
        tcp_bytes_acked: btf.offset_of("tcp_sock", "bytes_acked")?,
        tcp_bytes_received: btf.offset_of("tcp_sock", "bytes_received")?,
        tcp_snd_una: btf.offset_of("tcp_sock", "snd_una")?,
        tcp_write_seq: btf.offset_of("tcp_sock", "write_seq")?,
        tcp_segs_out: btf.offset_of("tcp_sock", "segs_out")?,
        tcp_segs_in: btf.offset_of("tcp_sock", "segs_in")?,
        tcp_total_retrans: btf.offset_of("tcp_sock", "total_retrans")?,
        tcp_srtt_us: btf.offset_of("tcp_sock", "srtt_us")?,
        skb_dev: btf.offset_of("sk_buff", "dev")?,
        dev_net: btf.offset_of("net_device", "nd_net")?,
        sock_family: btf.offset_of("sock", "__sk_common.skc_family")?,
        sock_daddr: btf.offset_of("sock", "__sk_common.skc_daddr")?,
        inet_saddr: btf.offset_of("inet_sock", "inet_saddr")?,
        inet_sport: btf.offset_of("inet_sock", "inet_sport")?,
        sock_dport: btf.offset_of("sock", "__sk_common.skc_dport")?,
        sock_v6_daddr: btf.offset_of("sock", "__sk_common.skc_v6_daddr")?,
        sock_v6_rcv_saddr: btf.offset_of("sock", "__sk_common.skc_v6_rcv_saddr")?,
        sock_protocol: btf.offset_of("sock", "sk_protocol")?,
        sock_state: btf.offset_of("sock", "__sk_common.skc_state")?,
        task_tgid: btf.offset_of("task_struct", "tgid")?,
        file_inode: btf.offset_of("file", "f_inode")?,
        inode_mode: btf.offset_of("inode", "i_mode")?,
        inode_ino: btf.offset_of("inode", "i_ino")?,
    })
}

/// The values of every filter in force, into the kernel's filter maps.
fn fill_filters(ebpf: &mut Ebpf, filters: &Filters) -> Result<(), LoadError> {
    fill_filter(ebpf, "FILTER_PIDS", &filters.pids)?;
    fill_filter(ebpf, "FILTER_UIDS", &filters.uids)?;
    fill_filter(ebpf, "FILTER_COMMS", &filters.comms)?;
    fill_filter(ebpf, "FILTER_PORTS", &filters.ports)?;
    fill_filter(ebpf, "FILTER_LPORTS", &filters.lports)?;
    fill_filter(ebpf, "FILTER_RPORTS", &filters.rports)?;
    fill_filter(ebpf, "FILTER_NETNS", &filters.netns)?;
    fill_filter(ebpf, "FILTER_CGROUPS", &filters.cgroups)?;
    const ADDRS: &str = "FILTER_ADDRS";
    let map = ebpf.map_mut(ADDRS).ok_or(LoadError::MissingMap(ADDRS))?;
    let mut trie: LpmTrie<_, AddrKey, u8> =
        LpmTrie::try_from(map).map_err(|source| LoadError::Map { name: ADDRS, source })?;
    for network in &filters.addrs {
        let (prefix_len, data) = filters::addr_key(network);
        trie.insert(&Key::new(prefix_len, data), &1, 0).map_err(|source| LoadError::Map { name: ADDRS, source })?;
    }
    Ok(())
}

fn fill_filter<K: aya::Pod>(ebpf: &mut Ebpf, name: &'static str, keys: &[K]) -> Result<(), LoadError> {
    let map = ebpf.map_mut(name).ok_or(LoadError::MissingMap(name))?;
    let mut filter: HashMap<_, K, u8> = HashMap::try_from(map).map_err(|source| LoadError::Map { name, source })?;
    for key in keys {
        filter.insert(key, &1, 0).map_err(|source| LoadError::Map { name, source })?;
    }
    Ok(())
}

/// Root, or the capabilities that loading tracing programs needs.
fn ensure_privileged() -> Result<(), LoadError> {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return Ok(());
    }
    const CAP_NET_ADMIN: u32 = 12;
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    let has = |cap: u32| effective & (1 << cap) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON) && has(CAP_NET_ADMIN)) {
        Ok(())
    } else {
        Err(LoadError::NotPrivileged)
    }
}
