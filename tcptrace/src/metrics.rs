//! Prometheus metrics (--metrics): counters and histograms fed from decoded
//! events in one place, [`Metrics::observe`]; the run's loss totals, copied
//! from the session's summary; each hook's attach method; the kernel's run
//! time of each program. An HTTP/1 endpoint on the session's own runtime
//! serves them at /metrics in Prometheus's text format (0.0.4), each request
//! in a task of its own, so a slow or stuck scraper never holds up the drain.
use prometheus_client::{
    encoding::{EncodeLabelSet, prometheus_text},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use crate::{
    attach::HookReport,
    events::{ConnEvent, Detail, Direction, EventKind},
    programs::Programs,
    session::Summary,
};

mod bpf_stats;
mod endpoint;

use self::bpf_stats::BpfStats;
pub use self::endpoint::Endpoint;

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
        "iter" => "iter",
        "procfs" => "procfs",
        _ => "other",
    }
}

#[cfg(test)]
mod tests;
