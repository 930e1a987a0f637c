//! Who owns a connection, as a container platform would ask: the owner's
//! user, cgroup (a docker-style one the test creates), container id and
//! executable on every event, and --cgroup keeping other cgroups out,
//! including a cgroup created after tracing started.
mod support;

use std::{fs, path::PathBuf};

use serde_json::Value;
use support::{Netns, Tracer, count, of_port, port, require_root};

const CONTAINER: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// A cgroup v2 subtree for this test, removed (with its children) on drop.
struct Cgroup {
    mount: PathBuf,
    /// Relative to the mount, as /proc/PID/cgroup shows it.
    path: String,
}

impl Cgroup {
    fn new(name: &str) -> Self {
        let mounts = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let mount = mounts
            .lines()
            .find(|l| l.split(" - ").nth(1).is_some_and(|fs| fs.starts_with("cgroup2 ")))
            .and_then(|l| l.split(' ').nth(4))
            .map(PathBuf::from)
            .expect("a cgroup2 mount");
        let path = format!("/{name}-{}", std::process::id());
        fs::create_dir(mount.join(&path[1..])).expect("create cgroup");
        Self { mount, path }
    }

    fn child(&self, name: &str) -> String {
        let path = format!("{}/{name}", self.path);
        fs::create_dir(self.mount.join(&path[1..])).expect("create child cgroup");
        path
    }

    fn procs(&self, path: &str) -> String {
        self.mount.join(&path[1..]).join("cgroup.procs").to_string_lossy().into_owned()
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let top = self.mount.join(&self.path[1..]);
        if let Ok(children) = fs::read_dir(&top) {
            for child in children.flatten().filter(|c| c.file_type().is_ok_and(|t| t.is_dir())) {
                let _ = fs::remove_dir(child.path());
            }
        }
        let _ = fs::remove_dir(top);
    }
}

#[test]
fn events_name_user_container_and_exe_and_cgroup_filters_them() {
    require_root();
    let ns = Netns::new();
    let (port_in, port_out) = (port(), port());
    let cgroup = Cgroup::new("tcptrace-test");
    let tracer = Tracer::start(&["--cgroup", &cgroup.path]);
    let everything = Tracer::start(&["-P", &port_in.to_string()]);
    // Made after the tracer started: the kernel admits it through its parent.
    let container = cgroup.child(&format!("docker-{CONTAINER}.scope"));
    let as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];
    let procs = cgroup.procs(&container);
    // It answers one request, then stays until told, so its executable can
    // still be read when its events are (a slow guest lags behind).
    let port = port_in.to_string();
    let steps = ["talk", "accept", "127.0.0.1", &port, "recv:100", "send:1000", "eof", "close", "wait"];
    let mut inside = ns.peer_in(Some(&procs), &as_nobody, None, &steps);
    assert_eq!(inside.line(), "listening");
    let mut outside = ns.server("127.0.0.1", port_out, 1);
    ns.client("127.0.0.1", port_out);
    ns.client("127.0.0.1", port_in);
    assert!(outside.wait().success());

    let events = tracer.wait_for("the contained server's close", |ev| count(ev, ns.inode, port_in, "close") == 1);
    inside.send_line();
    assert!(inside.wait().success());
    let server_end: Vec<&Value> = of_port(&events, ns.inode, port_in);
    assert!(server_end.len() >= 3, "{}", support::dump(&events));
    for event in &events {
        assert_eq!(event["lport"], port_in, "--cgroup let through {event}");
        assert_eq!(event["cgroup"], container.as_str(), "{event}");
        assert_eq!(event["container_id"], CONTAINER, "{event}");
        assert_eq!(event["user"], "nobody", "{event}");
        assert_eq!(event["uid"], 65534, "{event}");
        // Ends with: a chrooted reader (the QEMU harness) sees the path from its mount's root.
        let python = fs::canonicalize("/usr/bin/python3").expect("python3");
        let exe = event["exe"].as_str().unwrap_or_default();
        assert!(exe.ends_with(python.to_str().expect("utf8")), "{event}");
    }
    // The client's end is root's, in no container: named so, not left out.
    let all = everything.wait_for("both ends", |ev| count(ev, ns.inode, port_in, "close") == 2);
    let client_close = all.iter().find(|e| e["event"] == "close" && e["rport"] == port_in).expect("client close");
    assert_eq!(client_close["user"], "root", "{client_close}");
    assert_eq!(client_close["container_id"], Value::Null, "{client_close}");
    assert!(client_close["cgroup"].is_string(), "{client_close}");
    tracer.stop();
    everything.stop();
}

