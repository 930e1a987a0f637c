//! How events name a connection's ends: IPv4-mapped addresses, services and
//! users, in JSON and in the human columns.

use std::{thread, time::Duration};

use serde_json::Value;

use crate::support::{self, Netns, Tracer, count, find, of_port, port, require_root};

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

/// `-q -T`, as a person would run it: stderr stays empty (no start-up
/// report, no summary), and every line is dated, fits 120 columns, lines up
/// under the header and names its owner's user: the server runs as nobody.
#[test]
fn quiet_dated_human_lines_fit_and_name_the_user() {
    require_root();
    let ns = Netns::new();
    let port = port();
    let tracer = Tracer::start_quiet_human(&["-T", "-e", "all", "--netns", &ns.name]);
    let as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];
    let mut server = ns.peer_via(&as_nobody, None, &["server", "127.0.0.1", &port.to_string(), "1"]);
    assert_eq!(server.line(), "listening");
    let (client_pid, client_port) = ns.client("127.0.0.1", port);
    assert!(server.wait().success());
    // The namespace is the test's own: every event line is of this connection.
    let lines = tracer.wait_for_lines("both ends to close", |lines| {
        lines.iter().filter(|line| line.split_whitespace().nth(2) == Some("close")).count() == 2
    });
    let (status, stderr) = tracer.stop();
    assert!(status.success(), "{status:?}");
    assert_eq!(stderr, "", "-q: nothing on stderr when nothing went wrong");
    let header = &lines[0];
    assert!(header.starts_with("DATE TIME(UTC) "), "{header}");
    // Where each column starts; PID is right-aligned, so it is read with EVENT.
    let starts: Vec<usize> = ["EVENT", "USER", "COMM", "LOCAL", "REMOTE", "DETAIL"]
        .iter()
        .map(|name| header.find(&format!(" {name}")).expect("column") + 1)
        .collect();
    let field = |line: &str, column: usize| -> String {
        let end = starts.get(column + 1).copied().unwrap_or(line.len()).min(line.len());
        line.get(starts[column]..end).unwrap_or_default().trim().to_owned()
    };
    // (event, pid, user, local)
    let mut rows = Vec::new();
    for line in &lines[1..] {
        assert!(line.chars().count() <= 120, "{} columns:\n{line}", line.chars().count());
        let date = &line[..starts[0] - 1];
        let parsed = humantime::parse_rfc3339(&format!("{}Z", date.trim().replace(' ', "T")));
        assert!(parsed.is_ok(), "not a date and time: {date:?} in\n{line}");
        for &at in &starts[1..5] {
            assert_eq!(&line[at - 1..at], " ", "a column does not start at {at}:\n{header}\n{line}");
        }
        let event_pid = field(line, 0);
        let (event, pid) = event_pid.split_once(' ').unwrap_or((&event_pid, ""));
        rows.push((event.to_owned(), pid.trim().to_owned(), field(line, 1), field(line, 3)));
    }
    let all = lines.join("\n");
    let connect = rows.iter().find(|row| row.0 == "connect").unwrap_or_else(|| panic!("no connect:\n{all}"));
    assert_eq!(
        (&connect.1, &connect.2, &connect.3),
        (&client_pid.to_string(), &"root".to_owned(), &format!("127.0.0.1:{client_port}")),
        "{all}"
    );
    let accept = rows.iter().find(|row| row.0 == "accept").unwrap_or_else(|| panic!("no accept:\n{all}"));
    assert_eq!((&accept.1, &accept.2), (&server.pid().to_string(), &"nobody".to_owned()), "{all}");
    assert!(rows.iter().any(|row| row.0 == "close" && row.2 == "nobody"), "{all}");
}
