//! Who holds the sockets open at start: an iterator over every open file of
//! every process (`iter/task_file`, Linux 5.8+), read once by userspace
//! (with the snapshot's dumps, after `ready`; before it with
//! `--no-snapshot`). It replaces reading every /proc/PID/fd link: the kernel
//! walks its own tables, ~10x faster on a host holding tens of thousands of
//! sockets (README, Performance). One record per socket file, with its
//! network namespace: read after capabilities are dropped, nothing else
//! could tell it then.
use aya_ebpf::{cty::c_void, helpers::generated::bpf_seq_write};
use tcptrace_common::SocketFile;

use crate::kernel::{netns_of_file, socket_inode, tgid_of};

/// The context is `struct bpf_iter__task_file`: pointers to the iterator's
/// meta (whose first member is the output's seq_file) and to the task, the
/// descriptor, and a pointer to the file, 8 bytes apart. The verifier types
/// the pointers from the kernel's BTF, so they are loaded directly.
#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/task_file")]
pub fn tcptrace_socket_files(ctx: *mut c_void) -> i32 {
    let words = ctx as *const u64;
    // SAFETY: the context's members, at their fixed places.
    let (meta, task, file) = unsafe { (words.read(), words.add(1).read(), words.add(3).read()) };
    if task == 0 || file == 0 {
        return 0;
    }
    let Some(inode) = socket_inode(file) else {
        return 0;
    };
    let record = SocketFile { inode, tgid: tgid_of(task), netns: netns_of_file(file) };
    // SAFETY: meta->seq, the seq_file the reader reads; the record lives on
    // the stack for the call, which copies it.
    unsafe {
        let seq = (meta as *const u64).read();
        bpf_seq_write(seq as *mut _, (&record as *const SocketFile).cast(), size_of::<SocketFile>() as u32);
    }
    0
}
