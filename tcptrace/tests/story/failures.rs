//! Connects that never open: each `failed` event, with its reason and errno.

use serde_json::Value;

use crate::{
    one,
    support::{Netns, Tracer, connection, count, of_port, port, require_root},
};

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

/// A non-blocking connect() to a silent host shows at once, not at its first
/// SYN retransmission (1 s): on the tracepoint rung, connect()'s syscall hook
/// sends it from the socket the state program noted for the thread.
#[test]
fn a_pending_nonblocking_connect_shows_before_any_retransmission() {
    require_root();
    let ns = Netns::new();
    let port = port();
    ns.drop_on_arrival("drop_syn", &format!("tcp dport {port}"));
    let tracer = Tracer::start(&["-e", "connect,retransmit,failed"]);
    let mut client = ns.peer(&["pending", "127.0.0.1", &port.to_string()]);
    assert_eq!(client.line(), "pending");
    tracer.wait_for("the pending connect", |ev| count(ev, ns.inode, port, "connect") == 1);
    // Given up before the first retransmission: a connect event that only
    // the retransmission sent would come with it.
    client.send_line();
    assert!(client.wait().success());
    let events = tracer.wait_for("the abandoned attempt", |ev| count(ev, ns.inode, port, "failed") == 1);
    let ours = of_port(&events, ns.inode, port);
    assert_eq!(count(&events, ns.inode, port, "retransmit"), 0, "{ours:#?}");
    assert_eq!(one(&ours, "connect")["pid"], client.pid());
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
