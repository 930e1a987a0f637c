//! `cargo xtask bench`: connection churn untraced and under each tracer, in
//! one run, alternating subjects round by round, medians reported. Measures;
//! never fails on a number.
//!
//! The headline is what a tracer costs per connection: its own CPU time plus
//! its eBPF programs' run time (kernel bpf stats, on for the whole bench),
//! divided by the connections made meanwhile. Each run also says how idle the
//! CPUs were and where the load generator's time went: the untraced run must
//! keep the CPUs busy with TCP, or the ratios measure something else.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
};

use anyhow::{Context, Result, bail};

use self::tracer::Tracer;
use crate::{
    cpu::{BpfStats, Usage},
    hold::Held,
    setup,
    shell::{found, run, workspace_root},
};

mod burst;
mod startup;
mod tracer;

const NETNS: &str = "tcptrace-bench";
/// Below the ephemeral ports (Netns).
const PORT: u16 = 7000;
/// Client threads (and as many server threads) per CPU: with one per CPU,
/// every thread sometimes waits for a wake-up at once and ~10 % of the CPU
/// time stays idle; with two, under 1 %.
const CLIENTS_PER_CPU: usize = 2;
/// Above this idle share the untraced churn is not CPU-bound: warn.
const IDLE_WARNING: f64 = 0.10;
/// Above this share of the CPUs taken by others during a run: say the numbers are disturbed.
const OTHERS_NOTE: f64 = 0.10;

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
    connections: f64,
    seconds: f64,
    /// The host's idle share during the churn.
    idle: Option<f64>,
    /// The load generator's CPU time during the churn.
    loadgen: Usage,
    events: Option<f64>,
    lost: Option<f64>,
    /// The tracer's CPU time from the start of the churn to its exit.
    cpu_s: Option<f64>,
    /// Its eBPF programs' run time during the churn.
    bpf_ms: Option<f64>,
    rss_mb: Option<f64>,
    ready_ms: Option<f64>,
}

impl Sample {
    fn conns_per_s(&self) -> f64 {
        self.connections / self.seconds
    }

    /// CPUs busy with neither the load generator nor the tracer (other
    /// processes, kernel threads): above a little, the run was disturbed.
    fn other_cpus(&self) -> Option<f64> {
        let busy = (1.0 - self.idle?) * cpus() as f64;
        let ours = self.loadgen.user_s + self.loadgen.system_s + self.cpu_s.unwrap_or(0.0);
        Some((busy - ours / self.seconds).max(0.0))
    }

    /// The headline: tracer CPU plus eBPF run time, per connection.
    fn us_per_conn(&self) -> Option<f64> {
        let seconds = self.cpu_s? + self.bpf_ms? / 1e3;
        (self.connections > 0.0).then(|| seconds * 1e6 / self.connections)
    }
}

pub struct Options {
    pub seconds: f64,
    pub rounds: usize,
    /// Only untraced and tcptrace's default mode: the CI smoke run.
    pub smoke: bool,
    /// Idle connections held open beside the churn (a busy host); 0: none.
    pub busy: usize,
    /// Another tcptrace binary, measured beside this build.
    pub baseline: Option<PathBuf>,
    /// Instead of the churn: this many connections opened, then closed at once (burst.rs); 0: churn.
    pub burst: usize,
    /// Instead of the churn: this many starts of each tcptrace build (startup.rs); 0: churn.
    pub starts: usize,
}

pub fn bench(options: &Options) -> Result<()> {
    if let Some(baseline) = options.baseline.as_ref().filter(|path| !path.is_file()) {
        bail!("--baseline {}: no such file", baseline.display());
    }
    setup::all()?;
    // The peers run in the churn only.
    if !options.smoke && options.starts == 0 {
        setup::packages(&["libbpf-tools"])?;
    }
    let root = workspace_root();
    crate::shell::build_release()?;
    let tcptrace = root.join("target/release/tcptrace").to_string_lossy().into_owned();
    let xtask = root.join("target/release/xtask");
    let mut subjects = subjects(&tcptrace, options.smoke);
    if let Some(baseline) = &options.baseline {
        let command = vec![baseline.to_string_lossy().into_owned()];
        subjects.insert(2, Subject { label: "tcptrace baseline", command: Some(command), says_ready: true });
    }
    if options.starts > 0 {
        // This build and the baseline, as started by default.
        subjects.retain(|subject| subject.label == "tcptrace" || subject.label == "tcptrace baseline");
        return startup::run(&subjects, options.starts);
    }
    let clients = CLIENTS_PER_CPU * cpus();
    let _netns = Netns::create()?;
    // On for every subject alike (it adds a clock read around each program
    // run); off again when this is dropped, or when the bench dies.
    let bpf_stats =
        BpfStats::enable().inspect_err(|e| eprintln!("xtask: warning: no eBPF run times (BPF_ENABLE_STATS: {e})")).ok();
    if options.burst > 0 {
        return burst::run(&subjects, &xtask, options.burst, options.rounds);
    }
    let held = match options.busy {
        0 => None,
        n => {
            eprintln!("xtask: holding {n} idle connections open");
            Some(Held::open(&xtask, NETNS, n)?)
        }
    };

    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); subjects.len()];
    for round in 1..=options.rounds {
        for (subject, samples) in subjects.iter().zip(samples.iter_mut()) {
            eprintln!("xtask: round {round}/{}: {}", options.rounds, subject.label);
            let mut sample = measure(subject, &xtask, options.seconds, clients)?;
            if bpf_stats.is_none() {
                // Without stats the kernel reports 0, not "unknown".
                sample.bpf_ms = None;
            }
            report_run(subject, &sample);
            samples.push(sample);
        }
    }
    drop(held);
    print_table(&subjects, &samples, options, clients);
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
    // The classic-tracepoint rung, as on kernels without BTF: what tp_btf buys.
    list.push(tcptrace_with("tcptrace --attach tracepoint", &["--attach", "tracepoint"]));
    list.push(tcptrace_with("tcptrace --states", &["--states"]));
    list.push(tcptrace_with("tcptrace -o json", &["-o", "json"]));
    // Tracking every socket with no event crossing the ring: the floor
    // under every event choice, and what the events themselves add above it.
    list.push(tcptrace_with("tcptrace -e snapshot", &["-e", "snapshot"]));
    for (label, path) in
        [("libbpf-tools tcpstates", "/usr/sbin/tcpstates"), ("libbpf-tools tcplife", "/usr/sbin/tcplife")]
    {
        list.push(Subject { label, command: Some(vec![path.to_owned()]), says_ready: false });
    }
    list
}

