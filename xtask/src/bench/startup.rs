//! `cargo xtask bench --starts N`: start-up alone. Each tcptrace build is
//! started N times, alternating, the order swapped each round so neither
//! always follows the other: the time from exec to its "ready" line, and its
//! peak RSS (it is stopped shortly after). One start varies by ±10 ms with
//! what the host does meanwhile: compare the builds' medians and quartiles
//! from one run.
use std::{thread, time::Duration};

use anyhow::Result;

use super::{Sample, Subject, tracer::Tracer};

/// Running after "ready" before SIGINT, as a user would see it start.
const RUNNING: Duration = Duration::from_millis(200);
/// Between starts: the previous one's programs are gone from the kernel.
const PAUSE: Duration = Duration::from_millis(300);

pub(super) fn run(subjects: &[Subject], starts: usize) -> Result<()> {
    let builds: Vec<(&Subject, &[String])> = subjects
        .iter()
        .filter(|subject| subject.says_ready)
        .filter_map(|subject| Some((subject, subject.command.as_deref()?)))
        .collect();
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); builds.len()];
    for round in 0..starts {
        let mut order: Vec<usize> = (0..builds.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for index in order {
            let tracer = Tracer::start(builds[index].1, true)?;
            thread::sleep(RUNNING);
            let mut sample = Sample::default();
            let before = tracer.counters();
            tracer.stop(&mut sample, before)?;
            samples[index].push(sample);
            thread::sleep(PAUSE);
        }
        eprintln!("xtask: start-up round {}/{starts}", round + 1);
    }
    print_table(&builds, &samples, starts);
    Ok(())
}

#[expect(clippy::print_stdout, reason = "the table is the bench's output")]
fn print_table(builds: &[(&Subject, &[String])], samples: &[Vec<Sample>], starts: usize) {
    println!(
        "\nstart-up, {starts} starts of each build, alternating; {}",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
    );
    println!("| build | ready ms median | quartiles | min | max | peak RSS MB median | max |");
    println!("|---|---|---|---|---|---|---|");
    for ((subject, _), samples) in builds.iter().zip(samples) {
        let mut ready: Vec<f64> = samples.iter().filter_map(|s| s.ready_ms).collect();
        let mut rss: Vec<f64> = samples.iter().filter_map(|s| s.rss_mb).collect();
        ready.sort_by(f64::total_cmp);
        rss.sort_by(f64::total_cmp);
        println!(
            "| {} | {:.1} | {:.1}-{:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            subject.label,
            rank(&ready, 0.5),
            rank(&ready, 0.25),
            rank(&ready, 0.75),
            rank(&ready, 0.0),
            rank(&ready, 1.0),
            rank(&rss, 0.5),
            rank(&rss, 1.0)
        );
    }
}

/// The value at fraction `at` of `sorted` (nearest rank); NaN when empty.
fn rank(sorted: &[f64], at: f64) -> f64 {
    let last = sorted.len().saturating_sub(1);
    sorted.get((at * last as f64).round() as usize).copied().unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::rank;

    #[test]
    fn ranks_pick_the_nearest_value() {
        let sorted = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(
            (rank(&sorted, 0.0), rank(&sorted, 0.25), rank(&sorted, 0.5), rank(&sorted, 1.0)),
            (1.0, 2.0, 3.0, 5.0)
        );
        assert!(rank(&[], 0.5).is_nan());
    }
}
