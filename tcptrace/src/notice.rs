//! Lines for the person running tcptrace, on stderr. Unlike `eprintln!`, a
//! closed or broken stderr (`tcptrace 2>&1 >/dev/null | head -3`) never
//! panics: the line is lost, tracing goes on and the exit status stays the
//! documented one. Logs (`log` + env_logger) already ignore write errors.
use std::{fmt, io::Write};

/// Writes one line to stderr in a single write, ignoring errors.
pub fn line(args: fmt::Arguments<'_>) {
    let mut text = fmt::format(args);
    text.push('\n');
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// `eprintln!` that cannot panic: `notice!("tcptrace: {n} events")`.
#[macro_export]
macro_rules! notice {
    ($($arg:tt)*) => {
        $crate::notice::line(format_args!($($arg)*))
    };
}
