//! The tracer under test: started and awaited until ready, measured over the
//! churn (its CPU clock and its eBPF programs' run time), stopped with SIGINT
//! and reaped (wait4: CPU, peak RSS), its summary read from stderr.
use std::{
    fs::File,
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc::{Receiver, channel},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use super::Sample;
use crate::cpu::{self, Usage};

pub(super) struct Tracer {
    child: Child,
    stderr: Receiver<String>,
    ready_ms: Option<f64>,
    /// Reaped by `stop`; else killed on drop (the bench failed meanwhile).
    reaped: bool,
}

/// A tracer's CPU seconds and eBPF run time so far.
#[derive(Clone, Copy)]
pub(super) struct Counters {
    cpu_s: Option<f64>,
    bpf_ns: Option<u64>,
}

impl Tracer {
    pub(super) fn start(command: &[String], says_ready: bool) -> Result<Self> {
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
        let mut tracer = Self { child, stderr, ready_ms: None, reaped: false };
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

    pub(super) fn counters(&self) -> Counters {
        Counters { cpu_s: cpu::process_cpu_s(self.child.id()), bpf_ns: cpu::bpf_run_time_ns(self.child.id()) }
    }

    /// What it said after "ready", up to the pipe's end (the reader thread
    /// may still hold the last lines when wait4 returns); 2 s at most.
    fn rest_of_stderr(&self) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut lines = Vec::new();
        while let Ok(line) = self.stderr.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            lines.push(line);
        }
        lines
    }

    /// SIGINT, then what it used since `before` (CPU: from wait4, so its
    /// final drain counts) and what it said.
    pub(super) fn stop(mut self, sample: &mut Sample, before: Counters) -> Result<()> {
        let bpf_ns = cpu::bpf_run_time_ns(self.child.id());
        sample.bpf_ms = bpf_ns.zip(before.bpf_ns).map(|(after, before)| after.saturating_sub(before) as f64 / 1e6);
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
        self.reaped = true;
        let Usage { user_s, system_s } = Usage::from(&usage);
        sample.cpu_s = before.cpu_s.map(|before| (user_s + system_s - before).max(0.0));
        sample.rss_mb = Some(usage.ru_maxrss as f64 / 1024.0);
        sample.ready_ms = self.ready_ms;
        let lines = self.rest_of_stderr();
        let (events, lost) = parse_counts(&lines);
        sample.events = events;
        sample.lost = lost;
        if !libc::WIFEXITED(status) {
            eprintln!("xtask: tracer ended by signal; stderr: {}", lines.join(" | "));
        }
        Ok(())
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// tcptrace: "tcptrace: N events, M lost, ..."; libbpf-tools: "lost N events ...".
pub(super) fn parse_counts(lines: &[String]) -> (Option<f64>, Option<f64>) {
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
