//! --metrics against the real kernel: real connections in a namespace of the
//! test's own (tcptrace filtered to it with --netns, so every count is
//! exact), read from the endpoint directly and through a real Prometheus
//! server scraping it.
mod support;

use std::{
    os::fd::{FromRawFd, OwnedFd},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{Netns, PATIENCE, Tracer, require_root, send_reset_reports_socketless_resets};

/// tcptrace traced to `ns` alone, serving metrics on a free loopback port;
/// prints only `close` events, which must not narrow what the metrics count.
fn start(ns: &Netns) -> (Tracer, String) {
    let tracer = Tracer::start(&["-e", "close", "--netns", &ns.name, "--metrics", "127.0.0.1:0"]);
    let stderr = tracer.stderr();
    let addr = stderr
        .lines()
        .find_map(|line| line.strip_prefix("tcptrace: serving metrics at http://")?.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("no metrics address on stderr:\n{stderr}"))
        .to_owned();
    (tracer, addr)
}

/// Two request/response connections to a server, then a connect to a port
/// nobody listens on, all inside `ns`.
fn make_connections(ns: &Netns) {
    let port = support::port();
    let mut server = ns.server("127.0.0.1", port, 2);
    ns.client("127.0.0.1", port);
    ns.client("127.0.0.1", port);
    assert!(server.wait().success(), "server failed");
    let closed = support::port().to_string();
    let mut attempt = ns.peer(&["attempt", "127.0.0.1", &closed]);
    assert_eq!(attempt.line(), "ECONNREFUSED");
}

/// What those connections must have counted, once every event is in: as
/// (series, value) in the text format and as a PromQL selector.
fn expected() -> Vec<(&'static str, f64)> {
    let sent_resets = if send_reset_reports_socketless_resets() { 1.0 } else { 0.0 };
    vec![
        (r#"tcptrace_connections_total{direction="outbound"}"#, 2.0),
        (r#"tcptrace_connections_total{direction="inbound"}"#, 2.0),
        (r#"tcptrace_events_total{kind="connect"}"#, 3.0),
        (r#"tcptrace_events_total{kind="accept"}"#, 2.0),
        (r#"tcptrace_events_total{kind="close"}"#, 4.0),
        (r#"tcptrace_events_total{kind="failed"}"#, 1.0),
        (r#"tcptrace_failures_total{reason="refused",errno="ECONNREFUSED"}"#, 1.0),
        (r#"tcptrace_resets_total{direction="received"}"#, 1.0),
        (r#"tcptrace_resets_total{direction="sent"}"#, sent_resets),
        (r#"tcptrace_handshake_seconds_count{direction="outbound"}"#, 2.0),
        (r#"tcptrace_handshake_seconds_count{direction="inbound"}"#, 2.0),
        ("tcptrace_connection_lifetime_seconds_count", 4.0),
        ("tcptrace_lost_events_total", 0.0),
        ("tcptrace_untracked_connections_total", 0.0),
    ]
}

fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(ureq::config::Config::builder().timeout_global(Some(Duration::from_secs(10))).build())
}

fn scrape(addr: &str) -> String {
    let mut response = agent().get(&format!("http://{addr}/metrics")).call().expect("GET /metrics");
    response.body_mut().read_to_string().expect("body")
}

/// The value of the sample line `series` in a scrape.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Polls until `done` holds what `poll` returns, at most `patience`; the last
/// poll goes in the panic message.
fn wait_until<T>(what: &str, patience: Duration, mut poll: impl FnMut() -> T, done: impl Fn(&T) -> bool) -> T
where
    T: std::fmt::Debug,
{
    let deadline = Instant::now() + patience;
    loop {
        let state = poll();
        if done(&state) {
            return state;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}; last seen:\n{state:?}");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// The endpoint itself: every counter those connections moved, exactly, while
/// stdout printed only what -e asked for; each hook's method; the programs'
/// run time while BPF stats are on.
#[test]
fn scraped_counters_match_the_connections_made() {
    require_root();
    let _stats = BpfStatsOn::enable();
    let ns = Netns::new();
    let (tracer, addr) = start(&ns);
    make_connections(&ns);

    let want = expected();
    let text = wait_until(
        "the counters to reach the connections made",
        PATIENCE,
        || scrape(&addr),
        |text| want.iter().all(|(series, value)| sample(text, series) == Some(*value)),
    );
    // BTF tracepoint where the kernel has it, else the classic one.
    let btf = r#"tcptrace_hook_info{hook="state changes",method="tp_btf",target="inet_sock_set_state"}"#;
    let classic = r#"tcptrace_hook_info{hook="state changes",method="tracepoint",target="sock:inet_sock_set_state"}"#;
    let program = match (sample(&text, btf), sample(&text, classic)) {
        (Some(1.0), None) => "tcptrace_state_btf",
        (None, Some(1.0)) => "tcptrace_state",
        _ => panic!("the state hook attached once, by one method:\n{text}"),
    };
    for series in [
        format!(r#"tcptrace_bpf_runs_total{{program="{program}"}}"#),
        format!(r#"tcptrace_bpf_run_time_seconds_total{{program="{program}"}}"#),
    ] {
        assert!(sample(&text, &series).is_some_and(|v| v > 0.0), "{series} in:\n{text}");
    }

    // Printing stayed as asked: close events only, four of them.
    let events = tracer.wait_for("4 close events", |events| events.len() >= 4);
    assert!(events.iter().all(|e| e["event"] == "close"), "{}", support::dump(&events));
    let (status, stderr) = tracer.stop();
    assert!(status.success(), "{stderr}");
}

/// A real Prometheus server scrapes tcptrace every second and its query API
/// shows what the connections moved. Skipped (saying so) only where Debian's
/// `prometheus` is not installed; `cargo xtask setup` installs it.
#[test]
fn prometheus_scrapes_the_counters() {
    require_root();
    let Some(binary) = on_path("prometheus") else {
        eprintln!("SKIPPED prometheus_scrapes_the_counters: no `prometheus` on PATH (cargo xtask setup installs it)");
        return;
    };
    let ns = Netns::new();
    let (tracer, addr) = start(&ns);
    let prometheus = Prometheus::start(&binary, &addr);
    make_connections(&ns);

    for (series, value) in expected() {
        let result = wait_until(
            &format!("Prometheus to report {series} = {value}"),
            PATIENCE,
            || prometheus.query(series),
            |result| result.as_ref().is_ok_and(|v| *v == Some(value)),
        );
        assert_eq!(result.ok().flatten(), Some(value));
    }
    let hooks = prometheus.query(r#"count(tcptrace_hook_info{method!="none"})"#).expect("query");
    assert!(hooks.is_some_and(|count| count >= 4.0), "attached hooks: {hooks:?}");
    assert_eq!(prometheus.query(r#"up{job="tcptrace"}"#).expect("query"), Some(1.0));
    drop(prometheus);
    let (status, stderr) = tracer.stop();
    assert!(status.success(), "{stderr}");
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(name)).find(|path| path.is_file())
}

/// A Prometheus server with a config and storage of its own in a temporary
/// directory, scraping one target every second; killed and its directory
/// removed on drop.
struct Prometheus {
    child: Child,
    dir: PathBuf,
    api: String,
}

impl Prometheus {
    fn start(binary: &std::path::Path, target: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tcptrace-prometheus-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: tcptrace\n    \
                 static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("write config");
        let listen = free_loopback_port();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={listen}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr")).expect("log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
        let mut prometheus = Self { child, dir, api: format!("http://{listen}") };
        // Go's start-up, slow under the VM runs' emulated CPUs.
        let ready = wait_until(
            "Prometheus to be ready",
            PATIENCE * 3,
            || prometheus.ready(),
            |ready| matches!(ready, Ok(true) | Err(_)),
        );
        if let Err(exit) = ready {
            panic!("Prometheus exited ({exit}):\n{}", prometheus.log());
        }
        prometheus
    }

    /// Ok(true) once it serves; Err when it exited.
    fn ready(&mut self) -> Result<bool, String> {
        if let Some(status) = self.child.try_wait().expect("wait") {
            return Err(status.to_string());
        }
        Ok(agent().get(&format!("{}/-/ready", self.api)).call().is_ok())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }

    /// The value of an instant query that yields at most one sample.
    fn query(&self, promql: &str) -> Result<Option<f64>, String> {
        let mut response = agent()
            .get(&format!("{}/api/v1/query", self.api))
            .query("query", promql)
            .call()
            .map_err(|e| format!("query {promql}: {e}"))?;
        let text = response.body_mut().read_to_string().map_err(|e| format!("query {promql}: {e}"))?;
        let body: Value = serde_json::from_str(&text).map_err(|e| format!("query {promql}: {e}: {text}"))?;
        let results = body["data"]["result"].as_array().ok_or_else(|| format!("query {promql}: {body}"))?;
        match results.as_slice() {
            [] => Ok(None),
            [one] => one["value"][1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .map(Some)
                .ok_or_else(|| format!("query {promql}: {body}")),
            _ => Err(format!("query {promql}: more than one series: {body}")),
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_loopback_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").to_string()
}

/// eBPF run-time statistics on while held (BPF_ENABLE_STATS; the kernel
/// counts its holders and kernel.bpf_stats_enabled together, and drops ours
/// with the fd, however the test ends).
struct BpfStatsOn(#[expect(dead_code, reason = "held for its close")] OwnedFd);

impl BpfStatsOn {
    fn enable() -> Self {
        const BPF_ENABLE_STATS: libc::c_long = 32;
        const BPF_STATS_RUN_TIME: u32 = 0;
        // union bpf_attr, enable_stats member: a single __u32 type.
        let attr: u32 = BPF_STATS_RUN_TIME;
        // SAFETY: the kernel reads size_of(attr) bytes of attr and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_ENABLE_STATS, &attr, size_of_val(&attr)) };
        assert!(fd >= 0, "BPF_ENABLE_STATS: {}", std::io::Error::last_os_error());
        // SAFETY: a fresh fd that nothing else owns.
        Self(unsafe { OwnedFd::from_raw_fd(i32::try_from(fd).expect("fd")) })
    }
}
