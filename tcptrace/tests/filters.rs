//! The kernel-side filters, each against two real connections: one it must
//! let through, one it must keep out (and count as kept out).
mod support;

use serde_json::Value;
use support::{Netns, Peer, Tracer, count, of_port, port, require_root};

/// A one-connection server in `ns` on `host:port`, started as `wrapper` says.
fn server_via(ns: &Netns, wrapper: &[&str], comm: Option<&str>, host: &str, port: u16) -> Peer {
    let mut server = ns.peer_via(wrapper, comm, &["server", host, &port.to_string(), "1"]);
    assert_eq!(server.line(), "listening");
    server
}

/// Stops the tracer; its events and how many the kernel filtered out.
fn stop(tracer: Tracer) -> (Vec<Value>, u64) {
    let events = tracer.events();
    let (status, stderr) = tracer.stop();
    assert!(status.success(), "{stderr}");
    let summary = stderr.lines().last().unwrap_or_default().to_owned();
    let filtered = summary
        .split(", ")
        .find_map(|part| part.strip_suffix(" filtered out"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no filtered count in {summary:?}"));
    (events, filtered)
}

/// The events of `port` in `ns`: everything but the connection the filter
/// should have let through must be absent, and that one complete.
fn assert_only(events: &[Value], ns: &Netns, kept: u16, dropped: u16, ends: usize) {
    assert_eq!(count(events, ns.inode, kept, "close"), ends, "{}", support::dump(events));
    assert!(of_port(events, ns.inode, dropped).is_empty(), "let through:\n{}", support::dump(events));
}

#[test]
fn uid_and_comm_filters_match_the_owner() {
    require_root();
    let ns = Netns::new();
    let (port_a, port_b) = (port(), port());
    let as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];
    let by_user = Tracer::start(&["-u", "nobody"]);
    let by_comm = Tracer::start(&["-c", "tt-filter-srv"]);
    let mut a = server_via(&ns, &as_nobody, Some("tt-filter-srv"), "127.0.0.1", port_a);
    let mut b = server_via(&ns, &[], None, "127.0.0.1", port_b);
    ns.client("127.0.0.1", port_b);
    ns.client("127.0.0.1", port_a);
    assert!(a.wait().success() && b.wait().success());
    by_user.wait_for("A's server end to close", |ev| count(ev, ns.inode, port_a, "close") == 1);
    by_comm.wait_for("A's server end to close", |ev| count(ev, ns.inode, port_a, "close") == 1);
    for (tracer, key, expected) in [(by_user, "uid", Value::from(65534)), (by_comm, "comm", "tt-filter-srv".into())] {
        let (events, filtered) = stop(tracer);
        // Only the server's end of A: the clients run as root, named python3.
        assert_only(&events, &ns, port_a, port_b, 1);
        assert!(events.iter().all(|event| event[key] == expected), "{}", support::dump(&events));
        assert!(filtered > 0, "the kernel counted nothing filtered out");
    }
}

#[test]
fn local_and_remote_port_filters_pick_a_side() {
    require_root();
    let ns = Netns::new();
    let (port_a, port_b) = (port(), port());
    let local = Tracer::start(&["-L", &port_a.to_string()]);
    let remote = Tracer::start(&["-D", &port_a.to_string()]);
    let mut a = ns.server("127.0.0.1", port_a, 1);
    let mut b = ns.server("127.0.0.1", port_b, 1);
    ns.client("127.0.0.1", port_b);
    ns.client("127.0.0.1", port_a);
    assert!(a.wait().success() && b.wait().success());
    local.wait_for("the server end of A", |ev| count(ev, ns.inode, port_a, "close") == 1);
    remote.wait_for("the client end of A", |ev| count(ev, ns.inode, port_a, "close") == 1);
    let (events, _) = stop(local);
    assert_only(&events, &ns, port_a, port_b, 1);
    assert!(events.iter().all(|event| event["lport"] == port_a), "{}", support::dump(&events));
    let (events, _) = stop(remote);
    assert_only(&events, &ns, port_a, port_b, 1);
    assert!(events.iter().all(|event| event["rport"] == port_a), "{}", support::dump(&events));
}

#[test]
fn address_and_family_filters() {
    require_root();
    let ns = Netns::new();
    let (port_a, port_b, port_c) = (port(), port(), port());
    let by_addr = Tracer::start(&["--addr", "127.0.0.2/32"]);
    let ipv6 = Tracer::start(&["-6"]);
    let ipv4 = Tracer::start(&["-4", "--netns", &ns.name]);
    let mut a = ns.server("127.0.0.2", port_a, 1);
    let mut b = ns.server("127.0.0.1", port_b, 1);
    let mut c = ns.server("::1", port_c, 1);
    ns.client("127.0.0.1", port_b);
    ns.client("::1", port_c);
    ns.client("127.0.0.2", port_a);
    assert!(a.wait().success() && b.wait().success() && c.wait().success());
    by_addr.wait_for("both ends of A", |ev| count(ev, ns.inode, port_a, "close") == 2);
    ipv6.wait_for("both ends of C", |ev| count(ev, ns.inode, port_c, "close") == 2);
    ipv4.wait_for("both ends of A and B", |ev| {
        count(ev, ns.inode, port_a, "close") == 2 && count(ev, ns.inode, port_b, "close") == 2
    });
    let (events, filtered) = stop(by_addr);
    assert_only(&events, &ns, port_a, port_b, 2);
    assert!(of_port(&events, ns.inode, port_c).is_empty(), "{}", support::dump(&events));
    assert!(filtered > 0);
    let (events, _) = stop(ipv6);
    assert_only(&events, &ns, port_c, port_a, 2);
    assert!(of_port(&events, ns.inode, port_b).is_empty(), "{}", support::dump(&events));
    let (events, _) = stop(ipv4);
    assert_only(&events, &ns, port_b, port_c, 2);
    assert!(events.iter().all(|event| event["family"] == "ipv4" && event["netns"] == ns.inode));
}

#[test]
fn netns_filter_keeps_other_namespaces_out_and_counts_them() {
    require_root();
    let (mine, other) = (Netns::new(), Netns::new());
    let port = port();
    let tracer = Tracer::start(&["--netns", &format!("/run/netns/{}", mine.name)]);
    let mut a = mine.server("127.0.0.1", port, 1);
    let mut b = other.server("127.0.0.1", port, 1);
    other.client("127.0.0.1", port);
    mine.client("127.0.0.1", port);
    assert!(a.wait().success() && b.wait().success());
    tracer.wait_for("both ends in my namespace", |ev| count(ev, mine.inode, port, "close") == 2);
    let (events, filtered) = stop(tracer);
    assert!(events.iter().all(|event| event["netns"] == mine.inode), "{}", support::dump(&events));
    // The other namespace's connection made three default events per end
    // (connect or accept, established, close), each stopped before the ring.
    assert!(filtered >= 6, "filtered out {filtered}");
}
