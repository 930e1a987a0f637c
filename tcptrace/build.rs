//! Compiles the kernel programs (tcptrace-ebpf) for the bpf target, so a plain
//! `cargo build` produces a complete binary, with the nightly and bpf-linker
//! pinned in the workspace Cargo.toml. Checks those pins first: a nightly on
//! another LLVM than bpf-linker's otherwise fails deep inside the link with
//! "Invalid record". `cargo xtask setup` installs what the pins name.
//!
//! tcptrace-ebpf is also a build-dependency (its empty host library), so cargo
//! reruns this script when it or anything it uses (tcptrace-common) changes.
use std::path::Path;

use aya_build::{Package, Toolchain};

#[path = "build/ebpf_toolchain.rs"]
mod ebpf_toolchain;

fn main() -> anyhow::Result<()> {
    println!("cargo::rerun-if-changed=../Cargo.toml");
    println!("cargo::rerun-if-changed=build");
    let skip = std::env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    let pins = ebpf_toolchain::Pins::read(Path::new("../Cargo.toml")).map_err(anyhow::Error::msg)?;
    if !skip {
        pins.check_installed().map_err(anyhow::Error::msg)?;
    }
    let ebpf = Package { name: "tcptrace-ebpf", root_dir: "../tcptrace-ebpf", ..Default::default() };
    aya_build::build_ebpf([ebpf], Toolchain::Custom(&pins.nightly))
}
