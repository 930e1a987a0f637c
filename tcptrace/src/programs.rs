//! The kernel's own statistics of our attached programs, read from
//! /proc/self/fdinfo of their fds: run time and runs (counted only while BPF
//! stats are on) and recursion misses, always counted: runs the kernel
//! skipped because an eBPF program was already running on that CPU (a
//! softirq's TCP work interrupting one, say): any tracepoint or kprobe
//! program for those, the same program for BTF tracepoints and fentry. A skipped run's events are
//! missing, so the session reports them like lost events. Kernels count them
//! for fentry since 5.12 and for tracepoints and kprobes since 6.7; before,
//! such skips are invisible.
use std::os::fd::{AsFd, AsRawFd};

use aya::programs::ProgramFd;

use crate::loader::Tracer;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunStats {
    pub run_time_ns: u64,
    pub run_cnt: u64,
    pub recursion_misses: u64,
}

impl RunStats {
    /// The `run_time_ns`, `run_cnt` and `recursion_misses` lines of a
    /// program fd's fdinfo (the last one absent before 5.12).
    pub fn parse(fdinfo: &str) -> Option<Self> {
        let field =
            |key: &str| fdinfo.lines().find_map(|line| line.strip_prefix(key)?.strip_prefix(':')?.trim().parse().ok());
        Some(Self {
            run_time_ns: field("run_time_ns")?,
            run_cnt: field("run_cnt")?,
            recursion_misses: field("recursion_misses").unwrap_or(0),
        })
    }
}

/// The attached programs, by name, each with a copy of its fd (the copy is
/// ours: reading it never races with the tracer dropping its own).
#[derive(Debug, Default)]
pub struct Programs(Vec<(String, ProgramFd)>);

impl Programs {
    /// Rungs that loaded but failed to attach never run: left out.
    pub fn of(tracer: &Tracer) -> Self {
        let attached: Vec<&str> = tracer.hooks.iter().flat_map(|hook| hook.programs.iter().copied()).collect();
        Self(
            tracer
                .ebpf
                .programs()
                .filter(|(name, _)| attached.contains(name))
                .filter_map(|(name, program)| Some((name.to_owned(), program.fd().ok()?.try_clone().ok()?)))
                .collect(),
        )
    }

    pub fn read(&self) -> Vec<(&str, RunStats)> {
        self.0
            .iter()
            .filter_map(|(name, fd)| {
                let fdinfo = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_fd().as_raw_fd())).ok()?;
                Some((name.as_str(), RunStats::parse(&fdinfo)?))
            })
            .collect()
    }

    /// Runs the kernel skipped, by program, those with any.
    pub fn missed(&self) -> Vec<(&str, u64)> {
        self.read()
            .into_iter()
            .filter(|(_, stats)| stats.recursion_misses > 0)
            .map(|(name, stats)| (name, stats.recursion_misses))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_stats_from_fdinfo() {
        let fdinfo = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t2072\nprog_type:\t5\nprog_jited:\t1\n\
                      prog_tag:\t1d5b8a5d2a9e1d4f\nmemlock:\t4096\nprog_id:\t412\nrun_time_ns:\t123456\n\
                      run_cnt:\t78\nrecursion_misses:\t3\nverified_insns:\t301\n";
        let stats = RunStats { run_time_ns: 123_456, run_cnt: 78, recursion_misses: 3 };
        assert_eq!(RunStats::parse(fdinfo), Some(stats));
        // Before 5.12: no recursion_misses line, none counted.
        let old = "prog_type:\t5\nrun_time_ns:\t10\nrun_cnt:\t2\n";
        assert_eq!(RunStats::parse(old), Some(RunStats { run_time_ns: 10, run_cnt: 2, recursion_misses: 0 }));
        // A map's fdinfo, or a kernel before 5.1: nothing to report.
        assert_eq!(RunStats::parse("pos:\t0\nmap_type:\t27\n"), None);
    }
}
