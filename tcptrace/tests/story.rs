//! The whole life of a connection against the real kernel: failures and their
//! reasons, resets, retransmissions, half-open handshakes, IPv4-mapped IPv6.
//! Each test makes its connections inside a namespace it creates; the scenario
//! (closed port, dropped SYNs, raw SYN, SO_LINGER 0, lost segments) is real.
mod support;

use std::{thread, time::Duration};

use serde_json::Value;
use support::{Netns, Tracer, connection, count, find, of_port, port, require_root};

fn one<'a>(events: &[&'a Value], kind: &str) -> &'a Value {
    events.iter().copied().find(|e| e["event"] == kind).unwrap_or_else(|| panic!("no {kind} event"))
}

#[test]
fn connect_to_a_closed_port_fails_refused() {
    require_root();
    let ns = Netns::new();
    let port = port();
    let tracer = Tracer::start(&["--states"]);
    let mut client = ns.peer(&["attempt", "127.0.0.1", &port.to_string()]);
    assert_eq!(client.line(), "ECONNREFUSED");
    let events = tracer.wait_for("the refused attempt", |ev| count(ev, ns.inode, port, "failed") == 1);
    let ours = of_port(&events, ns.inode, port);
    let connect = one(&ours, "connect");
    let attempt = connection(&ours, connect);
    let states: Vec<(&str, &str)> = attempt
        .iter()
        .filter(|e| e["event"] == "state")
        .filter_map(|e| Some((e["old_state"].as_str()?, e["new_state"].as_str()?)))
        .collect();
    assert_eq!(states, [("CLOSE", "SYN_SENT"), ("SYN_SENT", "CLOSE")]);
    let kinds: Vec<&str> = attempt.iter().filter_map(|e| e["event"].as_str()).filter(|k| *k != "state").collect();
    assert_eq!(kinds, ["connect", "failed"], "a connection that never opened has no close");
    let failed = one(&attempt, "failed");
    assert_eq!((&failed["reason"], &failed["errno"]), (&Value::from("refused"), &Value::from("ECONNREFUSED")));
    assert_eq!(connect["pid"], client.pid());
    assert_ne!(connect["lport"], 0, "the kernel chose a local port before the RST");
    assert!(count(&events, ns.inode, port, "close") == 0);
    tracer.stop();
}

#[test]
fn unanswered_syns_fail_with_timeout() {
    require_root();
    let ns = Netns::new();
    let port = port();
    // One retry: the kernel gives up after about 3 s instead of 2 minutes.
    ns.exec(&["sysctl", "-q", "-w", "net.ipv4.tcp_syn_retries=1"]);
    ns.drop_on_arrival("drop_syn", &format!("tcp dport {port}"));
    let tracer = Tracer::start(&["-e", "connect,failed,retransmit"]);
    let mut client = ns.peer(&["attempt", "127.0.0.1", &port.to_string()]);
    assert_eq!(client.line(), "ETIMEDOUT");
    let events = tracer.wait_for("the timed-out attempt", |ev| count(ev, ns.inode, port, "failed") == 1);
    let ours = of_port(&events, ns.inode, port);
    let failed = one(&ours, "failed");
    assert_eq!((&failed["reason"], &failed["errno"]), (&Value::from("timeout"), &Value::from("ETIMEDOUT")));
    assert_eq!(failed["pid"], client.pid());
    assert!(failed["duration_us"].as_u64().is_some_and(|us| us >= 1_000_000), "{failed}");
    // The SYN went out twice: one retransmission, in SYN_SENT.
    let retransmit = one(&ours, "retransmit");
    assert_eq!(retransmit["state"], "SYN_SENT");
    assert_eq!(retransmit["conn_id"], failed["conn_id"]);
    // A blocking connect() shows `connect` by the first retransmission, before it gives up.
    let connect = one(&ours, "connect");
    let position = |e: &Value| events.iter().position(|x| x == e);
    assert!(position(connect) < position(failed));
    tracer.stop();
}

