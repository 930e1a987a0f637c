use std::{io::Write, process::ExitCode};

use clap::Parser;
use tcptrace::{cli::Cli, config::Config, session};

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let config = match Config::try_from(cli) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("tcptrace: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tcptrace: starting the event loop: {error}");
            return ExitCode::FAILURE;
        }
    };
    let stdout = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    match runtime.block_on(session::run(&config, stdout)) {
        Ok(summary) => {
            eprintln!(
                "tcptrace: {} events, {} lost, {} malformed, {} filtered out",
                summary.events, summary.lost, summary.malformed, summary.filtered
            );
            ExitCode::SUCCESS
        }
        Err(error) if error.is_broken_pipe() => ExitCode::SUCCESS,
        Err(error) => {
            let _ = std::io::stderr().flush();
            eprintln!("tcptrace: {error}");
            ExitCode::FAILURE
        }
    }
}
