//! Reads of kernel structs at offsets userspace found in the running kernel's BTF.
use aya_ebpf::{
    cty::c_void,
    helpers::{
        bpf_get_current_task, bpf_probe_read_kernel,
        generated::{bpf_get_socket_cookie, bpf_skc_to_tcp_sock},
    },
};
use tcptrace_common::{Event, family, flags, tcp_state as tcp};

use crate::{
    maps::config,
    record::{Tuple, ipv4_field},
};

/// Reads a `T` at `base + offset` in kernel memory.
fn read<T>(base: u64, offset: u32) -> Result<T, i64> {
    // SAFETY: bpf_probe_read_kernel faults safely on any address.
    unsafe { bpf_probe_read_kernel((base + u64::from(offset)) as *const T) }.map_err(i64::from)
}

/// Loads a `T` at `sk + offset` straight from a BTF-typed `struct sock *`
/// (a tp_btf argument): the verifier checks the offset against the kernel's
/// BTF (CONFIG is frozen, so it sees the offsets as constants) and turns a
/// fault into zero, so no helper call is needed. Not for addresses from a
/// classic tracepoint's record: to the verifier those are plain numbers.
#[inline(always)]
fn load<T: Copy>(sk: u64, offset: u32) -> T {
    // SAFETY: see above; the verifier rejects the program otherwise.
    unsafe { ((sk + u64::from(offset)) as *const T).read_volatile() }
}

/// A `T` at `base + offset`: loaded straight if `base` is BTF-typed (see
/// `load`), else read with the helper; zero if unreadable.
#[inline(always)]
fn field<T: Copy + Default>(base: u64, offset: u32, typed: bool) -> T {
    if typed { load(base, offset) } else { read(base, offset).unwrap_or_default() }
}

/// A `T` at `base + offset` as `field` reads it, or None where the helper
/// could not read it.
#[inline(always)]
fn try_field<T: Copy>(base: u64, offset: u32, typed: bool) -> Option<T> {
    if typed { Some(load(base, offset)) } else { read(base, offset).ok() }
}

/// The socket as a `struct tcp_sock`, for the fields past `struct sock`
/// (inet_sock's, tcp_sock's): the verifier knows a tp_btf argument only as
/// a `struct sock` and refuses loads beyond it. The helper checks it is a
/// full TCP socket (0 if not); an untyped address is returned as it is.
#[inline(always)]
fn tcp_sock(sk: u64, typed: bool) -> u64 {
    if !typed {
        return sk;
    }
    // SAFETY: `sk` is the program's BTF-typed socket argument.
    unsafe { bpf_skc_to_tcp_sock(sk as *mut _) as u64 }
}

/// An `in6_addr` of a BTF-typed socket, as four 32-bit loads (its words).
#[inline(always)]
fn load_in6(sk: u64, offset: u32) -> [u8; 16] {
    let mut out = [0; 16];
    let mut i = 0;
    while i < 4 {
        let word: u32 = load(sk, offset + 4 * i as u32);
        out[4 * i..4 * i + 4].copy_from_slice(&word.to_ne_bytes());
        i += 1;
    }
    out
}

/// Inode number of the network namespace behind a `possible_net_t` at
/// `base + offset`, read with the helper even from a BTF-typed socket: a
/// typed load of the `struct net *` has the verifier search the kernel's
/// whole BTF (some 130,000 types) by name, up to four times for each time it
/// walks that load, which made the state program take 9-16 ms to load
/// instead of 6-9.
#[inline(always)]
fn netns_at(base: u64, offset: u32) -> u32 {
    match read::<u64>(base, offset) {
        Ok(net) if net != 0 => read(net, config!(offsets.net_ns_inum)).unwrap_or(0),
        _ => 0,
    }
}

/// Inode number of the network namespace a socket lives in.
#[inline(always)]
pub fn netns_of(sk: u64) -> u32 {
    netns_at(sk, config!(offsets.sock_net))
}

/// Inode number of the namespace of the device a packet came in on.
pub fn netns_of_skb(skb: u64) -> u32 {
    match read::<u64>(skb, config!(offsets.skb_dev)) {
        Ok(dev) if dev != 0 => netns_at(dev, config!(offsets.dev_net)),
        _ => 0,
    }
}

/// The socket's local port, host byte order.
pub fn local_port_of(sk: u64) -> u16 {
    read(sk, config!(offsets.sock_num)).unwrap_or(0)
}

