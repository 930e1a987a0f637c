//! Stdout that never holds up tracing. A thread of its own owns stdout and
//! writes whole records from a bounded backlog; the run loop only queues them
//! and never waits in write(2). When the reader of stdout does not keep up
//! (stopped, slow, a terminal held with Ctrl-S) and the backlog is full, events
//! are dropped and counted (reason `output_stalled`) instead of waited for, so
//! the kernel's ring buffer keeps being drained and Ctrl-C or SIGTERM still end
//! tracing at once. Once there is room again, a `lost` record marks the gap in
//! the stream, where it happened.
//!
//! [`spawn`] starts the thread and returns the [`Sink`] a format writes its
//! bytes to and the [`Backlog`] that measures it; a [`Gate`] wraps the format's
//! writer and decides, event by event, whether there is room.
use std::{
    collections::VecDeque,
    io::{self, Write},
    os::fd::AsFd,
    sync::{
        Arc, Condvar, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Instant, SystemTime},
};

use self::piece::{Piece, wait_for_room};
use super::{EventWriter, RunInfo};
use crate::{events::ConnEvent, model::LossReason, session::Summary};

/// Formatted output held for a reader that does not keep up, beyond what the
/// pipe itself holds: about 12,000 JSON events or 30,000 lines of columns.
/// Past it, events are dropped and counted, never waited for.
pub const BACKLOG_BYTES: usize = 4 << 20;

mod piece;

/// Events per chunk handed to the writer thread at most; a flush (once per
/// drained batch) also ends a chunk, so a quiet period never waits for one.
/// Each chunk wakes the thread: at 256, a busy host's ~1,000-event batches
/// cost four wake-ups each. A chunk (≤ ~350 KB of JSON) may overshoot the
/// backlog's capacity once.
const CHUNK_EVENTS: u32 = 1024;

/// Starts the thread that writes to `out` and returns its two handles: bytes
/// go in through the [`Sink`], the [`Backlog`] says how much waits. At most
/// `capacity` bytes wait before a [`Gate`] drops events (a chunk may overshoot
/// it once).
pub fn spawn<W: Write + AsFd + Send + 'static>(out: W, capacity: usize) -> io::Result<(Sink, Backlog)> {
    let piece = Piece::for_output(out.as_fd());
    let shared = Arc::new(Shared {
        state: Mutex::default(),
        changed: Condvar::new(),
        queued: AtomicUsize::new(0),
        staged: AtomicU64::new(0),
    });
    let thread_side = Arc::clone(&shared);
    // Never joined: at exit the thread may sit in write(2) for a reader that
    // never comes back, and the process ends around it.
    std::thread::Builder::new().name("tcptrace-output".into()).spawn(move || write_out(out, piece, &thread_side))?;
    Ok((Sink { pending: Vec::new(), shared: Arc::clone(&shared) }, Backlog { shared, capacity }))
}

/// What the run loop and the writer thread share.
struct Shared {
    state: Mutex<State>,
    /// A chunk was queued (for the thread) or, once closing, written (for
    /// [`Backlog::finish`]).
    changed: Condvar,
    /// Bytes queued or being written; read without the lock for every event.
    queued: AtomicUsize,
    /// Events formatted into the sink since its last flush (counted by the gate).
    staged: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; if it ever did, the counts stay usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Default)]
struct State {
    chunks: VecDeque<Chunk>,
    /// Events in the queued chunks and not yet written of the one being written.
    unwritten: u64,
    /// No more chunks will come: the thread ends once the queue is empty.
    closing: bool,
    /// [`Backlog::finish`] gave up on the reader: nothing more goes out, so
    /// what it counted as unwritten stays so.
    abandoned: bool,
    /// Why writing stopped (EPIPE: the reader went away); the thread has ended.
    failed: Option<Failure>,
    /// A written chunk's buffer, for the next one.
    spare: Option<Vec<u8>>,
}

/// Whole records: events only, one line each (`events` of them), or none
/// (the header, `lost` records), which the gate flushes on their own.
struct Chunk {
    bytes: Vec<u8>,
    events: u64,
}

/// A write error, kept to be returned to the run loop (io::Error is not Clone).
struct Failure {
    errno: Option<i32>,
    kind: io::ErrorKind,
    message: String,
}

impl Failure {
    fn new(error: &io::Error) -> Self {
        Self { errno: error.raw_os_error(), kind: error.kind(), message: error.to_string() }
    }

