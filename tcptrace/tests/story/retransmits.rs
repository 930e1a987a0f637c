//! Retransmissions: a half-open request's SYN-ACK, and data segments lost on
//! an established connection.

use std::{thread, time::Duration};

use serde_json::Value;

use crate::{
    one,
    support::{Netns, Tracer, count, find, of_port, port, require_root},
};

/// With the RST dropped, the listener's half-open request retransmits its
/// SYN-ACK: events owned by the listener's process, in SYN_RECV.
#[test]
fn raw_syn_with_rst_dropped_retransmits_syn_ack() {
    require_root();
    let ns = Netns::new();
    let (port, stray) = (port(), port() + 20000);
    // Two retransmissions (1 s, then 3 s): on classic tracepoints the kernel
    // skips our program while any tracepoint program runs on that CPU, the
    // other tests' tracers' included, and a skipped one is reported as
    // missed, not sent again.
    ns.exec(&["sysctl", "-q", "-w", "net.ipv4.tcp_synack_retries=2"]);
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
