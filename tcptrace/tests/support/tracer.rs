//! The tcptrace binary as the tests run it: started, its output read, and
//! checked that it leaves no eBPF program behind.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, mpsc::channel},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use super::{PATIENCE, checked_record, dump, wait_bounded};

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

    /// [`Tracer::start`] with environment variables for tcptrace.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut tracer = Self::start_env(&["-o", "json"], args, Stdio::piped(), env);
        let stdout = tracer.child.stdout.take().expect("stdout");
        tracer.read_stdout(stdout);
        tracer
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
        let mut tracer = Self::start_into(format, args, Stdio::piped());
        let stdout = tracer.child.stdout.take().expect("stdout");
        (tracer, stdout)
    }

    /// Starts tcptrace with its stdout on `stdout` (a file, say), without
    /// reading it.
    pub fn start_into(format: &[&str], args: &[&str], stdout: Stdio) -> Self {
        Self::start_env(format, args, stdout, &[])
    }

    /// [`Tracer::start_into`] with environment variables for tcptrace.
    pub fn start_env(format: &[&str], args: &[&str], stdout: Stdio, env: &[(&str, &str)]) -> Self {
        let attach = std::env::var("TCPTRACE_TEST_ATTACH").unwrap_or_else(|_| "auto".to_owned());
        let mut child = Command::new(env!("CARGO_BIN_EXE_tcptrace"))
            .args(format)
            .args(["--attach", &attach])
            .args(args)
            .envs(env.iter().copied())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tcptrace");
        let lines = Arc::new(Mutex::new(Vec::new()));
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
        tracer
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