    fn error(&self) -> io::Error {
        self.errno.map_or_else(|| io::Error::new(self.kind, self.message.clone()), io::Error::from_raw_os_error)
    }
}

/// The writer thread: takes chunks in order and writes each whole, waiting as
/// long as the reader makes it, until the queue is closed, the reader is
/// abandoned or a write fails. What is written is accounted as it goes, so a
/// reader that stalls midway leaves exact counts.
fn write_out(mut out: impl Write + AsFd, piece: Piece, shared: &Shared) {
    loop {
        let mut chunk = {
            let mut state = shared.lock();
            loop {
                if state.abandoned {
                    return;
                }
                if let Some(chunk) = state.chunks.pop_front() {
                    break chunk;
                }
                if state.closing {
                    return;
                }
                state = shared.changed.wait(state).unwrap_or_else(PoisonError::into_inner);
            }
        };
        let mut written = 0;
        let mut events_left = chunk.events;
        let result = loop {
            let rest = &chunk.bytes[written..];
            if rest.is_empty() {
                break out.flush();
            }
            // A write that cannot block is made under the lock, so finish()
            // sees each piece either wholly out or not at all.
            let held = if piece.waits_for_room() {
                if let Err(error) = wait_for_room(out.as_fd()) {
                    break Err(error);
                }
                let state = shared.lock();
                if state.abandoned {
                    return;
                }
                Some(state)
            } else {
                None
            };
            let n = match piece.write(&mut out, rest) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(error) if retry(&error) => continue,
                Err(error) => break Err(error),
            };
            account(shared, &mut held.unwrap_or_else(|| shared.lock()), rest, n, &mut events_left);
            written += n;
        };
        let mut state = shared.lock();
        if let Err(error) = result {
            // Nothing more will go out: the run loop learns why at its next
            // flush or check, and the gate stops counting on room that never comes.
            state.failed = Some(Failure::new(&error));
            let dropped: usize = state.chunks.drain(..).map(|c| c.bytes.len()).sum();
            shared.queued.fetch_sub(dropped + chunk.bytes.len() - written, Ordering::Relaxed);
            shared.changed.notify_all();
            return;
        }
        chunk.bytes.clear();
        state.spare = Some(chunk.bytes);
    }
}

/// Interrupted, or a socket that had no room after all: wait and try again.
fn retry(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock)
}

/// Takes note that the first `n` bytes of `rest` went out.
fn account(shared: &Shared, state: &mut State, rest: &[u8], n: usize, events_left: &mut u64) {
    // An events chunk has one line per event; count them only when the chunk
    // went out in more than one piece.
    let events = if n == rest.len() {
        *events_left
    } else {
        (*events_left).min(rest[..n].iter().filter(|&&b| b == b'\n').count() as u64)
    };
    *events_left -= events;
    state.unwritten -= events;
    shared.queued.fetch_sub(n, Ordering::Relaxed);
    if state.closing {
        // Backlog::finish waits for this.
        shared.changed.notify_all();
    }
}

/// Where a format writes its bytes: they collect here and go to the writer
/// thread as one chunk at each flush, so chunks hold whole records.
pub struct Sink {
    pending: Vec<u8>,
    shared: Arc<Shared>,
}

impl Write for Sink {
    // Formats write a few bytes at a time: these must inline to a copy.
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        Ok(buf.len())
    }

    #[inline]
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.pending.extend_from_slice(buf);
        Ok(())
    }

    /// Queues what was written since the last flush; never waits. Fails with
    /// the writer thread's error once it has stopped.
    fn flush(&mut self) -> io::Result<()> {
        let mut state = self.shared.lock();
        if let Some(failure) = &state.failed {
            self.pending.clear();
            return Err(failure.error());
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        let events = self.shared.staged.swap(0, Ordering::Relaxed);
        let bytes = std::mem::replace(&mut self.pending, state.spare.take().unwrap_or_default());
        self.shared.queued.fetch_add(bytes.len(), Ordering::Relaxed);
        state.unwritten += events;
        state.chunks.push_back(Chunk { bytes, events });
        drop(state);
        self.shared.changed.notify_all();
        Ok(())
    }
}

/// How much output waits for the reader.
pub struct Backlog {
    shared: Arc<Shared>,
    capacity: usize,
}

impl Backlog {
    fn is_full(&self) -> bool {
        self.shared.queued.load(Ordering::Relaxed) >= self.capacity
    }

    /// The writer thread's error, once it has stopped writing.
    pub fn check(&self) -> io::Result<()> {
        self.shared.lock().failed.as_ref().map_or(Ok(()), |failure| Err(failure.error()))
    }

