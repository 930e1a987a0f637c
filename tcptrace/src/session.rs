//! One tracing session: drain the ring buffer, decode, write, report losses,
//! stop on Ctrl-C, SIGTERM or --count.
use std::{
    io::Write,
    time::{Duration, SystemTime},
};

use aya::maps::{MapData, PerCpuArray, RingBuf};
use tcptrace_common::counter;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
};

use crate::{
    config::{Config, EventSet},
    error::{LoadError, RunError},
    events::Decoder,
    identity::Resolver,
    loader::{self, Tracer},
    metrics::{self, Metrics},
    output::{self, EventWriter, LossReason, RunInfo},
    services::Services,
};

/// What a session did, for the closing line on stderr.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub events: u64,
    /// Events the kernel could not queue (ring buffer full).
    pub lost: u64,
    /// Connections the kernel could not track (connection map full).
    pub untracked: u64,
    /// Records that failed to decode.
    pub malformed: u64,
    /// Events the user's filters kept out, in the kernel.
    pub filtered: u64,
    /// Kernel map updates that failed (a full map): owners or filters lost.
    pub map_update_failures: u64,
}

/// How often loss counters are checked while running.
const LOSS_CHECK: Duration = Duration::from_secs(1);
/// The kernel wakes us for the first record after we emptied the ring
/// (emit.rs); from then on we drain this often, without wake-ups, until a
/// drain finds nothing. Bounds how late an event appears on a busy host; an
/// idle one wakes us only for the loss check.
const BATCH_EVERY: Duration = Duration::from_millis(10);
/// A drain this large means a burst: look again sooner, so the ring keeps
/// room while the host is busy (4,096 records are about 650 KB of 16 MiB).
const BURST_RECORDS: u64 = 4096;
const BURST_BATCH_EVERY: Duration = Duration::from_millis(2);

/// When to drain next after a drain that took `drained` records; None: wait
/// for the kernel's wake-up.
fn next_drain(drained: u64) -> Option<tokio::time::Instant> {
    let after = match drained {
        0 => return None,
        n if n >= BURST_RECORDS => BURST_BATCH_EVERY,
        _ => BATCH_EVERY,
    };
    Some(tokio::time::Instant::now() + after)
}

pub async fn run<W: Write>(config: &Config, out: W) -> Result<Summary, RunError> {
    let started = std::time::Instant::now();
    // Before loading: a busy --metrics address fails at once, nothing loaded.
    let endpoint = match config.metrics {
        Some(addr) => Some(metrics::Endpoint::bind(addr).await?),
        None => None,
    };
    let mut tracer = loader::load(config)?;
    log::debug!("start-up: loaded at {:?}", started.elapsed());
    for hook in &tracer.hooks {
        eprintln!("tcptrace: {hook}");
    }
    let metrics = endpoint.map(|endpoint| endpoint.serve_tracer(&tracer));
    let tap = Tap { metrics: metrics.as_deref(), printed: config.events };
    forward_kernel_logs(&mut tracer);
    let ring = take_map::<RingBuf<MapData>>(&mut tracer, "EVENTS")?;
    let counters = take_map::<PerCpuArray<MapData, u64>>(&mut tracer, "COUNTERS")?;
    // SAFETY: the ring buffer owns its fd and lives inside the AsyncFd until
    // the AsyncFd is dropped, so the fd stays open while registered.
    let mut ring = unsafe { AsyncFd::register(ring) }.map_err(|e| RunError::Poll(e.into()))?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(RunError::Poll)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(RunError::Poll)?;
    let mut loss_check = tokio::time::interval(LOSS_CHECK);
    // Some(deadline) while records keep coming: drain again then.
    let mut batching: Option<tokio::time::Instant> = None;

    let decoder = Decoder::from_clocks(tracer.reset_reasons.clone());
    let mut resolver = Resolver::new();
    let services = Services::from_host();
    let mut writer = output::writer(config.format, out, own_netns(), config.wide);
    let mut summary = Summary::default();
    let limit = config.count.map_or(u64::MAX, |n| n.get());
    let hooks = tracer.hooks.iter().map(|hook| (hook.purpose.to_owned(), hook.method.clone())).collect();
    writer.start(&RunInfo::here(hooks)).and_then(|()| writer.flush()).map_err(RunError::Output)?;
    eprintln!("tcptrace: ready, tracing TCP connections (Ctrl-C to stop)");

    while summary.events < limit {
        tokio::select! {
            guard = ring.readable_mut(), if batching.is_none() => {
                let mut guard = guard.map_err(RunError::Poll)?;
                guard.clear_ready();
                let drained = drain(guard.get_inner_mut(), &decoder, &mut resolver, &services, writer.as_mut(), &mut summary, limit, tap)?;
                batching = next_drain(drained);
            }
            () = sleep_until_some(batching) => {
                let drained = drain(ring.get_mut(), &decoder, &mut resolver, &services, writer.as_mut(), &mut summary, limit, tap)?;
                batching = next_drain(drained);
            }
            _ = loss_check.tick() => report_losses(&counters, &mut summary, writer.as_mut(), tap)?,
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
    }
    // What the kernel queued before we stopped still goes out.
    drain(ring.get_mut(), &decoder, &mut resolver, &services, writer.as_mut(), &mut summary, limit, tap)?;
    report_losses(&counters, &mut summary, writer.as_mut(), tap)?;
    writer.stop(SystemTime::now(), &summary).and_then(|()| writer.flush()).map_err(RunError::Output)?;
    drop(tracer);
    Ok(summary)
}

/// Sleeps until `deadline`; forever when there is none.
async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Where decoded events go besides the writer: the metrics see every event
/// the kernel sends; the writer only the kinds the user asked to print.
#[derive(Clone, Copy)]
struct Tap<'m> {
    metrics: Option<&'m Metrics>,
    printed: EventSet,
}

