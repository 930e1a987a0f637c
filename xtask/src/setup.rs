//! Installs the pinned eBPF toolchain and the test tools on a Debian machine.
//! Each step checks first, so a second run costs a few process spawns; each
//! install says in one line what it installs.
use std::{path::Path, process::Command};

use anyhow::{Result, anyhow, bail};

use crate::shell::{as_root, found, output, run, workspace_root};

#[path = "../../tcptrace/build/ebpf_toolchain.rs"]
mod ebpf_toolchain;
pub use ebpf_toolchain::Pins;

/// Debian packages for the kernel tests: iproute2 (ip netns), nftables (lossy
/// paths), python3 (the peers), prometheus (a real server scraping
/// --metrics) and syslog-ng-core (a real collector running
/// deploy/syslog-ng/tcptrace.conf). LLVM for bpf-linker comes from the pins.
const TEST_PACKAGES: &[&str] = &["iproute2", "nftables", "python3", "prometheus", "syslog-ng-core"];

pub fn pins() -> Result<Pins> {
    Pins::read(&workspace_root().join("Cargo.toml")).map_err(|e| anyhow!(e))
}

pub fn all() -> Result<()> {
    let pins = pins()?;
    let llvm_dev = format!("llvm-{}-dev", pins.llvm_major);
    packages(&[&[llvm_dev.as_str()], TEST_PACKAGES].concat())?;
    nightly(&pins)?;
    bpf_linker(&pins)?;
    // The same check tcptrace/build.rs makes: a pin that cannot work fails
    // here, naming both versions, not in bpf-linker's "Invalid record".
    pins.check_installed().map_err(|problem| anyhow!("after set-up: {problem}"))
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
    eprintln!("xtask: installing Debian packages {}", missing.join(", "));
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

/// The kernel programs' dated nightly with rust-src (-Z build-std=core).
fn nightly(pins: &Pins) -> Result<()> {
    if !found("rustup") {
        bail!("rustup is missing: install it (https://rustup.rs), then run again");
    }
    let installed =
        output(Command::new("rustup").args(["component", "list", "--toolchain", &pins.nightly, "--installed"]));
    if installed.is_some_and(|list| list.lines().any(|l| l.starts_with("rust-src"))) {
        return Ok(());
    }
    eprintln!("xtask: installing the kernel programs' toolchain {} with rust-src", pins.nightly);
    run(Command::new("rustup").args([
        "toolchain",
        "install",
        &pins.nightly,
        "--profile",
        "minimal",
        "--component",
        "rust-src",
    ]))
}

/// bpf-linker at the pinned version, linked against the pinned LLVM.
fn bpf_linker(pins: &Pins) -> Result<()> {
    let version = output(Command::new("bpf-linker").arg("--version"));
    let right_version = version.is_some_and(|v| v.split_whitespace().nth(1) == Some(pins.bpf_linker.as_str()));
    if right_version && ebpf_toolchain::bpf_linker_llvm_major() == Some(pins.llvm_major) {
        return Ok(());
    }
    let llvm = format!("llvm-{}", pins.llvm_major);
    eprintln!("xtask: installing bpf-linker {} built against LLVM {}", pins.bpf_linker, pins.llvm_major);
    // bpf-linker links libLLVM: without LLVM's bin first on PATH it fails with
    // "unable to find library -lLLVM".
    let llvm_bin = Path::new("/usr/lib").join(&llvm).join("bin");
    let path = format!("{}:{}", llvm_bin.display(), std::env::var("PATH").unwrap_or_default());
    run(Command::new("cargo")
        .current_dir(workspace_root())
        .args(["install", "bpf-linker", "--version", &pins.bpf_linker, "--locked", "--force", "--no-default-features"])
        .args(["--features", &llvm])
        .env("PATH", path))
}