    /// Lets the writer thread write what is queued until `deadline` at most,
    /// then returns how many events never went out (0 when all did).
    pub fn finish(&self, deadline: Instant) -> u64 {
        let mut state = self.shared.lock();
        state.closing = true;
        self.shared.changed.notify_all();
        while self.shared.queued.load(Ordering::Relaxed) > 0 && state.failed.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = self.shared.changed.wait_timeout(state, left).unwrap_or_else(PoisonError::into_inner).0;
        }
        state.abandoned = true;
        state.unwritten
    }
}

/// A format's writer behind the backlog: an event goes in only while there is
/// room, else it is counted as lost (`output_stalled`). Losses of any reason
/// reach the stream as `lost` records once there is room for them, each
/// counting what was lost since that reason's previous record.
pub struct Gate<'w> {
    inner: Box<dyn EventWriter + 'w>,
    backlog: Backlog,
    /// Per [`LossReason`]: events known lost since start...
    lost: [u64; LossReason::ALL.len()],
    /// ...and how many of them the stream has been told of.
    told: [u64; LossReason::ALL.len()],
    /// Events written since the last flush.
    unflushed: u32,
}

impl<'w> Gate<'w> {
    pub fn new(inner: Box<dyn EventWriter + 'w>, backlog: Backlog) -> Self {
        Self { inner, backlog, lost: [0; 2], told: [0; 2], unflushed: 0 }
    }

    /// Events dropped since start because the backlog was full.
    pub fn stalled(&self) -> u64 {
        self.lost[LossReason::OutputStalled as usize]
    }

    /// Writes `lost` records for losses the stream has not been told of yet,
    /// if there is room for them; otherwise they wait.
    pub fn settle(&mut self, time: SystemTime) -> io::Result<()> {
        if self.backlog.is_full() || self.lost == self.told {
            return Ok(());
        }
        // Records travel in chunks of their own, apart from events' (see Chunk).
        self.flush()?;
        for reason in LossReason::ALL {
            let (lost, told) = (self.lost[reason as usize], self.told[reason as usize]);
            if lost > told {
                self.inner.lost(time, reason, lost - told, lost)?;
                self.told[reason as usize] = lost;
            }
        }
        self.flush()
    }

    /// The writer thread's error, once it has stopped writing.
    pub fn check(&self) -> io::Result<()> {
        self.backlog.check()
    }

    /// At exit: flushes, lets the writer thread write the backlog until
    /// `deadline` at most, and returns how many events never went out.
    pub fn finish(&mut self, deadline: Instant) -> io::Result<u64> {
        self.flush()?;
        let unwritten = self.backlog.finish(deadline);
        self.backlog.check()?;
        Ok(unwritten)
    }
}

impl EventWriter for Gate<'_> {
    fn start(&mut self, run: &RunInfo) -> io::Result<()> {
        self.inner.start(run)
    }

    /// After the held-back `lost` records, so a reader that comes back finds
    /// the run's totals last.
    fn stop(&mut self, time: SystemTime, totals: &Summary) -> io::Result<()> {
        self.settle(time)?;
        self.inner.stop(time, totals)
    }

    fn event(&mut self, event: &ConnEvent) -> io::Result<()> {
        if self.backlog.is_full() {
            self.lost[LossReason::OutputStalled as usize] += 1;
            return Ok(());
        }
        if self.lost != self.told {
            // The first event after a gap: the gap's record goes first.
            self.settle(SystemTime::now())?;
        }
        self.inner.event(event)?;
        self.backlog.shared.staged.fetch_add(1, Ordering::Relaxed);
        self.unflushed += 1;
        if self.unflushed >= CHUNK_EVENTS { self.flush() } else { Ok(()) }
    }

    /// Takes note of `total`; the stream gets a record (its count derived from
    /// the last one it got) as soon as there is room.
    fn lost(&mut self, time: SystemTime, reason: LossReason, _count: u64, total: u64) -> io::Result<()> {
        let lost = &mut self.lost[reason as usize];
        *lost = (*lost).max(total);
        self.settle(time)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.unflushed = 0;
        self.inner.flush()
    }
}

/// The run loop hands the gate on as any writer.
impl<'w> AsMut<dyn EventWriter + 'w> for Gate<'w> {
    fn as_mut(&mut self) -> &mut (dyn EventWriter + 'w) {
        self
    }
}

#[cfg(test)]
mod tests;
