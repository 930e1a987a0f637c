//! tcptrace against the real kernel: the built binary loads its programs, the
//! test makes real connections between real processes inside a network
//! namespace it creates, and asserts on the JSON events for that exact
//! 4-tuple and namespace. With the programs detached there are no events and
//! every test here fails.
mod support;

use serde_json::Value;

/// Bytes peer.py's client sends and its server answers.
const REQUEST: u64 = 100;
const RESPONSE: u64 = 1000;
use support::{Netns, Tracer, connection, count, find, of_port, pairs, port, require_root, transitions};

fn kinds(events: &[&Value]) -> Vec<String> {
    events.iter().map(|e| e["event"].as_str().unwrap_or("?").to_owned()).collect()
}

fn lifecycle(host: &str, family: &str) {
    require_root();
    let ns = Netns::new();
    let port = port();
    let tracer = Tracer::start(&[]);
    let mut server = ns.server(host, port, 1);
    let (client_pid, client_port) = ns.client(host, port);
    assert!(server.wait().success());
    let events = tracer.wait_for("both sides to close", |ev| count(ev, ns.inode, port, "close") == 2);
    let ours = of_port(&events, ns.inode, port);
    assert!(ours.iter().all(|e| e["netns"] == ns.inode), "namespace of every event");

    let client: Vec<&Value> = ours.iter().copied().filter(|e| e["lport"] == client_port).collect();
    assert_eq!(kinds(&client), ["connect", "established", "close"], "client side:\n{}", support::dump(&events));
    for event in &client {
        assert_eq!(event["pid"], client_pid, "{event}");
        assert_eq!(event["comm"], "python3", "{event}");
        assert_eq!(
            (event["laddr"].as_str(), event["raddr"].as_str(), &event["rport"]),
            (Some(host), Some(host), &Value::from(port))
        );
        assert_eq!(event["family"], family);
        assert_eq!(event["conn_id"], client[0]["conn_id"], "one id per connection");
    }
    assert_eq!(client[0]["state"], "SYN_SENT", "connect reports the state it began in");
    assert_eq!(client[1]["direction"], "outbound");
    assert!(client[1]["handshake_us"].as_u64().is_some_and(|us| us > 0), "{}", client[1]);
    let close = client[2];
    assert!(close["duration_us"].as_u64().is_some_and(|us| us > 0), "{close}");
    // The client sends the request, reads the answer and closes first.
    assert_eq!((&close["closed_by"], &close["close_kind"]), (&Value::from("local"), &Value::from("fin")), "{close}");
    assert_eq!((&close["bytes_sent"], &close["bytes_received"]), (&Value::from(REQUEST), &Value::from(RESPONSE)));
    assert!(close["segs_out"].as_u64() > Some(2) && close["segs_in"].as_u64() > Some(2), "{close}");
    assert!(close["srtt_us"].as_u64().is_some(), "{close}");

    let server_side: Vec<&Value> =
        ours.iter().copied().filter(|e| e["lport"] == port && e["rport"] == client_port).collect();
    let accept = find(&server_side, "accept", port).expect("accept event");
    let established = find(&server_side, "established", port).expect("server established");
    let close = find(&server_side, "close", port).expect("server close");
    assert_eq!(accept["pid"], server.pid(), "{accept}");
    assert_eq!(established["direction"], "inbound");
    assert!(established["handshake_us"].as_u64().is_some_and(|us| us > 0), "{established}");
    assert_eq!((&close["closed_by"], &close["close_kind"]), (&Value::from("remote"), &Value::from("fin")), "{close}");
    assert_eq!((&close["bytes_sent"], &close["bytes_received"]), (&Value::from(RESPONSE), &Value::from(REQUEST)));
    assert_eq!(established["pid"], server.pid(), "a passive connection belongs to its listener's owner: {established}");
    assert_eq!(close["pid"], server.pid(), "{close}");
    let position = |kind: &str| server_side.iter().position(|e| e["event"] == kind);
    assert!(position("established") < position("close") && position("accept") < position("close"));
    // Every event of the server's connection names the server, never the
    // client (whose task often runs the server's softirq work on loopback).
    for event in &server_side {
        assert_eq!(event["pid"], server.pid(), "{event}");
    }
    for event in ours {
        assert!(event["pid"].as_u64().is_some_and(|pid| pid > 0), "{event}");
    }
    let (status, _) = tracer.stop();
    assert!(status.success());
}

