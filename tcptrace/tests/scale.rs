//! A busy host: 100,000 connections (200,000 sockets) held open at once, in
//! helper processes (a process may hold 20,000 fds here), then all closed at
//! once, as when a proxy restarts. Every connect, accept and established
//! must be reported, every close but a bounded few (see below), none lost,
//! none untracked.
mod support;

use std::{
    collections::HashMap,
    fs::File,
    io::{BufRead, BufReader},
    path::PathBuf,
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use support::{Netns, PATIENCE, Peer, Tracer, require_root};

const CONNECTIONS: u32 = 100_000;
/// Both ends of each are fds: 16,000 of the 20,000 a process may hold.
const PER_HOLDER: u32 = 8_000;

/// Counts of each event kind, and the records that are not connection events
/// (start, lost, stop): 600,000 lines are too many to keep and parse whole.
#[derive(Default)]
struct Tally {
    kinds: HashMap<String, u64>,
    others: Vec<String>,
}

/// tcptrace's output, removed with the test however it ends.
struct OutputFile(PathBuf);

impl OutputFile {
    fn new() -> Self {
        Self(std::env::temp_dir().join(format!("tcptrace-scale-{}.json", std::process::id())))
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn kind(line: &str) -> Option<&str> {
    line.split_once(r#""event":""#)?.1.split('"').next()
}

#[test]
fn every_socket_of_200k_tracked_and_all_closing_at_once_lose_nothing() {
    require_root();
    let ns = Netns::new();
    // A ring that holds the whole close burst: this proves the tracking; the
    // bench measures how fast tcptrace drains. Its output goes to a file, read
    // as it grows: into a pipe, how fast the test's reader runs beside 13 busy
    // holders would decide whether tcptrace's output backlog overflows.
    let output = OutputFile::new();
    let tracer = Tracer::start_into(
        &["-o", "json"],
        &["--netns", &ns.inode.to_string(), "--ring-buffer", "256"],
        Stdio::from(File::create(&output.0).expect("output file")),
    );
    let tally = Arc::new(Mutex::new(Tally::default()));
    let sink = Arc::clone(&tally);
    let exited = Arc::new(AtomicBool::new(false));
    let tracer_gone = Arc::clone(&exited);
    let path = output.0.clone();
    let reader = thread::spawn(move || {
        // One buffer for every line: 600,000 of them arrive in seconds.
        let (mut file, mut bytes) = (BufReader::with_capacity(1 << 20, File::open(path).expect("open")), Vec::new());
        loop {
            // Read before the attempt: once tcptrace is gone, one more pass finds the rest.
            let gone = tracer_gone.load(Ordering::SeqCst);
            file.read_until(b'\n', &mut bytes).expect("read output");
            if !bytes.ends_with(b"\n") {
                if gone {
                    break;
                }
                thread::sleep(Duration::from_millis(10));
                continue;
            }
            let line = String::from_utf8_lossy(&bytes);
            let mut tally = sink.lock().expect("lock");
            match kind(&line) {
                Some(kind) if line.contains(r#""conn_id""#) => match tally.kinds.get_mut(kind) {
                    Some(count) => *count += 1,
                    None => drop(tally.kinds.insert(kind.to_owned(), 1)),
                },
                _ => tally.others.push(line.trim_end().to_owned()),
            }
            drop(tally);
            bytes.clear();
        }
    });

    let holders = CONNECTIONS.div_ceil(PER_HOLDER);
    let mut peers: Vec<Peer> = (0..holders)
        .map(|n| {
            let share = (CONNECTIONS - n * PER_HOLDER).min(PER_HOLDER);
            ns.peer(&["hold", &format!("127.0.1.{}", n + 1), "9000", &share.to_string()])
        })
        .collect();
    for peer in &mut peers {
        assert!(peer.line().starts_with("held "), "holder {} failed", peer.pid());
    }
    let count = |kind: &str| tally.lock().expect("lock").kinds.get(kind).copied().unwrap_or(0);
    let n = u64::from(CONNECTIONS);
    let established = wait_until(|| count("established") >= 2 * n);
    assert!(
        established,
        "not every connection established: {:?}\n{}",
        tally.lock().expect("lock").kinds,
        tracer.stderr()
    );
    for peer in &mut peers {
        peer.close_stdin();
    }
    for peer in &mut peers {
        assert!(peer.wait().success(), "holder {} failed", peer.pid());
    }
    // A FIN or its ACK dropped in the burst is sent again after a timeout
    // that doubles each time: wait for the kernel to finish every socket.
    let finished = wait_until(|| live_sockets(&ns) == 0);
    assert!(finished, "sockets still open in the test namespace:\n{}", ss(&ns));
    // Not asserted yet: the counts after tcptrace's final drain tell a lost
    // wake-up (events waiting in the ring) from events never sent.
    settle(|| count("close"), 2 * n);
    let before_exit = tally.lock().expect("lock").kinds.clone();

    let (status, stderr) = tracer.stop();
    exited.store(true, Ordering::SeqCst);
    reader.join().expect("reader");
    assert!(status.success(), "tcptrace: {status}; stderr:\n{stderr}");
    let tally = tally.lock().expect("lock");
    let stop = tally.others.iter().find(|line| kind(line) == Some("stop")).expect("a stop record");
    for key in [r#""lost":0"#, r#""untracked":0"#, r#""map_update_failures":0"#] {
        assert!(stop.contains(key), "stop record without {key}: {stop}\nstderr:\n{stderr}");
    }
    assert!(!stderr.contains("not tracked") && !stderr.contains("tcptrace: lost"), "stderr:\n{stderr}");
    // A softirq that finishes a connection while the state hook runs on the
    // same CPU has that run skipped by the kernel (counted as missed); the
    // close then comes from the socket's destruction (late_closes). Rarely
    // (0 to 2 sockets in some runs, measured here) the destroy hook's run is
    // skipped as well, and that close is missing: bounded, so a regression
    // still fails.
    const UNSEEN_CLOSES: u64 = 5;
    for (kind, expected) in [("connect", n), ("accept", n), ("established", 2 * n), ("close", 2 * n)] {
        let found = tally.kinds.get(kind).copied().unwrap_or(0);
        let allowed = if kind == "close" { UNSEEN_CLOSES } else { 0 };
        assert!(
            found <= expected && found + allowed >= expected,
            "{found} {kind} events for {expected}; kinds: {:?}\n{stop}\nstderr:\n{stderr}",
            tally.kinds
        );
    }
    if tally.kinds.get("close").copied() != Some(2 * n) || !stop.contains(r#""late_closes":0"#) {
        eprintln!("scale: closes seen {:?} of {}; {stop}", tally.kinds.get("close"), 2 * n);
    }
    assert_eq!(before_exit, tally.kinds, "events that reached stdout only when tcptrace exited");
}

/// `ss` of the namespace's TCP sockets in any state but TIME_WAIT (a
/// socket's life after CLOSE: no event of ours).
fn ss(ns: &Netns) -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &ns.name, "ss", "-H", "-tan", "state", "all", "exclude", "time-wait"])
        .output()
        .expect("run ss");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn live_sockets(ns: &Netns) -> usize {
    ss(ns).lines().count()
}

/// Polls `done` until it holds or the tests' patience runs out; whether it held.
fn wait_until(done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
    true
}

/// Waits until `count` reaches `target` or stops moving for 3 s: what has
/// not come by then is missing.
fn settle(count: impl Fn() -> u64, target: u64) {
    let deadline = Instant::now() + PATIENCE;
    let (mut last, mut moved) = (count(), Instant::now());
    while last < target && Instant::now() < deadline && moved.elapsed() < Duration::from_secs(3) {
        thread::sleep(Duration::from_millis(50));
        let now = count();
        if now != last {
            (last, moved) = (now, Instant::now());
        }
    }
}
