use std::{os::fd::AsFd, process::ExitCode};

use clap::Parser;
use tcptrace::{cli::Cli, config::Config, notice, priority, session};

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
    // Before any thread starts, so that every one of them inherits it; a
    // refusal is reported after loading, beside the hooks.
    let priority = priority::raise_to(config.nice);
    log::debug!("priority: {priority:?}");
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            notice!("tcptrace: starting the event loop: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Events go to stdout from a thread of their own, through a plain file
    // (a duplicate of fd 1): no std lock or buffer that exit could wait on
    // while that thread waits for a stalled reader.
    let stdout = match std::io::stdout().as_fd().try_clone_to_owned() {
        Ok(fd) => std::fs::File::from(fd),
        Err(error) => {
            notice!("tcptrace: stdout: {error}");
            return ExitCode::FAILURE;
        }
    };
    // --quiet: no closing summary (losses were reported as they happened).
    let quiet = config.quiet;
    match runtime.block_on(session::run(&config, stdout, &priority)) {
        Ok(_) if quiet => ExitCode::SUCCESS,
        Ok(summary) => {
            let lost = summary.lost + summary.stalled;
            let stalled =
                if summary.stalled > 0 { format!(" ({} output stalled)", summary.stalled) } else { String::new() };
            let missed = if summary.missed > 0 {
                format!(
                    ", {} kernel program runs skipped (events missing; {} closes seen late)",
                    summary.missed, summary.late_closes
                )
            } else {
                String::new()
            };
            notice!(
                "tcptrace: {} events, {lost} lost{stalled}{missed}, {} malformed, {} filtered out",
                summary.events,
                summary.malformed,
                summary.filtered
            );
            ExitCode::SUCCESS
        }
        Err(error) if error.is_broken_pipe() => ExitCode::SUCCESS,
        Err(error) => {
            notice!("tcptrace: {error}");
            ExitCode::FAILURE
        }
    }
}
