//! Real processes for the kernel tests: network namespaces, Python TCP peers
//! inside them, and the tcptrace binary itself, read as a user would read it.
#![allow(dead_code, reason = "each test binary uses a different part")]

use std::{
    io::{BufRead, BufReader},
    os::unix::fs::MetadataExt,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
        mpsc::{Receiver, channel},
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

/// Upper bound for anything the tests wait on; nothing waits forever. Generous:
/// the same tests run under emulated CPUs (cargo xtask vm), many times slower.
pub const PATIENCE: Duration = Duration::from_secs(60);

pub fn require_root() {
    // SAFETY: no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "kernel tests load eBPF programs: run them as root (cargo xtask test)");
}

fn peer_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/peer.py")
}

/// A JSON record that must match schema/tcptrace.schema.json.
pub fn checked_record(line: &str) -> Value {
    static SCHEMA: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    let schema = SCHEMA.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../schema/tcptrace.schema.json");
        let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("schema")).expect("JSON");
        jsonschema::draft202012::options().should_validate_formats(true).build(&schema).expect("valid schema")
    });
    let record: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    let errors: Vec<String> = schema.iter_errors(&record).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "record breaks the schema: {line}\n{errors:#?}");
    record
}

/// peer.py copied where any user can read it, once per test process.
fn shared_peer_script() -> PathBuf {
    static COPY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    COPY.get_or_init(|| {
        let copy = std::env::temp_dir().join(format!("tcptrace-peer-{}.py", std::process::id()));
        std::fs::copy(peer_script(), &copy).expect("copy peer.py");
        copy
    })
    .clone()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A network namespace with loopback up, removed on drop.
pub struct Netns {
    pub name: String,
    pub inode: u64,
}

impl Netns {
    pub fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        // One at a time: the first `ip netns add` on a machine mounts
        // /run/netns over itself, and a second one racing it can leave its
        // name on the directory underneath, where the inode read below is
        // not the namespace's (seen in the fresh VMs, tests in parallel).
        static CREATING: Mutex<()> = Mutex::new(());
        let _one_at_a_time = CREATING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let name = format!("tcptrace-test-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        run(Command::new("ip").args(["netns", "add", &name]));
        run(Command::new("ip").args(["-n", &name, "link", "set", "lo", "up"]));
        let inode = std::fs::metadata(format!("/run/netns/{name}")).expect("netns file").ino();
        Self { name, inode }
    }

    /// Starts a peer.py mode inside the namespace. `ip netns exec` execs, so
    /// the child's pid is the Python process's pid.
    pub fn peer(&self, args: &[&str]) -> Peer {
        self.peer_via(&[], None, args)
    }

    /// A peer started through `wrapper` (e.g. setpriv, to run as another
    /// user), naming its own process `comm` (PR_SET_NAME) when given.
    pub fn peer_via(&self, wrapper: &[&str], comm: Option<&str>, args: &[&str]) -> Peer {
        self.peer_in(None, wrapper, comm, args)
    }

    /// As `peer_via`, the process first moved into the cgroup whose
    /// `cgroup.procs` file is given (before `ip netns exec`, which mounts a
    /// sysfs of the namespace's own, without the cgroup mounts).
    pub fn peer_in(&self, cgroup_procs: Option<&str>, wrapper: &[&str], comm: Option<&str>, args: &[&str]) -> Peer {
        let mut cmd = match cgroup_procs {
            Some(procs) => {
                let mut cmd = Command::new("sh");
                cmd.args(["-c", &format!("echo $$ > {procs} && exec \"$@\""), "sh", "ip"]);
                cmd
            }
            None => Command::new("ip"),
        };
        cmd.args(["netns", "exec", &self.name]).args(wrapper);
        if wrapper.is_empty() {
            cmd.arg("python3").arg(peer_script());
        } else {
            // Another user may not reach the build tree or a python3 under
            // root's home: the system's python3 and a world-readable copy.
            cmd.arg("/usr/bin/python3").arg(shared_peer_script());
        }
        cmd.args(args);
        if let Some(comm) = comm {
            cmd.env("PEER_COMM", comm);
        }
        Peer::spawn(cmd)
    }

    /// Starts a server for `count` connections and waits until it listens.
    pub fn server(&self, host: &str, port: u16, count: u32) -> Peer {
        let mut server = self.peer(&["server", host, &port.to_string(), &count.to_string()]);
        assert_eq!(server.line(), "listening");
        server
    }

    /// Runs one client to completion; returns its pid and local port.
    pub fn client(&self, host: &str, port: u16) -> (u32, u16) {
        self.client_with(host, port, &[])
    }

    /// A client with peer.py options (`linger0`); returns its pid and local port.
    pub fn client_with(&self, host: &str, port: u16, options: &[&str]) -> (u32, u16) {
        let port = port.to_string();
        let args: Vec<&str> = ["client", host, &port].into_iter().chain(options.iter().copied()).collect();
        let mut client = self.peer(&args);
        let local_port = client.line().parse().expect("client prints its local port");
        let pid = client.pid();
        assert!(client.wait().success(), "client failed");
        (pid, local_port)
    }

    /// peer.py talk accept: takes one connection on `port`, then runs `steps`
    /// (space-separated, see peer.py); returns once it listens.
    pub fn talk_server(&self, port: u16, steps: &str) -> Peer {
        let port = port.to_string();
        let args: Vec<&str> = ["talk", "accept", "127.0.0.1", &port].into_iter().chain(steps.split(' ')).collect();
        let mut server = self.peer(&args);
        assert_eq!(server.line(), "listening");
        server
    }

    /// peer.py talk connect: connects to `port`, then runs `steps`; returns
    /// once connected, with the local port the kernel chose.
    pub fn talk_client(&self, port: u16, steps: &str) -> (Peer, u16) {
        let port = port.to_string();
        let args: Vec<&str> = ["talk", "connect", "127.0.0.1", &port].into_iter().chain(steps.split(' ')).collect();
        let mut client = self.peer(&args);
        let local_port = client.line().parse().expect("client prints its local port");
        (client, local_port)
    }

    /// Makes `count` connections to a server of peer.py's own, one after the
    /// other, as fast as Python can; returns when all have closed.
    pub fn churn(&self, host: &str, port: u16, count: u32) {
        let mut churn = self.peer(&["churn", host, &port.to_string(), &count.to_string()]);
        assert_eq!(churn.line(), "done");
        assert!(churn.wait().success(), "churn failed");
    }

    /// Drops arriving packets that match `nft_match` (nftables table `table`),
    /// as a lossy path would: the sender saw them leave, so it retransmits.
    /// Dropping on output instead only gives the sender EPERM.
    pub fn drop_on_arrival(&self, table: &str, nft_match: &str) {
        self.exec(&["nft", &format!("add table inet {table}")]);
        self.exec(&["nft", &format!("add chain inet {table} in {{ type filter hook input priority 0; }}")]);
        self.exec(&["nft", &format!("add rule inet {table} in {nft_match} drop")]);
    }

    /// Runs a command inside the namespace (nft, sysctl, tc) and requires success.
    pub fn exec(&self, command: &[&str]) {
        run(Command::new("ip").args(["netns", "exec", &self.name]).args(command));
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// A child process whose stdout lines arrive on a channel.
pub struct Peer {
    child: Child,
    lines: Receiver<String>,
}

impl Peer {
    fn spawn(mut cmd: Command) -> Self {
        let mut child =
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self { child, lines }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn line(&mut self) -> String {
        self.lines.recv_timeout(PATIENCE).unwrap_or_else(|_| panic!("peer {} printed nothing", self.pid()))
    }

    pub fn wait(&mut self) -> ExitStatus {
        wait_bounded(&mut self.child)
    }

    /// Waits for a talking peer's last line, "done SENT RECEIVED", and its
    /// successful exit: the data bytes its send() and recv() calls moved.
    pub fn done(&mut self) -> (u64, u64) {
        let line = self.line();
        let counts: Vec<u64> =
            line.strip_prefix("done ").unwrap_or_default().split(' ').filter_map(|n| n.parse().ok()).collect();
        assert_eq!(counts.len(), 2, "peer {} said {line:?}, not done SENT RECEIVED", self.pid());
        assert!(self.wait().success(), "peer {} failed", self.pid());
        (counts[0], counts[1])
    }

    /// Ends the peer if it is still waiting (a server whose client never came).
    pub fn wait_or_kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Closes the peer's stdin (a `hold`ing peer lets go of everything).
    pub fn close_stdin(&mut self) {
        drop(self.child.stdin.take());
    }

    /// Writes a line to the peer's stdin (a `wait`ing client goes on).
    pub fn send_line(&mut self) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().expect("stdin");
        stdin.write_all(b"go\n").and_then(|()| stdin.flush()).expect("write to peer");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_bounded(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process {} did not exit in time", child.id());
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The tcptrace binary, running with JSON output.
pub struct Tracer {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
}

impl Tracer {
    /// Starts `tcptrace -o json ARGS` and waits until it says it is ready.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with(&["-o", "json"], args)
    }

    pub fn start_with(format: &[&str], args: &[&str]) -> Self {
        let (tracer, stdout) = Self::start_piped(format, args);
        tracer.read_stdout(stdout);
        tracer
    }

    /// Starts reading `stdout` (from [`Tracer::start_piped`]) into the lines
    /// [`Tracer::events`] returns.
    pub fn read_stdout(&self, stdout: std::process::ChildStdout) {
        let sink = Arc::clone(&self.lines);
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().expect("lock").push(line);
            }
        });
    }

    /// Starts tcptrace and hands its stdout to the caller, who reads it (or closes it).
    /// TCPTRACE_TEST_ATTACH=fentry|kprobe|tracepoint runs every test on that
    /// attach method alone (the VM runs use it to cover each rung).
    pub fn start_piped(format: &[&str], args: &[&str]) -> (Self, std::process::ChildStdout) {
        let attach = std::env::var("TCPTRACE_TEST_ATTACH").unwrap_or_else(|_| "auto".to_owned());
        let mut child = Command::new(env!("CARGO_BIN_EXE_tcptrace"))
            .args(format)
            .args(["--attach", &attach])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tcptrace");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("stdout");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready) = channel();
        let log = Arc::clone(&stderr);
        let pipe = child.stderr.take().expect("stderr");
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if line.contains("tcptrace: ready") {
                    let _ = ready_tx.send(());
                }
                let mut log = log.lock().expect("lock");
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut tracer = Self { child, lines, stderr };
        if ready.recv_timeout(PATIENCE).is_err() {
            let status = tracer.child.try_wait().ok().flatten();
            panic!("tcptrace never got ready (exit {status:?}); stderr:\n{}", tracer.stderr());
        }
        (tracer, stdout)
    }

    /// Starts `tcptrace -o human -q ARGS`. Quiet, it never says it is ready:
    /// it is once the column header is out, written after attaching.
    pub fn start_quiet_human(args: &[&str]) -> Self {
        let attach = std::env::var("TCPTRACE_TEST_ATTACH").unwrap_or_else(|_| "auto".to_owned());
        let mut child = Command::new(env!("CARGO_BIN_EXE_tcptrace"))
            .args(["-o", "human", "-q", "--attach", &attach])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tcptrace");
        let stdout = child.stdout.take().expect("stdout");
        let pipe = child.stderr.take().expect("stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let log = Arc::clone(&stderr);
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut log = log.lock().expect("lock");
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut tracer = Self { child, lines: Arc::new(Mutex::new(Vec::new())), stderr };
        tracer.read_stdout(stdout);
        let deadline = Instant::now() + PATIENCE;
        while tracer.stdout_lines().is_empty() {
            if Instant::now() > deadline || tracer.child.try_wait().ok().flatten().is_some() {
                panic!("tcptrace printed no header; stderr:\n{}", tracer.stderr());
            }
            thread::sleep(Duration::from_millis(20));
        }
        tracer
    }

    /// Waits until `done` holds for the stdout lines so far; returns them.
    pub fn wait_for_lines(&self, what: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let lines = self.stdout_lines();
            if done(&lines) {
                return lines;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; stdout:\n{}\nstderr:\n{}", lines.join("\n"), self.stderr());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("lock").clone()
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.lines.lock().expect("lock").clone()
    }

    /// Every JSON event printed so far.
    /// Every JSON record printed so far (start, events, lost, stop), each
    /// checked against the schema the README names.
    pub fn records(&self) -> Vec<Value> {
        self.stdout_lines().iter().map(|line| checked_record(line)).collect()
    }

    /// The connection events among the records.
    pub fn events(&self) -> Vec<Value> {
        self.records().into_iter().filter(|record| record.get("conn_id").is_some()).collect()
    }

    /// Waits until `done` holds for the events printed so far; returns them.
    pub fn wait_for(&self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        self.wait_until(what, Self::events, done)
    }

    /// As `wait_for`, over every record (start, lost and stop included).
    pub fn wait_for_records(&self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        self.wait_until(what, Self::records, done)
    }

    fn wait_until(&self, what: &str, read: fn(&Self) -> Vec<Value>, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let events = read(self);
            if done(&events) {
                return events;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; events:\n{}\nstderr:\n{}", dump(&events), self.stderr());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `done` holds for stderr so far; returns it.
    pub fn wait_stderr(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let stderr = self.stderr();
            if done(&stderr) {
                return stderr;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; stderr:\n{stderr}");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.pid() as i32, signal) };
    }

    /// SIGTERM, then the exit status and all of stderr.
    pub fn stop(mut self) -> (ExitStatus, String) {
        self.signal(libc::SIGTERM);
        let status = wait_bounded(&mut self.child);
        // Give the reader threads a moment to see the pipes close.
        thread::sleep(Duration::from_millis(50));
        (status, self.stderr())
    }

    /// Ids of the eBPF programs this tracer holds open, from its fdinfo.
    pub fn program_ids(&self) -> Vec<u32> {
        let dir = format!("/proc/{}/fdinfo", self.pid());
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(dir).expect("fdinfo").flatten() {
            let info = std::fs::read_to_string(entry.path()).unwrap_or_default();
            ids.extend(
                info.lines().filter_map(|l| l.strip_prefix("prog_id:")).filter_map(|v| v.trim().parse::<u32>().ok()),
            );
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn dump(events: &[Value]) -> String {
    events.iter().map(Value::to_string).collect::<Vec<_>>().join("\n")
}

/// Events in namespace `netns` whose local or remote port is `port`.
pub fn of_port(events: &[Value], netns: u64, port: u16) -> Vec<&Value> {
    events.iter().filter(|e| e["netns"] == netns && (e["lport"] == port || e["rport"] == port)).collect()
}

/// How many events of `kind` namespace `netns` has on `port`.
pub fn count(events: &[Value], netns: u64, port: u16, kind: &str) -> usize {
    of_port(events, netns, port).iter().filter(|e| e["event"] == kind).count()
}

/// The first event matching `kind` with local port `lport`, if any.
pub fn find<'a>(events: &[&'a Value], kind: &str, lport: u16) -> Option<&'a Value> {
    events.iter().copied().find(|e| e["event"] == kind && e["lport"] == lport)
}

/// A port no other test uses at the same time.
pub fn port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Namespaces are per test, so only tests sharing one could collide.
    20000 + NEXT.fetch_add(1, Ordering::Relaxed) as u16
}

impl Tracer {
    /// Waits for tcptrace to exit on its own (e.g. after --count).
    pub fn wait_exit(mut self) -> (ExitStatus, String) {
        let status = wait_bounded(&mut self.child);
        thread::sleep(Duration::from_millis(50));
        (status, self.stderr())
    }

    /// Waits for a JSON run to end by itself; its status, stderr and every
    /// record up to the `stop` record it must end with.
    pub fn wait_exit_with_records(mut self) -> (ExitStatus, String, Vec<Value>) {
        let status = wait_bounded(&mut self.child);
        let deadline = Instant::now() + PATIENCE;
        while !self.records().last().is_some_and(|r| r["event"] == "stop") && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        let records = self.records();
        (status, self.stderr(), records)
    }
}

/// Every event of the connection one of whose events is `anchor`, in order.
pub fn connection<'a>(events: &[&'a Value], anchor: &Value) -> Vec<&'a Value> {
    events.iter().copied().filter(|e| e["conn_id"] == anchor["conn_id"]).collect()
}

/// (old_state, new_state) of the `state` events among `events`, in order.
pub fn transitions(events: &[&Value]) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| e["event"] == "state")
        .map(|e| (e["old_state"].as_str().unwrap_or("").to_owned(), e["new_state"].as_str().unwrap_or("").to_owned()))
        .collect()
}

pub fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
}

/// Since 6.10, tcp:tcp_send_reset also fires for RSTs no socket sends, with a
/// reason; its format then has a `reason` field.
pub fn send_reset_reports_socketless_resets() -> bool {
    ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"].iter().any(|root| {
        std::fs::read_to_string(format!("{root}/events/tcp/tcp_send_reset/format"))
            .is_ok_and(|format| format.contains("field:enum sk_rst_reason reason;"))
    })
}

/// Which of the eBPF programs `ids` are still loaded once the kernel has had
/// a few seconds to free them: it frees a BTF tracepoint's program a little
/// after the process holding its link exits (the link's release waits for an
/// RCU grace period), so a check right at exit can still see it.
pub fn still_loaded_after_exit(ids: &[u32]) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let loaded: Vec<u32> = aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .map(|p| p.id())
            .filter(|id| ids.contains(id))
            .collect();
        if loaded.is_empty() || Instant::now() > deadline {
            return loaded;
        }
        thread::sleep(Duration::from_millis(20));
    }
}
