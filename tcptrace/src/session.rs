//! One tracing session: drain the ring buffer, decode, write, report losses,
//! stop on Ctrl-C, SIGTERM or --count. Writing never waits for stdout's reader
//! (output::sink).
use std::{
    io::Write,
    os::fd::AsFd,
    time::{Duration, Instant, SystemTime},
};

use aya::maps::{MapData, PerCpuArray, RingBuf};
use tcptrace_common::counter;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
};

use crate::{
    config::Config,
    error::{LoadError, RunError},
    events::Decoder,
    loader::{self, Tracer},
    metrics::{self, Metrics},
    notice,
    output::{
        self, EventWriter, LossReason, RunInfo,
        sink::{self, Gate},
    },
    pipeline::{self, Pipeline},
    priority, privileges,
    programs::Programs,
};

/// What a session did, for the closing line on stderr.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Events written to stdout (while running: handed to the output).
    pub events: u64,
    /// Events the kernel could not queue (ring buffer full).
    pub lost: u64,
    /// Events dropped because stdout's reader did not keep up (output stalled),
    /// including those still queued for it at exit.
    pub stalled: u64,
    /// Connections the kernel could not track (connection map full).
    pub untracked: u64,
    /// Kernel program runs skipped while an eBPF program (ours or another)
    /// already ran on the same CPU (programs.rs): their events are missing.
    pub missed: u64,
    /// Closes the kernel side sent when the socket was freed, its state
    /// hook's run into CLOSE having been skipped: the states between are missing.
    pub late_closes: u64,
    /// Records that failed to decode.
    pub malformed: u64,
    /// Events the user's filters kept out, in the kernel.
    pub filtered: u64,
    /// Kernel map updates that failed (a full map): owners or filters lost.
    pub map_update_failures: u64,
    /// accept() descriptors the kernel side could not follow to their socket.
    pub unresolved_accepts: u64,
}

/// How often loss counters are checked while running.
const LOSS_CHECK: Duration = Duration::from_secs(1);
/// The kernel wakes us for the first record after we emptied the ring
/// (emit.rs); from then on we drain this often, without wake-ups, until a
/// drain finds nothing. Bounds how late an event appears on a busy host; an
/// idle one wakes us only for the loss check.
const BATCH_EVERY: Duration = Duration::from_millis(10);
/// A drain this large means a burst: look again sooner, so the ring keeps
/// room while the host is busy (4,096 records are about 650 KB of the default 4 MiB).
const BURST_RECORDS: u64 = 4096;
const BURST_BATCH_EVERY: Duration = Duration::from_millis(2);

/// When to drain next after a drain that took `drained` records, with events
/// still held for ordering or not; None: wait for the kernel's wake-up.
fn next_drain(drained: u64, holding: bool) -> Option<tokio::time::Instant> {
    let after = match drained {
        0 if holding => pipeline::HOLD,
        0 => return None,
        n if n >= BURST_RECORDS => BURST_BATCH_EVERY,
        _ => BATCH_EVERY,
    };
    Some(tokio::time::Instant::now() + after)
}
/// At exit, how long output already queued may take to reach a slow reader
/// (counted from the stop, so it overlaps detaching) before it counts as
/// lost: Ctrl-C and SIGTERM end tracing within a second, whatever the reader does.
const EXIT_GRACE: Duration = Duration::from_millis(500);

