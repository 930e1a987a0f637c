//! `cargo xtask bench`: connection churn untraced and under each tracer, in
//! one run, alternating subjects round by round, medians reported. Measures;
//! never fails on a number.
use std::{
    fs::File,
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc::{Receiver, channel},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    setup,
    shell::{found, run, workspace_root},
};

const NETNS: &str = "tcptrace-bench";
const PORT: u16 = 7000;
const CLIENTS: usize = 2;

/// One thing to measure the churn under.
#[derive(Clone)]
struct Subject {
    label: &'static str,
    /// None: untraced.
    command: Option<Vec<String>>,
    /// The tracer says "ready" on stderr (tcptrace); others get a fixed delay.
    says_ready: bool,
}

#[derive(Default, Clone, Copy)]
struct Sample {
    conns_per_s: f64,
    events: Option<f64>,
    lost: Option<f64>,
    cpu_s: Option<f64>,
    rss_mb: Option<f64>,
    ready_ms: Option<f64>,
    bpf_ms: Option<f64>,
}

pub struct Options {
    pub seconds: f64,
    pub rounds: usize,
    /// Only untraced and tcptrace's default mode: the CI smoke run.
    pub smoke: bool,
    /// Time every eBPF program run (kernel.bpf_stats_enabled) for the "bpf ms"
    /// column; it costs a little itself, so it is off by default.
    pub bpf_stats: bool,
}

pub fn bench(options: &Options) -> Result<()> {
    setup::all()?;
    if !options.smoke {
        setup::packages(&["libbpf-tools"])?;
    }
    let root = workspace_root();
    // Release builds of both the tracer and the load generator: a debug load
    // generator would measure Rust's debug overhead, not the kernel's.
    run(Command::new("cargo").current_dir(&root).args([
        "build",
        "--release",
        "--package",
        "tcptrace",
        "--package",
        "xtask",
    ]))?;
    let tcptrace = root.join("target/release/tcptrace").to_string_lossy().into_owned();
    let loadgen = root.join("target/release/xtask");
    let subjects = subjects(&tcptrace, options.smoke);
    let _netns = Netns::create()?;
    if options.bpf_stats {
        // Per-program run time in the tracers' fdinfo.
        std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1").context("enable bpf stats")?;
    }

    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); subjects.len()];
    for round in 1..=options.rounds {
        for (subject, samples) in subjects.iter().zip(samples.iter_mut()) {
            eprintln!("xtask: round {round}/{}: {}", options.rounds, subject.label);
            let mut sample = measure(subject, &loadgen, options.seconds)?;
            if !options.bpf_stats {
                // Without kernel.bpf_stats_enabled the kernel reports 0, not "unknown".
                sample.bpf_ms = None;
            }
            samples.push(sample);
        }
    }
    if options.bpf_stats {
        std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "0").context("disable bpf stats")?;
    }
    print_table(&subjects, &samples, options);
    Ok(())
}

fn subjects(tcptrace: &str, smoke: bool) -> Vec<Subject> {
    let tcptrace_with = |label, extra: &[&str]| Subject {
        label,
        command: Some(std::iter::once(tcptrace).chain(extra.iter().copied()).map(str::to_owned).collect()),
        says_ready: true,
    };
    let mut list =
        vec![Subject { label: "untraced", command: None, says_ready: false }, tcptrace_with("tcptrace", &[])];
    if smoke {
        return list;
    }
    list.push(tcptrace_with("tcptrace --states", &["--states"]));
    list.push(tcptrace_with("tcptrace -o json", &["-o", "json"]));
    for (label, path) in
        [("libbpf-tools tcpstates", "/usr/sbin/tcpstates"), ("libbpf-tools tcplife", "/usr/sbin/tcplife")]
    {
        list.push(Subject { label, command: Some(vec![path.to_owned()]), says_ready: false });
    }
    list
}

