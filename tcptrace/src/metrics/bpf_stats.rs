//! The kernel's own count of our programs' runs and run time, as metrics.
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{TypedMetric, counter::ConstCounter},
};

use crate::programs::{Programs, RunStats};

/// The kernel's run-time statistics of our programs (programs.rs), read at
/// each scrape. The kernel counts time and runs only while BPF stats are on
/// (sysctl kernel.bpf_stats_enabled, or a BPF_ENABLE_STATS holder): those
/// series appear only then, or once it has counted anything.
#[derive(Debug)]
pub(super) struct BpfStats {
    pub(super) programs: Programs,
}

fn stats_enabled(stats: &[(&str, RunStats)]) -> bool {
    let sysctl = std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled");
    sysctl.is_ok_and(|value| value.trim() == "1") || stats.iter().any(|(_, stats)| stats.run_cnt > 0)
}

impl Collector for BpfStats {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.programs.read();
        if stats.is_empty() || !stats_enabled(&stats) {
            return Ok(());
        }
        encode_per_program(
            &mut encoder,
            "bpf_run_time_seconds",
            "Time the kernel spent running each program (while BPF stats are on)",
            stats.iter().map(|(name, stats)| (*name, ConstCounter::new(stats.run_time_ns as f64 / 1e9))),
        )?;
        encode_per_program(
            &mut encoder,
            "bpf_runs",
            "Runs of each program (while BPF stats are on)",
            stats.iter().map(|(name, stats)| (*name, ConstCounter::new(stats.run_cnt))),
        )
    }
}

fn encode_per_program<'a, M: EncodeMetric + TypedMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: impl Iterator<Item = (&'a str, M)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, M::TYPE)?;
    for (program, value) in values {
        value.encode(family.encode_family(&[("program", program)])?)?;
    }
    Ok(())
}