/// Traces until Ctrl-C, SIGTERM or --count; events go to `out` from a thread
/// of their own, so a stalled reader never holds the loop up.
pub async fn run<W: Write + AsFd + Send + 'static>(
    config: &Config,
    out: W,
    priority: &priority::Outcome,
) -> Result<Summary, RunError> {
    let started = std::time::Instant::now();
    // Before loading: a busy --metrics address fails at once, nothing loaded.
    let endpoint = match config.metrics {
        Some(addr) => Some(metrics::Endpoint::bind(addr).await?),
        None => None,
    };
    let mut tracer = loader::load(config)?;
    let attached = SystemTime::now();
    log::debug!("start-up: loaded at {:?}", started.elapsed());
    // The start-up report, unless --quiet.
    let report = |line: std::fmt::Arguments<'_>| {
        if !config.quiet {
            notice!("tcptrace: {line}");
        }
    };
    for hook in &tracer.hooks {
        report(format_args!("{hook}"));
    }
    if let priority::Outcome::Refused { kept, error } = priority {
        notice!(
            "tcptrace: warning: staying at nice {kept}, not {} ({error}; raising it takes CAP_SYS_NICE): \
             with the CPUs busy, a burst may cost events",
            config.nice
        );
    }
    let metrics = endpoint.map(|endpoint| endpoint.serve_tracer(&tracer));
    report(format_args!("{}", privileges::drop_after_attach(&tracer, config.user.as_ref())?));
    let programs = Programs::of(&tracer);
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
    let mut pipeline = Pipeline::new(decoder, config.events, metrics.clone());
    let (out, backlog) = sink::spawn(out, sink::BACKLOG_BYTES).map_err(RunError::Output)?;
    let view = output::View { own_netns: own_netns(), wide: config.wide, time: config.time };
    let mut writer = Gate::new(output::writer(config.format, out, view), backlog);
    let mut summary = Summary::default();
    let limit = config.count.map_or(u64::MAX, |n| n.get());
    let hooks = tracer.hooks.iter().map(|hook| (hook.purpose.to_owned(), hook.method.clone())).collect();
    writer.start(&RunInfo::here(attached, hooks)).and_then(|()| writer.flush()).map_err(RunError::Output)?;
    // Its lines come first, stamped with tracing's start: events wait for
    // them. Its dumps run on a thread started now, without capabilities.
    let mut dumps = tracer.snapshot.take().map(|starting| tokio::task::spawn_blocking(|| starting.take()));
    if dumps.is_some() {
        pipeline.await_snapshot();
    }
    report(format_args!("ready, tracing TCP connections (Ctrl-C to stop)"));

    while summary.events < limit {
        tokio::select! {
            guard = ring.readable_mut(), if batching.is_none() => {
                let mut guard = guard.map_err(RunError::Poll)?;
                guard.clear_ready();
                let drained = drain(guard.get_inner_mut(), &mut pipeline, writer.as_mut(), &mut summary, limit, false)?;
                batching = next_drain(drained, pipeline.holds_events());
            }
            () = sleep_until_some(batching) => {
                let drained = drain(ring.get_mut(), &mut pipeline, writer.as_mut(), &mut summary, limit, false)?;
                batching = next_drain(drained, pipeline.holds_events());
            }
            starting = dumps_done(&mut dumps) => {
                dumps = None;
                // The ring emptied first: adopting a busy host's tens of
                // thousands of lines takes ~50 ms, during which it only fills.
                pipeline.take(ring.get_mut(), &mut summary);
                adopt_snapshot(&mut tracer, starting, &mut pipeline, config)?;
                batching = next_drain(0, pipeline.holds_events());
            }
            _ = loss_check.tick() => report_losses(&counters, &programs, &mut summary, &mut writer, metrics.as_deref())?,
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
    }
    let output_deadline = Instant::now() + EXIT_GRACE;
    if dumps.is_some() {
        let starting = dumps_done(&mut dumps).await;
        adopt_snapshot(&mut tracer, starting, &mut pipeline, config)?;
    }
    // What the kernel queued before we stopped still goes out.
    drain(ring.get_mut(), &mut pipeline, writer.as_mut(), &mut summary, limit, true)?;
    report_losses(&counters, &programs, &mut summary, &mut writer, metrics.as_deref())?;
    writer.stop(SystemTime::now(), &summary).and_then(|()| writer.flush()).map_err(RunError::Output)?;
    drop(tracer);
    summary.stalled += writer.finish(output_deadline).map_err(RunError::Output)?;
    // Dropped events went through drain() like the others.
    summary.events = summary.events.saturating_sub(summary.stalled);
    Ok(summary)
}

/// Returns once the snapshot's dumps are done; never when none are running.
async fn dumps_done(
    dumps: &mut Option<tokio::task::JoinHandle<loader::Starting>>,
) -> Result<loader::Starting, tokio::task::JoinError> {
    match dumps {
        Some(dumps) => dumps.await,
        None => std::future::pending().await,
    }
}

/// The snapshot's lines into the pipeline, ahead of the events that waited.
fn adopt_snapshot(
    tracer: &mut Tracer,
    starting: Result<loader::Starting, tokio::task::JoinError>,
    pipeline: &mut Pipeline,
    config: &Config,
) -> Result<(), RunError> {
    let starting = starting.map_err(|_| LoadError::SnapshotThread)?;
    let (snapshot, listeners) = loader::finish_snapshot(&mut tracer.ebpf, starting)?;
    log::debug!("snapshot: {} connections open at start", snapshot.len());
    pipeline.adopt(&snapshot, &listeners, &config.filters);
    Ok(())
}

