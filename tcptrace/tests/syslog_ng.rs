//! A real collector: Debian's syslog-ng runs deploy/syslog-ng/tcptrace.conf,
//! the file the README shows, with its settings pointed at the built binary,
//! a temporary file and the test's network namespace (`--netns`: the rest of
//! the host's traffic cannot hold the test's lines up). syslog-ng starts
//! tcptrace through the config's program() source, parses each JSON line and
//! writes it out again; the test makes connections of its own in the
//! namespace and finds each one complete in syslog-ng's output, fields and
//! severity intact, within a second of its end. With the programs detached
//! no connection arrives and the test fails.
mod support;

// A crate root's `mod` finds files beside it, not in syslog_ng/.
#[path = "syslog_ng/collector.rs"]
mod collector;

use std::{
    path::Path,
    thread,
    time::{Duration, Instant},
};

use collector::{CONF, Record, SyslogNg};
use serde_json::Value;
use support::{Netns, PATIENCE, checked_record, port, require_root};

/// What the issue promises: a connection's events reach the collector within
/// a second of its end.
const ARRIVAL: Duration = Duration::from_secs(1);

/// Bytes peer.py's client sends and its server answers.
const REQUEST: u64 = 100;
const RESPONSE: u64 = 1000;

/// The severity, facility and program the config gave the message in syslog,
/// from tcptrace's `severity`.
fn check_syslog_fields(record: &Value) {
    let syslog = &record["syslog"];
    let expected = match record["severity"].as_str() {
        Some("info") => 6,
        Some("warning") => 4,
        other => panic!("severity {other:?}: {record}"),
    };
    assert_eq!(syslog["severity"], expected, "syslog severity of {record}");
    assert_eq!(syslog["facility"], "daemon", "{record}");
    assert_eq!(syslog["program"], "tcptrace", "{record}");
}

/// The lines of one side of a connection in the namespace, the one whose
/// local port is `lport` and remote port `rport`.
fn side(records: &[Record], netns: u64, lport: u16, rport: u16) -> Vec<Record> {
    let ours = |e: &Value| e["netns"] == netns && e["lport"] == lport && e["rport"] == rport;
    records.iter().filter(|r| ours(&r.tcptrace)).cloned().collect()
}

/// The events of `records` as tcptrace wrote them.
fn events(records: &[Record]) -> Vec<Value> {
    records.iter().map(|r| r.tcptrace.clone()).collect()
}

fn kinds(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["event"].as_str().unwrap_or("?")).collect()
}

/// How long after `end` the last of `records` was read.
fn arrival(records: &[Record], end: Instant) -> Duration {
    records.iter().map(|r| r.read_at.saturating_duration_since(end)).max().unwrap_or_default()
}

/// Both ends of a request/response between `host` and `port`, as syslog-ng
/// wrote them; how long after both ends had closed the last of them arrived.
fn request_response(syslog: &mut SyslogNg, ns: &Netns, host: &str, family: &str) -> Duration {
    let port = port();
    let mut server = ns.server(host, port, 1);
    let (client_pid, client_port) = ns.client(host, port);
    assert!(server.wait().success(), "server failed");
    let closed = Instant::now();
    let records = syslog.wait_for(&format!("{family} connection to port {port}"), |records| {
        side(records, ns.inode, client_port, port).len() == 3 && side(records, ns.inode, port, client_port).len() == 3
    });
    let ours: Vec<Record> =
        [side(&records, ns.inode, client_port, port), side(&records, ns.inode, port, client_port)].concat();
    for record in &ours {
        check_syslog_fields(&record.written);
    }

    let client = events(&side(&records, ns.inode, client_port, port));
    assert_eq!(kinds(&client), ["connect", "established", "close"], "client side:\n{}", support::dump(&client));
    let server_side = events(&side(&records, ns.inode, port, client_port));
    let mut server_kinds = kinds(&server_side);
    // accept and established come in the order the two hooks fire.
    server_kinds.sort_unstable();
    assert_eq!(server_kinds, ["accept", "close", "established"], "server side:\n{}", support::dump(&server_side));
    for (events, pid) in [(&client, client_pid), (&server_side, server.pid())] {
        for event in events.iter() {
            checked_record(&event.to_string());
            assert_eq!(event["pid"], pid, "{event}");
            assert_eq!(event["comm"], "python3", "{event}");
            assert_eq!((&event["laddr"], &event["raddr"]), (&Value::from(host), &Value::from(host)), "{event}");
            assert_eq!(event["family"], family, "{event}");
            assert_eq!(event["severity"], "info", "{event}");
            assert_eq!(event["conn_id"], events[0]["conn_id"], "one id per connection: {event}");
        }
    }
    let find = |events: &[Value], kind: &str| events.iter().find(|e| e["event"] == kind).cloned().expect(kind);
    assert_eq!(find(&client, "established")["direction"], "outbound");
    assert_eq!(find(&server_side, "established")["direction"], "inbound");
    assert!(find(&client, "established")["handshake_us"].as_u64().is_some_and(|us| us > 0), "{client:?}");
    let close = find(&client, "close");
    assert_eq!(
        (&close["closed_by"], &close["close_kind"], &close["errno"]),
        (&"local".into(), &"fin".into(), &Value::Null)
    );
    assert_eq!((&close["bytes_sent"], &close["bytes_received"]), (&REQUEST.into(), &RESPONSE.into()), "{close}");
    let close = find(&server_side, "close");
    assert_eq!((&close["closed_by"], &close["close_kind"]), (&"remote".into(), &"fin".into()), "{close}");
    assert_eq!((&close["bytes_sent"], &close["bytes_received"]), (&RESPONSE.into(), &REQUEST.into()), "{close}");
    arrival(&ours, closed)
}

