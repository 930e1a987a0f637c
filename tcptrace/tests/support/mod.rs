//! Real processes for the kernel tests: network namespaces, Python TCP peers
//! inside them, and the tcptrace binary itself, read as a user would read it.
#![allow(dead_code, reason = "each test binary uses a different part")]

mod events;
mod netns;
mod peer;
mod tracer;

use std::{
    process::{Child, ExitStatus},
    thread,
    time::{Duration, Instant},
};

// The names the test files import, as when all of this was one file.
#[allow(unused_imports, reason = "each test binary uses a different part")]
pub use self::{
    events::{checked_record, connection, count, dump, find, of_port, pairs, transitions},
    netns::{Netns, port},
    peer::Peer,
    tracer::{Tracer, still_loaded_after_exit},
};

/// Upper bound for anything the tests wait on; nothing waits forever. Generous:
/// the same tests run under emulated CPUs (cargo xtask vm), many times slower.
pub const PATIENCE: Duration = Duration::from_secs(60);

pub fn require_root() {
    // SAFETY: no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "kernel tests load eBPF programs: run them as root (cargo xtask test)");
}

/// Since 6.10, tcp:tcp_send_reset also fires for RSTs no socket sends, with a
/// reason; its format then has a `reason` field.
pub fn send_reset_reports_socketless_resets() -> bool {
    ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"].iter().any(|root| {
        std::fs::read_to_string(format!("{root}/events/tcp/tcp_send_reset/format"))
            .is_ok_and(|format| format.contains("field:enum sk_rst_reason reason;"))
    })
}

fn wait_bounded(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process {} did not exit in time", child.id());
        }
        thread::sleep(Duration::from_millis(20));
    }
}
