//! Developer tasks that are not `cargo build`: set up the eBPF toolchain, run
//! every test, run tcptrace as root.
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod setup;
mod shell;
mod tasks;

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
}

fn main() -> ExitCode {
    let result = match Xtask::parse().task {
        Task::Setup => setup::all(),
        Task::Test => tasks::test(),
        Task::Run { args } => tasks::run_tcptrace(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            ExitCode::FAILURE
        }
    }
}
