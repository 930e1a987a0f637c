//! The whole life of a connection against the real kernel: failures and their
//! reasons, resets, retransmissions, half-open handshakes, IPv4-mapped IPv6.
//! Each test makes its connections inside a namespace it creates; the scenario
//! (closed port, dropped SYNs, raw SYN, SO_LINGER 0, lost segments) is real.
//! One test binary, `story`, as xtask runs it by that name; its modules are
//! the chapters.
mod support;

// A crate root's `mod` finds files beside it, not in story/: the paths say
// where the chapters are, so this file stays the binary's root.
#[path = "story/bytes.rs"]
mod bytes;
#[path = "story/failures.rs"]
mod failures;
#[path = "story/names.rs"]
mod names;
#[path = "story/resets.rs"]
mod resets;
#[path = "story/retransmits.rs"]
mod retransmits;

use serde_json::Value;

fn one<'a>(events: &[&'a Value], kind: &str) -> &'a Value {
    events.iter().copied().find(|e| e["event"] == kind).unwrap_or_else(|| panic!("no {kind} event"))
}
