//! syslog-ng itself: the shipped config with the test's settings, the
//! process, and the lines it writes, read back as tcptrace wrote them.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::{Map, Value};

use crate::support::{self, Netns, PATIENCE};

/// The config under test, as shipped.
pub const CONF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/syslog-ng/tcptrace.conf");

/// Its @define lines, whose defaults the test replaces.
const BINARY_DEFINE: &str = r#"@define tcptrace_bin "/usr/local/bin/tcptrace""#;
const ARGS_DEFINE: &str = r#"@define tcptrace_args """#;
const LOG_DEFINE: &str = r#"@define tcptrace_log "/var/log/tcptrace.json""#;

/// syslog-ng in the foreground with everything of its own (config, output,
/// persist file, pid file, control socket) in a temporary directory, so a
/// system syslog, if any, is left alone. Stopped and the directory removed
/// on drop.
pub struct SyslogNg {
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
pub struct Record {
    /// As syslog-ng wrote it.
    pub written: Value,
    /// As tcptrace wrote it (see [`as_tcptrace_wrote_it`]).
    pub tcptrace: Value,
    /// When the test first read it.
    pub read_at: Instant,
}

impl SyslogNg {
    /// syslog-ng running the shipped config, tcptrace traced to `ns` alone.
    pub fn start(ns: &Netns) -> Self {
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

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }

    /// Every line syslog-ng has written so far, each a JSON object; what is
    /// new since the last call is read now. Reading only what is new keeps a
    /// busy host's lines from slowing the test's polls.
    pub fn records(&mut self) -> &[Record] {
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
    pub fn wait_for(&mut self, what: &str, done: impl Fn(&[Record]) -> bool) -> Vec<Record> {
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
    pub fn children(&self) -> Vec<u32> {
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

    pub fn stop(&mut self) -> ExitStatus {
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