/// The protocol of a BTF-typed socket (see `load`); IPPROTO_TCP is 6.
pub fn protocol_of(sk: u64) -> u16 {
    load(sk, config!(offsets.sock_protocol))
}

/// The TCP state of a socket (`typed`: see `field`).
#[inline(always)]
pub fn state_of(sk: u64, typed: bool) -> u8 {
    field(sk, config!(offsets.sock_state), typed)
}

/// The tuple read from a BTF-typed socket, loaded straight (see `load`):
/// the fields the classic tracepoints copy into their records.
pub struct SockTuple(pub u64);

impl Tuple for SockTuple {
    const TYPED: bool = true;

    #[inline(always)]
    fn fill(&self, conn: &mut Event) {
        let sk = self.0;
        let af = load::<u16>(sk, config!(offsets.sock_family)) as u8;
        conn.family = af;
        let inet = tcp_sock(sk, true);
        if inet != 0 {
            conn.sport = u16::from_be(load(inet, config!(offsets.inet_sport)));
        }
        conn.dport = u16::from_be(load(sk, config!(offsets.sock_dport)));
        if af == family::INET6 {
            conn.saddr = load_in6(sk, config!(offsets.sock_v6_rcv_saddr));
            conn.daddr = load_in6(sk, config!(offsets.sock_v6_daddr));
        } else {
            let saddr: u32 = if inet != 0 { load(inet, config!(offsets.inet_saddr)) } else { 0 };
            conn.saddr = ipv4_field(saddr.to_ne_bytes());
            conn.daddr = ipv4_field(load::<u32>(sk, config!(offsets.sock_daddr)).to_ne_bytes());
        }
    }
}

/// The socket's cookie, as sock_diag reports it. A BTF-typed socket gets
/// one from the helper (made now if it has none, the same one sock_diag
/// would make); otherwise it is read, set only for a socket userspace's
/// snapshot listed before attaching, else 0.
#[inline(always)]
pub fn cookie_of(sk: u64, typed: bool) -> u64 {
    if typed {
        // SAFETY: `sk` is the typed socket the hook was given.
        unsafe { bpf_get_socket_cookie(sk as *mut c_void) }
    } else {
        field(sk, config!(offsets.sock_cookie), typed)
    }
}

/// Handshake time of a passive connection: the child socket is born at the
/// final ACK, so its first RTT sample (SYN-ACK sent to ACK received) is the
/// handshake as this host saw it. srtt_us holds 8x the RTT; round up so a
/// sub-microsecond loopback handshake is not reported as none.
#[inline(always)]
pub fn synack_rtt_us(sk: u64, typed: bool) -> u32 {
    let tp = tcp_sock(sk, typed);
    if tp == 0 {
        return 0;
    }
    field::<u32>(tp, config!(offsets.tcp_srtt_us), typed).div_ceil(8)
}

/// Copies the connection's counters and error into its template as it enters
/// CLOSE from `old`, with what the byte counters hold besides data.
#[inline(always)]
pub fn fill_close_stats(sk: u64, conn: &mut Event, old: u8, typed: bool) {
    conn.error = field::<i32>(sk, config!(offsets.sock_err), typed).unsigned_abs();
    if fin_received(sk, typed) {
        conn.flags |= flags::FIN_RECEIVED;
    }
    let tp = tcp_sock(sk, typed);
    if tp == 0 {
        return;
    }
    conn.bytes_acked = field(tp, config!(offsets.tcp_bytes_acked), typed);
    conn.bytes_received = field(tp, config!(offsets.tcp_bytes_received), typed);
    if fin_acked(tp, old, typed) {
        conn.flags |= flags::FIN_ACKED;
    }
    conn.segs_out = field(tp, config!(offsets.tcp_segs_out), typed);
    conn.segs_in = field(tp, config!(offsets.tcp_segs_in), typed);
    conn.retransmits = field(tp, config!(offsets.tcp_total_retrans), typed);
    conn.srtt_us = field::<u32>(tp, config!(offsets.tcp_srtt_us), typed) >> 3;
}