fn measure(subject: &Subject, loadgen: &Path, seconds: f64) -> Result<Sample> {
    let mut tracer = match &subject.command {
        Some(command) => Some(Tracer::start(command, subject.says_ready)?),
        None => None,
    };
    let churn = churn(loadgen, seconds);
    let mut sample = Sample { conns_per_s: churn?, ..Sample::default() };
    if let Some(tracer) = tracer.take() {
        tracer.stop(&mut sample)?;
    }
    Ok(sample)
}

/// Runs the load generator inside the namespace; connections per second.
fn churn(loadgen: &Path, seconds: f64) -> Result<f64> {
    let out = Command::new("ip")
        .args(["netns", "exec", NETNS])
        .arg(loadgen)
        .args(["loadgen", "--seconds", &seconds.to_string(), "--clients", &CLIENTS.to_string()])
        .args(["--port", &PORT.to_string()])
        .output()?;
    if !out.status.success() {
        bail!("load generator failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let numbers: Vec<f64> = text.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    match numbers.as_slice() {
        [connections, elapsed] => Ok(connections / elapsed),
        _ => bail!("unexpected load generator output: {text}"),
    }
}

struct Tracer {
    child: Child,
    stderr: Receiver<String>,
    ready_ms: Option<f64>,
}

impl Tracer {
    fn start(command: &[String], says_ready: bool) -> Result<Self> {
        let started = Instant::now();
        let mut child = Command::new(&command[0])
            .args(&command[1..])
            .stdout(File::create("/dev/null")?)
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("start {}", command[0]))?;
        let (tx, stderr) = channel();
        let pipe = child.stderr.take().context("stderr")?;
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut tracer = Self { child, stderr, ready_ms: None };
        if says_ready {
            tracer.ready_ms = Some(tracer.wait_ready(started)?);
        } else {
            // No ready signal to read: give it time to load and attach.
            thread::sleep(Duration::from_millis(1500));
        }
        Ok(tracer)
    }

    fn wait_ready(&mut self, started: Instant) -> Result<f64> {
        loop {
            let line = self.stderr.recv_timeout(Duration::from_secs(20)).context("tracer never got ready")?;
            if line.contains("ready") {
                return Ok(started.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }

    /// SIGINT, then what it used (from wait4) and what it said.
    fn stop(mut self, sample: &mut Sample) -> Result<()> {
        sample.bpf_ms = bpf_run_time_ms(self.child.id());
        let pid = self.child.id() as i32;
        // SAFETY: signalling and reaping our own child.
        let (status, usage) = unsafe {
            libc::kill(pid, libc::SIGINT);
            let mut status = 0;
            let mut usage: libc::rusage = std::mem::zeroed();
            if libc::wait4(pid, &mut status, 0, &mut usage) < 0 {
                bail!("wait4: {}", std::io::Error::last_os_error());
            }
            (status, usage)
        };
        let _ = self.child.try_wait();
        let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        sample.cpu_s = Some(seconds(usage.ru_utime) + seconds(usage.ru_stime));
        sample.rss_mb = Some(usage.ru_maxrss as f64 / 1024.0);
        sample.ready_ms = self.ready_ms;
        let lines: Vec<String> = self.stderr.try_iter().collect();
        let (events, lost) = parse_counts(&lines);
        sample.events = events;
        sample.lost = lost;
        if !libc::WIFEXITED(status) {
            eprintln!("xtask: tracer ended by signal; stderr: {}", lines.join(" | "));
        }
        Ok(())
    }
}

/// tcptrace: "tcptrace: N events, M lost, ..."; libbpf-tools: "lost N events ...".
fn parse_counts(lines: &[String]) -> (Option<f64>, Option<f64>) {
    let number_after = |line: &str, word: &str| -> Option<f64> {
        let mut words = line.split([' ', ',']).filter(|w| !w.is_empty());
        let mut previous = None;
        for w in words.by_ref() {
            if w == word {
                return previous;
            }
            previous = w.parse().ok();
        }
        None
    };
    let mut events = None;
    let mut lost = None;
    for line in lines {
        if let Some(summary) = line.strip_prefix("tcptrace: ").filter(|l| l.contains(" events, ")) {
            events = number_after(summary, "events");
            lost = number_after(summary, "lost");
        } else if let Some(rest) = line.trim().strip_prefix("lost ") {
            let n: f64 = rest.split_whitespace().next().and_then(|w| w.parse().ok()).unwrap_or(0.0);
            lost = Some(lost.unwrap_or(0.0) + n);
        }
    }
    (events, lost)
}

/// Total run time of the eBPF programs a process holds (needs bpf_stats_enabled).
fn bpf_run_time_ms(pid: u32) -> Option<f64> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fdinfo")).ok()?;
    let mut total_ns = 0u64;
    let mut seen = false;
    for entry in dir.flatten() {
        let info = std::fs::read_to_string(entry.path()).unwrap_or_default();
        if !info.contains("prog_id:") {
            continue;
        }
        for value in info.lines().filter_map(|l| l.strip_prefix("run_time_ns:")) {
            total_ns += value.trim().parse::<u64>().unwrap_or(0);
            seen = true;
        }
    }
    seen.then(|| total_ns as f64 / 1e6)
}

fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut values: Vec<f64> = values.collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(values[values.len() / 2])
}

#[expect(clippy::print_stdout, reason = "the table is the bench's output")]
fn print_table(subjects: &[Subject], samples: &[Vec<Sample>], options: &Options) {
    let untraced = median(samples[0].iter().map(|s| s.conns_per_s)).unwrap_or(f64::NAN);
    println!(
        "\n{} rounds of {} s, {CLIENTS} client threads, medians; {}",
        options.rounds,
        options.seconds,
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
    );
    println!("| tracer | connections/s | ratio | events | lost | tracer CPU s | bpf ms | peak RSS MB | ready ms |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let cell = |value: Option<f64>, digits: usize| value.map_or("-".to_owned(), |v| format!("{v:.digits$}"));
    for (subject, samples) in subjects.iter().zip(samples) {
        let rate = median(samples.iter().map(|s| s.conns_per_s));
        let pick = |f: fn(&Sample) -> Option<f64>| median(samples.iter().filter_map(f));
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            subject.label,
            cell(rate, 0),
            cell(rate.map(|r| r / untraced), 2),
            cell(pick(|s| s.events), 0),
            cell(pick(|s| s.lost), 0),
            cell(pick(|s| s.cpu_s), 2),
            cell(pick(|s| s.bpf_ms), 0),
            cell(pick(|s| s.rss_mb), 1),
            cell(pick(|s| s.ready_ms), 0),
        );
    }
}

/// The benchmark's own namespace, with TIME_WAIT reuse so ports do not run out.
struct Netns;

impl Netns {
    fn create() -> Result<Self> {
        let _ = Command::new("ip").args(["netns", "del", NETNS]).stderr(Stdio::null()).status();
        run(Command::new("ip").args(["netns", "add", NETNS]))?;
        let exec = |args: &[&str]| run(Command::new("ip").args(["netns", "exec", NETNS]).args(args));
        exec(&["ip", "link", "set", "lo", "up"])?;
        exec(&["sysctl", "-q", "-w", "net.ipv4.tcp_tw_reuse=1"])?;
        exec(&["sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=1024 65535"])?;
        if !found("ip") {
            bail!("ip (iproute2) is missing");
        }
        Ok(Self)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", NETNS]).status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tracer_summaries() {
        let lines = ["tcptrace: ready".to_owned(), "tcptrace: 1200 events, 3 lost, 0 malformed".to_owned()];
        assert_eq!(parse_counts(&lines), (Some(1200.0), Some(3.0)));
        let peer = ["lost 10 events on CPU #0".to_owned(), "lost 5 events on CPU #1".to_owned()];
        assert_eq!(parse_counts(&peer), (None, Some(15.0)));
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), Some(2.0));
    }
}