/// A connect nobody answers: `failed`, which tcptrace marks `warning`, goes
/// to syslog at severity 4. How long after the refusal it arrived.
fn refused(syslog: &mut SyslogNg, ns: &Netns) -> Duration {
    let port = port();
    let mut attempt = ns.peer(&["attempt", "127.0.0.1", &port.to_string()]);
    assert_eq!(attempt.line(), "ECONNREFUSED");
    let refused = Instant::now();
    let failed = |records: &[Record]| {
        let ours = |e: &Value| e["netns"] == ns.inode && e["rport"] == port && e["event"] == "failed";
        records.iter().find(|r| ours(&r.tcptrace)).cloned()
    };
    let records = syslog.wait_for(&format!("failed connect to port {port}"), |r| failed(r).is_some());
    let record = failed(&records).expect("failed event");
    let event = &record.tcptrace;
    checked_record(&event.to_string());
    assert_eq!((&event["reason"], &event["errno"]), (&"refused".into(), &"ECONNREFUSED".into()), "{event}");
    assert_eq!(event["pid"], attempt.pid(), "{event}");
    assert_eq!(event["severity"], "warning", "{event}");
    check_syslog_fields(&record.written);
    assert_eq!(record.written["syslog"]["severity"], 4, "{}", record.written);
    arrival(&[record], refused)
}

/// Ids of the eBPF programs process `pid` holds open, from its fdinfo.
fn program_ids(pid: u32) -> Vec<u32> {
    let mut ids: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .expect("fdinfo")
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
        .flat_map(|info| {
            info.lines().filter_map(|l| l.strip_prefix("prog_id:")?.trim().parse().ok()).collect::<Vec<u32>>()
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// A process that is gone, or a zombie its new parent has yet to reap.
fn has_exited(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_or(true, |stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')))
}

/// syslog-ng starts tcptrace; three request/response connections and a
/// refused connect each arrive complete within ARRIVAL of their end; after
/// syslog-ng stops, no tracer runs and none of its programs is loaded.
#[test]
fn syslog_ng_collects_each_connection_within_a_second() {
    require_root();
    let ns = Netns::new();
    let mut syslog = SyslogNg::start(&ns);
    let is_start = |r: &&Record| r.tcptrace["event"] == "start";
    let records = syslog.wait_for("start record", |records| records.iter().any(|r| is_start(&r)));
    let start = &records.iter().find(is_start).expect("start").written;
    check_syslog_fields(start);
    assert_eq!(start["syslog"]["severity"], 6, "{start}");

    // The one tcptrace syslog-ng started, and the programs it loaded.
    let tracers = syslog.children();
    assert_eq!(tracers.len(), 1, "syslog-ng's children: {tracers:?}");
    let tracer = tracers[0];
    let exe = std::fs::read_link(format!("/proc/{tracer}/exe")).expect("exe");
    assert_eq!(exe, Path::new(env!("CARGO_BIN_EXE_tcptrace")), "the program() source runs the built tcptrace");
    let programs = program_ids(tracer);
    assert!(!programs.is_empty(), "tcptrace {tracer} holds no eBPF program");

    let mut took = vec![
        ("IPv4 connection", request_response(&mut syslog, &ns, "127.0.0.1", "ipv4")),
        ("IPv6 connection", request_response(&mut syslog, &ns, "::1", "ipv6")),
        ("second IPv4 connection", request_response(&mut syslog, &ns, "127.0.0.1", "ipv4")),
    ];
    took.push(("refused connect", refused(&mut syslog, &ns)));
    eprintln!("arrived in syslog-ng's output after: {took:?}");
    for (what, took) in &took {
        assert!(*took < ARRIVAL, "the {what} reached syslog-ng's output {took:?} after it ended");
    }
    let starts = syslog.records().iter().filter(is_start).count();
    assert_eq!(starts, 1, "syslog-ng restarted tcptrace:\n{}", syslog.log());

    let status = syslog.stop();
    assert!(status.success(), "syslog-ng: {status:?}\n{}", syslog.log());
    let deadline = Instant::now() + PATIENCE;
    while !has_exited(tracer) {
        assert!(Instant::now() < deadline, "tcptrace {tracer} still runs after syslog-ng stopped");
        thread::sleep(Duration::from_millis(20));
    }
    let still_loaded = support::still_loaded_after_exit(&programs);
    assert!(still_loaded.is_empty(), "programs {still_loaded:?} still loaded after syslog-ng stopped");
}

/// The README's syslog-ng section shows the shipped file, from its first
/// @define on (the comments before it are the README's prose).
#[test]
fn readme_shows_the_shipped_config() {
    let shipped = std::fs::read_to_string(CONF).expect("deploy/syslog-ng/tcptrace.conf");
    let body = &shipped[shipped.find("@define").expect("an @define")..];
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).expect("README.md");
    assert!(
        readme.contains(&format!("```\n{body}```\n")),
        "README.md's syslog-ng section must show {CONF} from its first @define on, as a code block"
    );
}