/// A pre-fork server (sshd, apache): the listener accepts and forks a worker
/// that answers, waits for the client's FIN and closes. The events after the
/// worker's first receive (the client's FIN moving it to CLOSE_WAIT, in the
/// client's softirq) name the worker where the kernel has the hook for it
/// (sock:sock_recv_length, 6.3+), the listener where not; the close names
/// the worker either way (close() moves it to LAST_ACK), and a --comm filter
/// on the worker's name (owner-based, like -p) finds it.
#[test]
fn the_owner_follows_the_socket_to_a_forked_worker() {
    require_root();
    let ns = Netns::new();
    let port = port();
    let worker_comm = "tcptrace-wrk";
    let tracer = Tracer::start(&["-P", &port.to_string(), "--states"]);
    let workers_only = Tracer::start(&["-c", worker_comm]);
    let mut server = ns.peer(&["forking", "127.0.0.1", &port.to_string(), worker_comm]);
    assert_eq!(server.line(), "listening");
    ns.client("127.0.0.1", port);
    let worker: u64 = server.line().strip_prefix("worker ").and_then(|pid| pid.parse().ok()).expect("worker pid");
    assert!(server.wait().success(), "forking server failed");

    let events = tracer.wait_for("both closes", |ev| count(ev, ns.inode, port, "close") == 2);
    let server_end = |kind: &str| events.iter().find(|e| e["event"] == kind && e["lport"] == port);
    let accepted = server_end("accept").expect("accept");
    assert_eq!(accepted["pid"], server.pid(), "the listener accepted: {accepted}");
    let follows = !tracer.stderr().contains("owner after a handover: not attached");
    let holder = if follows { worker } else { u64::from(server.pid()) };
    let peer_fin = events
        .iter()
        .find(|e| e["event"] == "state" && e["lport"] == port && e["new_state"] == "CLOSE_WAIT")
        .expect("the client's FIN");
    assert_eq!(peer_fin["pid"], holder, "hook attached: {follows}; {peer_fin}");
    let closed = server_end("close").expect("server close");
    assert_eq!((&closed["pid"], &closed["comm"]), (&worker.into(), &worker_comm.into()), "{closed}");

    let theirs = workers_only.wait_for("the worker's close", |ev| count(ev, ns.inode, port, "close") == 1);
    for event in &theirs {
        assert_eq!(event["pid"], worker, "-c let through {event}");
    }
    tracer.stop();
    workers_only.stop();
}

