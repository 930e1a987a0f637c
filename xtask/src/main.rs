//! Developer tasks that are not `cargo build`: set up the eBPF toolchain, run
//! every test, run tcptrace as root, run a command under another kernel.
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod cpu;
mod deploy;
mod docs;
mod hold;
mod image;
mod loadgen;
mod setup;
mod shell;
mod tasks;
mod vm;

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Xtask {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing tcptrace needs (idempotent, fast when done).
    Setup,
    /// Set up, then run lints and every test, including the real-kernel ones (as root).
    Test,
    /// Set up, build in release mode and run tcptrace as root with ARGS.
    Run {
        /// Arguments for tcptrace, after `--`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Measure connection churn untraced and under tcptrace and its peers (table on stdout).
    Bench {
        /// Seconds of churn per measurement [default: 5; 1 with --smoke].
        #[arg(long)]
        seconds: Option<f64>,
        /// Rounds over all subjects, alternating; medians are reported [default: 3; 1 with --smoke].
        #[arg(long)]
        rounds: Option<usize>,
        /// Untraced and tcptrace only, one short round: keeps the command from rotting in CI.
        #[arg(long)]
        smoke: bool,
        /// Hold N idle connections open beside the churn (a busy host), in helper processes.
        #[arg(long, default_value_t = 0, value_name = "N")]
        busy: usize,
        /// Another tcptrace build, measured in the same rounds ("tcptrace baseline"):
        /// a change's effect, free of the drift between runs.
        #[arg(long, value_name = "PATH")]
        baseline: Option<std::path::PathBuf>,
        /// Instead of the churn: open N connections from helper processes as
        /// fast as they go, then close them all at once, under each tracer.
        #[arg(long, default_value_t = 0, value_name = "N")]
        burst: usize,
        /// Instead of the churn: start each tcptrace build (this one, --baseline)
        /// N times, alternating, and report the time to "ready" and peak RSS.
        #[arg(long, default_value_t = 0, value_name = "N", conflicts_with_all = ["smoke", "busy", "burst"])]
        starts: usize,
    },
    /// The benchmark's load generator (the bench runs it inside its namespace).
    #[command(hide = true)]
    Loadgen {
        #[arg(long)]
        seconds: f64,
        #[arg(long)]
        clients: usize,
        #[arg(long)]
        port: u16,
    },
    /// Idle connections for the bench's busy host (it runs several inside its namespace).
    #[command(hide = true)]
    Hold {
        #[arg(long)]
        connections: usize,
        #[arg(long)]
        addr: std::net::Ipv4Addr,
        #[arg(long)]
        port: u16,
    },
    /// Write the man page (tcptrace.1) and bash, zsh and fish completions, generated from the CLI.
    Docs {
        /// Where to write them.
        #[arg(long, default_value = "target/docs")]
        out: std::path::PathBuf,
    },
    /// Build the container image (FROM scratch, with podman) and check it: entrypoint, labels, files, --version.
    Image,
    /// Check deploy/tcptrace.service: systemd-analyze verify and security, then run it under systemd in a container.
    VerifyUnit,
    /// Boot a stock Debian kernel in QEMU/KVM and run a command there, on the host's files.
    Vm(vm::Options),
}

fn main() -> ExitCode {
    let result = match Xtask::parse().task {
        Task::Setup => setup::all(),
        Task::Test => tasks::test(),
        Task::Run { args } => tasks::run_tcptrace(&args),
        Task::Bench { seconds, rounds, smoke, busy, baseline, burst, starts } => bench::bench(&bench::Options {
            seconds: seconds.unwrap_or(if smoke { 1.0 } else { 5.0 }),
            rounds: rounds.unwrap_or(if smoke { 1 } else { 3 }),
            smoke,
            busy,
            baseline,
            burst,
            starts,
        }),
        Task::Docs { out } => docs::generate(&out).map(|files| {
            for file in files {
                eprintln!("xtask: wrote {}", file.display());
            }
        }),
        Task::Image => image::build().and_then(|tag| image::check(&tag)),
        Task::VerifyUnit => deploy::verify_systemd_unit().and_then(|()| deploy::run_unit_in_container()),
        Task::Loadgen { seconds, clients, port } => loadgen::run(seconds, clients, port),
        Task::Hold { connections, addr, port } => hold::run(connections, addr, port),
        // The guest command's exit status becomes ours.
        Task::Vm(options) => return vm::run_command(&options).map_or_else(failure, ExitCode::from),
    };
    result.map_or_else(failure, |()| ExitCode::SUCCESS)
}

fn failure(error: anyhow::Error) -> ExitCode {
    eprintln!("xtask: {error:#}");
    ExitCode::FAILURE
}
