//! The tasks behind the README's two commands.
use std::{
    os::unix::process::CommandExt,
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};

use crate::{
    bench, deploy, image, setup,
    shell::{as_root, is_root, output, run, workspace_root},
    vm::{self, Series},
};

/// Lints and every test. Kernel tests load eBPF programs, so test binaries run
/// as root (through sudo when we are not).
pub fn test() -> Result<()> {
    setup::all()?;
    ensure_pinned_rustc()?;
    let root = workspace_root();
    run(Command::new("cargo").current_dir(&root).args(["fmt", "--all", "--check"]))?;
    run(Command::new("cargo").current_dir(&root).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ]))?;
    run(cargo_test().args(["--workspace", "--features", KERNEL_TESTS]))?;
    classic_tracepoint_tests()?;
    kernel_tests()?;
    // A short run so the benchmark command cannot rot; its numbers mean nothing here.
    bench::bench(&bench::Options {
        seconds: 1.0,
        rounds: 1,
        smoke: true,
        busy: 0,
        baseline: None,
        burst: 0,
        starts: 0,
    })?;
    // What deploy/ ships, checked offline (the release build is the bench's).
    image::check(&image::build()?)?;
    deploy::verify_systemd_unit()?;
    deploy::run_unit_in_container()
}

/// The feature that builds the real-kernel tests (they need root).
const KERNEL_TESTS: &str = "tcptrace/kernel-tests";

/// The userspace compiler must be the one rust-toolchain.toml pins; a
/// `cargo +other` or RUSTUP_TOOLCHAIN would otherwise test another build.
fn ensure_pinned_rustc() -> Result<()> {
    #[derive(serde::Deserialize)]
    struct File {
        toolchain: Toolchain,
    }
    #[derive(serde::Deserialize)]
    struct Toolchain {
        channel: String,
    }
    let root = workspace_root();
    let text = std::fs::read_to_string(root.join("rust-toolchain.toml")).context("rust-toolchain.toml")?;
    let pinned = toml::from_str::<File>(&text).context("rust-toolchain.toml")?.toolchain.channel;
    let used = output(Command::new("rustc").current_dir(&root).arg("--version")).unwrap_or_default();
    if used.split_whitespace().nth(1) != Some(pinned.as_str()) {
        bail!("rust-toolchain.toml pins rustc {pinned}, but this build uses {}", used.trim());
    }
    Ok(())
}

/// This host takes BTF tracepoints where a hook has them: the story again on
/// classic tracepoints alone, the rung of kernels without BTF.
fn classic_tracepoint_tests() -> Result<()> {
    eprintln!("xtask: kernel tests again on classic tracepoints only");
    run(cargo_test()
        .args(["-p", "tcptrace", "--features", KERNEL_TESTS])
        .args(["--test", "kernel", "--test", "story", "--test", "filters"])
        .env("TCPTRACE_TEST_ATTACH", "tracepoint"))
}

/// `cargo test` in the workspace, run as root (the real-kernel tests need it).
fn cargo_test() -> Command {
    let mut command = Command::new("cargo");
    command.current_dir(workspace_root()).arg("test");
    if !is_root() {
        command.env("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER", "sudo -E");
    }
    command
}

/// Kernel and attach method pairs the real-kernel tests run under again, so
/// each rung of the attach ladder is tested on a kernel that has it. Not 6.12
/// with kprobes: under QEMU's emulated CPUs that guest kernel sometimes dies
/// of an int3 Oops while kprobes are being inserted and removed (2 of 5 runs),
/// a fault of the emulation that real hardware does not have; kprobes are
/// covered on 6.1.
const VM_RUNS: &[(Series, &str)] = &[(Series::V6_1, "fentry"), (Series::V6_1, "kprobe"), (Series::V6_12, "fentry")];

/// The real-kernel tests again under Debian kernels in QEMU. A guest that
/// dies without reporting (emulation trouble) is booted once more; a test
/// that fails is never retried.
fn kernel_tests() -> Result<()> {
    let binaries = test_binaries(&["kernel", "story", "filters", "identity", "privileges"])?;
    for &(kernel, method) in VM_RUNS {
        eprintln!("xtask: kernel tests under Debian {kernel} with {method}");
        for binary in &binaries {
            let options = vm::Options {
                kernel,
                timeout: vm::TIMEOUT,
                env: vec![format!("TCPTRACE_TEST_ATTACH={method}")],
                command: vec![binary.clone(), "--test-threads=2".into()],
            };
            let what = format!("kernel tests under Debian {kernel} with {method}: {binary}");
            let status = vm::run_command(&options).or_else(|error| {
                eprintln!("xtask: {what}: {error:#}; booting once more");
                vm::run_command(&options)
            });
            let status = status.context(what.clone())?;
            if status != 0 {
                bail!("{what} failed (exit status {status})");
            }
        }
    }
    Ok(())
}

/// Builds tcptrace's integration tests `names` without running them; their
/// executables, in that order, from cargo's JSON messages.
fn test_binaries(names: &[&str]) -> Result<Vec<String>> {
    let mut build = Command::new("cargo");
    build.current_dir(workspace_root()).args(["test", "-p", "tcptrace", "--no-run", "--message-format=json"]);
    build.args(["--features", KERNEL_TESTS]);
    build.args(names.iter().flat_map(|name| ["--test", name]));
    let out = build.stderr(Stdio::inherit()).output().context("cannot start cargo test --no-run")?;
    if !out.status.success() {
        bail!("cargo test --no-run failed ({})", out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let executables: Vec<&str> =
        stdout.lines().filter_map(|line| line.split_once(r#""executable":""#)?.1.split('"').next()).collect();
    let executable = |name: &str| {
        // target/debug/deps/<name>-<hash>
        let path = executables
            .iter()
            .find(|path| path.rsplit_once('-').is_some_and(|(s, _)| s.ends_with(&format!("/{name}"))));
        path.map(|path| path.to_string()).with_context(|| format!("cargo built no test {name}"))
    };
    names.iter().map(|name| executable(name)).collect()
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