/// A connection opened before tracing started: listed at start as a
/// `snapshot` on both ends with the owners `ss -p` would show, and its later
/// events carry the same conn_id and owner, also where the kernel could not
/// tell the owner (the end that receives the RST). --no-snapshot lists none.
/// Who holds which socket comes from the kernel's socket-files iterator,
/// except with --attach tracepoint (no BTF parsed), where /proc is read.
#[test]
fn connections_open_at_start_are_listed_with_their_owners() {
    require_root();
    let ns = Netns::new();
    let port = port();
    // Every read waits on the test first: the peers' 30 s timeouts must not
    // run while tracers start (seconds each in an emulated VM).
    let mut server = ns.talk_server(port, "recv:10 wait linger0 close");
    let (mut client, client_port) = ns.talk_client(port, "send:10 wait eof close");
    let tracer = Tracer::start(&["-P", &port.to_string()]);
    let quiet = Tracer::start(&["-P", &port.to_string(), "--no-snapshot"]);
    let expected_walk = match std::env::var("TCPTRACE_TEST_ATTACH").as_deref() {
        Ok("tracepoint") => "owners of sockets open at start: procfs /proc/PID/fd",
        _ => "owners of sockets open at start: iter task_file",
    };
    assert!(tracer.stderr().contains(expected_walk), "{}", tracer.stderr());

    let listed = tracer.wait_for("both ends listed", |ev| count(ev, ns.inode, port, "snapshot") == 2);
    let server_end = listed.iter().find(|e| e["event"] == "snapshot" && e["lport"] == port).expect("server end");
    let client_end = listed.iter().find(|e| e["event"] == "snapshot" && e["lport"] == client_port).expect("client end");
    // Which end opened is unknown: the server's listener is closed by now
    // (with one open, its end is `inbound`: the snapshot module's unit test).
    for (end, pid, direction) in [(server_end, server.pid(), "unknown"), (client_end, client.pid(), "unknown")] {
        assert_eq!(
            (&end["pid"], &end["direction"], &end["state"]),
            (&pid.into(), &direction.into(), &"ESTABLISHED".into()),
            "{end}"
        );
        assert_eq!(end["comm"], "python3", "{end}");
    }
    assert_ne!(server_end["conn_id"], client_end["conn_id"]);

    client.send_line();
    server.send_line();
    assert!(server.wait().success() && client.wait().success());
    let events = tracer.wait_for("both closes", |ev| count(ev, ns.inode, port, "close") == 2);
    for end in [server_end, client_end] {
        let close = events
            .iter()
            .find(|e| e["event"] == "close" && e["lport"] == end["lport"])
            .unwrap_or_else(|| panic!("no close for {end}\n{}", support::dump(&events)));
        assert_eq!((&close["conn_id"], &close["pid"]), (&end["conn_id"], &end["pid"]), "{close}");
    }
    let unlisted = quiet.wait_for("both closes", |ev| count(ev, ns.inode, port, "close") == 2);
    assert_eq!(count(&unlisted, ns.inode, port, "snapshot"), 0, "{}", support::dump(&unlisted));
    tracer.stop();
    quiet.stop();
}

/// The snapshot's dumps run after tracing is ready (on a busy host they take
/// ~100 ms; here a test-only gate holds them until the test has acted). A
/// connection made meanwhile is one the probes saw from its first step: not
/// listed. One open at start that changes state meanwhile: listed in the
/// state the dumps found, and its events, held until the list is out, carry
/// its conn_id. (A state hook without typed sockets takes the dumps before
/// attaching, so there it is listed as it was at start.)
#[test]
fn connections_made_while_the_snapshot_is_taken_are_not_listed() {
    require_root();
    let ns = Netns::new();
    let (old_port, new_port) = (port(), port());
    let gate = SnapshotGate::new(old_port);
    // The old connection's reads wait on the test first, as above.
    let mut old_server = ns.talk_server(old_port, "recv:10 wait eof wait close");
    let (mut old_client, old_client_port) = ns.talk_client(old_port, "send:10 wait shut eof close");
    let ports = ["-P", &old_port.to_string(), "-P", &new_port.to_string()].map(str::to_owned);
    let args: Vec<&str> = ports.iter().map(String::as_str).collect();
    let tracer = Tracer::start_with_env(&args, &gate.env());
    let typed = !tracer.stderr().contains("state changes: tracepoint");

    let mut new_server = ns.talk_server(new_port, "recv:10 wait eof close");
    let (mut new_client, _) = ns.talk_client(new_port, "send:10 wait shut eof close");
    old_server.send_line();
    old_client.send_line();
    wait_for_state(&ns, "fin-wait-2", old_client_port);
    gate.open();
    let listed = tracer.wait_for("the old connection listed", |ev| count(ev, ns.inode, old_port, "snapshot") == 2);
    let states: Vec<(&Value, &Value)> =
        listed.iter().filter(|e| e["event"] == "snapshot").map(|e| (&e["lport"], &e["state"])).collect();
    let expected = if typed { ["CLOSE_WAIT", "FIN_WAIT2"] } else { ["ESTABLISHED", "ESTABLISHED"] };
    assert!(
        states.contains(&(&old_port.into(), &expected[0].into()))
            && states.contains(&(&old_client_port.into(), &expected[1].into())),
        "{}",
        support::dump(&listed)
    );

    old_server.send_line();
    new_server.send_line();
    new_client.send_line();
    assert!(old_server.wait().success() && old_client.wait().success());
    assert!(new_server.wait().success() && new_client.wait().success());
    let events = tracer.wait_for("four closes", |ev| {
        count(ev, ns.inode, old_port, "close") == 2 && count(ev, ns.inode, new_port, "close") == 2
    });
    assert_eq!(count(&events, ns.inode, new_port, "snapshot"), 0, "{}", support::dump(&events));
    assert_eq!(count(&events, ns.inode, new_port, "connect"), 1, "{}", support::dump(&events));
    let first_other = events.iter().position(|e| e["event"] != "snapshot").expect("events");
    assert!(events[first_other..].iter().all(|e| e["event"] != "snapshot"), "{}", support::dump(&events));
    let old = of_port(&events, ns.inode, old_port);
    for end in old.iter().filter(|e| e["event"] == "snapshot") {
        let later: Vec<&&Value> =
            old.iter().filter(|e| e["event"] != "snapshot" && e["lport"] == end["lport"]).collect();
        assert!(later.iter().any(|e| e["event"] == "close"), "{}", support::dump(&events));
        assert!(later.iter().all(|e| e["conn_id"] == end["conn_id"]), "{end}\n{}", support::dump(&events));
    }
    tracer.stop();
}