#[test]
fn client_and_server_ipv4() {
    lifecycle("127.0.0.1", "ipv4");
}

#[test]
fn client_and_server_ipv6() {
    lifecycle("::1", "ipv6");
}

#[test]
fn states_show_the_four_way_teardown_on_both_sides() {
    require_root();
    let ns = Netns::new();
    let port = port();
    let tracer = Tracer::start(&["--states", "-P", &port.to_string()]);
    let mut server = ns.server("127.0.0.1", port, 1);
    let (_, client_port) = ns.client("127.0.0.1", port);
    assert!(server.wait().success());
    let events = tracer.wait_for("both sides to close", |ev| count(ev, ns.inode, port, "close") == 2);
    let ours = of_port(&events, ns.inode, port);

    let connect = find(&ours, "connect", client_port).expect("connect event");
    let closing_side = transitions(&connection(&ours, connect));
    let expected = [
        ("CLOSE", "SYN_SENT"),
        ("SYN_SENT", "ESTABLISHED"),
        ("ESTABLISHED", "FIN_WAIT1"),
        ("FIN_WAIT1", "FIN_WAIT2"),
        ("FIN_WAIT2", "CLOSE"),
    ];
    assert_eq!(closing_side, pairs(&expected), "\n{}", support::dump(&events));

    // Grouped by connection: some kernels fill in the child's remote address
    // only after its first transition.
    let accepted = ours.iter().copied().find(|e| e["rport"] == client_port && e["lport"] == port).expect("server side");
    let other_side = transitions(&connection(&ours, accepted));
    let expected = [
        ("LISTEN", "SYN_RECV"),
        ("SYN_RECV", "ESTABLISHED"),
        ("ESTABLISHED", "CLOSE_WAIT"),
        ("CLOSE_WAIT", "LAST_ACK"),
        ("LAST_ACK", "CLOSE"),
    ];
    assert_eq!(other_side, pairs(&expected), "\n{}", support::dump(&events));
    tracer.stop();
}

#[test]
fn pid_and_port_filters_keep_other_connections_out() {
    require_root();
    let ns = Netns::new();
    let (port_a, port_b) = (port(), port());
    let mut server_a = ns.server("127.0.0.1", port_a, 1);
    let mut server_b = ns.server("127.0.0.1", port_b, 1);
    let by_pid = Tracer::start(&["-p", &server_a.pid().to_string()]);
    let by_port = Tracer::start(&["-P", &port_b.to_string()]);

    // B first: by the time A's events arrive, B's would have been printed.
    ns.client("127.0.0.1", port_b);
    ns.client("127.0.0.1", port_a);
    assert!(server_a.wait().success() && server_b.wait().success());

    let events = by_pid.wait_for("server A's close", |ev| count(ev, ns.inode, port_a, "close") == 1);
    let of_a = of_port(&events, ns.inode, port_a);
    assert!(find(&of_a, "accept", port_a).is_some(), "{}", support::dump(&events));
    // The listener predates the tracer: its owner comes from the /proc scan.
    assert!(find(&of_a, "established", port_a).is_some(), "{}", support::dump(&events));
    for event in &events {
        assert_eq!(event["pid"], server_a.pid(), "-p let through {event}");
    }

    let events = by_port.wait_for("both ends of B to close", |ev| count(ev, ns.inode, port_b, "close") == 2);
    assert!(events.len() >= 6, "{}", support::dump(&events));
    for event in &events {
        assert!(event["lport"] == port_b || event["rport"] == port_b, "-P let through {event}");
    }
    by_pid.stop();
    by_port.stop();
}

fn unloads_on(signal: i32) {
    require_root();
    let tracer = Tracer::start(&[]);
    let ids = tracer.program_ids();
    assert!(ids.len() >= 3, "expected the state, connect and accept programs, got {ids:?}");
    tracer.signal(signal);
    let (status, stderr) = tracer.wait_exit();
    assert!(status.success(), "{status:?}\n{stderr}");
    assert!(stderr.lines().last().is_some_and(|l| l.contains("events,") && l.contains("lost")), "{stderr}");
    let still_loaded = support::still_loaded_after_exit(&ids);
    assert!(still_loaded.is_empty(), "programs {still_loaded:?} still loaded after exit");
}

#[test]
fn sigterm_detaches_and_unloads_everything() {
    unloads_on(libc::SIGTERM);
}

#[test]
fn ctrl_c_detaches_and_unloads_everything() {
    unloads_on(libc::SIGINT);
}

