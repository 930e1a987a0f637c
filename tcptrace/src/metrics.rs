//! Prometheus metrics (--metrics): counters and histograms fed from decoded
//! events in one place, [`Metrics::observe`]; the run's loss totals, copied
//! from the session's summary; each hook's attach method; the kernel's run
//! time of each program. An HTTP/1 endpoint on the session's own runtime
//! serves them at /metrics in Prometheus's text format (0.0.4), each request
//! in a task of its own, so a slow or stuck scraper never holds up the drain.
use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header::{self, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, prometheus_text},
    metrics::{
        TypedMetric,
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::Gauge,
        histogram::Histogram,
    },
    registry::Registry,
};
use tokio::net::{TcpListener, TcpStream};

use crate::{
    attach::HookReport,
    error::RunError,
    events::{ConnEvent, Detail, Direction, EventKind},
    loader::Tracer,
    programs::{Programs, RunStats},
    session::Summary,
};

/// Handshake times, seconds: loopback's tens of microseconds up to SYN
/// retransmissions (1 s, 3 s, 7 s).
const HANDSHAKE_BUCKETS: &[f64] =
    &[50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Connection lifetimes, seconds: a millisecond request up to a day-long session.
const LIFETIME_BUCKETS: &[f64] =
    &[1e-3, 10e-3, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 21600.0, 86400.0];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    direction: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    reason: &'static str,
    /// The errno's name, `none` when the process saw none.
    errno: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HookLabels {
    hook: &'static str,
    /// fentry, fexit, kprobe, kretprobe, tracepoint; `none` when not attached.
    method: &'static str,
    /// The function or tracepoints attached to (empty when not attached).
    target: String,
}

type HistogramFamily<S> = Family<S, Histogram, fn() -> Histogram>;

/// Every metric of a run, registered once; cheap to update from the drain.
pub struct Metrics {
    registry: Registry,
    events: Family<KindLabels, Counter>,
    connections: Family<DirectionLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    resets: Family<DirectionLabels, Counter>,
    retransmits: Counter,
    handshake: HistogramFamily<DirectionLabels>,
    lifetime: Histogram,
    lost: Counter,
    untracked: Counter,
    missed: Counter,
    late_closes: Counter,
    filtered: Counter,
    map_update_failures: Counter,
    malformed: Counter,
}

impl Metrics {
    /// The metrics of a run whose hooks attached as `hooks` say; `programs`
    /// are the attached kernel programs, whose run time is exported while the
    /// kernel counts it.
    pub fn new(hooks: &[HookReport], programs: Programs) -> Self {
        let handshake: HistogramFamily<_> =
            Family::new_with_constructor(|| Histogram::new(HANDSHAKE_BUCKETS.iter().copied()));
        let metrics = Self {
            registry: Registry::with_prefix("tcptrace"),
            events: Family::default(),
            connections: Family::default(),
            failures: Family::default(),
            resets: Family::default(),
            retransmits: Counter::default(),
            handshake,
            lifetime: Histogram::new(LIFETIME_BUCKETS.iter().copied()),
            lost: Counter::default(),
            untracked: Counter::default(),
            missed: Counter::default(),
            late_closes: Counter::default(),
            filtered: Counter::default(),
            map_update_failures: Counter::default(),
            malformed: Counter::default(),
        };
        // Series that exist from the start, at zero, so rate() and alerts
        // see them before the first event.
        for kind in EventKind::ALL {
            drop(metrics.events.get_or_create(&KindLabels { kind: kind.name() }));
        }
        for direction in [Direction::Outbound, Direction::Inbound] {
            drop(metrics.connections.get_or_create(&DirectionLabels { direction: direction.name() }));
            drop(metrics.handshake.get_or_create(&DirectionLabels { direction: direction.name() }));
        }
        for direction in ["sent", "received"] {
            drop(metrics.resets.get_or_create(&DirectionLabels { direction }));
        }
        metrics.register(hooks, programs)
    }

    fn register(mut self, hooks: &[HookReport], programs: Programs) -> Self {
        let registry = &mut self.registry;
        registry.register("events", "Events seen, by kind (state only when printed)", self.events.clone());
        registry.register(
            "connections",
            "Connections established, by direction (outbound: we sent the SYN)",
            self.connections.clone(),
        );
        registry.register(
            "failures",
            "Connections that never reached ESTABLISHED, by reason and the errno the process saw",
            self.failures.clone(),
        );
        registry.register("resets", "RST segments, sent by this host or received", self.resets.clone());
        registry.register("retransmits", "Segments (and SYN-ACKs) sent again", self.retransmits.clone());
        registry.register(
            "handshake_seconds",
            "Handshake time, by direction (outbound: SYN to SYN-ACK; inbound: SYN-ACK to ACK)",
            self.handshake.clone(),
        );
        registry.register(
            "connection_lifetime_seconds",
            "Lifetime of closed connections whose start tracing saw",
            self.lifetime.clone(),
        );
        registry.register("lost_events", "Events the kernel could not queue (ring buffer full)", self.lost.clone());
        registry.register(
            "untracked_connections",
            "Connections the kernel could not track (connection map full)",
            self.untracked.clone(),
        );
        registry.register(
            "missed_hook_runs",
            "Kernel program runs skipped because an eBPF program already ran on that CPU: their events are missing",
            self.missed.clone(),
        );
        registry.register(
            "late_closes",
            "Closes reported when the socket was freed, the state change into CLOSE having been skipped",
            self.late_closes.clone(),
        );
        registry.register("filtered_events", "Events the filters kept out, in the kernel", self.filtered.clone());
        registry.register(
            "map_update_failures",
            "Kernel map updates that failed (a full map): some owners unknown",
            self.map_update_failures.clone(),
        );
        registry.register("malformed_records", "Ring buffer records that failed to decode", self.malformed.clone());
        let attached: Family<HookLabels, Gauge> = Family::default();
        for hook in hooks {
            let (method, target) = match hook.method.as_deref().and_then(|how| how.split_once(' ')) {
                Some((method, target)) => (method_name(method), target.to_owned()),
                None => ("none", String::new()),
            };
            attached.get_or_create(&HookLabels { hook: hook.purpose, method, target }).set(1);
        }
        registry.register("hook_info", "How each hook is attached (always 1)", attached);
        registry.register_collector(Box::new(BpfStats { programs }));
        self
    }

    /// Counts one decoded event: the only place events reach the metrics.
    pub fn observe(&self, event: &ConnEvent) {
        self.events.get_or_create(&KindLabels { kind: event.kind.name() }).inc();
        let direction = DirectionLabels { direction: event.direction.name() };
        match &event.detail {
            Detail::Established { handshake } => {
                self.connections.get_or_create(&direction).inc();
                if let Some(handshake) = handshake {
                    self.handshake.get_or_create(&direction).observe(handshake.as_secs_f64());
                }
            }
            Detail::Close(_) => {
                if let Some(age) = event.age {
                    self.lifetime.observe(age.as_secs_f64());
                }
            }
            Detail::Failed { reason, error } => {
                let errno = error.map_or_else(|| "none".to_owned(), |errno| errno.to_string());
                self.failures.get_or_create(&FailureLabels { reason: reason.name(), errno }).inc();
            }
            Detail::Retransmit => {
                self.retransmits.inc();
            }
            Detail::Reset { sent, .. } => {
                let direction = if *sent { "sent" } else { "received" };
                self.resets.get_or_create(&DirectionLabels { direction }).inc();
            }
            Detail::None | Detail::State { .. } => {}
        }
    }

    /// Takes the run's loss totals (the kernel's counters, as the session last read them).
    pub fn record_totals(&self, summary: &Summary) {
        for (counter, total) in [
            (&self.lost, summary.lost),
            (&self.untracked, summary.untracked),
            (&self.missed, summary.missed),
            (&self.late_closes, summary.late_closes),
            (&self.filtered, summary.filtered),
            (&self.map_update_failures, summary.map_update_failures),
            (&self.malformed, summary.malformed),
        ] {
            counter.inc_by(total.saturating_sub(counter.get()));
        }
    }

    /// Everything, in Prometheus's text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// The attach method's family name, from the first word of a hook's report.
fn method_name(word: &str) -> &'static str {
    match word {
        "fentry" => "fentry",
        "fexit" => "fexit",
        "kprobe" => "kprobe",
        "kretprobe" => "kretprobe",
        "tp_btf" => "tp_btf",
        "tracepoint" => "tracepoint",
        _ => "other",
    }
}

/// The kernel's run-time statistics of our programs (programs.rs), read at
/// each scrape. The kernel counts time and runs only while BPF stats are on
/// (sysctl kernel.bpf_stats_enabled, or a BPF_ENABLE_STATS holder): those
/// series appear only then, or once it has counted anything.
#[derive(Debug)]
struct BpfStats {
    programs: Programs,
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

/// The metrics endpoint's socket, bound before anything is loaded so a busy
/// address fails at once.
pub struct Endpoint {
    listener: TcpListener,
}

/// How long a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

impl Endpoint {
    pub async fn bind(addr: SocketAddr) -> Result<Self, RunError> {
        let listener = TcpListener::bind(addr).await.map_err(|source| RunError::MetricsListen { addr, source })?;
        Ok(Self { listener })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves the metrics of `tracer`'s run from now on; the session feeds
    /// them through what this returns.
    pub fn serve_tracer(self, tracer: &Tracer) -> Arc<Metrics> {
        let metrics = Arc::new(Metrics::new(&tracer.hooks, Programs::of(tracer)));
        if let Some(addr) = self.local_addr() {
            eprintln!("tcptrace: serving metrics at http://{addr}/metrics");
        }
        self.serve(Arc::clone(&metrics));
        metrics
    }

    /// Accepts scrapers in a task of its own, each connection in another.
    pub fn serve(self, metrics: Arc<Metrics>) {
        tokio::spawn(async move {
            loop {
                match self.listener.accept().await {
                    Ok((stream, _)) => drop(tokio::spawn(connection(stream, Arc::clone(&metrics)))),
                    Err(error) => {
                        // Out of fds, most likely: let some close.
                        log::warn!("metrics endpoint: cannot accept a connection: {error}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
    }
}

async fn connection(stream: TcpStream, metrics: Arc<Metrics>) {
    let service = service_fn(move |request: Request<Incoming>| {
        std::future::ready(Ok::<_, Infallible>(respond(&metrics, request.method(), request.uri().path())))
    });
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
    if let Err(error) = http.serve_connection(TokioIo::new(stream), service).await {
        log::debug!("metrics endpoint: {error}");
    }
}

fn respond(metrics: &Metrics, method: &Method, path: &str) -> Response<Full<Bytes>> {
    let text = |status, body: &'static str| {
        let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *response.status_mut() = status;
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        response
    };
    if path != "/metrics" {
        return text(StatusCode::NOT_FOUND, "tcptrace serves /metrics only\n");
    }
    if method != Method::GET && method != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD\n");
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match metrics.encode() {
        Ok(body) => {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(prometheus_text::CONTENT_TYPE));
            response
        }
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "encoding the metrics failed\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::samples;

    fn hooks() -> Vec<HookReport> {
        let hook = |purpose, method: Option<&str>| HookReport {
            purpose,
            method: method.map(str::to_owned),
            refused: Vec::new(),
            net: None,
            programs: Vec::new(),
        };
        vec![
            hook("state changes", Some("tracepoint sock:inet_sock_set_state")),
            hook("accept owner", Some("fexit inet_csk_accept")),
            hook("close owner", None),
        ]
    }

    fn story_metrics() -> Metrics {
        let metrics = Metrics::new(&hooks(), Programs::default());
        for event in samples::story() {
            metrics.observe(&event);
        }
        metrics
    }

    /// The value of the one sample line `series` (name and labels, as encoded).
    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[track_caller]
    fn assert_series(text: &str, series: &str, expected: f64) {
        assert_eq!(value(text, series), Some(expected), "{series} in:\n{text}");
    }

    #[test]
    fn events_count_by_kind_direction_reason_and_errno() {
        let text = story_metrics().encode().expect("encode");
        for (kind, count) in [
            ("connect", 1.0),
            ("accept", 1.0),
            ("established", 2.0),
            ("close", 3.0),
            ("failed", 1.0),
            ("state", 1.0),
            ("retransmit", 1.0),
            ("reset", 1.0),
        ] {
            assert_series(&text, &format!("tcptrace_events_total{{kind=\"{kind}\"}}"), count);
        }
        assert_series(&text, r#"tcptrace_connections_total{direction="outbound"}"#, 1.0);
        assert_series(&text, r#"tcptrace_connections_total{direction="inbound"}"#, 1.0);
        assert_series(&text, r#"tcptrace_failures_total{reason="refused",errno="ECONNREFUSED"}"#, 1.0);
        assert_series(&text, r#"tcptrace_resets_total{direction="sent"}"#, 1.0);
        assert_series(&text, r#"tcptrace_resets_total{direction="received"}"#, 0.0);
        assert_series(&text, "tcptrace_retransmits_total", 1.0);
        assert!(text.contains("# TYPE tcptrace_events_total counter\n"), "{text}");
    }

    #[test]
    fn histograms_of_handshakes_and_lifetimes_in_seconds() {
        let text = story_metrics().encode().expect("encode");
        assert!(text.contains("# TYPE tcptrace_handshake_seconds histogram\n"), "{text}");
        // The client's handshake took 61 us, the server's 22 us.
        assert_series(&text, r#"tcptrace_handshake_seconds_count{direction="outbound"}"#, 1.0);
        assert_series(&text, r#"tcptrace_handshake_seconds_sum{direction="outbound"}"#, 61e-6);
        assert_series(&text, r#"tcptrace_handshake_seconds_bucket{direction="outbound",le="5e-05"}"#, 0.0);
        assert_series(&text, r#"tcptrace_handshake_seconds_bucket{direction="outbound",le="0.0001"}"#, 1.0);
        assert_series(&text, r#"tcptrace_handshake_seconds_bucket{direction="inbound",le="5e-05"}"#, 1.0);
        assert_series(&text, r#"tcptrace_handshake_seconds_bucket{direction="inbound",le="+Inf"}"#, 1.0);
        // Two closes lived 3.05 and 3.12 ms; the third predates tracing and has no lifetime.
        assert_series(&text, "tcptrace_connection_lifetime_seconds_count", 2.0);
        assert_series(&text, r#"tcptrace_connection_lifetime_seconds_bucket{le="0.001"}"#, 0.0);
        assert_series(&text, r#"tcptrace_connection_lifetime_seconds_bucket{le="0.01"}"#, 2.0);
    }

    #[test]
    fn series_exist_before_the_first_event() {
        let text = Metrics::new(&[], Programs::default()).encode().expect("encode");
        assert_series(&text, r#"tcptrace_events_total{kind="close"}"#, 0.0);
        assert_series(&text, r#"tcptrace_connections_total{direction="inbound"}"#, 0.0);
        assert_series(&text, r#"tcptrace_handshake_seconds_count{direction="outbound"}"#, 0.0);
        assert_series(&text, r#"tcptrace_resets_total{direction="received"}"#, 0.0);
        assert_series(&text, "tcptrace_lost_events_total", 0.0);
        assert!(!text.contains("bpf_run"), "no programs, no run time: {text}");
    }

    #[test]
    fn losses_follow_the_summary_and_never_go_back() {
        let metrics = Metrics::new(&[], Programs::default());
        let summary =
            Summary { lost: 3, untracked: 2, filtered: 40, map_update_failures: 1, malformed: 5, ..Summary::default() };
        metrics.record_totals(&summary);
        metrics.record_totals(&Summary { lost: 7, ..summary });
        metrics.record_totals(&Summary { lost: 6, ..summary });
        let text = metrics.encode().expect("encode");
        assert_series(&text, "tcptrace_lost_events_total", 7.0);
        assert_series(&text, "tcptrace_untracked_connections_total", 2.0);
        assert_series(&text, "tcptrace_filtered_events_total", 40.0);
        assert_series(&text, "tcptrace_map_update_failures_total", 1.0);
        assert_series(&text, "tcptrace_malformed_records_total", 5.0);
    }

    #[test]
    fn hooks_as_info_gauges() {
        let text = story_metrics().encode().expect("encode");
        assert!(text.contains("# TYPE tcptrace_hook_info gauge\n"), "{text}");
        let hook = |labels: &str| value(&text, &format!("tcptrace_hook_info{{{labels}}}"));
        assert_eq!(hook(r#"hook="state changes",method="tracepoint",target="sock:inet_sock_set_state""#), Some(1.0));
        assert_eq!(hook(r#"hook="accept owner",method="fexit",target="inet_csk_accept""#), Some(1.0));
        assert_eq!(hook(r#"hook="close owner",method="none",target="""#), Some(1.0));
    }

    /// The endpoint over real HTTP: /metrics in the text format, nothing else.
    #[tokio::test(flavor = "current_thread")]
    async fn endpoint_serves_metrics_only() {
        let endpoint = Endpoint::bind("127.0.0.1:0".parse().expect("addr")).await.expect("bind");
        let addr = endpoint.local_addr().expect("bound");
        endpoint.serve(Arc::new(story_metrics()));
        let fetch = move |method: &'static str, path: &'static str| {
            tokio::task::spawn_blocking(move || {
                let agent =
                    ureq::Agent::new_with_config(ureq::config::Config::builder().http_status_as_error(false).build());
                let url = format!("http://{addr}{path}");
                let mut response = match method {
                    "POST" => agent.post(&url).send_empty(),
                    _ => agent.get(&url).call(),
                }
                .expect("HTTP");
                let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap_or("").to_owned());
                (response.status().as_u16(), content_type, response.body_mut().read_to_string().expect("body"))
            })
        };
        let (status, content_type, body) = fetch("GET", "/metrics").await.expect("join");
        assert_eq!(status, 200);
        assert_eq!(content_type.as_deref(), Some("text/plain; version=0.0.4; charset=utf-8"));
        assert_series(&body, r#"tcptrace_failures_total{reason="refused",errno="ECONNREFUSED"}"#, 1.0);
        assert_eq!(fetch("GET", "/").await.expect("join").0, 404);
        assert_eq!(fetch("POST", "/metrics").await.expect("join").0, 405);
    }
}
