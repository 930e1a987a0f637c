//! `cargo xtask bench --burst N`: a proxy restart as a tracer sees it. While
//! each tracer runs, helper processes (`xtask hold`, up to 8,000 connections
//! each) open N connections as fast as they can, then all close at once.
//! The churn measures what a connection costs; this measures whether a
//! tracer keeps up when a dozen busy processes crowd its reader off the CPUs
//! and its ring buffer has to hold the difference.
use std::{path::Path, thread, time::Duration, time::Instant};

use anyhow::Result;

use super::{NETNS, Sample, Subject, median, tracer::Tracer};
use crate::hold::Held;

/// After the holders exit: for the kernel's last FINs and ACKs, and for the
/// tracer to drain what its ring holds.
const SETTLE: Duration = Duration::from_secs(3);

pub(super) fn run(subjects: &[Subject], xtask: &Path, connections: usize, rounds: usize) -> Result<()> {
    let traced: Vec<(&Subject, &[String])> =
        subjects.iter().filter_map(|subject| Some((subject, subject.command.as_deref()?))).collect();
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); traced.len()];
    for round in 1..=rounds {
        for (&(subject, command), samples) in traced.iter().zip(samples.iter_mut()) {
            eprintln!("xtask: burst {round}/{rounds}: {}", subject.label);
            let tracer = Tracer::start(command, subject.says_ready)?;
            let before = tracer.counters();
            let started = Instant::now();
            // Dropping the holders closes every connection at once.
            drop(Held::open(xtask, NETNS, connections)?);
            thread::sleep(SETTLE);
            let mut sample = Sample {
                connections: connections as f64,
                seconds: started.elapsed().as_secs_f64(),
                ..Sample::default()
            };
            tracer.stop(&mut sample, before)?;
            eprintln!(
                "xtask: {}: {} events, {} lost",
                subject.label,
                sample.events.map_or("?".to_owned(), |n| n.to_string()),
                sample.lost.map_or("?".to_owned(), |n| n.to_string())
            );
            samples.push(sample);
        }
    }
    print_table(&traced, &samples, connections, rounds);
    Ok(())
}

#[expect(clippy::print_stdout, reason = "the table is the bench's output")]
fn print_table(subjects: &[(&Subject, &[String])], samples: &[Vec<Sample>], connections: usize, rounds: usize) {
    println!(
        "\n{connections} connections opened, then closed at once, by {} helper processes; {rounds} round{}; medians; {}",
        connections.div_ceil(crate::hold::PER_HELPER),
        if rounds == 1 { "" } else { "s" },
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
    );
    println!("| tracer | events | lost | tracer CPU s | bpf ms | CPU µs/conn | peak RSS MB |");
    println!("|---|---|---|---|---|---|---|");
    let cell = |value: Option<f64>, digits: usize| value.map_or("-".to_owned(), |v| format!("{v:.digits$}"));
    for ((subject, _), samples) in subjects.iter().zip(samples) {
        let pick = |f: &dyn Fn(&Sample) -> Option<f64>| median(samples.iter().filter_map(f));
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            subject.label,
            cell(pick(&|s| s.events), 0),
            cell(pick(&|s| s.lost), 0),
            cell(pick(&|s| s.cpu_s), 2),
            cell(pick(&|s| s.bpf_ms), 0),
            cell(pick(&Sample::us_per_conn), 2),
            cell(pick(&|s| s.rss_mb), 1),
        );
    }
}
