//! Where the kernel structs' members sit in the running kernel.

/// Byte offsets of the kernel struct members the programs read, taken from the
/// running kernel's BTF at start: Rust eBPF gets no CO-RE relocations, so no
/// offset of one kernel build may be compiled into the object.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `sock_common.skc_net` (a `struct net *`).
    pub sock_net: u32,
    /// `net.ns.inum`: the namespace's inode number.
    pub net_ns_inum: u32,
    /// `sock_common.skc_num`: the local port, host byte order.
    pub sock_num: u32,
    /// `task_struct.files`.
    pub task_files: u32,
    /// `files_struct.fdt`.
    pub files_fdt: u32,
    /// `fdtable.fd`.
    pub fdtable_fd: u32,
    /// `file.private_data`: the `struct socket *` of a socket file.
    pub file_private_data: u32,
    /// `socket.sk`.
    pub socket_sk: u32,
    /// `sock_common.skc_cookie`: the socket's cookie, 0 until something asks for one.
    pub sock_cookie: u32,
    /// `sock.sk_err`: the error a process would see.
    pub sock_err: u32,
    /// `sock.__sk_common.skc_flags` (`sk_flags`), a bit set of `enum sock_flags`.
    pub sock_flags: u32,
    /// Not an offset: the bit of `sk_flags` that tcp_fin sets when the peer's
    /// FIN arrives (`enum sock_flags` SOCK_DONE).
    pub sock_flag_done: u32,
    /// `tcp_sock.bytes_acked`.
    pub tcp_bytes_acked: u32,
    /// `tcp_sock.bytes_received`.
    pub tcp_bytes_received: u32,
    /// `tcp_sock.snd_una`: the first sequence number the peer has not acknowledged.
    pub tcp_snd_una: u32,
    /// `tcp_sock.write_seq`: one past the last sequence number queued to
    /// send (our FIN included, once queued).
    pub tcp_write_seq: u32,
    /// `tcp_sock.segs_out`.
    pub tcp_segs_out: u32,
    /// `tcp_sock.segs_in`.
    pub tcp_segs_in: u32,
    /// `tcp_sock.total_retrans`.
    pub tcp_total_retrans: u32,
    /// `tcp_sock.srtt_us` (8 times the smoothed RTT).
    pub tcp_srtt_us: u32,
    /// `sk_buff.dev`.
    pub skb_dev: u32,
    /// `net_device.nd_net`: the device's namespace.
    pub dev_net: u32,
    // The connection's tuple, read from the socket where no tracepoint
    // record carries it (tp_btf hooks get the raw `struct sock *`).
    /// `sock_common.skc_family`.
    pub sock_family: u32,
    /// `sock_common.skc_daddr`: the remote IPv4 address.
    pub sock_daddr: u32,
    /// `inet_sock.inet_saddr`: the local IPv4 address.
    pub inet_saddr: u32,
    /// `inet_sock.inet_sport`: the local port, network byte order. Unlike
    /// skc_num, it survives the port's release as the socket enters CLOSE.
    pub inet_sport: u32,
    /// `sock_common.skc_dport`: the remote port, network byte order.
    pub sock_dport: u32,
    /// `sock_common.skc_v6_daddr`.
    pub sock_v6_daddr: u32,
    /// `sock_common.skc_v6_rcv_saddr`.
    pub sock_v6_rcv_saddr: u32,
    /// `sock.sk_protocol`.
    pub sock_protocol: u32,
    /// `sock_common.skc_state`: the TCP state.
    pub sock_state: u32,
    // The socket-files iterator's walk from an open file to its process.
    /// `task_struct.tgid`.
    pub task_tgid: u32,
    /// `file.f_inode`.
    pub file_inode: u32,
    /// `inode.i_mode`: the file type is in its S_IFMT bits.
    pub inode_mode: u32,
    /// `inode.i_ino`.
    pub inode_ino: u32,
}