/// The seed's raw SYN: the listener answers SYN-ACK to a port nobody owns, so
/// this host's kernel answers that with a RST (no socket: reason NO_SOCKET).
/// Kernels before 6.10 fire tcp:tcp_send_reset only for RSTs of a socket, so
/// there this RST is invisible to tcptrace (README: what each path sees).
#[test]
fn raw_syn_is_answered_and_reset() {
    require_root();
    if !support::send_reset_reports_socketless_resets() {
        eprintln!("skipped: tcp:tcp_send_reset on this kernel fires only for socket RSTs");
        return;
    }
    let ns = Netns::new();
    let (port, stray) = (port(), port() + 20000);
    let mut server = ns.server("127.0.0.1", port, 1);
    let tracer = Tracer::start(&["-e", "all"]);
    let mut raw = ns.peer(&["rawsyn", &stray.to_string(), &port.to_string()]);
    assert_eq!(raw.line(), "sent");
    let events = tracer.wait_for("the RST for the stray SYN-ACK", |ev| count(ev, ns.inode, stray, "reset") >= 1);
    let ours = of_port(&events, ns.inode, stray);
    let reset = one(&ours, "reset");
    assert_eq!((&reset["reset"], &reset["reason"]), (&Value::from("sent"), &Value::from("NO_SOCKET")), "{reset}");
    let ports = [reset["lport"].as_u64(), reset["rport"].as_u64()];
    assert!(ports.contains(&Some(stray.into())) && ports.contains(&Some(port.into())), "{reset}");
    assert_eq!(reset["pid"], Value::Null, "no process owns a RST for a socket that does not exist");
    // The half-open request never becomes a connection.
    assert_eq!(count(&events, ns.inode, port, "established"), 0);
    server.wait_or_kill();
    tracer.stop();
}

/// With the RST dropped, the listener's half-open request retransmits its
/// SYN-ACK: events owned by the listener's process, in SYN_RECV.
#[test]
fn raw_syn_with_rst_dropped_retransmits_syn_ack() {
    require_root();
    let ns = Netns::new();
    let (port, stray) = (port(), port() + 20000);
    ns.exec(&["sysctl", "-q", "-w", "net.ipv4.tcp_synack_retries=1"]);
    ns.drop_on_arrival("drop_rst", "tcp flags rst");
    let server = ns.server("127.0.0.1", port, 1);
    let tracer = Tracer::start(&["-e", "retransmit,reset"]);
    let mut raw = ns.peer(&["rawsyn", &stray.to_string(), &port.to_string()]);
    assert_eq!(raw.line(), "sent");
    let events = tracer.wait_for("a SYN-ACK retransmission", |ev| count(ev, ns.inode, port, "retransmit") >= 1);
    let ours = of_port(&events, ns.inode, port);
    let retransmit = one(&ours, "retransmit");
    assert_eq!((&retransmit["state"], &retransmit["direction"]), (&Value::from("SYN_RECV"), &Value::from("inbound")));
    assert_eq!((&retransmit["lport"], &retransmit["rport"]), (&Value::from(port), &Value::from(stray)));
    assert_eq!(retransmit["pid"], server.pid(), "a half-open request belongs to its listener's owner");
    tracer.stop();
}

#[test]
fn so_linger_zero_closes_with_rst_on_both_ends() {
    require_root();
    let ns = Netns::new();
    let port = port();
    let tracer = Tracer::start(&["-P", &port.to_string()]);
    let mut server = ns.server("127.0.0.1", port, 1);
    let (client_pid, client_port) = ns.client_with("127.0.0.1", port, &["linger0"]);
    assert!(server.wait().success());
    let events = tracer.wait_for("both closes", |ev| count(ev, ns.inode, port, "close") == 2);
    let ours = of_port(&events, ns.inode, port);
    let client = find(&ours, "close", client_port).expect("client close");
    let server_close = find(&ours, "close", port).expect("server close");
    assert_eq!(client["pid"], client_pid);
    assert_eq!((&client["close_kind"], &client["closed_by"]), (&Value::from("rst_sent"), &Value::from("local")));
    assert_eq!(
        (&server_close["close_kind"], &server_close["closed_by"], &server_close["errno"]),
        (&Value::from("rst_received"), &Value::from("remote"), &Value::from("ECONNRESET")),
        "{server_close}"
    );
    tracer.stop();
}

