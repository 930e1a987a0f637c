//! Reads of kernel structs at offsets userspace found in the running kernel's BTF.
use aya_ebpf::helpers::{bpf_get_current_task, bpf_probe_read_kernel};

use crate::maps::config;

/// Reads a `T` at `base + offset` in kernel memory.
fn read<T>(base: u64, offset: u32) -> Result<T, i64> {
    // SAFETY: bpf_probe_read_kernel faults safely on any address.
    unsafe { bpf_probe_read_kernel((base + u64::from(offset)) as *const T) }.map_err(i64::from)
}

/// Inode number of the network namespace a socket lives in.
pub fn netns_of(sk: u64) -> u32 {
    let net: u64 = read(sk, config!(offsets.sock_net)).unwrap_or(0);
    if net == 0 {
        return 0;
    }
    read(net, config!(offsets.net_ns_inum)).unwrap_or(0)
}

/// The socket's local port, host byte order.
pub fn local_port_of(sk: u64) -> u16 {
    read(sk, config!(offsets.sock_num)).unwrap_or(0)
}

/// The `struct sock` behind file descriptor `fd` of the current task, or 0.
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