fn measure(subject: &Subject, xtask: &Path, seconds: f64, clients: usize) -> Result<Sample> {
    let tracer = subject.command.as_ref().map(|command| Tracer::start(command, subject.says_ready)).transpose()?;
    // What the tracer had used before the churn (loading, attaching) is not its cost per connection.
    let before = tracer.as_ref().map(Tracer::counters);
    let mut sample = churn(xtask, seconds, clients)?;
    if let (Some(tracer), Some(before)) = (tracer, before) {
        tracer.stop(&mut sample, before)?;
    }
    Ok(sample)
}

/// Runs the load generator inside the namespace.
fn churn(xtask: &Path, seconds: f64, clients: usize) -> Result<Sample> {
    let out = Command::new("ip")
        .args(["netns", "exec", NETNS])
        .arg(xtask)
        .args(["loadgen", "--seconds", &seconds.to_string(), "--clients", &clients.to_string()])
        .args(["--port", &PORT.to_string()])
        .output()?;
    if !out.status.success() {
        bail!("load generator failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    parse_loadgen(&text).with_context(|| format!("unexpected load generator output: {text}"))
}

/// `connections N seconds S user_s U system_s Y idle I` (idle -1: unknown).
fn parse_loadgen(text: &str) -> Option<Sample> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let value = |key: &str| words.windows(2).find(|w| w[0] == key).and_then(|w| w[1].parse::<f64>().ok());
    let seconds = value("seconds").filter(|s| *s > 0.0)?;
    Some(Sample {
        connections: value("connections")?,
        seconds,
        loadgen: Usage { user_s: value("user_s")?, system_s: value("system_s")? },
        idle: value("idle").filter(|i| *i >= 0.0),
        ..Sample::default()
    })
}

/// One line per run, on stderr; a warning when the untraced run is not CPU-bound.
fn report_run(subject: &Subject, sample: &Sample) {
    let idle = sample.idle.map_or("?".to_owned(), |i| format!("{:.1}", i * 100.0));
    let cost = sample.us_per_conn().map_or(String::new(), |us| format!(", tracer {us:.2} µs CPU per connection"));
    let others = sample.other_cpus().map_or("?".to_owned(), |c| format!("{c:.2}"));
    eprintln!(
        "xtask: {}: {:.0} connections/s{cost}, CPUs {idle} % idle, load generator {:.2} user + {:.2} system CPUs, \
         others {others} CPUs",
        subject.label,
        sample.conns_per_s(),
        sample.loadgen.user_s / sample.seconds,
        sample.loadgen.system_s / sample.seconds,
    );
    if subject.command.is_none()
        && let Some(warning) = not_cpu_bound(sample.idle)
    {
        eprintln!("xtask: {warning}");
    }
}

fn not_cpu_bound(idle: Option<f64>) -> Option<String> {
    let idle = idle.filter(|i| *i > IDLE_WARNING)?;
    Some(format!(
        "warning: the untraced churn left the CPUs {:.0} % idle (over {:.0} %): it is not CPU-bound, so the \
         ratios understate what tracing costs",
        idle * 100.0,
        IDLE_WARNING * 100.0
    ))
}

fn cpus() -> usize {
    thread::available_parallelism().map_or(1, usize::from)
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
fn print_table(subjects: &[Subject], samples: &[Vec<Sample>], options: &Options, clients: usize) {
    let untraced = median(samples[0].iter().map(Sample::conns_per_s)).unwrap_or(f64::NAN);
    println!(
        "\n{} round{} of {} s, {} CPUs, {clients} client and {clients} server threads (server closes first), {} \
         idle connections held open, eBPF stats on; medians; {}",
        options.rounds,
        if options.rounds == 1 { "" } else { "s" },
        options.seconds,
        cpus(),
        options.busy,
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
    );
    println!(
        "| tracer | connections/s | ratio | CPU µs/conn | tracer CPU s | bpf ms | events | lost | peak RSS MB | ready ms \
         | idle % | load generator user + system CPUs |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let cell = |value: Option<f64>, digits: usize| value.map_or("-".to_owned(), |v| format!("{v:.digits$}"));
    for (subject, samples) in subjects.iter().zip(samples) {
        let pick = |f: &dyn Fn(&Sample) -> Option<f64>| median(samples.iter().filter_map(f));
        let rate = pick(&|s| Some(s.conns_per_s()));
        let loadgen_user = pick(&|s| Some(s.loadgen.user_s / s.seconds));
        let loadgen_system = pick(&|s| Some(s.loadgen.system_s / s.seconds));
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} + {} |",
            subject.label,
            cell(rate, 0),
            cell(rate.map(|r| r / untraced), 2),
            cell(pick(&Sample::us_per_conn), 2),
            cell(pick(&|s| s.cpu_s), 2),
            cell(pick(&|s| s.bpf_ms), 0),
            cell(pick(&|s| s.events), 0),
            cell(pick(&|s| s.lost), 0),
            cell(pick(&|s| s.rss_mb), 1),
            cell(pick(&|s| s.ready_ms), 0),
            cell(pick(&|s| s.idle.map(|i| i * 100.0)), 1),
            cell(loadgen_user, 2),
            cell(loadgen_system, 2),
        );
    }
    if let Some(warning) = not_cpu_bound(median(samples[0].iter().filter_map(|s| s.idle))) {
        println!("\n{warning}");
    }
    let others = samples.iter().flatten().filter_map(Sample::other_cpus).fold(0.0, f64::max);
    if others > OTHERS_NOTE * cpus() as f64 {
        println!(
            "\nnote: other processes and kernel threads took up to {others:.2} CPUs during a run: these numbers are \
             disturbed; compare them only with a quiet run's"
        );
    }
}

/// The benchmark's own namespace. The server closes first, so TIME_WAIT sits
/// on its side; a wide port range and TIME_WAIT reuse keep the clients' ports
/// out of the way all the same. Ephemeral ports start above the listeners'
/// (PORT, and the busy host's holders), or a held connection could take one.
struct Netns;

impl Netns {
    fn create() -> Result<Self> {
        if !found("ip") {
            bail!("ip (iproute2) is missing");
        }
        let _ = Command::new("ip").args(["netns", "del", NETNS]).stderr(Stdio::null()).status();
        run(Command::new("ip").args(["netns", "add", NETNS]))?;
        let exec = |args: &[&str]| run(Command::new("ip").args(["netns", "exec", NETNS]).args(args));
        exec(&["ip", "link", "set", "lo", "up"])?;
        exec(&["sysctl", "-q", "-w", "net.ipv4.tcp_tw_reuse=1"])?;
        exec(&["sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=10000 65535"])?;
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
    use super::{tracer::parse_counts, *};

    #[test]
    fn parses_tracer_summaries() {
        let lines = ["tcptrace: ready".to_owned(), "tcptrace: 1200 events, 3 lost, 0 malformed".to_owned()];
        assert_eq!(parse_counts(&lines), (Some(1200.0), Some(3.0)));
        let peer = ["lost 10 events on CPU #0".to_owned(), "lost 5 events on CPU #1".to_owned()];
        assert_eq!(parse_counts(&peer), (None, Some(15.0)));
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), Some(2.0));
    }

    #[test]
    fn parses_load_generator_report() {
        let sample = parse_loadgen("connections 1000 seconds 2.000 user_s 0.100 system_s 1.500 idle 0.0250\n")
            .expect("a report");
        assert_eq!((sample.connections, sample.seconds, sample.idle), (1000.0, 2.0, Some(0.025)));
        assert_eq!((sample.loadgen.user_s, sample.loadgen.system_s), (0.1, 1.5));
        assert_eq!(sample.conns_per_s(), 500.0);
        let unknown_idle = parse_loadgen("connections 1 seconds 1 user_s 0 system_s 0 idle -1.0000").expect("a report");
        assert_eq!(unknown_idle.idle, None);
        assert!(parse_loadgen("connections 5 seconds 0.000 user_s 0 system_s 0 idle 0").is_none());
        assert!(parse_loadgen("connections 5 seconds 2").is_none());
    }

    #[test]
    fn cost_per_connection_adds_tracer_and_bpf_time() {
        let sample = Sample { connections: 100_000.0, cpu_s: Some(0.5), bpf_ms: Some(100.0), ..Sample::default() };
        assert_eq!(sample.us_per_conn(), Some(6.0));
        assert_eq!(Sample { cpu_s: None, ..sample }.us_per_conn(), None);
        assert!(not_cpu_bound(Some(0.05)).is_none());
        assert!(not_cpu_bound(Some(0.25)).is_some_and(|w| w.contains("25 %")));
        assert!(not_cpu_bound(None).is_none());
    }
}
