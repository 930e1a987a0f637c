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

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::{Map, Value};
use support::{Netns, PATIENCE, checked_record, port, require_root};

/// The config under test, as shipped.
const CONF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/syslog-ng/tcptrace.conf");

/// Its @define lines, whose defaults the test replaces.
const BINARY_DEFINE: &str = r#"@define tcptrace_bin "/usr/local/bin/tcptrace""#;
const ARGS_DEFINE: &str = r#"@define tcptrace_args """#;
const LOG_DEFINE: &str = r#"@define tcptrace_log "/var/log/tcptrace.json""#;

/// What the issue promises: a connection's events reach the collector within
/// a second of its end.
const ARRIVAL: Duration = Duration::from_secs(1);

/// Bytes peer.py's client sends and its server answers.
const REQUEST: u64 = 100;
const RESPONSE: u64 = 1000;

/// syslog-ng in the foreground with everything of its own (config, output,
/// persist file, pid file, control socket) in a temporary directory, so a
/// system syslog, if any, is left alone. Stopped and the directory removed
/// on drop.
struct SyslogNg {
    child: Child,
    dir: PathBuf,
    output: PathBuf,
    /// The output file once it exists, read from where the last read ended.
    reader: Option<std::fs::File>,
    /// The start of a line syslog-ng has not finished writing.
    partial: Vec<u8>,
    records: Vec<Record>,
}

/// One line of syslog-ng's output.
#[derive(Clone)]
struct Record {
    /// As syslog-ng wrote it.
    written: Value,
    /// As tcptrace wrote it (see [`as_tcptrace_wrote_it`]).
    tcptrace: Value,
    /// When the test first read it.
    read_at: Instant,
}

