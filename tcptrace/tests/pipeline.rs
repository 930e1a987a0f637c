//! tcptrace's own pipes under a reader that misbehaves: a stdout nobody reads
//! for a while, a stderr nobody reads at all. The real binary traces real
//! connection churn in a network namespace the test creates; with the programs
//! detached there are no events, nothing stalls, and every test here fails.
mod support;

use std::{
    io::{BufRead, BufReader, Read},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{Netns, PATIENCE, Tracer, port, require_root};

/// Connections made while stdout is not read. With `-e all`, about 16 JSON
/// events of ~330 bytes each per connection: 2000 make ~10 MB, more than the
/// pipe (64 KiB) and tcptrace's backlog (4 MiB) hold together.
const CONNECTIONS: u32 = 2000;

/// How long SIGTERM may take with stdout stalled. tcptrace promises one
/// second (it gives queued output 500 ms); the bound leaves room for a slow,
/// shared CI machine and only catches a tracer that waits for its reader.
const EXIT_BOUND: Duration = Duration::from_secs(3);

/// A tracer whose stdout the test holds and does not read, once churn has
/// filled the pipe and the backlog, and stderr has said so.
fn stalled(ns: &Netns, port: u16) -> (Tracer, std::process::ChildStdout) {
    let (tracer, stdout) = Tracer::start_piped(&["-o", "json"], &["-e", "all", "-P", &port.to_string()]);
    ns.churn("127.0.0.1", port, CONNECTIONS);
    tracer.wait_stderr("an output-stalled loss report", |stderr| {
        stderr.lines().any(|l| l.starts_with("tcptrace: lost ") && l.contains("(output stalled)"))
    });
    (tracer, stdout)
}

/// The number just before `word` in `line` (`output` in "12 lost (5 output stalled)").
fn number_before(line: &str, word: &str) -> Option<u64> {
    let words: Vec<&str> = line.split([' ', ',', '(', ')']).filter(|w| !w.is_empty()).collect();
    words.windows(2).filter(|w| w[1] == word).find_map(|w| w[0].parse().ok())
}

/// The reader stops: tcptrace keeps tracing, reports the loss on stderr while
/// still stalled, and SIGTERM still ends it promptly, with its summary and
/// nothing left loaded.
#[test]
fn stalled_reader_never_holds_up_sigterm() {
    require_root();
    let ns = Netns::new();
    let port = port();
    let (tracer, mut stdout) = stalled(&ns, port);
    let ids = tracer.program_ids();
    assert!(!ids.is_empty());

    let asked = Instant::now();
    tracer.signal(libc::SIGTERM);
    let (status, stderr) = tracer.wait_exit();
    let took = asked.elapsed();
    eprintln!("SIGTERM with stdout stalled: exited after {took:?}");
    assert!(status.success(), "{status:?}\n{stderr}");
    assert!(took < EXIT_BOUND, "SIGTERM took {took:?} with stdout stalled\n{stderr}");
    let summary = stderr.lines().last().unwrap_or_default();
    assert!(summary.contains(" events, ") && summary.contains("output stalled"), "{stderr}");
    assert!(number_before(summary, "output").is_some_and(|n| n > 0), "{summary}");
    let still_loaded = support::still_loaded_after_exit(&ids);
    assert!(still_loaded.is_empty(), "programs {still_loaded:?} still loaded after exit");

    // A reader that comes back after the end finds only whole records.
    let mut held = String::new();
    stdout.read_to_string(&mut held).expect("read what the pipe holds");
    assert!(held.ends_with('\n'), "the last line was cut short");
    for line in held.lines() {
        assert!(serde_json::from_str::<Value>(line).is_ok(), "not whole JSON: {line}");
    }
}

/// The reader stops, then reads again: every line is whole JSON, and a `lost`
/// record with reason output_stalled marks the gap; events after it flow again.
#[test]
fn returning_reader_finds_the_gap_marked() {
    require_root();
    let ns = Netns::new();
    let port = port();
    let (tracer, stdout) = stalled(&ns, port);
    tracer.read_stdout(stdout);
    let is_gap = |e: &Value| e["event"] == "lost" && e["reason"] == "output_stalled";
    // events() panics on a line that is not JSON: nothing was cut in half.
    let events = tracer.wait_for_records("the output_stalled record", |events| events.iter().any(is_gap));
    let gap = events.iter().position(is_gap).expect("gap");
    let record = &events[gap];
    let (count, total) = (record["count"].as_u64().unwrap_or(0), record["total"].as_u64().unwrap_or(0));
    assert!(count > 0 && total >= count, "{record}");
    assert!(record["ts"].as_str().is_some_and(|ts| ts.ends_with('Z')), "{record}");
    assert!(gap > 1000, "the backlog came first: {gap} events before the gap");

    ns.churn("127.0.0.1", port, 1);
    let events = tracer.wait_for_records("a connection after the gap", |events| {
        events.iter().skip(gap + 1).filter(|e| e["event"] == "close").count() == 2
    });
    let stalled: u64 = events.iter().filter(|e| is_gap(e)).filter_map(|e| e["count"].as_u64()).sum();
    let (status, stderr) = tracer.stop();
    assert!(status.success(), "{status:?}\n{stderr}");
    let summary = stderr.lines().last().unwrap_or_default();
    assert_eq!(number_before(summary, "output"), Some(stalled), "the stream told of every drop:\n{stderr}");
}

/// `tcptrace 2>&1 >/dev/null | head -3`, where head has gone: every write to
/// stderr fails with EPIPE (logs at debug level included). tcptrace still
/// traces, stops after -n 1 and exits 0, not with a panic's 101.
#[test]
fn broken_stderr_does_not_panic() {
    require_root();
    let ns = Netns::new();
    let port = port();
    let mut server = ns.server("127.0.0.1", port, 1);
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let mut child = Command::new(env!("CARGO_BIN_EXE_tcptrace"))
        .args(["-n", "1", "-P", &port.to_string()])
        .args(["--attach", &std::env::var("TCPTRACE_TEST_ATTACH").unwrap_or_else(|_| "auto".to_owned())])
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(writer)
        .spawn()
        .expect("spawn tcptrace");
    // The column header comes when tracing starts, just before "ready".
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut header = String::new();
    stdout.read_line(&mut header).expect("read");
    assert!(header.starts_with("TIME(UTC)"), "no header; exit {:?}", child.try_wait());

    ns.client("127.0.0.1", port);
    assert!(server.wait().success());
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("tcptrace -n 1 never exited");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let mut event = String::new();
    stdout.read_line(&mut event).expect("read");
    assert_eq!(status.code(), Some(0), "a broken stderr must not change the exit status");
    assert!(event.contains("127.0.0.1"), "the one event: {event}");
}