/// Writes every record waiting in the ring (up to the --count limit), then
/// flushes; returns how many records it took.
#[expect(clippy::too_many_arguments, reason = "each is borrowed from run() separately")]
fn drain(
    ring: &mut RingBuf<MapData>,
    decoder: &Decoder,
    resolver: &mut Resolver,
    services: &Services,
    writer: &mut dyn EventWriter,
    summary: &mut Summary,
    limit: u64,
    tap: Tap,
) -> Result<u64, RunError> {
    let mut wrote = false;
    let mut records = 0;
    while summary.events < limit {
        let Some(record) = ring.next() else { break };
        records += 1;
        match decoder.decode(&record) {
            Ok(mut event) => {
                if let Some(metrics) = tap.metrics {
                    metrics.observe(&event);
                }
                if !tap.printed.contains(event.kind) {
                    continue;
                }
                if let Some(owner) = &event.owner {
                    event.identity = resolver.identify(owner);
                }
                event.service = services.of(&event);
                writer.event(&event).map_err(RunError::Output)?;
                summary.events += 1;
                wrote = true;
            }
            Err(error) => {
                summary.malformed += 1;
                log::warn!("skipping malformed event: {error}");
            }
        }
    }
    if wrote {
        writer.flush().map_err(RunError::Output)?;
    }
    Ok(records)
}

/// The kernel programs' aya-log records go to `log` (RUST_LOG=debug shows them).
fn forward_kernel_logs(tracer: &mut Tracer) {
    let logger = match aya_log::EbpfLogger::init(&mut tracer.ebpf) {
        Ok(logger) => logger,
        Err(error) => return log::debug!("kernel logs unavailable: {error}"),
    };
    // SAFETY: the logger owns its fd and lives inside the AsyncFd.
    let mut logger = match unsafe { AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE) } {
        Ok(logger) => logger,
        Err(error) => return log::debug!("kernel logs unavailable: {}", std::io::Error::from(error)),
    };
    tokio::spawn(async move {
        while let Ok(mut guard) = logger.readable_mut().await {
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    });
}

fn take_map<M>(tracer: &mut Tracer, name: &'static str) -> Result<M, RunError>
where
    M: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = tracer.ebpf.take_map(name).ok_or(LoadError::MissingMap(name))?;
    M::try_from(map).map_err(|source| RunError::Load(LoadError::Map { name, source }))
}

/// Sums the per-CPU counters and reports anything new, on stderr and in the output.
fn report_losses(
    counters: &PerCpuArray<MapData, u64>,
    summary: &mut Summary,
    writer: &mut dyn EventWriter,
    tap: Tap,
) -> Result<(), RunError> {
    let total = |index| counters.get(&index, 0).map(|values| values.iter().sum::<u64>()).map_err(RunError::Counters);
    let lost = total(counter::LOST_EVENTS)?;
    let untracked = total(counter::CONN_MAP_FULL)?;
    if lost > summary.lost {
        let new = lost - summary.lost;
        eprintln!("tcptrace: lost {new} events (ring buffer full), {lost} in all");
        writer
            .lost(SystemTime::now(), LossReason::RingBufferFull, new, lost)
            .and_then(|()| writer.flush())
            .map_err(RunError::Output)?;
    }
    if untracked > summary.untracked {
        eprintln!("tcptrace: {} connections not tracked (connection map full)", untracked - summary.untracked);
    }
    summary.lost = lost;
    summary.untracked = untracked;
    summary.filtered = total(counter::FILTERED)?;
    let failures = total(counter::MAP_UPDATE_FAILED)?;
    if failures > summary.map_update_failures {
        eprintln!(
            "tcptrace: {} kernel map updates failed (map full), {failures} in all: some owners may be unknown",
            failures - summary.map_update_failures
        );
    }
    summary.map_update_failures = failures;
    if let Some(metrics) = tap.metrics {
        metrics.record_totals(summary);
    }
    Ok(())
}

/// Inode of tcptrace's own network namespace: human output names only others.
fn own_netns() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/net").map(|m| m.ino() as u32).unwrap_or(0)
}