impl SyslogNg {
    /// syslog-ng running the shipped config, tcptrace traced to `ns` alone.
    fn start(ns: &Netns) -> Self {
        let binary = find_syslog_ng();
        let dir = std::env::temp_dir().join(format!("tcptrace-syslog-ng-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let output = dir.join("tcptrace.json");
        let config = dir.join("syslog-ng.conf");
        std::fs::write(&config, config_text(&binary, &output, ns)).expect("write config");
        let child = Command::new(&binary)
            .arg("-F")
            .arg(format!("--cfgfile={}", config.display()))
            .arg(format!("--persist-file={}", dir.join("syslog-ng.persist").display()))
            .arg(format!("--pidfile={}", dir.join("syslog-ng.pid").display()))
            .arg(format!("--control={}", dir.join("syslog-ng.ctl").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr")).expect("log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
        Self { child, dir, output, reader: None, partial: Vec::new(), records: Vec::new() }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }

    /// Every line syslog-ng has written so far, each a JSON object; what is
    /// new since the last call is read now. Reading only what is new keeps a
    /// busy host's lines from slowing the test's polls.
    fn records(&mut self) -> &[Record] {
        if self.reader.is_none() {
            self.reader = std::fs::File::open(&self.output).ok();
        }
        if let Some(reader) = &mut self.reader {
            std::io::Read::read_to_end(reader, &mut self.partial).expect("read syslog-ng's output");
            let read_at = Instant::now();
            // A line still being written has no newline yet: it stays.
            let whole = self.partial.iter().rposition(|b| *b == b'\n').map_or(0, |end| end + 1);
            for line in self.partial.drain(..whole).as_slice().split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let written: Value = serde_json::from_slice(line)
                    .unwrap_or_else(|e| panic!("syslog-ng wrote no JSON ({e}): {}", String::from_utf8_lossy(line)));
                let tcptrace = as_tcptrace_wrote_it(&written);
                self.records.push(Record { written, tcptrace, read_at });
            }
        }
        &self.records
    }

    /// Polls the output until `done` holds; the records then. Panics, with
    /// the last lines syslog-ng wrote and what it said, after PATIENCE or if
    /// syslog-ng exits.
    fn wait_for(&mut self, what: &str, done: impl Fn(&[Record]) -> bool) -> Vec<Record> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if done(self.records()) {
                return self.records.clone();
            }
            let exited = self.child.try_wait().expect("wait");
            if exited.is_some() || Instant::now() > deadline {
                let last: Vec<Value> = self.records.iter().rev().take(30).rev().map(|r| r.written.clone()).collect();
                panic!(
                    "no {what} from syslog-ng (exit {exited:?}); of its {} lines, the last:\n{}\nits stderr:\n{}",
                    self.records.len(),
                    support::dump(&last),
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// The processes syslog-ng started (any of its threads may have).
    fn children(&self) -> Vec<u32> {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.child.id())) else { return Vec::new() };
        let mut pids: Vec<u32> = tasks
            .flatten()
            .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
            .flat_map(|list| list.split_whitespace().filter_map(|pid| pid.parse().ok()).collect::<Vec<u32>>())
            .collect();
        pids.sort_unstable();
        pids
    }

    /// SIGTERM, as systemd stops it; its exit status, or None if it did not
    /// stop within PATIENCE.
    fn terminate(&mut self) -> Option<ExitStatus> {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) -> ExitStatus {
        self.terminate().unwrap_or_else(|| panic!("syslog-ng did not stop on SIGTERM:\n{}", self.log()))
    }
}

impl Drop for SyslogNg {
    /// After a failure too: SIGTERM for syslog-ng and for what it started, so
    /// no tcptrace outlives the test with its programs loaded; SIGKILL only
    /// for a syslog-ng that does not stop.
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            for pid in self.children() {
                // SAFETY: plain kill(2); the pid is syslog-ng's unreaped child.
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            }
            if self.terminate().is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `syslog-ng`, from PATH or /usr/sbin (not on every user's PATH). Missing
/// is a failure, not a skip: `cargo xtask test` installs it.
fn find_syslog_ng() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("syslog-ng"))
        .find(|binary| binary.is_file())
        .unwrap_or_else(|| {
            panic!("no syslog-ng on PATH or in /usr/sbin: install Debian's syslog-ng-core (cargo xtask setup does)")
        })
}

/// The shipped drop-in behind the @version line of the syslog-ng found (a
/// drop-in has none: the main config's comes first), its settings replaced.
fn config_text(binary: &Path, output: &Path, ns: &Netns) -> String {
    let version = Command::new(binary).arg("--version").output().expect("syslog-ng --version");
    let version = String::from_utf8_lossy(&version.stdout).into_owned();
    let version = version
        .lines()
        .find_map(|line| line.strip_prefix("Config version:"))
        .unwrap_or_else(|| panic!("no config version in syslog-ng --version:\n{version}"))
        .trim()
        .to_owned();
    let shipped = std::fs::read_to_string(CONF).expect("deploy/syslog-ng/tcptrace.conf");
    let mut text = format!("@version: {version}\n");
    for line in shipped.lines() {
        let line = match line {
            BINARY_DEFINE => format!(r#"@define tcptrace_bin "{}""#, env!("CARGO_BIN_EXE_tcptrace")),
            ARGS_DEFINE => format!(r#"@define tcptrace_args "--netns {}""#, ns.name),
            LOG_DEFINE => format!(r#"@define tcptrace_log "{}""#, output.display()),
            other => other.to_owned(),
        };
        text.push_str(&line);
        text.push('\n');
    }
    for define in [BINARY_DEFINE, ARGS_DEFINE, LOG_DEFINE] {
        assert_eq!(shipped.lines().filter(|line| *line == define).count(), 1, "{CONF} must hold `{define}` once");
    }
    text
}

/// A record as tcptrace wrote it, from syslog-ng's copy: without the
/// `syslog` object the config adds, and with the types syslog-ng 3.x drops
/// put back (it writes 80 as "80" and null as ""). `conn_id` stays a string:
/// its 16 hex digits may all be decimal ones.
fn as_tcptrace_wrote_it(record: &Value) -> Value {
    let mut fields: Map<String, Value> = record.as_object().expect("an object").clone();
    fields.remove("syslog");
    for (key, value) in &mut fields {
        let Some(text) = value.as_str() else { continue };
        if text.is_empty() {
            *value = Value::Null;
        } else if key != "conn_id"
            && let Ok(number) = text.parse::<u64>()
        {
            *value = Value::from(number);
        }
    }
    Value::Object(fields)
}

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