/// Sleeps until `deadline`; forever when there is none.
async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// One drain: every record waiting in the ring into the pipeline, then out
/// what has waited long enough (everything, at exit). Returns the records taken.
fn drain(
    ring: &mut RingBuf<MapData>,
    pipeline: &mut Pipeline,
    writer: &mut dyn EventWriter,
    summary: &mut Summary,
    limit: u64,
    all: bool,
) -> Result<u64, RunError> {
    let records = pipeline.take(ring, summary);
    pipeline.write(writer, summary, limit, all).map_err(RunError::Output)?;
    Ok(records)
}

fn take_map<M>(tracer: &mut Tracer, name: &'static str) -> Result<M, RunError>
where
    M: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = tracer.ebpf.take_map(name).ok_or(LoadError::MissingMap(name))?;
    M::try_from(map).map_err(|source| RunError::Load(LoadError::Map { name, source }))
}

/// Sums the per-CPU counters and reports anything new on stderr; losses of
/// either reason reach the output too, once it has room. Also ends the
/// session once the writer thread has failed (the reader went away), should no
/// further event come to find out.
fn report_losses(
    counters: &PerCpuArray<MapData, u64>,
    programs: &Programs,
    summary: &mut Summary,
    writer: &mut Gate<'_>,
    metrics: Option<&Metrics>,
) -> Result<(), RunError> {
    writer.check().map_err(RunError::Output)?;
    let total = |index| counters.get(&index, 0).map(|values| values.iter().sum::<u64>()).map_err(RunError::Counters);
    let lost = total(counter::LOST_EVENTS)?;
    let untracked = total(counter::CONN_MAP_FULL)?;
    let stalled = writer.stalled();
    let now = SystemTime::now();
    for (reason, total, before) in
        [(LossReason::RingBufferFull, lost, summary.lost), (LossReason::OutputStalled, stalled, summary.stalled)]
    {
        if total > before {
            notice!("tcptrace: lost {} events ({}), {total} in all", total - before, reason.words());
            writer.lost(now, reason, total - before, total).map_err(RunError::Output)?;
        }
    }
    if untracked > summary.untracked {
        notice!(
            "tcptrace: {} connections not tracked (more than --max-sockets at once)",
            untracked - summary.untracked
        );
    }
    let missed_by_program = programs.missed();
    let missed = missed_by_program.iter().map(|(_, misses)| misses).sum();
    if missed > summary.missed {
        let which: Vec<String> = missed_by_program.iter().map(|(name, misses)| format!("{name} {misses}")).collect();
        notice!(
            "tcptrace: the kernel skipped {} runs of our programs (an eBPF program was already running on that \
             CPU), {missed} in all ({}): some events are missing",
            missed - summary.missed,
            which.join(", ")
        );
    }
    summary.lost = lost;
    summary.stalled = stalled;
    summary.untracked = untracked;
    summary.missed = missed;
    summary.filtered = total(counter::FILTERED)?;
    let failures = total(counter::MAP_UPDATE_FAILED)?;
    if failures > summary.map_update_failures {
        notice!(
            "tcptrace: {} kernel map updates failed (map full), {failures} in all: some owners may be unknown",
            failures - summary.map_update_failures
        );
    }
    summary.map_update_failures = failures;
    let late_closes = total(counter::CLOSE_AT_DESTROY)?;
    if late_closes > summary.late_closes {
        notice!(
            "tcptrace: {} closes reported when their sockets were freed (the kernel skipped the state change into \
             CLOSE), {late_closes} in all",
            late_closes - summary.late_closes
        );
    }
    summary.late_closes = late_closes;
    let unresolved = total(counter::ACCEPT_UNRESOLVED)?;
    if unresolved > summary.unresolved_accepts {
        notice!(
            "tcptrace: {} accepted sockets not found from their descriptors (closed at once, or a kernel struct \
             layout not understood), {unresolved} in all: their accept events are missing",
            unresolved - summary.unresolved_accepts
        );
    }
    summary.unresolved_accepts = unresolved;
    if let Some(metrics) = metrics {
        metrics.record_totals(summary);
    }
    // Records held back while the output was stalled go out once it has room.
    writer.settle(now).and_then(|()| writer.flush()).map_err(RunError::Output)
}

/// Inode of tcptrace's own network namespace: human output names only others.
fn own_netns() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/net").map(|m| m.ino() as u32).unwrap_or(0)
}
