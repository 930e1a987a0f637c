//! Installs the eBPF toolchain and test tools on a Debian machine. Each step
//! checks first, so a second run costs a few process spawns.
use std::process::Command;

use anyhow::{Result, bail};

use crate::shell::{as_root, found, output, run};

/// LLVM that bpf-linker links against; must match the bpf-linker feature.
const LLVM: &str = "llvm-22";
const BPF_LINKER_VERSION: &str = "0.13.0";
/// Debian packages: LLVM for bpf-linker; iproute2 (ip netns), nftables (lossy
/// paths) and python3 (the peers) for the kernel tests.
const PACKAGES: &[&str] = &["llvm-22-dev", "iproute2", "nftables", "python3"];

pub fn all() -> Result<()> {
    packages(PACKAGES)?;
    nightly_rust_src()?;
    bpf_linker()?;
    Ok(())
}

/// Installs the Debian packages among `wanted` that are missing.
pub fn packages(wanted: &[&str]) -> Result<()> {
    let missing: Vec<&str> = wanted.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !found("apt-get") {
        bail!(
            "this is not a Debian-like system: install {} with your package manager, then run again",
            missing.join(", ")
        );
    }
    run(as_root("apt-get")?.arg("update"))?;
    run(as_root("apt-get")?
        .args(["install", "-y", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn installed(package: &str) -> bool {
    output(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_some_and(|s| s.contains("install ok installed"))
}

/// aya-build compiles the kernel programs with nightly's -Z build-std=core.
fn nightly_rust_src() -> Result<()> {
    if !found("rustup") {
        bail!("rustup is missing: install it (https://rustup.rs), then run again");
    }
    let installed = output(Command::new("rustup").args(["component", "list", "--toolchain", "nightly", "--installed"]));
    if installed.is_some_and(|list| list.lines().any(|l| l.starts_with("rust-src"))) {
        return Ok(());
    }
    run(Command::new("rustup").args([
        "toolchain",
        "install",
        "nightly",
        "--profile",
        "minimal",
        "--component",
        "rust-src",
    ]))
}

fn bpf_linker() -> Result<()> {
    let version = output(Command::new("bpf-linker").arg("--version"));
    if version.is_some_and(|v| v.contains(BPF_LINKER_VERSION)) {
        return Ok(());
    }
    // bpf-linker links libLLVM: without LLVM's bin first on PATH it fails with
    // "unable to find library -lLLVM".
    let path = format!("/usr/lib/{LLVM}/bin:{}", std::env::var("PATH").unwrap_or_default());
    run(Command::new("cargo")
        .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION, "--locked", "--no-default-features"])
        .args(["--features", LLVM])
        .env("PATH", path))
}