/// Who owns a listener open at start is walked with the snapshot's dumps,
/// after tracing is ready (on a busy host the walk takes tens of ms; here
/// the gate holds it). A connection such a listener gets meanwhile is born
/// with no owner in the kernel: its events, held until the walk is done,
/// still name the listener's process, and `-p` keeps them, the handshake's
/// end (before accept() names the owner) included. A is still listening
/// when the walk comes, its connection not yet accepted; B accepted its
/// connection and closed its listener before: its accept names the owner.
#[test]
fn connections_to_listeners_open_at_start_have_an_owner_from_their_first_event() {
    require_root();
    let ns = Netns::new();
    let (port_a, port_b) = (port(), port());
    let gate = SnapshotGate::new(port_a);
    let mut server_a = ns.talk_server(port_a, "backlog recv:10 eof close");
    let mut server_b = ns.talk_server(port_b, "recv:10 eof close");
    let (pid_a, pid_b) = (server_a.pid().to_string(), server_b.pid().to_string());
    let tracer = Tracer::start_with_env(&["-p", &pid_a, "-p", &pid_b], &gate.env());
    let (mut client_a, _) = ns.talk_client(port_a, "send:10 close");
    let (mut client_b, _) = ns.talk_client(port_b, "send:10 close");
    assert!(server_b.wait().success() && client_b.wait().success());
    gate.open();
    tracer.wait_for("B's close", |ev| count(ev, ns.inode, port_b, "close") == 1);
    server_a.send_line();
    assert!(server_a.wait().success() && client_a.wait().success());
    let events = tracer.wait_for("A's close", |ev| count(ev, ns.inode, port_a, "close") == 1);
    for (port, pid) in [(port_a, server_a.pid()), (port_b, server_b.pid())] {
        let end: Vec<&Value> = of_port(&events, ns.inode, port).into_iter().filter(|e| e["lport"] == port).collect();
        for kind in ["established", "accept", "close"] {
            let event = end.iter().find(|e| e["event"] == kind);
            assert!(event.is_some_and(|e| e["pid"] == pid), "{port} {kind}\n{}", support::dump(&events));
        }
    }
    let pids = [server_a.pid(), server_b.pid()];
    assert!(events.iter().all(|e| pids.iter().any(|&p| e["pid"] == p)), "-p let through\n{}", support::dump(&events));
    tracer.stop();
}

/// The test-only gate that holds the snapshot's dumps back until opened
/// (snapshot.rs, `wait_for_test_gate`); removed when dropped.
struct SnapshotGate(PathBuf);

impl SnapshotGate {
    fn new(port: u16) -> Self {
        let path = std::env::temp_dir().join(format!("tcptrace-test-gate-{}-{port}", std::process::id()));
        let _ = fs::remove_file(&path);
        Self(path)
    }

    fn env(&self) -> [(&str, &str); 1] {
        [("TCPTRACE_TEST_SNAPSHOT_GATE", self.0.to_str().expect("utf-8 path"))]
    }

    fn open(&self) {
        fs::write(&self.0, "").expect("open the gate");
    }
}

impl Drop for SnapshotGate {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Waits until the socket on local port `port` in `ns` is in `state` (`ss` names).
fn wait_for_state(ns: &Netns, state: &str, port: u16) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &ns.name, "ss", "-Htn", "state", state, "sport", "=", &format!(":{port}")])
            .output()
            .expect("ss");
        if !out.stdout.is_empty() {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "port {port} never reached {state}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