/// Data segments dropped on arrival for a while (nftables; this kernel has no
/// sch_netem):
/// the client's kernel retransmits until the path heals.
#[test]
fn lost_segments_are_retransmitted_and_counted() {
    require_root();
    let ns = Netns::new();
    let port = port();
    let tracer = Tracer::start(&["-e", "close,retransmit", "-P", &port.to_string()]);
    let mut server = ns.server("127.0.0.1", port, 1);
    let mut client = ns.peer(&["client", "127.0.0.1", &port.to_string(), "wait"]);
    let client_port: u16 = client.line().parse().expect("local port");
    ns.drop_on_arrival("lossy", &format!("tcp dport {port}"));
    client.send_line();
    // Long enough for the first retransmission timers (200 ms minimum RTO) to fire.
    thread::sleep(Duration::from_millis(1200));
    ns.exec(&["nft", "delete table inet lossy"]);
    assert!(client.wait().success() && server.wait().success());
    let events = tracer.wait_for("both closes", |ev| count(ev, ns.inode, port, "close") == 2);
    let ours = of_port(&events, ns.inode, port);
    let retransmit = find(&ours, "retransmit", client_port).expect("client retransmit event");
    assert_eq!(retransmit["state"], "ESTABLISHED");
    assert_eq!(retransmit["pid"], client.pid());
    let close = find(&ours, "close", client_port).expect("client close");
    assert!(close["retransmits"].as_u64().is_some_and(|n| n >= 1), "{close}");
    tracer.stop();
}

/// A dual-stack listener on `::` accepting an IPv4 client: the server's socket
/// is IPv6 with IPv4-mapped addresses, the client's plain IPv4.
#[test]
fn ipv4_mapped_ipv6_server() {
    require_root();
    let ns = Netns::new();
    let port = port();
    let tracer = Tracer::start(&["-P", &port.to_string()]);
    let mut server = ns.server("::", port, 1);
    let (_, client_port) = ns.client("127.0.0.1", port);
    assert!(server.wait().success());
    let events = tracer.wait_for("both closes", |ev| count(ev, ns.inode, port, "close") == 2);
    let ours = of_port(&events, ns.inode, port);
    let server_side = find(&ours, "accept", port).expect("accept");
    assert_eq!(server_side["family"], "ipv6");
    assert_eq!(
        (&server_side["laddr"], &server_side["raddr"]),
        (&Value::from("::ffff:127.0.0.1"), &Value::from("::ffff:127.0.0.1"))
    );
    assert_eq!(server_side["pid"], server.pid());
    let client_side = find(&ours, "established", client_port).expect("client established");
    assert_eq!((&client_side["family"], &client_side["laddr"]), (&Value::from("ipv4"), &Value::from("127.0.0.1")));
    tracer.stop();
}

/// A web server on port 80: both ends name the service, as /etc/services
/// (or the built-in table) calls it, and the human columns show it in place
/// of the server's port.
#[test]
fn a_port_80_server_is_named_http() {
    require_root();
    let ns = Netns::new();
    let json = Tracer::start(&["-P", "80"]);
    let human = Tracer::start_with(&["-o", "human"], &["-P", "80", "--netns", &ns.name]);
    let mut server = ns.server("127.0.0.2", 80, 1);
    let (_, client_port) = ns.client("127.0.0.2", 80);
    assert!(server.wait().success());
    let events = json.wait_for("both ends to close", |ev| count(ev, ns.inode, 80, "close") == 2);
    let ours = of_port(&events, ns.inode, 80);
    assert!(ours.len() >= 6, "{}", support::dump(&events));
    for event in &ours {
        assert_eq!(event["service"], "http", "{event}");
    }
    let client_close = ours.iter().find(|e| e["event"] == "close" && e["lport"] == client_port).expect("client close");
    assert_eq!((&client_close["rport"], &client_close["direction"]), (&Value::from(80), &Value::from("outbound")));
    let deadline = std::time::Instant::now() + support::PATIENCE;
    while human.stdout_lines().iter().filter(|l| l.starts_with(|c: char| c.is_ascii_digit())).count() < 6
        && std::time::Instant::now() < deadline
    {
        thread::sleep(Duration::from_millis(20));
    }
    let lines = human.stdout_lines();
    let connect = lines.iter().find(|l| l.contains(" connect ")).expect("a connect line");
    assert!(connect.contains(&format!(":{client_port} ")) && connect.contains(" 127.0.0.2:http "), "{connect}");
    json.stop();
    human.stop();
}
