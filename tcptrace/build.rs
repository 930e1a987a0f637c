//! Compiles the kernel programs (tcptrace-ebpf) for the bpf target, so a plain
//! `cargo build` produces a complete binary. Needs the nightly toolchain with
//! rust-src and bpf-linker: `cargo xtask setup` installs them.
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let ebpf = Package { name: "tcptrace-ebpf", root_dir: "../tcptrace-ebpf", ..Default::default() };
    aya_build::build_ebpf([ebpf], Toolchain::default())
}
