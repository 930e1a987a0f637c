//! RSTs: one the kernel sends for no socket, and the two ends of an abort.

use serde_json::Value;

use crate::{
    one,
    support::{self, Netns, Tracer, count, find, of_port, port, require_root},
};

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

/// A RST that reaches a half-closed socket in FIN_WAIT2 names that state,
/// with no `state` events asked for: the state program then passes
/// FIN_WAIT2 by without a lookup, and the reset hook reads the socket's own.
#[test]
fn a_rst_in_fin_wait2_names_the_state_without_state_events() {
    require_root();
    let ns = Netns::new();
    let port = port();
    let tracer = Tracer::start(&["-e", "reset,close", "-P", &port.to_string()]);
    let mut server = ns.talk_server(port, "recv:100 send:200 eof wait linger0 close");
    // `drained` counts our FIN: once it is acknowledged, we are in FIN_WAIT2.
    let (mut client, client_port) = ns.talk_client(port, "send:100 recv:200 shut drained say:fin_wait2 wait eof close");
    assert_eq!(client.line(), "fin_wait2");
    server.send_line();
    assert_eq!(server.done(), (200, 100));
    let events = tracer.wait_for("the client's close", |ev| {
        ev.iter().any(|e| e["event"] == "close" && e["netns"] == ns.inode && e["lport"] == client_port)
    });
    client.send_line();
    assert_eq!(client.done(), (100, 200));
    let ours = of_port(&events, ns.inode, client_port);
    let reset = find(&ours, "reset", client_port).expect("the client's reset");
    assert_eq!((&reset["reset"], &reset["state"]), (&Value::from("received"), &Value::from("FIN_WAIT2")), "{reset}");
    let close = find(&ours, "close", client_port).expect("the client's close");
    assert_eq!(
        (&close["closed_by"], &close["close_kind"]),
        (&Value::from("local"), &Value::from("rst_received")),
        "{close}"
    );
    tracer.stop();
}
