//! Least privilege, seen from outside: once tcptrace says it is ready, its
//! /proc/PID/status shows what it still holds (capabilities, no_new_privs,
//! uid), and it must still trace connections and detach cleanly on SIGTERM
//! with what it kept.
mod support;

use std::collections::HashMap;

use support::{Netns, Tracer, count, of_port, port, require_root};

const CAP_SYS_PTRACE: u32 = 19;
const CAP_BPF: u32 = 39;

/// /proc/PID/status as key -> value (tabs kept inside values).
fn status(pid: u32) -> HashMap<String, String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status of the tracer");
    text.lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.to_owned(), value.trim().to_owned()))
        .collect()
}

fn mask(status: &HashMap<String, String>, key: &str) -> u64 {
    u64::from_str_radix(&status[key], 16).unwrap_or_else(|e| panic!("{key}: {e}"))
}

/// What privileges.rs keeps, found here another way: CAP_SYS_PTRACE, and CAP_BPF
/// where bpf() refuses even lookups on open map fds to a process without it,
/// Linux 5.8 to 5.18 with kernel.unprivileged_bpf_disabled set.
fn expected_kept() -> u64 {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let mut numbers = release.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse::<u32>().ok());
    let version = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    let disabled =
        std::fs::read_to_string("/proc/sys/kernel/unprivileged_bpf_disabled").is_ok_and(|value| value.trim() != "0");
    let cap_bpf = if disabled && version < (5, 19) { 1 << CAP_BPF } else { 0 };
    // Kept everywhere: reading owners' /proc/PID/exe at event time.
    cap_bpf | 1 << CAP_SYS_PTRACE
}

/// Starts tcptrace with `args`, checks its status against `uid` (the Uid:
/// and Gid: lines), makes a connection it must report, then stops it.
fn holds_only_what_it_needs(args: &[&str], uid: u32, gid: u32) {
    require_root();
    let ns = Netns::new();
    let port = port();
    let tracer = Tracer::start(&[&["-P", &port.to_string()], args].concat());
    let status = status(tracer.pid());
    let kept = expected_kept();
    let shown = |key: &str| format!("{key}: {:016x}, expected {kept:016x}\n{}", mask(&status, key), tracer.stderr());
    assert_eq!(mask(&status, "CapEff"), kept, "{}", shown("CapEff"));
    assert_eq!(mask(&status, "CapPrm"), kept, "{}", shown("CapPrm"));
    assert_eq!(mask(&status, "CapBnd"), kept, "{}", shown("CapBnd"));
    assert_eq!(mask(&status, "CapInh"), 0, "{}", shown("CapInh"));
    assert_eq!(mask(&status, "CapAmb"), 0, "{}", shown("CapAmb"));
    assert_eq!(status["NoNewPrivs"], "1");
    let ids = |id: u32| [id; 4].map(|id| id.to_string()).join("\t");
    assert_eq!(status["Uid"], ids(uid), "real, effective, saved, filesystem uid");
    assert_eq!(status["Gid"], ids(gid));
    if uid != 0 {
        assert_eq!(status["Groups"], "", "no supplementary groups");
    }
    assert!(tracer.stderr().contains("tcptrace: dropped every capability"), "{}", tracer.stderr());

    // Events still flow: the ring buffer and its fds outlive the privileges.
    let mut server = ns.server("127.0.0.1", port, 1);
    let (client_pid, _) = ns.client("127.0.0.1", port);
    assert!(server.wait().success());
    let events = tracer.wait_for("both sides to close", |ev| count(ev, ns.inode, port, "close") == 2);
    let ours = of_port(&events, ns.inode, port);
    assert!(ours.iter().any(|e| e["event"] == "connect" && e["pid"] == client_pid), "{}", support::dump(&events));
    assert!(ours.iter().any(|e| e["event"] == "accept" && e["pid"] == server.pid()), "{}", support::dump(&events));

    // And SIGTERM still detaches everything, with nothing left to do it with.
    let programs = tracer.program_ids();
    assert!(programs.len() >= 3, "expected the state, connect and accept programs, got {programs:?}");
    let (exit, stderr) = tracer.stop();
    assert!(exit.success(), "{exit:?}\n{stderr}");
    assert!(stderr.lines().last().is_some_and(|l| l.contains("events,") && l.contains("0 lost")), "{stderr}");
    let still_loaded = support::still_loaded_after_exit(&programs);
    assert!(still_loaded.is_empty(), "programs {still_loaded:?} still loaded after exit");
}

#[test]
fn as_root_without_capabilities() {
    holds_only_what_it_needs(&[], 0, 0);
}

#[test]
fn as_nobody_without_capabilities() {
    let nobody = passwd_entry("nobody");
    holds_only_what_it_needs(&["--user", "nobody"], nobody.0, nobody.1);
}

/// (uid, gid) of a user, from getent, so the test does not share tcptrace's lookup code.
fn passwd_entry(name: &str) -> (u32, u32) {
    let out = std::process::Command::new("getent").args(["passwd", name]).output().expect("getent");
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    let fields: Vec<&str> = line.trim().split(':').collect();
    assert!(fields.len() >= 4, "getent passwd {name}: {line:?}");
    (fields[2].parse().expect("uid"), fields[3].parse().expect("gid"))
}