/// The state a socket left for CLOSE, for a close seen only at its destroy.
/// After our FIN the state we last saw may be behind: the state program does
/// not look up FIN_WAIT2, CLOSING or TIME_WAIT unless `state` events are
/// asked for (state.rs). Which of them the socket reached, its FIN's
/// acknowledgement and the peer's FIN tell exactly (tcp_rcv_state_process,
/// tcp_fin); FIN_WAIT1 straight to CLOSE is an abort.
#[inline(always)]
pub fn state_before_close(sk: u64, last_seen: u8, typed: bool) -> u8 {
    if !matches!(last_seen, tcp::FIN_WAIT1 | tcp::FIN_WAIT2 | tcp::CLOSING) {
        return last_seen;
    }
    let tp = tcp_sock(sk, typed);
    let ours_acked = tp != 0 && fin_acked(tp, tcp::FIN_WAIT1, typed);
    match (ours_acked, fin_received(sk, typed)) {
        (true, true) => tcp::TIME_WAIT,
        (true, false) => tcp::FIN_WAIT2,
        (false, true) => tcp::CLOSING,
        (false, false) => tcp::FIN_WAIT1,
    }
}

/// Whether our FIN counts in bytes_acked. A socket that sent its FIN stays in
/// FIN_WAIT1, FIN_WAIT2, CLOSING or LAST_ACK until CLOSE (tcp_close_state,
/// then tcp_send_fin, which takes a sequence number: write_seq + 1), and the
/// FIN is acknowledged exactly when snd_una has reached write_seq. Which
/// transition got there says nothing: a RST or a timeout in LAST_ACK leaves
/// the FIN unacknowledged, a RST in FIN_WAIT2 finds it acknowledged.
#[inline(always)]
fn fin_acked(tp: u64, old: u8, typed: bool) -> bool {
    if !matches!(old, tcp::FIN_WAIT1 | tcp::FIN_WAIT2 | tcp::CLOSING | tcp::LAST_ACK) {
        return false;
    }
    // Two unreadable fields would compare equal as zeros: only reads that
    // succeeded count (a typed socket from the helper is always readable).
    let snd_una = try_field::<u32>(tp, config!(offsets.tcp_snd_una), typed);
    let write_seq = try_field::<u32>(tp, config!(offsets.tcp_write_seq), typed);
    matches!((snd_una, write_seq), (Some(una), Some(seq)) if una == seq)
}

/// Whether the peer's FIN counts in bytes_received: tcp_fin, which runs right
/// after the FIN advanced rcv_nxt, sets SOCK_DONE. The state path cannot
/// tell: FIN_WAIT2 -> CLOSE is also an orphaned socket handing over to a
/// TIME_WAIT mini-socket before the peer's FIN comes, which the full socket
/// never counts.
#[inline(always)]
fn fin_received(sk: u64, typed: bool) -> bool {
    let sk_flags: u64 = field(sk, config!(offsets.sock_flags), typed);
    (sk_flags >> (config!(offsets.sock_flag_done) & 63)) & 1 != 0
}

/// The `struct sock` behind file descriptor `fd` of the current task.
/// Walks task->files->fdt->fd[fd]->private_data (struct socket)->sk; on any
/// socket file private_data is its `struct socket`, and accept only returns sockets.
pub fn sock_of_fd(fd: u64) -> Result<u64, i64> {
    // SAFETY: helper without preconditions.
    let task = unsafe { bpf_get_current_task() };
    let files: u64 = read(task, config!(offsets.task_files))?;
    let fdt: u64 = read(files, config!(offsets.files_fdt))?;
    let fd_array: u64 = read(fdt, config!(offsets.fdtable_fd))?;
    let file: u64 = read(fd_array + fd * 8, 0)?;
    let socket: u64 = read(file, config!(offsets.file_private_data))?;
    read(socket, config!(offsets.socket_sk))
}

/// The inode number of `file` if it is a socket (S_IFSOCK), else None.
pub fn socket_inode(file: u64) -> Option<u64> {
    const S_IFMT: u16 = 0o170000;
    const S_IFSOCK: u16 = 0o140000;
    let inode: u64 = read(file, config!(offsets.file_inode)).ok().filter(|&inode| inode != 0)?;
    let mode: u16 = read(inode, config!(offsets.inode_mode)).ok()?;
    if mode & S_IFMT != S_IFSOCK {
        return None;
    }
    read(inode, config!(offsets.inode_ino)).ok()
}

/// Inode number of the network namespace of socket file `file`'s socket.
pub fn netns_of_file(file: u64) -> u32 {
    let sk = read::<u64>(file, config!(offsets.file_private_data))
        .and_then(|socket| read::<u64>(socket, config!(offsets.socket_sk)));
    match sk {
        Ok(sk) if sk != 0 => netns_of(sk),
        _ => 0,
    }
}

/// The process (thread group) id of `task`.
pub fn tgid_of(task: u64) -> u32 {
    read(task, config!(offsets.task_tgid)).unwrap_or(0)
}
