//! What this kernel's verifier takes, asked with tiny programs through
//! bpf(2): fentry programs at all, so that a locked-down kernel (EPERM)
//! costs one tiny load instead of each fentry rung's verification, and the
//! functions' ids are not looked up for aya (attach/targets.rs); BPF's atomic
//! exchange, which the kernel programs use where it exists.
use std::io;

/// bpf(2) commands, program type and attach type from include/uapi/linux/bpf.h.
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
const BPF_PROG_TYPE_TRACING: u32 = 26;
const BPF_TRACE_FENTRY: u32 = 24;

/// The head of `union bpf_attr` as BPF_PROG_LOAD reads it, up to attach_btf_id.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    prog_btf_fd: u32,
    func_info_rec_size: u32,
    func_info: u64,
    func_info_cnt: u32,
    line_info_rec_size: u32,
    line_info: u64,
    line_info_cnt: u32,
    attach_btf_id: u32,
    attach_btf_obj_fd: u32,
    _pad: u32,
}

/// Loads `return 0` as an fentry program on the kernel function with BTF id
/// `function`, then unloads it. Ok: fentry works here.
pub fn fentry(function: u32) -> io::Result<()> {
    // r0 = 0; exit
    let insns: [u64; 2] = [0xb7, 0x95];
    load(
        &insns,
        ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_TRACING,
            expected_attach_type: BPF_TRACE_FENTRY,
            attach_btf_id: function,
            ..ProgLoadAttr::default()
        },
    )
}

/// Whether the verifier takes BPF_XCHG (Linux 5.12+).
pub fn atomic_xchg() -> bool {
    let insns: [u64; 6] = [
        0x0000_0000_0000_01b7, // r1 = 0
        0x0000_0000_fff8_1a7b, // *(u64 *)(r10 - 8) = r1
        0x0000_0001_0000_01b7, // r1 = 1
        0x0000_00e1_fff8_1adb, // r1 = xchg_64(r10 - 8, r1)
        0x0000_0000_0000_00b7, // r0 = 0
        0x0000_0000_0000_0095, // exit
    ];
    load(&insns, ProgLoadAttr { prog_type: BPF_PROG_TYPE_SOCKET_FILTER, ..ProgLoadAttr::default() }).is_ok()
}

/// Loads `insns` as the program `attr` describes, then unloads it.
fn load(insns: &[u64], attr: ProgLoadAttr) -> io::Result<()> {
    let license = c"GPL";
    let attr = ProgLoadAttr {
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..attr
    };
    // SAFETY: attr is a valid, zero-padded bpf_attr prefix whose pointers
    // outlive the call; the size tells the kernel how much of it there is.
    let fd =
        unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, &attr as *const ProgLoadAttr, size_of::<ProgLoadAttr>()) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor the kernel just gave us and nobody else holds.
    unsafe { libc::close(fd as i32) };
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::mem::offset_of;

    use super::*;

    #[test]
    fn attr_layout_matches_the_kernel() {
        assert_eq!(offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(offset_of!(ProgLoadAttr, func_info), 80);
        assert_eq!(offset_of!(ProgLoadAttr, attach_btf_id), 108);
        assert_eq!(offset_of!(ProgLoadAttr, attach_btf_obj_fd), 112);
    }
}
