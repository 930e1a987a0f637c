//! The tasks behind the README's two commands.
use std::{os::unix::process::CommandExt, process::Command};

use anyhow::{Result, bail};

use crate::{
    setup,
    shell::{as_root, is_root, run, workspace_root},
};

/// Lints and every test. Kernel tests load eBPF programs, so test binaries run
/// as root (through sudo when we are not).
pub fn test() -> Result<()> {
    setup::all()?;
    let root = workspace_root();
    run(Command::new("cargo").current_dir(&root).args(["fmt", "--all", "--check"]))?;
    run(Command::new("cargo").current_dir(&root).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    let mut cargo_test = Command::new("cargo");
    cargo_test.current_dir(&root).args(["test", "--workspace"]);
    if !is_root() {
        cargo_test.env("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER", "sudo -E");
    }
    run(&mut cargo_test)
}

/// Builds tcptrace in release mode and becomes it, as root: exec, so Ctrl-C
/// and the exit status belong to tcptrace alone.
pub fn run_tcptrace(args: &[String]) -> Result<()> {
    setup::all()?;
    let root = workspace_root();
    run(Command::new("cargo").current_dir(&root).args(["build", "--release", "--package", "tcptrace"]))?;
    let binary = root.join("target/release/tcptrace");
    let error = as_root(&binary.to_string_lossy())?.args(args).exec();
    bail!("cannot start {}: {error}", binary.display())
}