#[test]
fn count_exits_after_n_events() {
    require_root();
    let ns = Netns::new();
    let port = port();
    let tracer = Tracer::start(&["-n", "2", "-P", &port.to_string()]);
    let mut server = ns.server("127.0.0.1", port, 1);
    ns.client("127.0.0.1", port);
    assert!(server.wait().success());
    let (status, stderr, records) = tracer.wait_exit_with_records();
    assert!(status.success(), "{stderr}");
    // start, exactly two events, stop.
    let kinds: Vec<&str> = records.iter().filter_map(|r| r["event"].as_str()).collect();
    assert_eq!(kinds.len(), 4, "{records:?}");
    assert_eq!((kinds[0], kinds[3]), ("start", "stop"));
    assert_eq!(records[3]["events"], 2);
    assert!(stderr.contains("tcptrace: 2 events"), "{stderr}");
}

/// `tcptrace | head -3`: the reader goes away, tcptrace ends with status 0 and
/// says nothing about it.
#[test]
fn closed_stdout_ends_quietly() {
    use std::io::{BufRead, BufReader};

    require_root();
    let ns = Netns::new();
    let port = port();
    let (tracer, stdout) = Tracer::start_piped(&[], &["-P", &port.to_string()]);
    let mut server = ns.server("127.0.0.1", port, 3);
    ns.client("127.0.0.1", port);
    let mut head = BufReader::new(stdout);
    for _ in 0..3 {
        let mut line = String::new();
        assert!(head.read_line(&mut line).expect("read") > 0, "tcptrace printed fewer than 3 lines");
    }
    drop(head);
    // More events for tcptrace to write into the closed pipe.
    ns.client("127.0.0.1", port);
    ns.client("127.0.0.1", port);
    assert!(server.wait().success());
    let (status, stderr) = tracer.wait_exit();
    assert!(status.success(), "{status:?}\n{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.contains("tcptrace: ready"), "nothing may follow the ready line:\n{stderr}");
}

/// A burst of connections on two CPUs, every event kind on: the lines leave
/// in kernel-time order, though the CPUs' records interleave in the ring by
/// commit time.
#[test]
fn events_leave_in_kernel_time_order() {
    require_root();
    let ns = Netns::new();
    let port = port();
    let tracer = Tracer::start(&["-e", "all", "--netns", &ns.name]);
    // Client and server on separate threads: softirq and process context on both CPUs.
    ns.churn("127.0.0.1", port, 200);
    let events = tracer.wait_for("every connection to close on both ends", |ev| {
        ev.iter().filter(|e| e["event"] == "close").count() >= 400
    });
    let records = tracer.records();
    tracer.stop();
    let times: Vec<&str> = records.iter().filter_map(|r| r["ts"].as_str()).collect();
    // RFC 3339 UTC with nine fraction digits sorts as text.
    let disorder = times.windows(2).filter(|pair| pair[0] > pair[1]).count();
    assert_eq!(disorder, 0, "{disorder} lines out of order among {}", times.len());
    assert!(events.len() > 2000, "a burst of every kind: {} events", events.len());
}

/// `--max-sockets` sizes the connection map (created apart and swapped in
/// for the object's placeholder at start): past it, sockets go untracked
/// and are counted, never silently.
#[test]
fn max_sockets_sizes_the_connection_map() {
    require_root();
    const MAX_SOCKETS: usize = 1024;
    /// 1,400 sockets and their listener: past the map's size.
    const HELD: usize = 700;
    let ns = Netns::new();
    let port = port();
    let tracer = Tracer::start(&["--max-sockets", &MAX_SOCKETS.to_string(), "--netns", &ns.name]);
    let mut holder = ns.peer(&["hold", "127.0.0.1", &port.to_string(), &HELD.to_string()]);
    assert!(holder.line().starts_with("held "), "holder {} failed", holder.pid());
    let stderr = tracer.wait_stderr("the untracked sockets' report", |stderr| stderr.contains("not tracked"));
    // Each socket takes an entry from its first transition until it is freed.
    tracer.wait_for("the tracked sockets' handshakes", |ev| {
        count(ev, ns.inode, port, "established") >= MAX_SOCKETS * 9 / 10
    });
    holder.close_stdin();
    assert!(holder.wait().success());
    let established = count(&tracer.events(), ns.inode, port, "established");
    assert!(established < MAX_SOCKETS, "{established} sockets tracked in a map of {MAX_SOCKETS}\n{stderr}");
    tracer.stop();
}
