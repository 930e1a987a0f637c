use std::process::ExitCode;

use clap::Parser;
use tcptrace::{cli::Cli, config::Config, notice, session};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr with write_all, never eprint!, so a broken stderr cannot panic.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .target(env_logger::Target::Stderr)
        .init();
    let config = match Config::try_from(cli) {
        Ok(config) => config,
        Err(error) => {
            notice!("tcptrace: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            notice!("tcptrace: starting the event loop: {error}");
            return ExitCode::FAILURE;
        }
    };
    let stdout = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    match runtime.block_on(session::run(&config, stdout)) {
        Ok(summary) => {
            notice!("tcptrace: {} events, {} lost, {} malformed", summary.events, summary.lost, summary.malformed);
            ExitCode::SUCCESS
        }
        Err(error) if error.is_broken_pipe() => ExitCode::SUCCESS,
        Err(error) => {
            notice!("tcptrace: {error}");
            ExitCode::FAILURE
        }
    }
}
